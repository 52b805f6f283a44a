"""The statements the emulator rewrites before fakesnow runs them (sfemu/rewrite.py),
each pinned against the Snowflake behaviour airlock relies on."""

from __future__ import annotations

from conftest import Sql
from sfemu.rewrite import for_fakesnow


def test_hash_agg_is_an_order_independent_hash_of_whole_rows(db: tuple[str, Sql]) -> None:
    """HASH_AGG(*): one value for a whole table, independent of row order; equal
    content hashes equal, a changed value or an added row changes it."""
    _, sql = db
    sql.run(
        "create table s.a (id int, name varchar)",
        "insert into s.a values (1, 'x'), (2, 'y'), (3, null)",
        "create table s.b (id int, name varchar)",
        "insert into s.b values (3, null), (2, 'y'), (1, 'x')",
    )
    checksum = "select count(*) || ':' || coalesce(hash_agg(*), 0) from s.{}"
    a, b = sql.one(checksum.format("a"))[0], sql.one(checksum.format("b"))[0]
    assert a == b and a.startswith("3:")
    sql.run("update s.b set name = 'z' where id = 2")
    assert sql.one(checksum.format("b"))[0] != a
    sql.run("update s.b set name = 'y' where id = 2", "insert into s.b values (4, 'w')")
    assert sql.one(checksum.format("b"))[0] != a


def test_schema_qualified_temporary_table(db: tuple[str, Sql]) -> None:
    """CREATE [OR REPLACE] TEMP TABLE s.t AS ...: the table lives in schema s and is
    usable (qualified) by the session until dropped."""
    _, sql = db
    sql.run(
        "create or replace temp table s.tmp_new as select 1 as k, 'a' as v",
        "create table s.target (k int, v varchar)",
        "insert into s.target select * from s.tmp_new",
    )
    assert sql.all("select k, v from s.target") == [(1, "a")]
    sql.run("drop table s.tmp_new")
    assert sql.error("select * from s.tmp_new").errno == 2003


def test_rewrites_leave_strings_comments_and_other_statements_alone() -> None:
    same = [
        "select 'hash_agg(*)' as s -- hash_agg(*)",
        "create temp table t as select 1",
        "create table s.t as select 1",
        "select hash_agg(a) from t",
    ]
    for sql in same:
        assert for_fakesnow(sql) == sql
    assert for_fakesnow('create or replace temporary table "S"."T" as select 1') == 'create or replace table "S"."T" as select 1'
    assert for_fakesnow("select hash_agg( * ) from t") == "select SUM(HASH(OBJECT_CONSTRUCT(*))) from t"


def test_statements_received_are_listed_by_database(db: tuple[str, Sql], emulator) -> None:
    """Test hook (not Snowflake): GET /emulator/statements?database=X lists what
    sessions on X sent, in order, as sent."""
    import json
    import urllib.request

    name, sql = db
    sql.run("create table s.listed (k int)", "select count(*) from s.listed")
    url = f"http://{emulator.host}:{emulator.port}/emulator/statements?database={name}"
    with urllib.request.urlopen(url, timeout=30) as resp:
        got = json.loads(resp.read())["statements"]
    assert got[-2:] == ["create table s.listed (k int)", "select count(*) from s.listed"]


def test_create_or_replace_schema_replaces_a_schema_that_holds_objects(db: tuple[str, Sql]) -> None:
    """CREATE OR REPLACE SCHEMA x (no CLONE) on an existing x: x is dropped with its
    tables, views and the grants on them, and created empty."""
    _, sql = db
    sql.run(
        "create schema a",
        "create table a.t (k int)",
        "insert into a.t values (1)",
        "create view a.v as select * from a.t",
        "grant usage on schema a to role reader",
        "grant select on table a.t to role reader",
    )
    sql.run("create or replace schema a")
    assert sql.all("select table_name from information_schema.tables where table_schema = 'A'") == []
    assert ("USAGE", "READER") not in sql.grants_on("SCHEMA", "a")
    sql.run("create table a.t (k int)")
    assert ("SELECT", "READER") not in sql.grants_on("TABLE", "a.t")


def test_swap_keeps_view_text_and_a_view_over_missing_relations_is_left_out(db: tuple[str, Sql]) -> None:
    """After ALTER SCHEMA a SWAP WITH b, a view keeps its text: a qualified name
    still names the schema it named (now the other one). Snowflake keeps a view
    whose relations no longer exist (invalid until replaced); DuckDB cannot, so
    the emulator leaves it out, and CREATE OR REPLACE VIEW makes it again."""
    _, sql = db
    sql.run(
        "create schema audit",
        "create table audit.t (k int)",
        "insert into audit.t values (1)",
        "create view audit.v as select * from audit.t",
        "create schema prod",
        "alter schema audit swap with prod",
    )
    # prod.v names audit.t, which no longer exists: left out
    assert sql.all("select table_name from information_schema.views where table_schema = 'PROD'") == []
    assert sql.all("select k from prod.t") == [(1,)]
    sql.run("create or replace view prod.v as select * from prod.t")
    assert sql.all("select k from prod.v") == [(1,)]
