"""End-to-end tests of the Snowflake emulator, through snowflake-connector-python and
through raw HTTP requests shaped like the Rust client's.

Each test's docstring names the Snowflake behaviour it pins. Databases are unique
per test (the `db` fixture), so tests share one emulator without sharing state.
"""

from __future__ import annotations

import datetime
import decimal
import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import HERE, Connect, Emulator, RawClient, Sql, parse_lines, run_script

# --------------------------------------------------------------------------------------
# wire format


def test_query_results_are_json_rowsets_in_snowflake_encoding(raw: RawClient) -> None:
    """Snowflake's JSON result format (the only one snowflake-connector-rs reads):
    queryResultFormat "json", rowset cells are strings or null -- FIXED as decimal
    text with `scale` digits, BOOLEAN "1"/"0", DATE days since epoch, TIME and
    TIMESTAMP_* seconds with `scale` fraction digits, TIMESTAMP_TZ with its offset
    index (minutes + 1440), BINARY hex."""
    assert raw.login(databaseName="WIRE_DB", schemaName="S")["success"]
    body = raw.query(
        "select 1.5::number(10,2) as n, 2::int as i, 1.5::float as f, true as b, false as b2, "
        "'2024-06-15'::date as d, '12:34:56.123'::time as t, "
        "'2024-06-15 12:30:45.123456'::timestamp_ntz as ntz, "
        "'1969-12-31 23:59:58.5'::timestamp_ntz as before_epoch, "
        "'2024-06-15 12:30:45 +00:00'::timestamp_tz as tz, "
        "null as nul, to_binary('48656C6C6F', 'HEX') as bin, 'text' as s, 'NaN'::float as nan"
    )
    assert body["success"], body
    data = body["data"]
    assert data["queryResultFormat"] == "json"
    assert "rowsetBase64" not in data
    assert data["queryId"]
    types = {c["name"]: (c["type"], c["scale"]) for c in data["rowtype"]}
    assert types["N"] == ("fixed", 2) and types["NTZ"] == ("timestamp_ntz", 9) and types["TZ"] == ("timestamp_tz", 9)
    row = dict(zip(types, data["rowset"][0], strict=False))
    ntz = datetime.datetime(2024, 6, 15, 12, 30, 45, 123456, tzinfo=datetime.UTC)
    assert row == {
        "N": "1.50",
        "I": "2",
        "F": "1.5",
        "B": "1",
        "B2": "0",
        "D": str((datetime.date(2024, 6, 15) - datetime.date(1970, 1, 1)).days),
        "T": f"{12 * 3600 + 34 * 60 + 56}.123000000",
        "NTZ": f"{int(ntz.timestamp())}.123456000",
        "BEFORE_EPOCH": "-1.500000000",
        "TZ": f"{int(ntz.timestamp())}.000000000 1440",
        "NUL": None,
        "BIN": "48656C6C6F",
        "S": "text",
        "NAN": "NaN",
    }
    assert all(cell is None or isinstance(cell, str) for cell in data["rowset"][0])


def test_null_timestamps_are_null_cells(raw: RawClient) -> None:
    """A NULL TIMESTAMP_* (as in a nullable table column) is a null cell; fakesnow's
    Arrow holds it as a struct of null fields, which must not reach the encoder."""
    assert raw.login(databaseName="WIRE_DB", schemaName="S")["success"]
    body = raw.query(
        "select '2024-06-15 12:30:45.5'::timestamp_ntz as ntz, null::timestamp_ntz as n1, "
        "null::timestamp_ltz as n2, null::timestamp_tz as n3"
    )
    assert body["success"], body
    epoch = int(datetime.datetime(2024, 6, 15, 12, 30, 45, tzinfo=datetime.UTC).timestamp())
    assert body["data"]["rowset"] == [[f"{epoch}.500000000", None, None, None]]


def test_variant_cells_are_json_text(raw: RawClient) -> None:
    """VARIANT values travel as their JSON text in a JSON rowset."""
    assert raw.login(databaseName="WIRE_DB", schemaName="S")["success"]
    body = raw.query("""select parse_json('{"a": [1, 2], "b": "x"}') as v""")
    assert body["data"]["rowtype"][0]["type"] == "variant"
    assert json.loads(body["data"]["rowset"][0][0]) == {"a": [1, 2], "b": "x"}


def test_python_connector_decodes_the_json_rowsets(db: tuple[str, Sql]) -> None:
    """The cells decode with Snowflake's own client rules for JSON results
    (snowflake-connector-python's JSON converters) to the original values."""
    _, sql = db
    row = sql.one(
        "select 1.5::number(10,2), 2::int, 1.5::float, true, '2024-06-15'::date, '12:34:56.123'::time, "
        "'2024-06-15 12:30:45.123456'::timestamp_ntz, to_binary('48656C6C6F', 'HEX'), null"
    )
    assert row == (
        decimal.Decimal("1.50"),
        2,
        1.5,
        True,
        datetime.date(2024, 6, 15),
        datetime.time(12, 34, 56, 123000),
        datetime.datetime(2024, 6, 15, 12, 30, 45, 123456),
        b"Hello",
        None,
    )


def test_login_like_the_rust_client(raw: RawClient) -> None:
    """snowflake-connector-rs omits SESSION_PARAMETERS when it has none to send; the
    login must still succeed. A login naming no database gets the emulated user's
    default namespace (EMULATOR_DEFAULT_DB), so timestamp functions work."""
    body = raw.login()
    assert body["success"] and body["data"]["token"]
    current = raw.query("select current_database(), '2024-01-01 00:00:00'::timestamp_ntz")
    assert current["success"], current
    assert current["data"]["rowset"][0] == ["EMULATOR_DEFAULT_DB", "1704067200.000000000"]


def test_errors_carry_query_id_code_sql_state_and_message(raw: RawClient) -> None:
    """Snowflake's error envelope: success false, code, message, and data with
    errorCode, sqlState and queryId (the Rust client rejects error responses whose
    data lacks queryId, hiding the message)."""
    assert raw.login(databaseName="WIRE_DB", schemaName="S")["success"]
    for sql, code, words in [
        ("select * from no_such_table", "002003", "NO_SUCH_TABLE"),  # from fakesnow
        ("alter schema no_such_schema swap with s", "002003", "Schema 'NO_SUCH_SCHEMA' does not exist"),  # emulated
        ("grant select on table s.nope to role r", "002003", "Table 'S.NOPE' does not exist or not authorized."),
        ("create schema s clone", "001003", "syntax error"),
    ]:
        body = raw.query(sql)
        assert body["success"] is False
        assert body["code"] == code, body
        assert words in body["message"], body
        assert body["data"]["queryId"] and body["data"]["errorCode"] == code and body["data"]["sqlState"]


def test_fakesnow_internal_failures_become_snowflake_errors(raw: RawClient) -> None:
    """A statement fakesnow cannot run (here: an ARRAY column type it cannot describe)
    must come back as a Snowflake error with the cause, not as a bare HTTP 500."""
    assert raw.login(databaseName="WIRE_DB", schemaName="S")["success"]
    body = raw.query("select array_construct(1, 2) as a")
    assert body["success"] is False
    assert body["code"] == "000603"
    assert "NotImplementedError" in body["message"] and body["data"]["queryId"]


# --------------------------------------------------------------------------------------
# test hooks (not Snowflake features): wrong password, missing role, missing warehouse


def test_wrong_password_hook(connect: Connect, raw: RawClient) -> None:
    """Snowflake rejects bad credentials at login with 390100 "Incorrect username or
    password was specified." -- the emulator does so for user EMULATOR_WRONG_PASSWORD."""
    body = raw.login(user="emulator_wrong_password")
    assert (body["success"], body["code"]) == (False, "390100")
    assert body["message"] == "Incorrect username or password was specified."
    with pytest.raises(snowflake_error()) as info:
        connect(user="EMULATOR_WRONG_PASSWORD")
    assert info.value.errno == 390100


def test_missing_role_hook(raw: RawClient, db: tuple[str, Sql]) -> None:
    """A login naming a role the user cannot use fails with 390189 "Role 'X' specified
    in the connect string does not exist or not authorized. ..."; USE ROLE and GRANT
    ... TO ROLE of a missing role fail with "Role 'X' does not exist or not authorized."."""
    body = raw.login(roleName="EMULATOR_MISSING_ROLE")
    assert (body["success"], body["code"]) == (False, "390189")
    assert body["message"].startswith("Role 'EMULATOR_MISSING_ROLE' specified in the connect string does not exist")
    _, sql = db
    sql.run("create table t (x int)")
    for statement in ["use role emulator_missing_role", "grant select on table t to role emulator_missing_role"]:
        err = sql.error(statement)
        assert err.errno == 2003 and "Role 'EMULATOR_MISSING_ROLE' does not exist or not authorized." in err.msg


def test_missing_warehouse_hook(connect: Connect, db: tuple[str, Sql]) -> None:
    """Snowflake accepts a login naming a warehouse that does not exist, then fails
    statements that need compute with 000606 "No active warehouse selected in the
    current session. ..."; metadata statements still work. USE WAREHOUSE of a missing
    warehouse fails with 002043; USE WAREHOUSE of a real one fixes the session."""
    name, setup = db
    setup.run("create table t (x int)", "insert into t values (1)")
    sql = Sql(connect(database=name, schema="S", warehouse="EMULATOR_MISSING_WAREHOUSE"))
    assert sql.one("select 1") == (1,)
    assert sql.all("show tables")
    err = sql.error("select * from t")
    assert err.errno == 606 and "No active warehouse selected in the current session" in err.msg
    err = sql.error("use warehouse emulator_missing_warehouse")
    assert err.errno == 2043
    sql.run("use warehouse compute_wh")
    assert sql.all("select * from t") == [(1,)]


# --------------------------------------------------------------------------------------
# the emulated statements


def _setup_two_schemas(sql: Sql) -> None:
    sql.run(
        "create schema a",
        "create table a.t (id int primary key, name varchar(10) default 'dflt')",
        "insert into a.t (id) values (1), (2)",
        "create view a.v as select id from t where id > 1",  # unqualified: resolves inside its schema
        "create schema b",
        "create table b.u (x int)",
        "insert into b.u values (42)",
        "grant usage on schema a to role reader_a",
        "grant usage on schema b to role reader_b",
        "grant select on table a.t to role reader_a",
        "grant select on view a.v to role reader_a",
        "grant select on table b.u to role reader_b",
    )


def test_schema_swap_exchanges_contents_and_grants(connect: Connect, db: tuple[str, Sql]) -> None:
    """ALTER SCHEMA a SWAP WITH b swaps all objects and metadata, including all
    privileges granted on the schemas and on the objects in them -- in effect a rename
    of both schemas in one operation, seen by every session."""
    name, sql = db
    _setup_two_schemas(sql)
    sql.run("alter schema a swap with b")
    assert sql.all("select * from a.u") == [(42,)]
    assert sql.all("select id, name from b.t order by id") == [(1, "dflt"), (2, "dflt")]
    assert sql.all("select * from b.v") == [(2,)]
    assert sql.error("select * from a.t").errno == 2003
    assert sql.grants_on("SCHEMA", "a") == {("OWNERSHIP", "SYSADMIN"), ("USAGE", "READER_B")}
    assert sql.grants_on("SCHEMA", "b") == {("OWNERSHIP", "SYSADMIN"), ("USAGE", "READER_A")}
    assert sql.grants_on("TABLE", "b.t") == {("OWNERSHIP", "SYSADMIN"), ("SELECT", "READER_A")}
    assert sql.grants_on("VIEW", "b.v") == {("OWNERSHIP", "SYSADMIN"), ("SELECT", "READER_A")}
    assert sql.grants_on("TABLE", "a.u") == {("OWNERSHIP", "SYSADMIN"), ("SELECT", "READER_B")}
    # the primary key and the default came along with the table
    assert sql.error("insert into b.t (id) values (1)").errno != 0
    other = Sql(connect(database=name, schema="A"))
    assert other.all("select * from u") == [(42,)]


def test_hook_a_swap_loses_the_privileges_of_an_airlock_lost_role_once(db: tuple[str, Sql]) -> None:
    """Test hook (not Snowflake): a role named AIRLOCK_LOST_* loses its privileges on
    the schema named after SWAP WITH, and on its objects, at the first swap of that
    schema -- a privilege revoked by someone else mid-publish. Other roles keep theirs
    and a second swap changes nothing more."""
    name, sql = db
    _setup_two_schemas(sql)
    sql.run("grant usage on schema a to role airlock_lost_reader")
    sql.run("grant select on table a.t to role airlock_lost_reader")
    sql.run("alter schema a swap with b")
    # a's contents are now b: the hook took the lost role's grants from them
    assert sql.grants_on("SCHEMA", "b") == {("OWNERSHIP", "SYSADMIN"), ("USAGE", "READER_A")}
    assert sql.grants_on("TABLE", "b.t") == {("OWNERSHIP", "SYSADMIN"), ("SELECT", "READER_A")}
    sql.run("grant select on table b.t to role airlock_lost_reader")
    sql.run("alter schema a swap with b")
    assert sql.grants_on("TABLE", "a.t") == {("OWNERSHIP", "SYSADMIN"), ("SELECT", "READER_A"), ("SELECT", "AIRLOCK_LOST_READER")}


def test_schema_swap_failure_changes_nothing(db: tuple[str, Sql]) -> None:
    """A swap naming a missing schema fails with "Schema 'X' does not exist or not
    authorized." and leaves the other schema as it was; IF EXISTS on a missing first
    schema succeeds without effect."""
    _, sql = db
    _setup_two_schemas(sql)
    err = sql.error("alter schema a swap with nope")
    assert err.errno == 2003 and "Schema 'NOPE' does not exist or not authorized." in err.msg
    assert sql.all("select count(*) from a.t") == [(2,)]
    assert sql.one("alter schema if exists nope swap with a") == ("Statement executed successfully.",)
    assert sql.all("select count(*) from a.t") == [(2,)]


def test_table_swap_exchanges_contents_and_grants(db: tuple[str, Sql]) -> None:
    """ALTER TABLE a SWAP WITH b swaps all content and metadata between the tables,
    including all privilege grants (also for tables in different schemas)."""
    _, sql = db
    _setup_two_schemas(sql)
    sql.run("create table a.t2 (y varchar)", "insert into a.t2 values ('t2')", "grant insert on table a.t2 to role w")
    sql.run("alter table a.t swap with a.t2")
    assert sql.all("select * from a.t") == [("t2",)]
    assert sql.all("select id from a.t2 order by id") == [(1,), (2,)]
    assert sql.grants_on("TABLE", "a.t") == {("OWNERSHIP", "SYSADMIN"), ("INSERT", "W")}
    assert sql.grants_on("TABLE", "a.t2") == {("OWNERSHIP", "SYSADMIN"), ("SELECT", "READER_A")}
    sql.run("alter table a.t2 swap with b.u")  # across schemas
    assert sql.all("select * from a.t2") == [(42,)]
    assert sql.all("select id from b.u order by id") == [(1,), (2,)]
    assert sql.grants_on("TABLE", "b.u") == {("OWNERSHIP", "SYSADMIN"), ("SELECT", "READER_A")}
    err = sql.error("alter table a.t swap with a.v")
    assert "Table 'A.V' does not exist or not authorized." in err.msg


def test_database_swap_exchanges_contents_and_grants(connect: Connect, db: tuple[str, Sql]) -> None:
    """ALTER DATABASE a SWAP WITH b swaps all objects and metadata, including the
    privileges on the databases and everything in them, as a rename of both."""
    first, sql = db
    second = first + "_2"
    sql.run("create table s.t (x int)", "insert into s.t values (1)", f"grant usage on database {first} to role r1")
    other = Sql(connect(database=second, schema="S"))
    other.run("create table s.t (x int)", "insert into s.t values (2)", f"grant usage on database {second} to role r2")
    other.run("grant select on table s.t to role r2")
    sql.run(f"alter database {first} swap with {second}")
    assert sql.all(f"select x from {first}.s.t") == [(2,)]
    assert sql.all(f"select x from {second}.s.t") == [(1,)]
    assert sql.grants_on("DATABASE", first) == {("OWNERSHIP", "SYSADMIN"), ("USAGE", "R2")}
    assert sql.grants_on("DATABASE", second) == {("OWNERSHIP", "SYSADMIN"), ("USAGE", "R1")}
    assert sql.grants_on("TABLE", f"{first}.s.t") == {("OWNERSHIP", "SYSADMIN"), ("SELECT", "R2")}
    # fakesnow's information_schema of each database reports the database's new name
    assert sql.all(f"select table_catalog, table_name from {first}.information_schema.tables") == [(first, "T")]


def test_database_rename_keeps_contents_and_grants(connect: Connect, db: tuple[str, Sql]) -> None:
    """ALTER DATABASE a RENAME TO b: the database keeps its schemas, objects and the
    privileges granted on it and on them; the old name is gone, and renaming onto an
    existing database fails with "Object 'B' already exists."."""
    first, sql = db
    second = first + "_RENAMED"
    sql.run("create table s.t (x int)", "insert into s.t values (7)", f"grant usage on database {first} to role r1")
    sql.run("grant select on table s.t to role r1")
    # renamed from a session working in another database (as airlock does)
    other = Sql(connect(database=first + "_OTHER", schema="S"))
    other.run(f"alter database {first} rename to {second}")
    assert other.all(f"select x from {second}.s.t") == [(7,)]
    assert first not in {r[1] for r in other.all("show databases")}
    assert other.grants_on("DATABASE", second) == {("OWNERSHIP", "SYSADMIN"), ("USAGE", "R1")}
    assert other.grants_on("TABLE", f"{second}.s.t") == {("OWNERSHIP", "SYSADMIN"), ("SELECT", "R1")}
    assert other.all(f"select table_catalog, table_name from {second}.information_schema.tables") == [(second, "T")]
    err = other.error(f"alter database {second} rename to {first}_OTHER")
    assert f"Object '{first}_OTHER' already exists." in err.msg


def test_schema_clone_copies_tables_and_views_but_not_container_grants(db: tuple[str, Sql]) -> None:
    """CREATE SCHEMA c CLONE a: c holds copies of a's tables and views. A view keeps
    its definition text, so its unqualified names now resolve inside c while
    qualified ones still point at a. The clone inherits the grants on the child
    objects, not the grants on the source schema; the cloning role owns it, and it
    becomes the session's current schema."""
    _, sql = db
    _setup_two_schemas(sql)
    sql.run("create view a.qualified as select id from a.t")
    sql.run("use role cloner")
    sql.run("create schema c clone a")
    assert sql.one("select current_schema()") == ("C",)
    sql.run("insert into a.t (id) values (3)")  # after the clone: only the source sees it
    assert sql.all("select id from c.t order by id") == [(1,), (2,)]
    assert sql.all("select * from c.v order by id") == [(2,)]
    assert sql.all("select * from c.qualified order by id") == [(1,), (2,), (3,)]
    texts = dict(sql.all("select table_schema || '.' || table_name, view_definition from information_schema.views"))
    assert texts["C.V"].split(" AS ", 1)[1] == texts["A.V"].split(" AS ", 1)[1]
    assert sql.grants_on("SCHEMA", "c") == {("OWNERSHIP", "CLONER")}
    assert sql.grants_on("TABLE", "c.t") == {("OWNERSHIP", "SYSADMIN"), ("SELECT", "READER_A")}
    assert sql.grants_on("VIEW", "c.v") == {("OWNERSHIP", "SYSADMIN"), ("SELECT", "READER_A")}


def test_create_or_replace_schema_clone(db: tuple[str, Sql]) -> None:
    """CREATE SCHEMA fails with "Object 'X' already exists." when the schema exists;
    IF NOT EXISTS leaves it; OR REPLACE drops it (contents and grants) and clones."""
    _, sql = db
    _setup_two_schemas(sql)
    err = sql.error("create schema b clone a")
    assert err.errno == 2002 and "Object 'B' already exists." in err.msg
    assert "already exists, statement succeeded" in sql.one("create schema if not exists b clone a")[0]
    assert sql.all("select * from b.u") == [(42,)]
    sql.run("create or replace schema b clone a")
    assert sql.error("select * from b.u").errno == 2003
    assert sql.all("select count(*) from b.t") == [(2,)]
    assert sql.grants_on("SCHEMA", "b") == {("OWNERSHIP", "SYSADMIN")}


def test_create_or_replace_table_clone(db: tuple[str, Sql]) -> None:
    """CREATE OR REPLACE TABLE x CLONE y replaces an existing x with a copy of y
    (columns, defaults, rows); without OR REPLACE an existing x is an error."""
    _, sql = db
    _setup_two_schemas(sql)
    sql.run("create table a.x (old int)", "insert into a.x values (9)")
    assert sql.error("create table a.x clone a.t").errno == 2002
    sql.run("create or replace table a.x clone a.t")
    assert sql.all("select id, name from a.x order by id") == [(1, "dflt"), (2, "dflt")]
    sql.run("insert into a.x (id) values (7)")
    assert sql.one("select name from a.x where id = 7") == ("dflt",)
    assert sql.all("select count(*) from a.t") == [(2,)]


def test_table_clone_grants(db: tuple[str, Sql]) -> None:
    """Cloning a table copies no grants from the source, but the schema's future
    grants apply. With COPY GRANTS the new table gets every privilege except
    OWNERSHIP from the table it replaces -- or from the source when it replaces none
    -- and no future grants. The creating role owns the new table."""
    _, sql = db
    _setup_two_schemas(sql)
    sql.run("grant select on future tables in schema a to role future_reader")
    sql.run("create table a.plain clone a.t")
    assert sql.grants_on("TABLE", "a.plain") == {("OWNERSHIP", "SYSADMIN"), ("SELECT", "FUTURE_READER")}
    sql.run("use role deployer", "create table a.copied clone a.t copy grants")
    assert sql.grants_on("TABLE", "a.copied") == {("OWNERSHIP", "DEPLOYER"), ("SELECT", "READER_A")}
    sql.run("grant delete on table a.copied to role cleaner")
    sql.run("create or replace table a.copied clone b.u copy grants")
    assert sql.grants_on("TABLE", "a.copied") == {
        ("OWNERSHIP", "DEPLOYER"),
        ("SELECT", "READER_A"),
        ("DELETE", "CLEANER"),
    }
    assert sql.all("select * from a.copied") == [(42,)]


def test_database_clone_is_a_full_copy(db: tuple[str, Sql]) -> None:
    """CREATE DATABASE c CLONE d copies every schema, table and view with their rows
    (not an empty database); child objects keep their grants, the database itself
    does not inherit the source's grants, and the clone becomes current."""
    name, sql = db
    _setup_two_schemas(sql)
    sql.run(f"grant usage on database {name} to role db_reader")
    clone = name + "_C"
    sql.run(f"create database {clone} clone {name}")
    assert sql.one("select current_database()") == (clone,)
    assert sql.all(f"select id from {clone}.a.t order by id") == [(1,), (2,)]
    assert sql.all(f"select * from {clone}.a.v") == [(2,)]
    assert sql.all(f"select * from {clone}.b.u") == [(42,)]
    assert sql.grants_on("DATABASE", clone) == {("OWNERSHIP", "SYSADMIN")}
    assert sql.grants_on("SCHEMA", f"{clone}.a") == {("OWNERSHIP", "SYSADMIN"), ("USAGE", "READER_A")}
    assert sql.grants_on("TABLE", f"{clone}.b.u") == {("OWNERSHIP", "SYSADMIN"), ("SELECT", "READER_B")}
    sql.run(f"insert into {clone}.b.u values (43)")
    assert sql.all(f"select count(*) from {name}.b.u") == [(1,)]


def test_drop_database(emulator: Emulator, db: tuple[str, Sql]) -> None:
    """DROP DATABASE removes the database, its contents and the grants on them;
    DROP DATABASE IF EXISTS of a missing one succeeds; without IF EXISTS it fails
    with "Database 'X' does not exist or not authorized."."""
    name, sql = db
    sql.run(
        "create table s.t (x int)", f"grant usage on database {name} to role r", "grant select on table s.t to role r"
    )
    assert sql.one(f"drop database {name}") == (f"{name} successfully dropped.",)
    assert name not in {r[1] for r in sql.all("show databases")}
    assert not list((emulator.state / "snowflake-data").glob(f"{name}.db*"))
    assert sql.one(f"drop database if exists {name}")[0].startswith("Drop statement executed successfully")
    err = sql.error(f"drop database {name}")
    assert err.errno == 2003 and f"Database '{name}' does not exist or not authorized." in err.msg
    sql.run(f"create database {name}", f"create schema {name}.s", f"create table {name}.s.t (x int)")
    assert sql.all(f"select * from {name}.s.t") == []
    assert sql.grants_on("DATABASE", name) == {("OWNERSHIP", "SYSADMIN")}
    assert sql.grants_on("TABLE", f"{name}.s.t") == {("OWNERSHIP", "SYSADMIN")}


def test_schema_rename_keeps_objects_and_grants(db: tuple[str, Sql]) -> None:
    """ALTER SCHEMA a RENAME TO n: the schema keeps its objects and all grants on it
    and on them; renaming onto an existing name fails."""
    _, sql = db
    _setup_two_schemas(sql)
    assert sql.error("alter schema a rename to b").errno == 2002
    sql.run("alter schema a rename to n")
    assert sql.all("select * from n.v") == [(2,)]
    assert sql.error("select * from a.t").errno == 2003
    assert sql.grants_on("SCHEMA", "n") == {("OWNERSHIP", "SYSADMIN"), ("USAGE", "READER_A")}
    assert sql.grants_on("TABLE", "n.t") == {("OWNERSHIP", "SYSADMIN"), ("SELECT", "READER_A")}


def test_quoted_identifiers_keep_case_dots_and_spaces(db: tuple[str, Sql]) -> None:
    """Quoted identifiers keep their case and may hold dots, spaces and "" (an
    escaped quote); unquoted ones fold to upper case. SHOW GRANTS prints names
    quoted only when they need it. (fakesnow itself cannot USE a schema whose name
    holds a dot, so the dot is in the table name here.)"""
    name, sql = db
    sql.run('create schema "my Schema"', 'create table "my Schema"."Odd.""t""" (v int)')
    sql.run('insert into "my Schema"."Odd.""t""" values (5)', "create schema plain")
    sql.run('grant usage on schema "my Schema" to role "Mixed Role"')
    sql.run('grant select on table "my Schema"."Odd.""t""" to role "Mixed Role"')
    sql.run('alter schema "my Schema" swap with plain')
    assert sql.all('select * from plain."Odd.""t"""') == [(5,)]
    rows = sql.all("show grants on schema plain")
    assert {(r[3], r[5]) for r in rows if r[1] == "USAGE"} == {(f"{name}.PLAIN", "Mixed Role")}
    rows = sql.all('show grants on table plain."Odd.""t"""')
    assert {(r[3], r[5]) for r in rows if r[1] == "SELECT"} == {(f'{name}.PLAIN."Odd.""t"""', "Mixed Role")}
    rows = sql.all('show grants on schema "my Schema"')
    assert {r[3] for r in rows} == {f'{name}."my Schema"'}


# --------------------------------------------------------------------------------------
# grants


def test_show_grants_columns_and_values(db: tuple[str, Sql]) -> None:
    """SHOW GRANTS ON <object> returns created_on, privilege, granted_on, name,
    granted_to, grantee_name, grant_option, granted_by; the creator's role holds
    OWNERSHIP; WITH GRANT OPTION shows as 'true'; granted_by is the granting role.
    SHOW GRANTS TO ROLE lists the role's grants; REVOKE removes one."""
    name, sql = db
    role = f"R_{name}"  # roles are account-wide: keep this test's own
    sql.run("create table s.t (x int)", "use role admin_role")
    sql.run(f"grant select, insert on table s.t to role {role} with grant option")
    with sql.conn.cursor() as cur:
        cur.execute("show grants on table s.t")
        columns = [d[0] for d in cur.description]
        rows = cur.fetchall()
    assert columns == [
        "created_on",
        "privilege",
        "granted_on",
        "name",
        "granted_to",
        "grantee_name",
        "grant_option",
        "granted_by",
    ]
    by_privilege = {r[1]: r for r in rows}
    assert set(by_privilege) == {"OWNERSHIP", "SELECT", "INSERT"}
    assert by_privilege["SELECT"][2:] == ("TABLE", f"{name}.S.T", "ROLE", role, "true", "ADMIN_ROLE")
    assert by_privilege["OWNERSHIP"][5] == "SYSADMIN"
    assert isinstance(by_privilege["SELECT"][0], datetime.datetime)
    assert {r[1] for r in sql.all(f"show grants to role {role}")} == {"SELECT", "INSERT"}
    sql.run(f"revoke insert on table s.t from role {role}")
    assert sql.grants_on("TABLE", "s.t") == {("OWNERSHIP", "SYSADMIN"), ("SELECT", role)}


def test_copy_grants_on_create_or_replace(db: tuple[str, Sql]) -> None:
    """CREATE OR REPLACE <table|view> ... COPY GRANTS keeps the replaced object's
    privileges except OWNERSHIP (which goes to the creating role); without COPY
    GRANTS the replaced object's grants are dropped with it."""
    _, sql = db
    sql.run("create table s.t (x int)", "grant select on table s.t to role r1", "use role deployer")
    sql.run("create or replace table s.t copy grants as select 1 as x")
    assert sql.grants_on("TABLE", "s.t") == {("OWNERSHIP", "DEPLOYER"), ("SELECT", "R1")}
    sql.run("create or replace table s.t (y int)")
    assert sql.grants_on("TABLE", "s.t") == {("OWNERSHIP", "DEPLOYER")}
    sql.run("create view s.v as select 1 as a", "grant select on view s.v to role r2")
    sql.run("create or replace view s.v copy grants as select 2 as a")
    assert sql.grants_on("VIEW", "s.v") == {("OWNERSHIP", "DEPLOYER"), ("SELECT", "R2")}


def test_future_and_all_grants(db: tuple[str, Sql]) -> None:
    """GRANT ... ON ALL TABLES IN SCHEMA grants on the tables existing now (not views,
    not later ones); GRANT ... ON FUTURE TABLES grants on tables created later, and
    schema-level future grants take precedence over database-level ones. SHOW FUTURE
    GRANTS IN SCHEMA lists them."""
    name, sql = db
    sql.run("create table s.existing (x int)", "create view s.a_view as select 1 as a")
    sql.run("grant select on all tables in schema s to role all_reader")
    sql.run(f"grant insert on future tables in database {name} to role db_future")
    sql.run("create schema other", "create table other.t (x int)")
    assert sql.grants_on("TABLE", "other.t") == {("OWNERSHIP", "SYSADMIN"), ("INSERT", "DB_FUTURE")}
    sql.run("grant select on future tables in schema s to role schema_future")
    sql.run("create table s.later (x int)")
    assert sql.grants_on("TABLE", "s.existing") == {("OWNERSHIP", "SYSADMIN"), ("SELECT", "ALL_READER")}
    assert sql.grants_on("VIEW", "s.a_view") == {("OWNERSHIP", "SYSADMIN")}
    assert sql.grants_on("TABLE", "s.later") == {("OWNERSHIP", "SYSADMIN"), ("SELECT", "SCHEMA_FUTURE")}
    rows = sql.all("show future grants in schema s")
    assert [(r[1], r[2], r[3], r[5]) for r in rows] == [("SELECT", "TABLE", f"{name}.S.<TABLE>", "SCHEMA_FUTURE")]


def test_drop_and_rename_move_grants(db: tuple[str, Sql]) -> None:
    """DROP removes an object's grants (a new object of that name starts with none);
    ALTER TABLE ... RENAME TO keeps them on the renamed table."""
    _, sql = db
    sql.run("create table s.t (x int)", "grant select on table s.t to role r1")
    sql.run("alter table s.t rename to renamed")
    assert sql.grants_on("TABLE", "s.renamed") == {("OWNERSHIP", "SYSADMIN"), ("SELECT", "R1")}
    sql.run("drop table s.renamed", "create table s.renamed (x int)")
    assert sql.grants_on("TABLE", "s.renamed") == {("OWNERSHIP", "SYSADMIN")}
    err = sql.error("show grants on table s.t")
    assert "Table 'S.T' does not exist or not authorized." in err.msg


def test_emulated_ddl_commits_the_open_transaction(db: tuple[str, Sql]) -> None:
    """A DDL statement inside an explicit transaction first commits it, so a later
    ROLLBACK cannot undo the earlier DML."""
    _, sql = db
    sql.run("create table s.t (x int)", "create table s.u (x int)")
    sql.run("begin", "insert into s.t values (1)", "alter table s.t swap with s.u", "rollback")
    assert sql.all("select * from s.u") == [(1,)]


def test_unsupported_grant_forms_fail_loudly(db: tuple[str, Sql]) -> None:
    """Forms the emulator does not model (role hierarchy, ALL PRIVILEGES) are refused
    with Snowflake's "Unsupported feature" error rather than silently accepted."""
    _, sql = db
    sql.run("create table s.t (x int)")
    for statement in ["grant role r1 to role r2", "grant all privileges on table s.t to role r1"]:
        err = sql.error(statement)
        assert err.errno == 2 and "Unsupported feature" in err.msg


# --------------------------------------------------------------------------------------
# the scripts


def test_start_is_idempotent_and_stop_start_cycles(tmp_path: Path) -> None:
    """start.sh prints the KEY=VALUE lines, prints the same lines again while that
    emulator runs, and stop.sh stops it (twice is fine); a new start works."""
    first = run_script("start.sh", tmp_path)
    assert first.returncode == 0, first.stderr
    lines = parse_lines(first.stdout)
    assert list(lines) == ["SNOWFLAKE_HOST", "SNOWFLAKE_PORT", "SNOWFLAKE_PROTOCOL", "PYTHON", "PID"]
    assert lines["SNOWFLAKE_HOST"] == "127.0.0.1" and lines["SNOWFLAKE_PROTOCOL"] == "http"
    try:
        again = run_script("start.sh", tmp_path)
        assert again.returncode == 0 and parse_lines(again.stdout) == lines
        assert (tmp_path / "snowflake.env").read_text().splitlines() == first.stdout.splitlines()
        check = subprocess.run([lines["PYTHON"], "-c", "import snowflake.connector"], capture_output=True, timeout=60)
        assert check.returncode == 0
    finally:
        assert run_script("stop.sh", tmp_path).returncode == 0
    assert not (tmp_path / "snowflake.env").exists()
    assert not os.path.exists(f"/proc/{lines['PID']}")
    assert run_script("stop.sh", tmp_path).returncode == 0
    second = run_script("start.sh", tmp_path)
    try:
        assert second.returncode == 0
        assert parse_lines(second.stdout)["PID"] != lines["PID"]
    finally:
        run_script("stop.sh", tmp_path)


def test_install_is_a_no_op_when_current() -> None:
    """install.sh leaves an up-to-date venv alone (its stamp file is not rewritten)."""
    home = Path(os.environ.get("AIRLOCK_EMULATOR_HOME", Path.home() / ".cache/airlock-emulators"))
    stamp = home / "snowflake-venv" / ".airlock-stamp"
    before = stamp.stat().st_mtime_ns
    result = subprocess.run([str(HERE / "install.sh")], stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    assert result.returncode == 0 and result.stdout == b"" and result.stderr == b""
    assert stamp.stat().st_mtime_ns == before


def snowflake_error() -> type[Exception]:
    import snowflake.connector

    return snowflake.connector.errors.DatabaseError
