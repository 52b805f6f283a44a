#!/usr/bin/env python3
"""Deterministic synthetic dbt project for airlock's benchmarks (stdlib only).

    python3 benches/gen_project.py --models N --out DIR [--seed 42]

The same (N, seed) always gives byte-identical files. The project builds
unchanged with `dbt build` (dbt-core 1.11 + dbt-duckdb 1.11) and with
`airlock deploy`, and every data test passes on the generated data.

Shape
-----
* 3 CSV seeds of 1,000 rows: raw_customers, raw_orders (customer_id -> customers),
  raw_payments (order_id -> orders); each has a small-domain status column.
* ~20% staging views (at least 3), ~50% intermediate tables, ~30% marts
  (tables, tag `mart`, `+schema: marts` -> schema `main_marts`).
* Every model has the same five columns, so any model can read any other:
      id BIGINT (unique key), customer_id BIGINT (always a real customer),
      status VARCHAR (small domain, inherited from the seed it descends from),
      amount BIGINT (kept < 100,000), event_date DATE
  Only integers, strings and dates: no floating point, so checksums are
  reproducible whatever the aggregation order.
* Each model refs 1-3 upstream models: a primary parent that decides the rows
  (pass through / filter / roll up per customer) and 0-2 secondaries that are
  aggregated per customer_id and left-joined on customer_id. The left join on
  a per-customer aggregate never duplicates rows, so `id` stays unique.
* A few intermediate models use `{{ config() }}`: ~5% ephemeral (never built
  on top of another ephemeral, never tested), ~5% incremental with
  unique_key='id' (a first build is a plain create-table-as); ~10% of the marts
  are views.
* Each non-ephemeral model has 2 tests: `unique` on id plus one of not_null,
  accepted_values (status) or relationships (customer_id -> the unfiltered
  customers staging view, or id -> the primary parent when rows are a subset
  of it); ~5% of those second tests have `severity: warn`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import sys
import time

MARKER = ".bench-project.json"
MANIFEST = ".bench-manifest.json"  # models, schemas, materializations, tests: read by floor.py
GROUP_SIZE = 500  # models per folder (and per schema.yml)
SEED_ROWS = 1000
MOD = 100000  # every amount stays below this

DOMAINS = {
    "customers": ["active", "churned", "prospect"],
    "orders": ["placed", "shipped", "completed", "returned"],
    "payments": ["credit_card", "bank_transfer", "coupon", "gift_card"],
}
BASES = ["customers", "orders", "payments"]

FIRST = ["Ava", "Liam", "Noah", "Emma", "Mila", "Sem", "Julia", "Lucas", "Tess", "Finn",
         "Sara", "Daan", "Nora", "Levi", "Yara", "Milan", "Lotte", "Jesse", "Roos", "Bram"]
LAST = ["Jansen", "Visser", "Smit", "Bakker", "Mulder", "Bos", "Vos", "Peters", "Hendriks",
        "Dekker", "Brouwer", "Meijer", "Kok", "Jacobs", "Vermeulen", "Willems"]
REGIONS = ["north", "south", "east", "west"]


# --------------------------------------------------------------------------- seeds

def _date(rng: random.Random, start: dt.date, span_days: int) -> str:
    return (start + dt.timedelta(days=rng.randrange(span_days))).isoformat()


def make_seeds(rng: random.Random) -> dict[str, str]:
    """CSV text per seed name. Values are chosen so that any CSV type
    inference (dbt's agate or DuckDB's sniffer) gives integers, dates and
    strings: no 0/1-only columns (could be read as booleans), no decimals."""
    n = SEED_ROWS
    cust = ["id,name,status,region,credit_limit_cents,signup_date"]
    for i in range(1, n + 1):
        cust.append("%d,%s %s,%s,%s,%d,%s" % (
            i, rng.choice(FIRST), rng.choice(LAST),
            rng.choices(DOMAINS["customers"], weights=[6, 2, 2])[0],
            rng.choice(REGIONS), rng.randrange(100, 90000),
            _date(rng, dt.date(2022, 1, 1), 730)))
    orders = ["id,customer_id,status,amount_cents,order_date"]
    for i in range(1, n + 1):
        orders.append("%d,%d,%s,%d,%s" % (
            i, rng.randrange(1, n + 1),
            rng.choices(DOMAINS["orders"], weights=[2, 2, 5, 1])[0],
            rng.randrange(100, 50000), _date(rng, dt.date(2023, 1, 1), 730)))
    pays = ["id,order_id,payment_method,amount_cents"]
    for i in range(1, n + 1):
        pays.append("%d,%d,%s,%d" % (
            i, rng.randrange(1, n + 1),
            rng.choices(DOMAINS["payments"], weights=[5, 3, 1, 1])[0],
            rng.randrange(100, 50000)))
    return {
        "raw_customers": "\n".join(cust) + "\n",
        "raw_orders": "\n".join(orders) + "\n",
        "raw_payments": "\n".join(pays) + "\n",
    }


# --------------------------------------------------------------------------- models

class Model:
    __slots__ = ("name", "layer", "index", "base", "kind", "parents", "mat",
                 "sql", "tests")

    def __init__(self, name: str, layer: str, index: int):
        self.name = name
        self.layer = layer          # staging | intermediate | marts
        self.index = index          # position within its layer
        self.base = ""              # customers | orders | payments (status domain)
        self.kind = ""              # staging | pass | filter | rollup
        self.parents: list[str] = []
        self.mat = ""               # "" = folder default; else view|table|incremental|ephemeral
        self.sql = ""
        self.tests: list[tuple[str, str, dict]] = []   # (column, test, args)


def layer_sizes(n: int, shape: str = "layers") -> tuple[int, int, int]:
    if n < 5:
        raise SystemExit("--models must be at least 5")
    if shape == "marts":  # B3: n mart tables over 3 staging views
        return 3, 0, n
    stg = max(3, round(n * 0.2))
    marts = max(1, round(n * 0.3))
    inter = n - stg - marts
    return stg, inter, marts


def staging_sql(m: Model, rng: random.Random) -> str:
    a, b = rng.randrange(1, 10), rng.randrange(0, 1000)
    amount = "cast((cast(COL as bigint) * %d + %d) %% %d as bigint) as amount" % (a, b, MOD)
    # the first staging model of each base is unfiltered: stg_customers_* are
    # never filtered, so every customer_id exists in the first one
    where = ""
    if m.base != "customers" and m.index >= 3 and rng.random() < 0.5:
        where = "\nwhere %sid %% %d <> %d" % ("p." if m.base == "payments" else "",
                                              rng.randrange(4, 10), rng.randrange(0, 4))
    if m.base == "customers":
        return (
            "select\n"
            "    cast(id as bigint) as id,\n"
            "    cast(id as bigint) as customer_id,\n"
            "    cast(status as varchar) as status,\n"
            "    " + amount.replace("COL", "credit_limit_cents") + ",\n"
            "    cast(signup_date as date) as event_date\n"
            "from {{ ref('raw_customers') }}" + where + "\n")
    if m.base == "orders":
        return (
            "select\n"
            "    cast(id as bigint) as id,\n"
            "    cast(customer_id as bigint) as customer_id,\n"
            "    cast(status as varchar) as status,\n"
            "    " + amount.replace("COL", "amount_cents") + ",\n"
            "    cast(order_date as date) as event_date\n"
            "from {{ ref('raw_orders') }}" + where + "\n")
    return (
        "select\n"
        "    cast(p.id as bigint) as id,\n"
        "    cast(o.customer_id as bigint) as customer_id,\n"
        "    cast(p.payment_method as varchar) as status,\n"
        "    " + amount.replace("COL", "p.amount_cents") + ",\n"
        "    cast(o.order_date as date) as event_date\n"
        "from {{ ref('raw_payments') }} as p\n"
        "join {{ ref('raw_orders') }} as o on o.id = p.order_id" + where + "\n")


def derived_sql(m: Model, rng: random.Random) -> str:
    primary, secondaries = m.parents[0], m.parents[1:]
    if m.kind == "rollup":
        base = (
            "    select\n"
            "        customer_id as id,\n"
            "        customer_id,\n"
            "        min(status) as status,\n"
            "        cast(sum(amount) %% %d as bigint) as amount,\n"
            "        max(event_date) as event_date\n"
            "    from {{ ref('%s') }}\n"
            "    group by customer_id\n" % (MOD, primary))
    elif m.kind == "filter":
        base = (
            "    select id, customer_id, status, amount, event_date\n"
            "    from {{ ref('%s') }}\n"
            "    where amount %% %d <> %d\n" % (primary, rng.randrange(4, 10), rng.randrange(0, 4)))
    else:  # pass
        base = (
            "    select id, customer_id, status, (amount * %d + %d) %% %d as amount, event_date\n"
            "    from {{ ref('%s') }}\n" % (rng.randrange(1, 10), rng.randrange(0, 1000), MOD, primary))
    ctes = ["base as (\n" + base + ")"]
    joins, terms = [], ["base.amount"]
    for k, s in enumerate(secondaries, start=1):
        ctes.append(
            "s%d as (\n"
            "    select customer_id, count(*) as n, sum(amount) as total\n"
            "    from {{ ref('%s') }}\n"
            "    group by customer_id\n"
            ")" % (k, s))
        joins.append("left join s%d on s%d.customer_id = base.customer_id" % (k, k))
        terms.append("coalesce(s%d.total, 0) + %d * coalesce(s%d.n, 0)" % (k, rng.randrange(1, 20), k))
    head = ""
    if m.mat == "ephemeral":
        head = "{{ config(materialized='ephemeral') }}\n\n"
    elif m.mat == "incremental":
        head = "{{ config(materialized='incremental', unique_key='id') }}\n\n"
    elif m.mat == "view":
        head = "{{ config(materialized='view') }}\n\n"
    return (
        head
        + "with " + ",\n\n".join(ctes) + "\n\n"
        "select\n"
        "    base.id,\n"
        "    base.customer_id,\n"
        "    base.status,\n"
        "    cast((" + " + ".join(terms) + ") %% %d as bigint) as amount,\n" % MOD
        + "    base.event_date\n"
        "from base\n"
        + "".join(j + "\n" for j in joins))


def build_models(n: int, rng: random.Random, shape: str = "layers") -> list[Model]:
    n_stg, n_int, n_mart = layer_sizes(n, shape)
    models: list[Model] = []
    by_name: dict[str, Model] = {}
    staging: list[str] = []
    inter: list[str] = []          # all intermediate models so far
    inter_solid: list[str] = []    # the non-ephemeral ones
    marts: list[str] = []

    for i in range(n_stg):
        base = BASES[i] if i < 3 else rng.choice(BASES)
        m = Model("stg_%s_%05d" % (base, i), "staging", i)
        m.base, m.kind = base, "staging"
        m.parents = ["raw_payments", "raw_orders"] if base == "payments" else ["raw_" + base]
        m.sql = staging_sql(m, rng)
        models.append(m)
        by_name[m.name] = m
        staging.append(m.name)
    customers_root = staging[0]  # unfiltered: holds every customer id

    def pick_refs(pool_primary: list[str], pool_secondary: list[str], allow_ephemeral: bool) -> list[str]:
        r = rng.random()
        count = 1 if r < 0.30 else (2 if r < 0.75 else 3)
        if not allow_ephemeral:
            pool_primary = [p for p in pool_primary if by_name[p].mat != "ephemeral"] or staging
            pool_secondary = [p for p in pool_secondary if by_name[p].mat != "ephemeral"] or staging
        chosen = [rng.choice(pool_primary)]
        tries = 0
        while len(chosen) < count and tries < 20:
            tries += 1
            c = rng.choice(pool_secondary)
            if c not in chosen:
                chosen.append(c)
        return chosen

    for i in range(n_int):
        m = Model("int_%05d" % i, "intermediate", i)
        r = rng.random()
        if i >= 3 and r < 0.05:
            m.mat = "ephemeral"
        elif i >= 3 and r < 0.10:
            m.mat = "incremental"
        # primary: a staging model (35%) or any earlier intermediate model
        primary_pool = staging if (not inter or rng.random() < 0.35) else inter
        secondary_pool = staging + inter
        # pools are lists we pass by reference; pick_refs filters copies when needed
        m.parents = pick_refs(primary_pool, secondary_pool, allow_ephemeral=(m.mat != "ephemeral"))
        m.kind = rng.choices(["pass", "filter", "rollup"], weights=[4, 4, 2])[0]
        m.base = by_name[m.parents[0]].base
        m.sql = derived_sql(m, rng)
        models.append(m)
        by_name[m.name] = m
        inter.append(m.name)
        if m.mat != "ephemeral":
            inter_solid.append(m.name)

    for i in range(n_mart):
        m = Model("mart_%05d" % i, "marts", i)
        if rng.random() < 0.10 and shape != "marts":
            m.mat = "view"
        r = rng.random()
        if marts and r < 0.10:
            primary_pool = marts
        elif inter and r < 0.85:
            primary_pool = inter
        else:
            primary_pool = staging
        secondary_pool = (inter or staging) if rng.random() < 0.8 else staging
        m.parents = pick_refs(primary_pool, secondary_pool, allow_ephemeral=True)
        m.kind = rng.choices(["pass", "filter", "rollup"], weights=[4, 3, 3])[0]
        m.base = by_name[m.parents[0]].base
        m.sql = derived_sql(m, rng)
        models.append(m)
        by_name[m.name] = m
        marts.append(m.name)

    # tests: unique(id) + one more per materialised model
    for m in models:
        if m.mat == "ephemeral":
            continue
        m.tests.append(("id", "unique", {}))
        primary = by_name.get(m.parents[0])
        options = [
            ("id", "not_null", {}),
            ("customer_id", "not_null", {}),
            ("status", "accepted_values", {"values": DOMAINS[m.base]}),
            ("customer_id", "relationships", {"to": customers_root, "field": "id"}),
        ]
        if m.kind == "rollup":
            options.append(("id", "relationships", {"to": customers_root, "field": "id"}))
        elif m.kind in ("pass", "filter") and primary is not None and primary.mat != "ephemeral":
            options.append(("id", "relationships", {"to": primary.name, "field": "id"}))
            options.append(("id", "relationships", {"to": primary.name, "field": "id"}))
        col, test, args = rng.choice(options)
        args = dict(args)
        if rng.random() < 0.05:
            args["severity"] = "warn"
        m.tests.append((col, test, args))
    return models


# --------------------------------------------------------------------------- yaml

def _q(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def schema_yml(models: list[Model]) -> str:
    out = ["version: 2", "", "models:"]
    for m in models:
        if m.mat == "ephemeral":
            continue
        out.append("  - name: %s" % m.name)
        out.append("    description: %s" % _q("%s %s model (%s of %s)" % (
            m.layer, m.kind, m.base, ", ".join(m.parents))))
        out.append("    columns:")
        cols: dict[str, list[tuple[str, dict]]] = {}
        for col, test, args in m.tests:
            cols.setdefault(col, []).append((test, args))
        for col, tests in cols.items():
            out.append("      - name: %s" % col)
            out.append("        data_tests:")
            for test, args in tests:
                if not args:
                    out.append("          - %s" % test)
                    continue
                out.append("          - %s:" % test)
                if "values" in args:
                    out.append("              values: [%s]" % ", ".join(_q(v) for v in args["values"]))
                if "to" in args:
                    out.append("              to: ref(%s)" % _q(args["to"]))
                    out.append("              field: %s" % args["field"])
                if "severity" in args:
                    out.append("              config:")
                    out.append("                severity: %s" % args["severity"])
    return "\n".join(out) + "\n"


DBT_PROJECT = """\
# generated by benches/gen_project.py --models {n} --seed {seed}
name: bench
version: '1.0.0'
config-version: 2
profile: bench

model-paths: ["models"]
seed-paths: ["seeds"]

models:
  bench:
    staging:
      +materialized: view
    intermediate:
      +materialized: table
    marts:
      +materialized: table
      +schema: marts
      +tags: ['mart']
"""

PROFILES = """\
bench:
  target: dev
  outputs:
    dev:
      type: duckdb
      path: "{{ env_var('BENCH_DB', 'bench.duckdb') }}"
      schema: main
      threads: 2
"""


# --------------------------------------------------------------------------- main

def generate(n: int, out: str, seed: int = 42, shape: str = "layers") -> dict:
    """Write the project into `out` and return a summary dict. `shape`:
    "layers" (staging / intermediate / marts) or "marts" (n mart tables over
    3 staging views: the B3 publish project)."""
    if shape not in ("layers", "marts"):
        raise SystemExit("unknown shape %r (layers | marts)" % shape)
    rng = random.Random(seed)
    seeds = make_seeds(rng)
    models = build_models(n, rng, shape)

    if os.path.exists(out):
        if os.listdir(out) and not os.path.exists(os.path.join(out, MARKER)):
            raise SystemExit("%s exists and was not made by gen_project.py; refusing to overwrite" % out)
        for sub in ("models", "seeds", "target", "logs"):
            shutil.rmtree(os.path.join(out, sub), ignore_errors=True)
    os.makedirs(out, exist_ok=True)

    def write(rel: str, text: str) -> None:
        path = os.path.join(out, rel)
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)

    header = DBT_PROJECT.format(n=n, seed=seed)
    if shape != "layers":
        header = header.replace("--seed %d\n" % seed, "--seed %d --shape %s\n" % (seed, shape), 1)
    write("dbt_project.yml", header)
    write("profiles.yml", PROFILES)
    os.makedirs(os.path.join(out, "seeds"))
    for name, text in seeds.items():
        write(os.path.join("seeds", name + ".csv"), text)

    groups: dict[str, list[Model]] = {}
    for m in models:
        groups.setdefault("%s/g%03d" % (m.layer, m.index // GROUP_SIZE), []).append(m)
    for folder, ms in groups.items():
        os.makedirs(os.path.join(out, "models", folder))
        for m in ms:
            write(os.path.join("models", folder, m.name + ".sql"),
                  "-- %s: %s layer, refs %s\n" % (m.name, m.layer, ", ".join(m.parents)) + m.sql)
        write(os.path.join("models", folder, "_schema.yml"), schema_yml(ms))

    mats: dict[str, int] = {}
    defaults = {"staging": "view", "intermediate": "table", "marts": "table"}
    for m in models:
        k = m.mat or defaults[m.layer]
        mats[k] = mats.get(k, 0) + 1
    summary = {
        "models": len(models),
        "seed": seed,
        "shape": shape,
        "layers": dict(zip(("staging", "intermediate", "marts"), layer_sizes(n, shape))),
        "materializations": dict(sorted(mats.items())),
        "tests": sum(len(m.tests) for m in models),
        "refs": sum(len(m.parents) for m in models),
        "seeds": {k: SEED_ROWS for k in seeds},
        # relations airlock and dbt must both leave in prod (seeds + non-ephemeral models)
        "prod_relations": len(seeds) + sum(1 for m in models if m.mat != "ephemeral"),
    }
    write(MARKER, json.dumps(summary, indent=2) + "\n")
    # what B0 (benches/floor.py) needs besides the SQL files: where each model
    # lives, how it materializes and its tests (the same as the YAML says)
    manifest = {
        "seeds": sorted(seeds),
        "models": [{
            "name": m.name,
            "file": "models/%s/g%03d/%s.sql" % (m.layer, m.index // GROUP_SIZE, m.name),
            "schema": "main_marts" if m.layer == "marts" else "main",
            "materialized": m.mat or defaults[m.layer],
            "tests": [[col, test, args] for col, test, args in m.tests],
        } for m in models],
    }
    write(MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=int, required=True, help="number of models (>= 5)")
    ap.add_argument("--out", required=True, help="project directory to (re)write")
    ap.add_argument("--seed", type=int, default=42, help="RNG seed (default 42)")
    ap.add_argument("--shape", default="layers", choices=("layers", "marts"),
                    help="layers (default): staging/intermediate/marts; marts: N mart tables over 3 staging views (B3)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    summary = generate(args.models, args.out, args.seed, args.shape)
    dt_s = time.perf_counter() - t0
    print("generated %d models (%s), %d tests, %d refs in %s in %.2f s" % (
        summary["models"],
        ", ".join("%s %d" % kv for kv in summary["materializations"].items()),
        summary["tests"], summary["refs"], args.out, dt_s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
