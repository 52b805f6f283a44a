"""The per-statement context handed to the emulated statements, and their results."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import duckdb
from fakesnow import statement_type
from fakesnow.fakes import FakeSnowflakeConnection

from .errors import SnowflakeError
from .grants import GrantStore
from .sql import display_name

OK = "Statement executed successfully."


@dataclass
class Session:
    """What the emulator knows about a session beyond fakesnow's connection."""

    user: str
    role: str
    # None when the session has no usable warehouse (see Hooks.missing_warehouses)
    warehouse: str | None


@dataclass
class Hooks:
    """Test-only behaviour, absent from Snowflake, that lets a client test its error
    paths. Names are compared after identifier folding (unquoted -> upper case)."""

    reject_user: str = "EMULATOR_WRONG_PASSWORD"
    missing_roles: frozenset[str] = frozenset({"EMULATOR_MISSING_ROLE"})
    missing_warehouses: frozenset[str] = frozenset({"EMULATOR_MISSING_WAREHOUSE"})
    default_database: str | None = "EMULATOR_DEFAULT_DB"


@dataclass
class Result:
    rowtype: list[dict[str, Any]]
    rows: list[list[str | None]]
    statement_type_id: int = statement_type.DDL


def column(name: str, sf_type: str = "text", scale: int | None = None) -> dict[str, Any]:
    """A rowtype entry shaped like Snowflake's."""
    text = sf_type == "text"
    return {
        "name": name,
        "database": "",
        "schema": "",
        "table": "",
        "nullable": True,
        "type": sf_type,
        "byteLength": 16777216 if text else None,
        "length": 16777216 if text else None,
        "scale": scale,
        "precision": 0 if scale is not None else None,
        "collation": None,
    }


def status(message: str = OK) -> Result:
    return Result([column("status")], [[message]])


@dataclass
class Context:
    conn: FakeSnowflakeConnection
    session: Session
    grants: GrantStore
    hooks: Hooks
    _cursors: list[duckdb.DuckDBPyConnection] = field(default_factory=list)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A fresh DuckDB cursor on the session's database instance, so emulated work
        neither sees nor disturbs the session's own search path."""
        cur = self.conn._duck_conn.cursor()  # noqa: SLF001
        self._cursors.append(cur)
        return cur

    def close(self) -> None:
        for cur in self._cursors:
            with contextlib.suppress(Exception):
                cur.close()

    def commit_open_transaction(self) -> None:
        """Snowflake: a DDL statement run inside an explicit transaction first
        commits that transaction."""
        with contextlib.suppress(duckdb.TransactionException):  # raised when none is open
            self.conn._duck_conn.execute("COMMIT")  # noqa: SLF001
        self.conn._in_transaction = False  # noqa: SLF001

    def fakesnow(self, sql: str) -> None:
        """Run a statement through fakesnow itself (for session state such as USE)."""
        self.conn.cursor().execute(sql, server=True)

    # -- name resolution: unqualified names resolve against the session's current
    #    database and schema, as in Snowflake.
    def database_name(self, parts: tuple[str, ...]) -> str:
        if len(parts) != 1:
            raise SnowflakeError.syntax(f"invalid database name '{display_name(parts)}'")
        return parts[0]

    def schema_name(self, parts: tuple[str, ...], operation: str) -> tuple[str, str]:
        if len(parts) == 2:
            return (parts[0], parts[1])
        if len(parts) != 1:
            raise SnowflakeError.syntax(f"invalid schema name '{display_name(parts)}'")
        if not self.conn.database:
            raise SnowflakeError.no_current("database", operation)
        return (self.conn.database, parts[0])

    def object_name(self, parts: tuple[str, ...], operation: str) -> tuple[str, str, str]:
        if len(parts) == 3:
            return (parts[0], parts[1], parts[2])
        if not self.conn.database:
            raise SnowflakeError.no_current("database", operation)
        if len(parts) == 2:
            return (self.conn.database, parts[0], parts[1])
        if not self.conn.schema:
            raise SnowflakeError.no_current("schema", operation)
        return (self.conn.database, self.conn.schema, parts[0])


class PassThrough(Exception):
    """Raised by a handler whose leading keywords matched but whose statement is not
    one the emulator owns (e.g. ALTER TABLE ... ADD COLUMN): fakesnow runs it."""
