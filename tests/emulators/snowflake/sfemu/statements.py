"""Which statements the emulator runs itself instead of handing them to fakesnow.

``emulate`` recognises a statement by its leading keywords and either runs it
(returning a Result) or returns None, in which case fakesnow runs it and
tracking.py keeps the grant state in step with what it did.
"""

from __future__ import annotations

from collections.abc import Callable

from . import access, ddl
from .context import Context, PassThrough, Result
from .errors import SnowflakeError
from .sql import Parser


def emulate(ctx: Context, sql: str) -> Result | None:
    """Run sql if it is a statement the emulator owns; None hands it to fakesnow."""
    try:
        p = Parser(sql)
    except SnowflakeError:
        return None  # let fakesnow report its own syntax error
    if p.peek_words("CREATE", "OR", "REPLACE", "SCHEMA") and not _is_create_clone(p, "SCHEMA"):
        try:
            return ddl.create_or_replace_schema(ctx, p)
        except PassThrough:
            return None
    for prefix, handler in _HANDLERS:
        # of the CREATEs, only the CLONE forms are the emulator's
        matched = _is_create_clone(p, prefix[1]) if prefix[0] == "CREATE" else p.peek_words(*prefix)
        if matched:
            try:
                return handler(ctx, p)
            except PassThrough:
                return None
    return None


def _is_create_clone(p: Parser, kind: str) -> bool:
    """CREATE [OR REPLACE] [TRANSIENT] <kind> [IF NOT EXISTS] <name> CLONE ..."""
    probe = Parser(p.sql)
    if not probe.accept("CREATE"):
        return False
    probe.accept("OR", "REPLACE")
    probe.accept("TRANSIENT")
    if not probe.accept(kind):
        return False
    probe.accept("IF", "NOT", "EXISTS")
    try:
        probe.name()
    except SnowflakeError:
        return False
    return probe.peek_words("CLONE")


def needs_warehouse(sql: str) -> bool:
    """Whether Snowflake would need a running warehouse for sql: reading or writing
    table data does, metadata statements (DDL, SHOW, USE, GRANT) and constant
    SELECTs do not. A keyword heuristic, used only for the missing-warehouse hook."""
    try:
        p = Parser(sql)
    except SnowflakeError:
        return False
    first = p.peek()
    if first is None:
        return False
    if first.is_word("INSERT", "UPDATE", "DELETE", "MERGE", "COPY", "TRUNCATE"):
        return True
    if first.is_word("SELECT", "WITH"):
        return p.has_word("FROM")
    return first.is_word("CREATE") and p.has_word("SELECT") and not p.has_word("VIEW")


_HANDLERS: list[tuple[tuple[str, ...], Callable[[Context, Parser], Result | None]]] = [
    (("ALTER", "SCHEMA"), ddl.alter_schema),
    (("ALTER", "DATABASE"), ddl.alter_database),
    (("ALTER", "TABLE"), ddl.alter_table),
    (("CREATE", "SCHEMA"), ddl.create_schema_clone),
    (("CREATE", "DATABASE"), ddl.create_database_clone),
    (("CREATE", "TABLE"), ddl.create_table_clone),
    (("DROP", "DATABASE"), ddl.drop_database),
    (("GRANT",), access.grant),
    (("REVOKE",), access.revoke),
    (("SHOW", "GRANTS"), access.show_grants),
    (("SHOW", "FUTURE", "GRANTS"), access.show_grants),
    (("USE",), access.use),
]
