#!/usr/bin/env python3
"""airlock benchmarks: one command runs them all and prints a report.

    python3 benches/run.py [--sizes 100,500,2000] [--runs 3] [--quick] [--no-build]

B0  the floor: benches/floor.py runs each B1 project's deploy by hand straight
    in DuckDB (same seeds, creates, tests, publish), timed in the same
    alternation as airlock; the report gives airlock / B0.
B1  deploy vs `dbt build` on generated projects of N models: first a
    correctness check (same prod relations, row counts and checksums for
    airlock, dbt and B0), then alternating timed runs of airlock --threads 2,
    airlock --threads 4, B0 and dbt build --threads 2, each on a fresh
    database file; plus airlock's own overhead (wall time not covered by any
    SQL statement, from --statement-log).
B2  `airlock plan --strategy all` (dry run) on a generated 15,000-model
    project: wall time and peak memory.
B3  `airlock deploy --strategy wac` of a generated project of 500 mart tables
    with 100 ms added to every statement (AIRLOCK_BENCH_LATENCY_MS, the
    warehouse deploy really uses), timed through the binary: the publish
    phase from the statement log; first deploy, a redeploy, and the journaled
    step-by-step path Snowflake/BigQuery take (default and 32 publish steps at
    once). Plus the Snowflake swap statement count.
B4  opt-in (`--only B4`): deploy of a generated 15,000-model project
    (~29,000 tests): wall, per-node cost, peak memory; B0 at the same size.
BDBT opt-in (`--only BDBT`): `airlock deploy --builder dbt` against plain
    `dbt build` (both --threads 2, each on a fresh database, dbt's partial
    parsing warm for both after one untimed run each) on the generated
    500-model project (`--bdbt-models`): the wall-time overhead of airlock
    around the user's dbt (goal <= 10%), and the same prod relations.

Runs with the system python3 (stdlib only). dbt and the `duckdb` module used
for checksums live in a venv ($AIRLOCK_DBT_VENV, default
~/.cache/airlock-dbt-venv) that is created when missing. Exits 0 when every
step ran (goals missed or not: it is a report), 1 when a step failed
(a tool errored, a gate blocked, or airlock and dbt disagree).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

BENCHES = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCHES)
HOME = os.path.expanduser("~")
VENV = os.environ.get("AIRLOCK_DBT_VENV") or os.path.join(HOME, ".cache", "airlock-dbt-venv")
VENV_PY = os.path.join(VENV, "bin", "python")
DBT = os.path.join(VENV, "bin", "dbt")
# duckdb: the engine version airlock bundles (duckdb crate 1.20000.x), for B0 and the checksums
DBT_PINS = {"dbt-core": "1.11.16", "dbt-duckdb": "1.11.1", "duckdb": "2.0.0"}
TARGET_DIR = os.environ.get("CARGO_TARGET_DIR") or os.path.join(HOME, ".cache", "airlock-target")
AIRLOCK = os.path.join(TARGET_DIR, "release", "airlock")

PROD_SCHEMAS = ("main", "main_marts")  # profile schema `main` + `+schema: marts`

GOAL_RATIO_N = 500          # B1: at N=500 ...
GOAL_RATIO = 30.0           # ... dbt build time / airlock deploy time >= 30
GOAL_OVERHEAD = 0.20        # B1: airlock's own time < 20% of wall
GOAL_FLOOR = 1.1            # B1: airlock deploy (t2) / B0 floor <= 1.1
GOAL_PLAN_S = 0.6           # B2: plan --strategy all wall time <= 0.6 s
GOAL_PLAN_MIB = 250.0       # B2: plan peak RSS <= 250 MiB
B3_TABLES = 500             # B3: mart tables published by wac ...
B3_DELAY_MS = 100           # ... with this much added to every statement
GOAL_B3_S = 3.0             # B3: publish phase <= 3 s
GOAL_BDBT_OVERHEAD = 0.10   # BDBT: --builder dbt adds <= 10% wall time over dbt build
GOAL_B4_S = 60.0            # B4: 15,000-model deploy <= 60 s ...
GOAL_B4_MIB = 1536.0        # ... and <= 1.5 GiB peak

sys.dont_write_bytecode = True  # leave no __pycache__ in the repository
sys.path.insert(0, BENCHES)
import gen_project  # noqa: E402  (benches/gen_project.py)


# ============================================================================ helpers

T0 = time.perf_counter()


def say(msg: str = "") -> None:
    print("[%7.1fs] %s" % (time.perf_counter() - T0, msg) if msg else "", flush=True)


class StepFailed(Exception):
    pass


class Result:
    def __init__(self, cmd, rc, wall, maxrss_kib, out, err):
        self.cmd, self.rc, self.wall, self.maxrss_kib, self.out, self.err = cmd, rc, wall, maxrss_kib, out, err

    @property
    def maxrss_mib(self) -> float:
        return self.maxrss_kib / 1024.0

    def tail(self, n: int = 30) -> str:
        lines = (self.out + ("\n" if self.out and self.err else "") + self.err).rstrip().splitlines()
        return "\n".join("    | " + l for l in lines[-n:])


def run(cmd: list[str], cwd: str, env: dict | None = None) -> Result:
    """Run one child; wall time from time.perf_counter() around it, peak RSS
    of exactly that child from os.wait4()'s rusage (KiB on Linux)."""
    with tempfile.TemporaryFile() as fo, tempfile.TemporaryFile() as fe:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=fo, stderr=fe)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        fo.seek(0)
        fe.seek(0)
        out = fo.read().decode("utf-8", "replace")
        err = fe.read().decode("utf-8", "replace")
    return Result(cmd, p.returncode, wall, ru.ru_maxrss, out, err)


def tool_env(db: str | None = None) -> dict:
    env = dict(os.environ)
    # dbt must not phone home (no network here: it would only add waiting)
    env["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "False"
    env["DO_NOT_TRACK"] = "1"
    env["NO_COLOR"] = "1"
    # both tools must read the generated project's profiles.yml
    env.pop("DBT_PROFILES_DIR", None)
    env.pop("DBT_TARGET_PATH", None)
    if db is not None:
        env["BENCH_DB"] = db
    return env


def fresh_db(path: str) -> None:
    """Remove a database file and its companions (.wal, airlock's lock)."""
    for f in glob.glob(glob.escape(path) + "*"):
        if os.path.isdir(f):
            shutil.rmtree(f)
        else:
            os.remove(f)


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def fmt_s(x: float) -> str:
    if x != x:
        return "n/a"
    return "%.3f s" % x if x < 10 else "%.1f s" % x


# ============================================================================ setup

def venv_versions() -> dict | None:
    if not (os.path.exists(VENV_PY) and os.path.exists(DBT)):
        return None
    code = ("import importlib.metadata as m, json, duckdb, dbt.adapters.duckdb;"
            "print(json.dumps({'dbt-core': m.version('dbt-core'), 'dbt-duckdb': m.version('dbt-duckdb'),"
            " 'duckdb': duckdb.__version__}))")
    r = subprocess.run([VENV_PY, "-c", code], capture_output=True, text=True)
    if r.returncode != 0:
        return None
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def ensure_venv() -> dict:
    """(Re)create the dbt venv when it is missing or has other versions."""
    v = venv_versions()
    if v and all(v.get(k) == pin for k, pin in DBT_PINS.items()):
        say("dbt venv ok: %s (dbt-core %s, dbt-duckdb %s, duckdb %s)" % (
            VENV, v["dbt-core"], v["dbt-duckdb"], v["duckdb"]))
        return v
    if not os.path.exists(VENV_PY):
        say("creating dbt venv %s" % VENV)
        subprocess.run(["python3", "-m", "venv", "--clear", VENV], check=True)
    pins = ["%s==%s" % kv for kv in DBT_PINS.items()]
    say("installing %s into %s" % (" ".join(pins), VENV))
    subprocess.run([os.path.join(VENV, "bin", "pip"), "install", "--quiet", *pins], check=True)
    v = venv_versions()
    if not v or not all(v.get(k) == pin for k, pin in DBT_PINS.items()):
        raise StepFailed("dbt venv %s is unusable after installing %s (found %s)" % (VENV, pins, v))
    return v


def build_airlock(no_build: bool) -> None:
    if no_build:
        say("--no-build: using %s as it is" % AIRLOCK)
    else:
        say("cargo build --release (CARGO_TARGET_DIR=%s)" % TARGET_DIR)
        env = dict(os.environ, CARGO_TARGET_DIR=TARGET_DIR)
        r = subprocess.run(["cargo", "build", "--release"], cwd=REPO, env=env)
        if r.returncode != 0:
            raise StepFailed("cargo build --release failed (exit %d)" % r.returncode)
    if not os.access(AIRLOCK, os.X_OK):
        raise StepFailed("no airlock binary at %s" % AIRLOCK)


def generate(n: int, out: str, shape: str = "layers") -> float:
    t0 = time.perf_counter()
    summary = gen_project.generate(n, out, seed=42, shape=shape)
    dt = time.perf_counter() - t0
    say("generated %s: %d models (%s), %d tests in %.2f s" % (
        out, summary["models"], ", ".join("%s %d" % kv for kv in summary["materializations"].items()),
        summary["tests"], dt))
    return dt


# ============================================================================ the commands under test

def airlock_deploy(project: str, db: str, threads: int, statement_log: str, cwd: str,
                   strategy: str | None = None, extra_env: dict | None = None) -> Result:
    """airlock deploy --project-dir P --threads N --statement-log FILE [--strategy S]
    (the database file comes from the project's profiles.yml via $BENCH_DB)."""
    cmd = [AIRLOCK, "deploy",
           "--project-dir", project,
           "--threads", str(threads),
           "--statement-log", statement_log]
    if strategy:
        cmd += ["--strategy", strategy]
    env = tool_env(db)
    env.update(extra_env or {})
    return run(cmd, cwd=cwd, env=env)


def floor_deploy(project: str, db: str, cwd: str) -> Result:
    """B0: python benches/floor.py P DB (the venv's python: duckdb pinned)."""
    return run([VENV_PY, os.path.join(BENCHES, "floor.py"), project, db], cwd=cwd, env=tool_env(db))


def floor_phases(r: Result) -> dict:
    try:
        return json.loads(r.out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {}


def dbt_build(project: str, db: str, threads: int, cwd: str, partial_parse: bool = True) -> Result:
    """dbt build --profiles-dir P --project-dir P --threads N"""
    cmd = [DBT, "build",
           "--profiles-dir", project,
           "--project-dir", project,
           "--threads", str(threads)]
    if not partial_parse:
        cmd.append("--no-partial-parse")
    return run(cmd, cwd=cwd, env=tool_env(db))


def airlock_dbt_deploy(project: str, db: str, threads: int, cwd: str) -> Result:
    """airlock deploy --builder dbt --dbt VENV/bin/dbt --project-dir P --threads N
    (AIRLOCK_LOG=airlock::dbt_builder=debug: the builder's phase lines on stderr)"""
    cmd = [AIRLOCK, "deploy", "--builder", "dbt", "--dbt", DBT, "--project-dir", project, "--threads", str(threads)]
    env = tool_env(db)
    env["AIRLOCK_LOG"] = "airlock::dbt_builder=debug"
    return run(cmd, cwd=cwd, env=env)


BDBT_PHASES = (("dbt parsed both targets", "parse"), ("audit location prepared", "prepare"),
               ("dbt build done", "build"), ("prod views compiled", "views"))


def bdbt_phases(r: Result) -> dict:
    """Seconds since start at each phase line of the dbt builder (see
    src/dbt_builder.rs), plus the wall time."""
    out = {"wall": r.wall}
    for line in re.sub(r"\x1b\[[0-9;]*m", "", r.err).splitlines():
        m = re.search(r"(\d+\.\d+) s: (.*)", line)
        for text, key in BDBT_PHASES:
            if m and m.group(2).startswith(text):
                out[key] = float(m.group(1))
    return out


def bench_bdbt(n: int, runs: int, tmp: str, report: list, failures: list) -> None:
    """BDBT: airlock deploy --builder dbt vs dbt build, same project, same dbt."""
    project = os.path.join(tmp, "bdbt_%d" % n)
    work = os.path.join(tmp, "bdbt_%d_work" % n)
    os.makedirs(work, exist_ok=True)
    generate(n, project)
    db = {"dbt": os.path.join(work, "dbt.duckdb"), "air": os.path.join(work, "air.duckdb")}
    # untimed: dbt's partial parsing warm for both (airlock keeps its own
    # artifacts in target/airlock/{audit,prod}); the prod relations compared
    for name, fn in (("dbt", lambda: dbt_build(project, db["dbt"], 2, work)),
                     ("air", lambda: airlock_dbt_deploy(project, db["air"], 2, work))):
        fresh_db(db[name])
        say("BDBT N=%d: warm-up %s" % (n, name))
        r = fn()
        if r.rc != 0:
            raise StepFailed("BDBT %s failed (exit %d):\n%s" % (name, r.rc, r.tail()))
    diffs, _ = compare(snapshot(db["air"]), snapshot(db["dbt"]), ("airlock --builder dbt", "dbt build"))
    if diffs:
        failures.append("BDBT N=%d: airlock --builder dbt and dbt build left different prod relations" % n)
        for d in diffs[:20]:
            say("  " + d)
    times = {"dbt": [], "air": []}
    phases = []
    for i in range(runs):
        for name, fn in (("dbt", lambda: dbt_build(project, db["dbt"], 2, work)),
                         ("air", lambda: airlock_dbt_deploy(project, db["air"], 2, work))):
            fresh_db(db[name])
            r = fn()
            if r.rc != 0:
                raise StepFailed("BDBT %s failed (exit %d):\n%s" % (name, r.rc, r.tail()))
            times[name].append(r.wall)
            say("BDBT N=%d run %d: %s %s" % (n, i + 1, name, fmt_s(r.wall)))
            if name == "air":
                phases.append(bdbt_phases(r))
                say("BDBT N=%d run %d: airlock phases (s since start) %s" % (n, i + 1, json.dumps(phases[-1])))
    d, a = median(times["dbt"]), median(times["air"])
    overhead = a / d - 1.0
    report.append(("BDBT N=%d deploy --builder dbt vs dbt build (--threads 2, median of %d)" % (n, runs),
                   "airlock %s, dbt build %s: %+.1f%%" % (fmt_s(a), fmt_s(d), overhead * 100),
                   "<= +%d%%" % round(GOAL_BDBT_OVERHEAD * 100), "yes" if overhead <= GOAL_BDBT_OVERHEAD else "no"))
    # where airlock's time goes: medians of the phase marks, as spans
    marks = {k: median([p[k] for p in phases if k in p]) for _, k in BDBT_PHASES + (("", "wall"),) if any(k in p for p in phases)}
    spans, prev = [], 0.0
    for label, key in (("dbt parse x2", "parse"), ("checks+staging", "prepare"), ("dbt build", "build"), ("prod views", "views"), ("publish+exit", "wall")):
        if key in marks:
            spans.append("%s %s" % (label, fmt_s(marks[key] - prev)))
            prev = marks[key]
    report.append(("BDBT N=%d airlock's phases (median)" % n, ", ".join(spans), "(info)", "-"))


def airlock_plan(project: str, db: str, cwd: str, strategy_all: bool) -> Result:
    """airlock plan [--strategy all] --project-dir P (a dry run: writes nothing)"""
    cmd = [AIRLOCK, "plan"]
    if strategy_all:
        cmd += ["--strategy", "all"]
    cmd += ["--project-dir", project]
    return run(cmd, cwd=cwd, env=tool_env(db))


# ============================================================================ snapshots (run under the venv's python)

SNAPSHOT_SQL = (
    "select count(*), md5(coalesce(string_agg(h, '' order by h), '')) "
    "from (select md5(t::varchar) as h from {rel} as t)")


def snapshot_main(db: str) -> int:
    """`run.py _snapshot DB`: JSON of every relation in the prod schemas with
    its type, columns, row count and an order-independent checksum."""
    import duckdb  # the venv's module

    con = duckdb.connect(db, read_only=True)
    rels = con.execute(
        "select table_schema, table_name, table_type from information_schema.tables "
        "where table_catalog = current_database() and table_schema in (%s) order by 1, 2"
        % ", ".join("'%s'" % s for s in PROD_SCHEMAS)).fetchall()
    out = {}
    for schema, name, ttype in rels:
        rel = '"%s"."%s"' % (schema.replace('"', '""'), name.replace('"', '""'))
        cols = con.execute(
            "select column_name, data_type from information_schema.columns "
            "where table_catalog = current_database() and table_schema = ? and table_name = ? "
            "order by ordinal_position", [schema, name]).fetchall()
        try:
            rows, checksum = con.execute(SNAPSHOT_SQL.format(rel=rel)).fetchone()
            error = None
        except Exception as e:  # e.g. a view whose SQL no longer binds
            rows, checksum, error = None, None, str(e).splitlines()[0]
        out["%s.%s" % (schema, name)] = {
            "type": "view" if ttype == "VIEW" else "table",
            "columns": [[c, t] for c, t in cols],
            "rows": rows, "checksum": checksum, "error": error,
        }
    con.close()
    json.dump(out, sys.stdout)
    return 0


def snapshot(db: str) -> dict:
    r = run([VENV_PY, os.path.abspath(__file__), "_snapshot", db], cwd=BENCHES)
    if r.rc != 0:
        raise StepFailed("snapshot of %s failed:\n%s" % (db, r.tail()))
    return json.loads(r.out)


def compare(air: dict, dbt: dict, names: tuple[str, str] = ("airlock", "dbt")) -> tuple[list[str], list[str]]:
    """Differences (fatal) and warnings (column types only: e.g. a seed read
    as BIGINT by one tool and INTEGER by the other renders the same values)."""
    diffs, warns = [], []
    one, other = names
    for k in sorted(set(dbt) - set(air)):
        diffs.append("%s: built by %s, missing after %s" % (k, other, one))
    for k in sorted(set(air) - set(dbt)):
        diffs.append("%s: left by %s, not built by %s" % (k, one, other))
    for k in sorted(set(air) & set(dbt)):
        a, d = air[k], dbt[k]
        if a["error"] or d["error"]:
            diffs.append("%s: cannot be read (%s: %s; %s: %s)" % (k, one, a["error"], other, d["error"]))
            continue
        if a["type"] != d["type"]:
            diffs.append("%s: %s made a %s, %s a %s" % (k, one, a["type"], other, d["type"]))
        if [c for c, _ in a["columns"]] != [c for c, _ in d["columns"]]:
            diffs.append("%s: columns differ: %s %s, %s %s" % (
                k, one, [c for c, _ in a["columns"]], other, [c for c, _ in d["columns"]]))
        elif a["columns"] != d["columns"]:
            warns.append("%s: column types differ: %s %s, %s %s" % (
                k, one, [t for _, t in a["columns"]], other, [t for _, t in d["columns"]]))
        if a["rows"] != d["rows"]:
            diffs.append("%s: %s rows after %s, %s after %s" % (k, a["rows"], one, d["rows"], other))
        elif a["checksum"] != d["checksum"]:
            diffs.append("%s: same row count (%s), different contents (checksum)" % (k, a["rows"]))
    return diffs, warns


# ============================================================================ statement log

def statement_overhead(log_path: str, wall: float) -> tuple[float, int]:
    """airlock's own time = wall - the union of [start_us, start_us + micros]
    over every statement it logged. Returns (overhead fraction, statements)."""
    spans = []
    with open(log_path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            rec = json.loads(line)
            start = int(rec["start_us"])
            spans.append((start, start + int(rec["micros"])))
    spans.sort()
    covered, cur_s, cur_e = 0, None, None
    for s, e in spans:
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                covered += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        covered += cur_e - cur_s
    wall_us = wall * 1e6
    return max(0.0, (wall_us - covered) / wall_us), len(spans)


# ============================================================================ B1

def bench_b1(n: int, runs: int, tmp: str, partial_parse: bool, with_dbt: bool, report: list, failures: list) -> None:
    say("B1 N=%d: generating" % n)
    root = os.path.join(tmp, "b1_n%d" % n)
    project = os.path.join(root, "project")
    work = os.path.join(root, "work")    # working directory of every tool run
    dbs = os.path.join(root, "dbs")
    logs = os.path.join(root, "statement-logs")
    for d in (work, dbs, logs):
        os.makedirs(d, exist_ok=True)
    generate(n, project)
    summary = json.load(open(os.path.join(project, gen_project.MARKER)))

    # One stable database path per variant, emptied before every run: dbt's
    # partial parsing stays valid across its runs (dbt's default; it favours
    # dbt), and every run starts from an empty warehouse.
    variants = ["airlock_t2", "airlock_t4", "b0"] + (["dbt_t2"] if with_dbt else [])
    db = {v: os.path.join(dbs, v + ".duckdb") for v in variants}

    # ---- correctness: airlock deploy, B0 and dbt build leave the same prod relations
    say("B1 N=%d: correctness run, airlock deploy --threads 2" % n)
    fresh_db(db["airlock_t2"])
    log0 = os.path.join(logs, "check.jsonl")
    checks = [("airlock deploy", airlock_deploy(project, db["airlock_t2"], 2, log0, work), db["airlock_t2"])]
    say("B1 N=%d: correctness run, B0 (benches/floor.py)" % n)
    fresh_db(db["b0"])
    checks.append(("B0 floor", floor_deploy(project, db["b0"], work), db["b0"]))
    if with_dbt:
        say("B1 N=%d: correctness run, dbt build --threads 2" % n)
        fresh_db(db["dbt_t2"])
        checks.append(("dbt build", dbt_build(project, db["dbt_t2"], 2, work, partial_parse), db["dbt_t2"]))
    ok_runs = True
    for label, r, _ in checks:
        if r.rc != 0:
            what = "the gate blocked" if (label.startswith("airlock") and r.rc == 1) else "failed"
            say("B1 N=%d: %s: %s (exit %d):\n%s" % (n, label, what, r.rc, r.tail()))
            failures.append("B1 N=%d: %s: %s (exit %d)" % (n, label, what, r.rc))
            ok_runs = False
    if ok_runs:
        # every tool against the reference: dbt when it ran, else airlock (B0 is checked against it)
        ref_label, _, ref_db = checks[-1] if with_dbt else checks[0]
        ref = snapshot(ref_db)
        expected = summary["prod_relations"]
        all_diffs = []
        if len(ref) != expected:
            all_diffs.append("%s left %d prod relations, the generator expects %d" % (ref_label, len(ref), expected))
        for label, r, path in checks:
            if path == ref_db:
                continue
            diffs, warns = compare(snapshot(path), ref, (label, ref_label))
            for w in warns[:3]:
                say("B1 N=%d: warning: %s" % (n, w))
            if len(warns) > 3:
                say("B1 N=%d: ... %d more column-type warnings" % (n, len(warns) - 3))
            all_diffs += ["%s vs %s: %s" % (label, ref_label, d) for d in diffs]
        if all_diffs:
            for d in all_diffs[:20]:
                say("B1 N=%d: DIFF %s" % (n, d))
            if len(all_diffs) > 20:
                say("B1 N=%d: ... %d more differences" % (n, len(all_diffs) - 20))
            failures.append("B1 N=%d: results differ (%d differences)" % (n, len(all_diffs)))
            report.append(("B1 N=%d correctness" % n, "%d differences" % len(all_diffs), "identical", "no"))
        else:
            rows = sum(v["rows"] for v in ref.values())
            who = ", ".join(label for label, _, _ in checks)
            say("B1 N=%d: identical: %d relations, %d rows, same checksums (%s)" % (n, len(ref), rows, who))
            report.append(("B1 N=%d correctness (%s)" % (n, who),
                           "identical (%d relations, %d rows)" % (len(ref), rows), "identical", "yes"))
    else:
        report.append(("B1 N=%d correctness" % n, "a tool failed", "identical", "no"))
        say("B1 N=%d: skipping the timed runs" % n)
        return

    # ---- timed runs, alternating the variants
    times = {v: [] for v in db}
    overheads, statements, rss = [], [], {v: [] for v in db}
    floor_stmts = []
    for i in range(runs):
        for v in variants:
            fresh_db(db[v])
            extra = ""
            if v.startswith("airlock"):
                log = os.path.join(logs, "%s_r%d.jsonl" % (v, i))
                if os.path.exists(log):
                    os.remove(log)
                r = airlock_deploy(project, db[v], int(v[-1]), log, work)
            elif v == "b0":
                r = floor_deploy(project, db[v], work)
            else:
                r = dbt_build(project, db[v], 2, work, partial_parse)
            if r.rc != 0:
                say("B1 N=%d run %d: %s failed (exit %d):\n%s" % (n, i + 1, v, r.rc, r.tail()))
                failures.append("B1 N=%d: timed %s run failed (exit %d)" % (n, v, r.rc))
                continue
            times[v].append(r.wall)
            rss[v].append(r.maxrss_mib)
            if v.startswith("airlock"):
                try:
                    oh, nstmt = statement_overhead(log, r.wall)
                    overheads.append(oh)
                    statements.append(nstmt)
                    extra = ", %d statements, overhead %.1f%%" % (nstmt, 100 * oh)
                except (OSError, ValueError, KeyError) as e:
                    failures.append("B1 N=%d: unreadable statement log %s (%s)" % (n, log, e))
            elif v == "b0":
                ph = floor_phases(r)
                floor_stmts.append(ph.get("statements", 0))
                extra = ", build %.2f s, publish %.2f s, %d statements" % (
                    ph.get("build_s", 0), ph.get("publish_s", 0), ph.get("statements", 0))
            say("B1 N=%d run %d/%d: %-10s %s (peak %.0f MiB%s)" % (
                n, i + 1, runs, v, fmt_s(r.wall), r.maxrss_mib, extra))
    for v in db:
        fresh_db(db[v])

    m = {v: median(t) for v, t in times.items()}
    floor_ratio = m["airlock_t2"] / m["b0"] if m["b0"] > 0 else float("nan")
    say("B1 N=%d medians over %d runs: airlock t2 %s, airlock t4 %s, B0 %s%s; airlock/B0 %.2fx" % (
        n, runs, fmt_s(m["airlock_t2"]), fmt_s(m["airlock_t4"]), fmt_s(m["b0"]),
        ", dbt t2 %s" % fmt_s(m["dbt_t2"]) if with_dbt else "", floor_ratio))
    report.append(("B1 N=%d airlock / B0 floor" % n,
                   "airlock %s (t2), B0 %s (%d statements): %.2fx" % (
                       fmt_s(m["airlock_t2"]), fmt_s(m["b0"]), int(median(floor_stmts) if floor_stmts else 0), floor_ratio),
                   "<= %gx" % GOAL_FLOOR, "yes" if floor_ratio <= GOAL_FLOOR else "no"))
    if with_dbt:
        ratio2 = m["dbt_t2"] / m["airlock_t2"] if m["airlock_t2"] > 0 else float("nan")
        ratio4 = m["dbt_t2"] / m["airlock_t4"] if m["airlock_t4"] > 0 else float("nan")
        measured = "airlock %s (t2) / %s (t4), dbt %s: %.1fx (t2), %.1fx (t4)" % (
            fmt_s(m["airlock_t2"]), fmt_s(m["airlock_t4"]), fmt_s(m["dbt_t2"]), ratio2, ratio4)
        if n == GOAL_RATIO_N:
            report.append(("B1 N=%d dbt/airlock" % n, measured, ">= %gx (t2 vs t2)" % GOAL_RATIO,
                           "yes" if ratio2 >= GOAL_RATIO else "no"))
        else:
            report.append(("B1 N=%d dbt/airlock" % n, measured, "(goal at N=%d)" % GOAL_RATIO_N, "-"))
    if overheads:
        oh = median(overheads)
        report.append(("B1 N=%d airlock overhead" % n,
                       "%.1f%% of wall (median, %d statements)" % (100 * oh, int(median(statements))),
                       "< %d%%" % round(100 * GOAL_OVERHEAD), "yes" if oh < GOAL_OVERHEAD else "no"))
    peak_air = max(rss["airlock_t2"] + rss["airlock_t4"] or [0])
    if with_dbt:
        peak_dbt = max(rss["dbt_t2"] or [0])
        report.append(("B1 N=%d peak memory" % n, "airlock %.0f MiB, dbt %.0f MiB, B0 %.0f MiB" % (
            peak_air, peak_dbt, max(rss["b0"] or [0])), "airlock <= dbt" if n >= 2000 else "(info)",
            ("yes" if peak_air <= peak_dbt else "no") if n >= 2000 else "-"))
    else:
        report.append(("B1 N=%d peak memory" % n, "airlock %.0f MiB, B0 %.0f MiB" % (
            peak_air, max(rss["b0"] or [0])), "(info)", "-"))


# ============================================================================ B2

def bench_b2(n: int, runs: int, tmp: str, report: list, failures: list) -> None:
    root = os.path.join(tmp, "b2_n%d" % n)
    project = os.path.join(root, "project")
    work = os.path.join(root, "work")
    os.makedirs(work, exist_ok=True)
    say("B2: generating a %d-model project" % n)
    gen_s = generate(n, project)
    report.append(("B2 generate %d models" % n, fmt_s(gen_s), "(info)", "-"))
    db = os.path.join(work, "plan.duckdb")  # plan writes nothing; the file need not exist

    strategy_all = True
    r = airlock_plan(project, db, work, strategy_all)
    if r.rc == 2 and "unexpected argument" in (r.err + r.out).lower():
        say("B2: `airlock plan --strategy all` is not supported by this build; using plain `airlock plan`")
        strategy_all = False
        r = airlock_plan(project, db, work, strategy_all)
    label = "airlock plan" + (" --strategy all" if strategy_all else " (no --strategy all yet)")
    walls, peaks = [], []
    for i in range(runs):
        if i > 0:
            r = airlock_plan(project, db, work, strategy_all)
        if r.rc != 0:
            say("B2: %s failed (exit %d):\n%s" % (label, r.rc, r.tail()))
            failures.append("B2: %s failed (exit %d)" % (label, r.rc))
            report.append(("B2 %s, %d models" % (label, n), "failed (exit %d)" % r.rc, "<= %g s" % GOAL_PLAN_S, "no"))
            return
        walls.append(r.wall)
        peaks.append(r.maxrss_mib)
        say("B2 run %d/%d: %s: %s, peak %.0f MiB, %d lines of output" % (
            i + 1, runs, label, fmt_s(r.wall), r.maxrss_mib, len(r.out.splitlines())))
    wall, peak = median(walls), max(peaks)
    report.append(("B2 %s, %d models: wall" % (label, n), fmt_s(wall) + " (median of %d)" % len(walls),
                   "<= %g s" % GOAL_PLAN_S, "yes" if wall <= GOAL_PLAN_S else "no"))
    report.append(("B2 %s, %d models: peak RSS" % (label, n), "%.0f MiB" % peak,
                   "<= %g MiB" % GOAL_PLAN_MIB, "yes" if peak <= GOAL_PLAN_MIB else "no"))
    created = sorted(os.path.basename(f) for f in glob.glob(glob.escape(db) + "*"))
    report.append(("B2 plan writes nothing", "created %s" % ", ".join(created) if created else "no database file",
                   "no file", "no" if created else "yes"))


# ============================================================================ B3

# the ledger UPDATE that moves a release to `publishing` (not a query that reads the status)
PUBLISHING = re.compile(r"""UPDATE\s+"?airlock"?\."?releases"?\s+SET\s[^;]*\bstatus = 'publishing'""", re.I)


def publish_phase(log_path: str) -> tuple[float, int, int]:
    """The publish phase of a deploy from its statement log: from the start
    of the statement that moves the release to `publishing` to the end of the
    one that records it `published`. Returns (seconds, statements in it, log
    records in it); an atomic batch is one record of several statements."""
    recs = []
    with open(log_path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                recs.append(json.loads(line))
    recs.sort(key=lambda r: int(r["start_us"]))
    start = next((i for i, r in enumerate(recs) if PUBLISHING.search(r["sql"])), None)
    if start is None:
        raise ValueError("no publish in %s" % log_path)
    end = next((i for i in range(start, len(recs)) if "status = 'published'" in recs[i]["sql"]), None)
    if end is None:
        raise ValueError("the publish in %s never recorded the release as published" % log_path)
    span = recs[start:end + 1]
    t0 = int(span[0]["start_us"])
    t1 = max(int(r["start_us"]) + int(r["micros"]) for r in span)
    stmts = sum(r["sql"].count(";\n") + 1 for r in span)
    return (t1 - t0) / 1e6, stmts, len(span)


def bench_b3(tmp: str, tables: int, delay_ms: int, threads: int, report: list, failures: list) -> None:
    """wac publish of `tables` mart tables through the real deploy, every
    statement `delay_ms` slower (AIRLOCK_BENCH_LATENCY_MS wraps the warehouse
    deploy opens): the first deploy (prod empty) and a redeploy (prod holds
    every table: each is kept as a backup first)."""
    root = os.path.join(tmp, "b3_t%d" % tables)
    project = os.path.join(root, "project")
    work = os.path.join(root, "work")
    os.makedirs(work, exist_ok=True)
    say("B3: generating %d mart tables (wac publishes tables tagged mart)" % tables)
    generate(tables, project, shape="marts")
    db = os.path.join(root, "b3.duckdb")
    fresh_db(db)
    runs = [
        ("first deploy, prod empty", {}),
        ("redeploy, prod holds every table", {}),
        # the journaled step-by-step publish Snowflake and BigQuery take
        # (DuckDB made to commit every statement on its own)
        ("first deploy, step-by-step journaled path", {"AIRLOCK_TEST_DDL": "autocommit"}),
        ("first deploy, journaled path, --publish-concurrency 32",
         {"AIRLOCK_TEST_DDL": "autocommit", "AIRLOCK_PUBLISH_CONCURRENCY": "32"}),
    ]
    for i, (what, extra) in enumerate(runs):
        env = dict(extra, AIRLOCK_BENCH_LATENCY_MS=str(delay_ms))
        if i >= 2:
            fresh_db(db)
        log = os.path.join(root, "deploy%d.jsonl" % (i + 1))
        say("B3: %s: %sairlock deploy --strategy wac --threads %d" % (
            what, "".join("%s=%s " % kv for kv in sorted(env.items())), threads))
        r = airlock_deploy(project, db, threads, log, work, strategy="wac", extra_env=env)
        if r.rc != 0:
            say("B3: deploy failed (exit %d):\n%s" % (r.rc, r.tail()))
            failures.append("B3: %s failed (exit %d)" % (what, r.rc))
            report.append(("B3 wac publish, %s" % what, "failed (exit %d)" % r.rc, "<= %g s" % GOAL_B3_S, "no"))
            return
        try:
            secs, stmts, records = publish_phase(log)
        except (OSError, ValueError, KeyError) as e:
            say("B3: %s: cannot read the publish phase: %s" % (what, e))
            failures.append("B3: %s: %s" % (what, e))
            continue
        sequential = stmts * delay_ms / 1000.0
        how = "one transaction" if records == 1 else "%d round trips" % records
        say("B3: %s: deploy %s, publish %.2f s (%d statements, %s; %d x %d ms sequential = %.1f s)" % (
            what, fmt_s(r.wall), secs, stmts, how, stmts, delay_ms, sequential))
        report.append(("B3 wac publish of %d tables, %d ms/statement, %s" % (tables, delay_ms, what),
                       "%.2f s (%d statements, %s; sequential %.1f s; whole deploy %s)" % (
                           secs, stmts, how, sequential, fmt_s(r.wall)),
                       "<= %g s" % GOAL_B3_S, "yes" if secs <= GOAL_B3_S else "no"))
    bench_b3_swap_count(report, failures)


def bench_b3_swap_count(report: list, failures: list) -> None:
    """Swap publish statements (Snowflake dialect, rendered offline) must not grow with N."""
    counts = {}
    for n in (100, 1000):
        out = os.path.join(tempfile.mkdtemp(prefix="airlock-b3-"), "project")
        generate(n, out)
        r = subprocess.run([AIRLOCK, "plan", "--offline", "--dialect", "snowflake", "--strategy", "swap",
                            "--show-sql", "--format", "json", "--project-dir", out],
                           cwd=os.path.dirname(out), capture_output=True, text=True)
        shutil.rmtree(os.path.dirname(out), ignore_errors=True)
        if r.returncode != 0:
            failures.append("B3: airlock plan --offline failed at N=%d: %s" % (n, r.stderr.strip()[:200]))
            return
        sql = json.loads(r.stdout)["strategies"][0]["sql"]
        publish = [q for q in sql if q.startswith(("ALTER SCHEMA", 'INSERT INTO "airlock"', 'UPDATE "airlock"',
                                                    'INSERT INTO "AIRLOCK"', 'UPDATE "AIRLOCK"'))]
        counts[n] = len(publish)
        say("B3: swap publish statements at N=%d: %d" % (n, counts[n]))
    report.append(("B3 swap publish statements (Snowflake)", "N=100: %d, N=1000: %d" % (counts[100], counts[1000]),
                   "does not grow with N", "yes" if counts[100] == counts[1000] else "no"))


# ============================================================================ B4

def bench_b4(n: int, threads: int, tmp: str, report: list, failures: list) -> None:
    """Nightly scale: one deploy of a generated n-model project on DuckDB,
    and B0 on the same project."""
    root = os.path.join(tmp, "b4_n%d" % n)
    project = os.path.join(root, "project")
    work = os.path.join(root, "work")
    os.makedirs(work, exist_ok=True)
    say("B4: generating %d models" % n)
    generate(n, project)
    # the generated files' writeback would otherwise compete with the
    # deploy's log syncs, and only with the first of the two timed runs
    os.sync()
    summary = json.load(open(os.path.join(project, gen_project.MARKER)))
    nodes = summary["prod_relations"]
    db = os.path.join(root, "b4.duckdb")
    fresh_db(db)
    log = os.path.join(root, "b4.jsonl")
    say("B4: airlock deploy --threads %d" % threads)
    r = airlock_deploy(project, db, threads, log, work)
    if r.rc != 0:
        say("B4: deploy failed (exit %d):\n%s" % (r.rc, r.tail()))
        failures.append("B4: deploy failed (exit %d)" % r.rc)
        report.append(("B4 deploy %d models" % n, "failed (exit %d)" % r.rc, "<= %g s" % GOAL_B4_S, "no"))
        return
    try:
        oh, nstmt = statement_overhead(log, r.wall)
        pub, _, _ = publish_phase(log)
    except (OSError, ValueError, KeyError) as e:
        failures.append("B4: unreadable statement log %s (%s)" % (log, e))
        oh, nstmt, pub = float("nan"), 0, float("nan")
    say("B4: deploy %s, peak %.0f MiB, %d statements, overhead %.1f%%, publish %.1f s" % (
        fmt_s(r.wall), r.maxrss_mib, nstmt, 100 * oh, pub))
    # the deploy's time counts DuckDB's final checkpoint only if it closed
    # the file: a log left beside it is work left to the next command
    wal = db + ".wal"
    left = os.path.getsize(wal) if os.path.exists(wal) else 0
    report.append(("B4 deploy leaves no log to replay", "%.0f MB of log left" % (left / 1e6) if left else "none left",
                   "none", "no" if left else "yes"))
    fresh_db(db)
    say("B4: B0 floor")
    f = floor_deploy(project, db, work)
    fresh_db(db)
    floor = fmt_s(f.wall) if f.rc == 0 else "failed (exit %d)" % f.rc
    if f.rc != 0:
        failures.append("B4: B0 failed (exit %d)" % f.rc)
    report.append(("B4 deploy %d models (%d relations, %d tests): wall" % (n, nodes, summary["tests"]),
                   "%s (--threads %d; %.1f ms per relation incl. its tests; publish %.1f s; own overhead %.0f%%; B0 %s)" % (
                       fmt_s(r.wall), threads, 1000 * r.wall / nodes, pub, 100 * oh, floor),
                   "<= %g s" % GOAL_B4_S, "yes" if r.wall <= GOAL_B4_S else "no"))
    report.append(("B4 deploy %d models: peak RSS" % n, "%.0f MiB (B0 %.0f MiB)" % (r.maxrss_mib, f.maxrss_mib),
                   "<= %g MiB" % GOAL_B4_MIB, "yes" if r.maxrss_mib <= GOAL_B4_MIB else "no"))


# ============================================================================ report

def machine_info() -> list[tuple[str, str]]:
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown"
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                ram = "%.1f GiB" % (int(line.split()[1]) / 1024 / 1024)
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    info = [
        ("nproc", "%s (of %s)" % (usable, os.cpu_count())),
        ("CPU", cpu),
        ("RAM", ram),
        ("OS", "%s %s" % (platform.system(), platform.release())),
        ("load after run", "%.2f %.2f %.2f" % os.getloadavg()),
    ]
    return info


def print_table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> None:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = "+".join("-" * (w + 2) for w in widths)
    print("+" + line + "+")
    print("| " + " | ".join(str(h).ljust(w) for h, w in zip(header, widths)) + " |")
    print("+" + line + "+")
    for r in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |")
    print("+" + line + "+")


# ============================================================================ main

def main(argv: list[str]) -> int:
    if argv[:1] == ["_snapshot"]:  # internal: runs under the venv's python
        return snapshot_main(argv[1])

    ap = argparse.ArgumentParser(
        description="Run airlock's benchmarks (B0 floor + B1 deploy vs dbt build, B2 plan, B3 publish, B4 scale) and print a report.")
    ap.add_argument("--sizes", help="B1 project sizes in models, comma separated (default 100,500,2000)")
    ap.add_argument("--runs", type=int, help="timed runs per variant (default 3)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke check: --sizes 20 --runs 1 --b2-models 2000 (explicit flags still win)")
    ap.add_argument("--b2-models", type=int, help="models in the B2 plan project (default 15000)")
    ap.add_argument("--only", default="B1,B2,B3",
                    help="benchmarks to run (default B1,B2,B3; B0 runs with B1; opt-in: B4, BDBT)")
    ap.add_argument("--no-dbt", action="store_true", help="B1 without dbt (airlock and B0 only)")
    ap.add_argument("--b3-tables", type=int, help="B3 mart tables (default %d)" % B3_TABLES)
    ap.add_argument("--b3-delay-ms", type=int, default=B3_DELAY_MS, help="B3 added latency per statement (default %d)" % B3_DELAY_MS)
    ap.add_argument("--b3-threads", type=int, default=32, help="B3 deploy --threads (default 32: the build's statements wait on latency, not CPU)")
    ap.add_argument("--b4-models", type=int, help="B4 models (default 15000)")
    ap.add_argument("--bdbt-models", type=int, help="BDBT models (default 500)")
    ap.add_argument("--b4-threads", type=int, default=2, help="B4 deploy --threads (default 2)")
    ap.add_argument("--no-build", action="store_true", help="skip `cargo build --release`; use the existing binary")
    ap.add_argument("--dbt-no-partial-parse", action="store_true",
                    help="pass --no-partial-parse to dbt (cold parse every run; default: dbt's warm default)")
    ap.add_argument("--tmp", help="work directory (default: a new temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (projects, databases, logs)")
    args = ap.parse_args(argv)

    sizes = [int(s) for s in (args.sizes or ("20" if args.quick else "100,500,2000")).split(",") if s.strip()]
    runs = args.runs if args.runs is not None else (1 if args.quick else 3)
    b2_models = args.b2_models if args.b2_models is not None else (2000 if args.quick else 15000)
    b3_tables = args.b3_tables if args.b3_tables is not None else (20 if args.quick else B3_TABLES)
    b4_models = args.b4_models if args.b4_models is not None else (500 if args.quick else 15000)
    only = {s.strip().upper() for s in args.only.split(",") if s.strip()}
    if runs < 1 or any(n < 5 for n in sizes):
        ap.error("--runs must be >= 1 and every size >= 5")

    tmp = os.path.abspath(args.tmp) if args.tmp else tempfile.mkdtemp(prefix="airlock-bench-")
    os.makedirs(tmp, exist_ok=True)
    env_prefix = "".join("%s=%s " % (k, shlex.quote(os.environ[k]))
                         for k in ("CARGO_TARGET_DIR", "AIRLOCK_DBT_VENV") if os.environ.get(k))
    reproduce = "cd %s && %spython3 benches/run.py %s" % (
        shlex.quote(REPO), env_prefix, " ".join(shlex.quote(a) for a in argv))
    say("airlock benchmarks: B1 sizes %s x %d runs, B2 %d models, only %s; work dir %s" % (
        sizes, runs, b2_models, ",".join(sorted(only)), tmp))
    load_before = "%.2f %.2f %.2f" % os.getloadavg()

    report: list[tuple[str, str, str, str]] = []
    failures: list[str] = []
    versions = {}
    try:
        if only & {"B1", "B4", "BDBT"}:
            versions.update(ensure_venv())
        if only & {"B1", "B2", "B3", "B4", "BDBT"}:
            build_airlock(args.no_build)
            r = run([AIRLOCK, "--version"], cwd=REPO)
            versions["airlock"] = r.out.strip() if r.rc == 0 else "unknown"
        if "B1" in only:
            for n in sizes:
                try:
                    bench_b1(n, runs, tmp, not args.dbt_no_partial_parse, not args.no_dbt, report, failures)
                except StepFailed as e:
                    failures.append("B1 N=%d: %s" % (n, e))
                    say(str(e))
            if GOAL_RATIO_N not in sizes and not args.no_dbt:
                report.append(("B1 N=%d dbt/airlock" % GOAL_RATIO_N, "not measured (sizes %s)" % sizes,
                               ">= %gx" % GOAL_RATIO, "n/a"))
        if "B2" in only:
            bench_b2(b2_models, runs, tmp, report, failures)
        if "B3" in only:
            bench_b3(tmp, b3_tables, args.b3_delay_ms, args.b3_threads, report, failures)
        if "BDBT" in only:
            bench_bdbt(args.bdbt_models or (20 if args.quick else GOAL_RATIO_N), runs, tmp, report, failures)
        if "B4" in only:
            bench_b4(b4_models, args.b4_threads, tmp, report, failures)
    except (StepFailed, subprocess.CalledProcessError, OSError) as e:
        failures.append(str(e))
        say("FAILED: %s" % e)
    except KeyboardInterrupt:
        failures.append("interrupted")
    finally:
        if args.keep or failures:
            say("work directory kept: %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    print()
    print("== airlock benchmark report ==")
    if report:
        print_table(report, ("benchmark", "measured", "goal", "met"))
    print()
    info = machine_info()
    info.insert(4, ("load before run", load_before))
    for k, v in versions.items():
        info.append((k, v))
    info.append(("python", platform.python_version()))
    width = max(len(k) for k, _ in info)
    for k, v in info:
        print("%s  %s" % (k.ljust(width), v))
    print("reproduce: %s" % reproduce)
    print("notes: B1 timings are wall clock around each process (time.perf_counter); dbt runs with")
    print("       partial parsing warm%s; airlock runs with --statement-log on." % (
        " OFF (--dbt-no-partial-parse)" if args.dbt_no_partial_parse else " (its default)"))
    if failures:
        print()
        print("FAILED steps:")
        for f in failures:
            print("  - " + f)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
