"""Unit tests of the emulator's pure parts: identifier parsing, the JSON cell
encodings and the grant store's lifecycle rules (no server needed)."""

from __future__ import annotations

import base64
import datetime
import decimal

import pyarrow as pa
import pytest

from sfemu import rowset
from sfemu.errors import SnowflakeError
from sfemu.grants import GrantStore
from sfemu.sql import Parser, display_name, replace_created_name, tokenize


def test_identifiers_fold_unquoted_and_keep_quoted() -> None:
    """Snowflake identifiers: unquoted fold to upper case; double-quoted keep case,
    may contain dots, spaces and keywords, and "" stands for one quote."""
    p = Parser('alter schema my_db."a.b ""c"" SWAP" swap with Other')
    p.expect("ALTER", "SCHEMA")
    assert p.name() == ("MY_DB", 'a.b "c" SWAP')
    assert p.accept("SWAP", "WITH")
    assert p.name() == ("OTHER",)
    p.end()


def test_comments_and_strings_hide_keywords() -> None:
    """Keywords inside comments and string literals are not statement keywords."""
    tokens = tokenize("select /* swap with */ 'it''s -- swap' -- swap with\n, $$swap$$ // x")
    assert [t.kind for t in tokens] == ["word", "string", "punct", "string"]
    assert tokens[1].value == "'it''s -- swap'"


def test_names_with_too_many_parts_and_trailing_statements_are_errors() -> None:
    with pytest.raises(SnowflakeError):
        Parser("a.b.c.d").name()
    p = Parser("drop database x; drop database y")
    p.expect("DROP", "DATABASE")
    p.name()
    with pytest.raises(SnowflakeError, match="syntax error line 1 at position 15 unexpected"):
        p.end()


def test_display_name_quotes_only_when_needed() -> None:
    """SHOW output prints plain upper-case identifiers bare and quotes the rest."""
    assert display_name(("DB", "my schema", 'x"y', "T_1$")) == 'DB."my schema"."x""y".T_1$'


def test_replace_created_name_keeps_the_rest_of_the_ddl() -> None:
    ddl = "CREATE TABLE S.\"odd (name\"(x INTEGER PRIMARY KEY, y VARCHAR DEFAULT('a'));"
    assert replace_created_name(ddl, '"D"."T"."N"') == (
        "CREATE TABLE \"D\".\"T\".\"N\" (x INTEGER PRIMARY KEY, y VARCHAR DEFAULT('a'));"
    )
    view = "CREATE VIEW S.V AS SELECT * FROM T;"
    assert replace_created_name(view, '"D"."T"."V"') == 'CREATE VIEW "D"."T"."V" AS SELECT * FROM T;'


@pytest.mark.parametrize(
    ("column", "value", "cell"),
    [
        ({"type": "fixed", "scale": 0}, 12, "12"),
        ({"type": "fixed", "scale": 2}, decimal.Decimal("-1.5"), "-1.50"),
        ({"type": "fixed", "scale": 3}, 1234, "1.234"),  # unscaled integer (Snowflake Arrow convention)
        ({"type": "real"}, 0.1, "0.1"),
        ({"type": "real"}, float("-inf"), "-inf"),
        ({"type": "boolean"}, False, "0"),
        ({"type": "date"}, datetime.date(1969, 12, 31), "-1"),
        ({"type": "time", "scale": 9}, 3_723_000_000_001, "3723.000000001"),
        ({"type": "time", "scale": 0}, 59, "59"),
        ({"type": "timestamp_ntz", "scale": 9}, {"epoch": -2, "fraction": 500_000_000}, "-1.500000000"),
        ({"type": "timestamp_ltz", "scale": 3}, {"epoch": 5, "fraction": 123_456_789}, "5.123"),
        ({"type": "timestamp_tz", "scale": 0}, {"epoch": 7, "fraction": 0, "timezone": 1980}, "7 1980"),
        ({"type": "binary"}, b"\x00\xff", "00FF"),
        ({"type": "variant"}, '{"a":1}', '{"a":1}'),
    ],
)
def test_cell_encodings(column: dict, value: object, cell: str) -> None:
    """Snowflake's JSON cell encodings (see rowset.py's table)."""
    assert rowset.encoder(column)(value) == cell


def test_arrow_to_rowset_keeps_nulls_and_row_order() -> None:
    table = pa.table({"A": pa.array([1, None, 3]), "B": pa.array(["x", "y", None])})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    encoded = base64.b64encode(sink.getvalue().to_pybytes()).decode()
    rowtype = [{"type": "fixed", "scale": 0}, {"type": "text"}]
    assert rowset.arrow_to_rowset(encoded, rowtype) == [["1", "x"], [None, "y"], ["3", None]]
    assert rowset.arrow_to_rowset("", rowtype) == []


def test_arrow_to_rowset_null_timestamp_structs_are_null() -> None:
    """fakesnow encodes a NULL timestamp as a struct whose fields are null."""
    struct = pa.struct([("epoch", pa.int64()), ("fraction", pa.int32())])
    ts = pa.array([{"epoch": 1, "fraction": 0}, {"epoch": None, "fraction": None}], struct)
    table = pa.table({"TS": ts})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    encoded = base64.b64encode(sink.getvalue().to_pybytes()).decode()
    assert rowset.arrow_to_rowset(encoded, [{"type": "timestamp_ntz", "scale": 3}]) == [["1.000"], [None]]


def _held(store: GrantStore, name: tuple[str, ...]) -> set[tuple[str, str]]:
    return {(g.privilege, g.grantee) for g in store.on(name)}


def test_grant_store_swap_rename_drop_and_clone() -> None:
    """Swap exchanges grants (children too), rename moves them, drop removes them,
    container clones copy the children's grants but not the container's."""
    s = GrantStore()
    s.created("SCHEMA", ("D", "A"), "OWNER")
    s.grant("SCHEMA", ("D", "A"), ["USAGE"], "RA", False, "OWNER")
    s.grant("TABLE", ("D", "A", "T"), ["SELECT"], "RA", False, "OWNER")
    s.grant("SCHEMA", ("D", "B"), ["USAGE"], "RB", False, "OWNER")
    s.swapped(("D", "A"), ("D", "B"))
    assert _held(s, ("D", "B")) == {("OWNERSHIP", "OWNER"), ("USAGE", "RA")}
    assert _held(s, ("D", "A")) == {("USAGE", "RB")}
    assert _held(s, ("D", "B", "T")) == {("SELECT", "RA")}
    s.cloned_container("SCHEMA", ("D", "B"), ("D", "C"), "CLONER")
    assert _held(s, ("D", "C")) == {("OWNERSHIP", "CLONER")}
    assert _held(s, ("D", "C", "T")) == {("SELECT", "RA")}
    s.renamed(("D", "C"), ("D", "E"))
    assert _held(s, ("D", "E", "T")) == {("SELECT", "RA")} and not _held(s, ("D", "C", "T"))
    s.dropped(("D", "E"))
    assert not _held(s, ("D", "E")) and not _held(s, ("D", "E", "T"))
    assert _held(s, ("D", "B", "T")) == {("SELECT", "RA")}


def test_grant_store_future_grants_precedence_and_copy_grants() -> None:
    """Schema-level future grants win over database-level ones for the same type;
    COPY GRANTS copies all but OWNERSHIP and skips future grants."""
    s = GrantStore()
    s.grant_future("TABLE", ("D",), ["INSERT"], "DBF", False)
    s.created("TABLE", ("D", "S", "T1"), "R")
    assert _held(s, ("D", "S", "T1")) == {("OWNERSHIP", "R"), ("INSERT", "DBF")}
    s.grant_future("TABLE", ("D", "S"), ["SELECT"], "SF", False)
    s.created("TABLE", ("D", "S", "T2"), "R")
    assert _held(s, ("D", "S", "T2")) == {("OWNERSHIP", "R"), ("SELECT", "SF")}
    s.created("TABLE", ("D", "S", "T3"), "R2", copy=s.on(("D", "S", "T1")))
    assert _held(s, ("D", "S", "T3")) == {("OWNERSHIP", "R2"), ("INSERT", "DBF")}
