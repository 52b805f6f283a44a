#!/usr/bin/env python3
"""B0, the floor: a generated project's deploy written by hand straight
against DuckDB, the fastest way we know. It is the yardstick for airlock's
own cost (benches/run.py times it in the same run as airlock).

    python floor.py PROJECT DB [--workers 2] [--duckdb-threads N]

Needs the `duckdb` module (run.py runs it with its venv's python, duckdb
pinned to the engine version airlock bundles). Reads the project that
gen_project.py wrote: the models' SQL files as they are (only `{{ ref() }}`
and `{{ config() }}` occur, rendered here by a regular expression) and
`.bench-manifest.json` (schemas, materializations, tests — the same as the
YAML says). Same work and semantics as `airlock deploy` on an empty
database file with the default strategy:

* the audit schemas (`<schema>__audit`) are dropped and created in one
  transaction;
* seeds load with the same `read_csv` statement; models are created in
  audit (views, tables; incremental models are plain tables on a first
  build; ephemeral models are inlined as CTEs), in dependency order on
  `--workers` connections (DuckDB's own threads: 1 each, `--duckdb-threads`;
  `checkpoint_threshold` as airlock sets it);
  a node's tests run right after it, all of them
  fused into ONE query, and its children wait for them (as `dbt build`);
* the gate: any failing error-severity test stops here (exit 1), nothing
  published;
* publish in ONE transaction: a backup schema, every table copied from
  audit into prod, every view re-created against prod names (dependency
  order), one ledger row; then the audit schemas are dropped.

It does less than airlock where airlock's extra work is its product (no
lock file, no journal, no statement log, no per-test failure samples) —
that difference is what "airlock's own cost" measures. Prints one JSON
line: phase times and statement counts. Exit 0 published, 1 gate blocked,
2 error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time

import duckdb

REF = re.compile(r"\{\{\s*ref\(\s*'([^']+)'\s*\)\s*\}\}")
CONFIG = re.compile(r"\{\{\s*config\([^}]*\)\s*\}\}")


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def strip_sql(sql: str) -> str:
    s = sql.strip()
    while s.endswith(";"):
        s = s[:-1].rstrip()
    return s


class Project:
    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        man = json.load(open(os.path.join(self.root, ".bench-manifest.json"), encoding="utf-8"))
        self.nodes: dict[str, dict] = {}
        self.order: list[str] = []  # seeds, then models as generated (parents come first)
        for s in man["seeds"]:
            self.nodes[s] = {"name": s, "schema": "main", "materialized": "seed", "parents": [], "tests": []}
            self.order.append(s)
        for m in man["models"]:
            raw = open(os.path.join(self.root, m["file"]), encoding="utf-8").read()
            parents = []
            for p in REF.findall(raw):
                if p not in parents:
                    parents.append(p)
            self.nodes[m["name"]] = dict(m, raw=raw, parents=parents)
            self.order.append(m["name"])

    def audit(self, name: str) -> str:
        n = self.nodes[name]
        return q(n["schema"] + "__audit") + "." + q(name)

    def prod(self, name: str) -> str:
        n = self.nodes[name]
        return q(n["schema"]) + "." + q(name)

    def select_sql(self, name: str, where) -> str:
        """The model's SELECT with refs placed by `where` (audit or prod);
        ephemeral models inlined as CTEs, upstream first (as airlock does)."""
        body = self._render(name, where)
        ctes: list[str] = []
        seen: set[str] = set()

        def collect(n: str) -> None:
            for p in self.nodes[n]["parents"]:
                if self.nodes[p]["materialized"] == "ephemeral" and p not in seen:
                    seen.add(p)
                    collect(p)
                    ctes.append("%s AS (\n%s\n)" % (q("__dbt__cte__" + p), self._render(p, where)))

        collect(name)
        if not ctes:
            return body
        return "WITH %s\nSELECT * FROM (\n%s\n) AS airlock_model" % (",\n".join(ctes), body)

    def _render(self, name: str, where) -> str:
        def place(m: re.Match) -> str:
            p = m.group(1)
            if self.nodes[p]["materialized"] == "ephemeral":
                return q("__dbt__cte__" + p)
            return where(p)
        return strip_sql(REF.sub(place, CONFIG.sub("", self.nodes[name]["raw"])))

    def upstream(self, name: str) -> list[str]:
        """Persisted relations a node reads, looking through ephemeral models."""
        out, stack, seen = [], list(self.nodes[name]["parents"]), set()
        while stack:
            p = stack.pop()
            if p in seen:
                continue
            seen.add(p)
            if self.nodes[p]["materialized"] == "ephemeral":
                stack.extend(self.nodes[p]["parents"])
            else:
                out.append(p)
        return out

    def tests_sql(self, name: str) -> tuple[str, list[bool]] | None:
        """All tests of a node as ONE query returning one failure count per
        test; and which of them only warn."""
        n = self.nodes[name]
        if not n["tests"]:
            return None
        rel = self.audit(name)
        cols, warn = [], []
        for i, (col, test, args) in enumerate(n["tests"]):
            c = q(col)
            if test == "not_null":
                sql = "SELECT COUNT(*) FROM %s WHERE %s IS NULL" % (rel, c)
            elif test == "unique":
                sql = ("SELECT COUNT(*) FROM (SELECT %s FROM %s WHERE %s IS NOT NULL GROUP BY %s HAVING COUNT(*) > 1)"
                       % (c, rel, c, c))
            elif test == "accepted_values":
                sql = "SELECT COUNT(*) FROM %s WHERE %s NOT IN (%s)" % (rel, c, ", ".join(lit(v) for v in args["values"]))
            elif test == "relationships":
                f = q(args["field"])
                sql = ("SELECT COUNT(*) FROM %s AS child LEFT JOIN %s AS parent ON child.%s = parent.%s "
                       "WHERE child.%s IS NOT NULL AND parent.%s IS NULL" % (rel, self.audit(args["to"]), c, f, c, f))
            else:
                raise SystemExit("floor.py: unknown test %r" % test)
            cols.append("(%s) AS t%d" % (sql, i))
            warn.append(args.get("severity") == "warn")
        return "SELECT " + ", ".join(cols), warn


def build(con: duckdb.DuckDBPyConnection, p: Project, workers: int, timing: dict) -> tuple[int, int, list[str]]:
    """Build every seed and model into audit and run its tests, dependency
    order, `workers` connections. Returns (statements, tests, failures);
    `timing` gets the time summed over statements, creates and tests apart."""
    tasks = [n for n in p.order if p.nodes[n]["materialized"] != "ephemeral"]
    # a node's task runs its tests too: it also waits for what they read
    deps = {}
    for n in tasks:
        d = p.upstream(n)
        for _, test, args in p.nodes[n]["tests"]:
            if test == "relationships" and args["to"] != n and args["to"] not in d:
                d.append(args["to"])
        deps[n] = d
    children: dict[str, list[str]] = {n: [] for n in tasks}
    waiting = {}
    for n in tasks:
        waiting[n] = len(deps[n])
        for u in deps[n]:
            children[u].append(n)
    ready = [n for n in tasks if waiting[n] == 0]
    ready.reverse()  # pop() takes them in project order
    lock = threading.Condition()
    state = {"left": len(tasks), "statements": 0, "tests": 0, "failures": [], "error": None,
             "create_s": 0.0, "test_s": 0.0}

    def statements_of(n: str) -> list[str]:
        node = p.nodes[n]
        mat = node["materialized"]
        if mat == "seed":
            path = os.path.join(p.root, "seeds", n + ".csv")
            return ["CREATE OR REPLACE TABLE %s AS SELECT * FROM read_csv(%s, header = true, auto_detect = true)"
                    % (p.audit(n), lit(path))]
        sql = p.select_sql(n, p.audit)
        kind = "VIEW" if mat == "view" else "TABLE"
        return ["CREATE OR REPLACE %s %s AS\n%s" % (kind, p.audit(n), sql)]

    def worker() -> None:
        cur = con.cursor()
        while True:
            with lock:
                while not ready and state["left"] > 0 and state["error"] is None:
                    lock.wait()
                if state["left"] == 0 or state["error"] is not None:
                    lock.notify_all()
                    return
                n = ready.pop()
            try:
                count = 0
                t0 = time.perf_counter()
                for sql in statements_of(n):
                    cur.execute(sql)
                    count += 1
                t1 = time.perf_counter()
                failing = []
                t = p.tests_sql(n)
                if t is not None:
                    sql, warn = t
                    row = cur.execute(sql).fetchone()
                    count += 1
                    failing = ["%s test %d" % (n, i) for i, (v, w) in enumerate(zip(row, warn)) if v and not w]
                t2 = time.perf_counter()
            except Exception as e:  # noqa: BLE001 - reported, stops the run
                with lock:
                    state["error"] = "%s: %s" % (n, e)
                    lock.notify_all()
                return
            with lock:
                state["statements"] += count
                state["create_s"] += t1 - t0
                state["test_s"] += t2 - t1
                state["tests"] += len(p.nodes[n]["tests"])
                state["failures"].extend(failing)
                done(n, bool(failing))
                lock.notify_all()

    skipped: set[str] = set()

    def done(n: str, failed: bool) -> None:
        """n finished (or was skipped): its children may start; a failing
        node's descendants are skipped, as airlock and dbt build do."""
        state["left"] -= 1
        for c in children[n]:
            if failed:
                skipped.add(c)
            waiting[c] -= 1
            if waiting[c] == 0:
                if c in skipped:
                    done(c, True)
                else:
                    ready.append(c)

    threads = [threading.Thread(target=worker) for _ in range(max(1, workers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if state["error"]:
        raise RuntimeError(state["error"])
    timing["create_s"], timing["test_s"] = state["create_s"], state["test_s"]
    return state["statements"], state["tests"], state["failures"]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description="B0: the generated project's deploy, by hand, straight in DuckDB")
    ap.add_argument("project")
    ap.add_argument("db", help="an empty (or absent) DuckDB file")
    ap.add_argument("--workers", type=int, default=2, help="connections building at once (default 2)")
    # measured: on 2 cores, 2 connections with 1 DuckDB thread each beat 2 x 2
    # (the default, one per core) by ~10%: no oversubscription
    ap.add_argument("--duckdb-threads", type=int, default=1,
                    help="DuckDB's own threads (default 1; 0: DuckDB's default, one per core)")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    p = Project(args.project)
    schemas = sorted({n["schema"] for n in p.nodes.values()})
    t_load = time.perf_counter()
    con = duckdb.connect(args.db)
    if args.duckdb_threads:
        con.execute("SET threads = %d" % args.duckdb_threads)
    # the setting airlock opens a writable file with (warehouse/duckdb.rs,
    # CHECKPOINT_THRESHOLD): one checkpoint, at close
    con.execute("SET checkpoint_threshold = '4GB'")
    stmts = 2 * len(schemas)
    # the audit location, clean
    con.execute("BEGIN TRANSACTION")
    for s in schemas:
        con.execute("DROP SCHEMA IF EXISTS %s CASCADE" % q(s + "__audit"))
        con.execute("CREATE SCHEMA %s" % q(s + "__audit"))
    con.execute("COMMIT")
    try:
        timing: dict = {}
        n, tests, failures = build(con, p, args.workers, timing)
    except RuntimeError as e:
        print("floor.py: %s" % e, file=sys.stderr)
        return 2
    stmts += n
    t_build = time.perf_counter()
    if failures:
        print("floor.py: gate blocked by %d failing tests: %s" % (len(failures), ", ".join(failures[:5])), file=sys.stderr)
        return 1

    # publish: one transaction, dependency order, views against prod names
    publish = ["BEGIN TRANSACTION", "CREATE SCHEMA IF NOT EXISTS airlock_b0",
               "CREATE TABLE IF NOT EXISTS airlock_b0.releases (id INTEGER, published INTEGER, published_at TIMESTAMP)",
               "CREATE SCHEMA IF NOT EXISTS airlock_r1"]
    publish += ["CREATE SCHEMA IF NOT EXISTS %s" % q(s) for s in schemas]
    published = 0
    for name in p.order:
        node = p.nodes[name]
        mat = node["materialized"]
        if mat == "ephemeral":
            continue
        if mat == "view":
            publish.append("CREATE OR REPLACE VIEW %s AS\n%s" % (p.prod(name), p.select_sql(name, p.prod)))
        else:
            publish.append("CREATE OR REPLACE TABLE %s AS SELECT * FROM %s" % (p.prod(name), p.audit(name)))
        published += 1
    publish.append("INSERT INTO airlock_b0.releases VALUES (1, %d, now())" % published)
    publish.append("COMMIT")
    for sql in publish:
        con.execute(sql)
    stmts += len(publish) - 2  # BEGIN and COMMIT are not statements of their own here
    t_publish = time.perf_counter()
    con.execute("BEGIN TRANSACTION")
    for s in schemas:
        con.execute("DROP SCHEMA IF EXISTS %s CASCADE" % q(s + "__audit"))
    con.execute("COMMIT")
    stmts += len(schemas)
    con.close()
    t_end = time.perf_counter()
    print(json.dumps({
        "nodes": sum(1 for n in p.nodes.values() if n["materialized"] != "ephemeral"),
        "tests": tests, "published": published, "statements": stmts,
        "load_s": round(t_load - t0, 4), "build_s": round(t_build - t_load, 4),
        "publish_s": round(t_publish - t_build, 4), "cleanup_s": round(t_end - t_publish, 4),
        "sum_create_s": round(timing["create_s"], 4), "sum_test_s": round(timing["test_s"], 4),
        "total_s": round(t_end - t0, 4),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
