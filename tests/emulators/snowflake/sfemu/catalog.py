"""DuckDB-level building blocks for the statements fakesnow lacks.

fakesnow keeps a Snowflake database as an attached DuckDB database (one file per
database in the run's data directory), a Snowflake schema as a DuckDB schema,
and tables and views as DuckDB tables and views of the same names. DuckDB can
rename a table within its schema, but cannot rename a schema nor move a table
to another schema, so copies and moves re-run the object's own DDL (which
DuckDB keeps verbatim in duckdb_tables().sql / duckdb_views().sql) under the
new name and copy the rows.

DuckDB lets one transaction write to one attached database only. Everything a
statement changes inside one Snowflake database runs in one DuckDB transaction,
so other sessions see all of it or none of it; fakesnow's own bookkeeping
(column lengths, comments) lives in the ``_fs_global`` database and is updated
right after. The emulator also serialises statements (see app.py), so no
session runs between the two.
"""

from __future__ import annotations

import contextlib
import gc
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import logging
from fakesnow import info_schema, macros

from .errors import SnowflakeError
from .sql import display_name, quote_ident, replace_created_name

log = logging.getLogger("sfemu")

# fakesnow's and DuckDB's own schemas, never user schemas
INTERNAL_SCHEMAS = ("main", "_fs_information_schema", "pg_catalog", "information_schema")
INTERNAL_DATABASES = ("memory", "system", "temp", "_fs_global")
_EXT_TABLES = ("_fs_global._fs_information_schema._fs_columns_ext", "_fs_global._fs_information_schema._fs_tables_ext")


@dataclass(frozen=True)
class Relation:
    kind: str  # "TABLE" | "VIEW"
    name: str
    ddl: str


def q(*parts: str) -> str:
    """A quoted, qualified DuckDB name."""
    return ".".join(quote_ident(p) for p in parts)


@contextlib.contextmanager
def transaction(cur: duckdb.DuckDBPyConnection) -> Iterator[None]:
    cur.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        cur.execute("ROLLBACK")
        raise
    cur.execute("COMMIT")


class Catalog:
    """Catalog queries and object copies on one DuckDB cursor.

    Names are compared exactly (case-sensitive), as Snowflake compares resolved
    identifiers, even though DuckDB itself would match them case-insensitively.
    """

    def __init__(self, cur: duckdb.DuckDBPyConnection):
        self.cur = cur
        # views to create once the current transaction has committed
        self.pending_views: list[tuple[Relation, tuple[str, str]]] = []

    # -- looking -----------------------------------------------------------------------
    def database_path(self, db: str) -> str | None:
        rows = self.cur.execute("SELECT database_name, path FROM duckdb_databases()").fetchall()
        return next((path or ":memory:" for name, path in rows if name == db and name not in INTERNAL_DATABASES), None)

    def database_exists(self, db: str) -> bool:
        return self.database_path(db) is not None

    def schemas(self, db: str) -> list[str]:
        rows = self.cur.execute(
            "SELECT schema_name FROM duckdb_schemas() WHERE database_name = ? ORDER BY schema_name", [db]
        ).fetchall()
        return [s for (s,) in rows if s not in INTERNAL_SCHEMAS]

    def schema_exists(self, db: str, schema: str) -> bool:
        return self.database_exists(db) and schema in self.schemas(db)

    def relations(self, db: str, schema: str) -> list[Relation]:
        tables = self.cur.execute(
            "SELECT table_name, sql FROM duckdb_tables() WHERE database_name = ? AND schema_name = ?", [db, schema]
        ).fetchall()
        views = self.cur.execute(
            "SELECT view_name, sql FROM duckdb_views() WHERE database_name = ? AND schema_name = ? AND NOT internal",
            [db, schema],
        ).fetchall()
        return [Relation("TABLE", n, s) for n, s in tables] + [Relation("VIEW", n, s) for n, s in views]

    def relation(self, db: str, schema: str, name: str) -> Relation | None:
        return next((r for r in self.relations(db, schema) if r.name == name), None)

    def check_movable(self, db: str, schema: str) -> None:
        """Refuse schemas holding objects the emulator cannot copy faithfully."""
        sequences = self.cur.execute(
            "SELECT sequence_name FROM duckdb_sequences() WHERE database_name = ? AND schema_name = ?", [db, schema]
        ).fetchall()
        functions = self.cur.execute(
            "SELECT function_name FROM duckdb_functions() WHERE database_name = ? AND schema_name = ? AND NOT internal",
            [db, schema],
        ).fetchall()
        if sequences or functions:
            names = ", ".join(sorted({n for (n,) in sequences + functions}))
            raise SnowflakeError.unsupported(
                f"moving or cloning schema {display_name((db, schema))} that holds sequences or functions ({names})"
            )

    # -- changing ----------------------------------------------------------------------
    def copy_relation(self, rel: Relation, src: tuple[str, str], dst: tuple[str, str, str]) -> None:
        """Create dst with rel's DDL; for a table also copy its rows and column comments."""
        self.cur.execute(replace_created_name(rel.ddl, q(*dst)))
        if rel.kind == "TABLE":
            self.cur.execute(f"INSERT INTO {q(*dst)} SELECT * FROM {q(*src, rel.name)}")
            comments = self.cur.execute(
                "SELECT column_name, comment FROM duckdb_columns() "
                "WHERE database_name = ? AND schema_name = ? AND table_name = ? AND comment IS NOT NULL",
                [*src, rel.name],
            ).fetchall()
            for column, comment in comments:
                self.cur.execute(f"COMMENT ON COLUMN {q(*dst, column)} IS ?", [comment])

    def copy_schema(self, src: tuple[str, str], dst: tuple[str, str]) -> list[Relation]:
        """Create schema dst holding copies of src's tables and views (tables first,
        because DuckDB binds a view's query when the view is created)."""
        self.check_movable(*src)
        self.cur.execute(f"CREATE SCHEMA {q(*dst)}")
        rels = self.relations(*src)
        for rel in (r for r in rels if r.kind == "TABLE"):
            self.copy_relation(rel, src, (*dst, rel.name))
        self.create_views([r for r in rels if r.kind == "VIEW"], dst)
        return rels

    def create_views(self, views: list[Relation], dst: tuple[str, str]) -> None:
        """Create views in dst once the transaction moving their relations has
        committed (call create_pending_views then). DuckDB binds a view when it is
        created, and a view that cannot be bound would abort that transaction;
        Snowflake keeps a view's text and resolves it when queried."""
        self.pending_views.extend((v, dst) for v in views)

    def create_pending_views(self) -> list[str]:
        """Create the views recorded by create_views, in autocommit, retrying in
        rounds so views over views need no ordering. A view whose relations do not
        exist (Snowflake would keep it, invalid until its relations exist again or
        it is replaced) cannot exist in DuckDB: it is left out, and its name
        returned."""
        pending, self.pending_views = self.pending_views, []
        while pending:
            failed: list[tuple[Relation, tuple[str, str]]] = []
            for view, dst in pending:
                try:
                    self.cur.execute(replace_created_name(view.ddl, q(*dst, view.name)))
                except (duckdb.CatalogException, duckdb.BinderException):
                    failed.append((view, dst))
            if len(failed) == len(pending):
                for view, dst in failed:
                    log.warning("view %s.%s left out: its relations do not exist (Snowflake would keep it, invalid)", dst[1], view.name)
                return [f"{dst[1]}.{view.name}" for view, dst in failed]
            pending = failed
        return []

    def move_schema_contents(self, src: tuple[str, str], dst: tuple[str, str]) -> list[Relation]:
        """Move every table and view of src into the (existing, empty) schema dst."""
        self.check_movable(*src)
        rels = self.relations(*src)
        for rel in rels:
            if rel.kind == "VIEW":
                self.cur.execute(f"DROP VIEW {q(*src, rel.name)}")
        for rel in rels:
            if rel.kind == "TABLE":
                self.copy_relation(rel, src, (*dst, rel.name))
                self.cur.execute(f"DROP TABLE {q(*src, rel.name)}")
        return rels

    def drop_schema(self, db: str, schema: str) -> None:
        self.cur.execute(f"DROP SCHEMA {q(db, schema)} CASCADE")

    # -- fakesnow's own metadata (column lengths, table comments) in _fs_global ---------
    def ext_copy(self, pairs: list[tuple[tuple[str, str, str], tuple[str, str, str]]], move: bool) -> None:
        """Copy (or move) fakesnow's per-table metadata rows from each src to its dst.
        All rows are read before any is written, so pairs may exchange names (a swap)."""
        for table in _EXT_TABLES:
            cols = [c for (c,) in self.cur.execute(f"SELECT column_name FROM (DESCRIBE {table})").fetchall()]
            key = "ext_table_catalog = ? AND ext_table_schema = ? AND ext_table_name = ?"
            moved = [
                (dst, self.cur.execute(f"SELECT * FROM {table} WHERE {key}", list(src)).fetchall())
                for src, dst in pairs
            ]
            if move:
                for src, _ in pairs:
                    self.cur.execute(f"DELETE FROM {table} WHERE {key}", list(src))
            marks = ", ".join("?" for _ in cols)
            for dst, rows in moved:
                for row in rows:
                    self.cur.execute(f"INSERT OR REPLACE INTO {table} VALUES ({marks})", [*dst, *row[3:]])

    def ext_delete(self, prefix: tuple[str, ...]) -> None:
        cols = ("ext_table_catalog", "ext_table_schema", "ext_table_name")[: len(prefix)]
        where = " AND ".join(f"{c} = ?" for c in cols)
        for table in _EXT_TABLES:
            self.cur.execute(f"DELETE FROM {table} WHERE {where}", list(prefix))

    def ext_rename_database(self, mapping: dict[str, str]) -> None:
        for table in _EXT_TABLES:
            for old, new in mapping.items():
                self.cur.execute(
                    f"UPDATE {table} SET ext_table_catalog = ? WHERE ext_table_catalog = ?", [f"\0{new}", old]
                )
            for new in mapping.values():
                self.cur.execute(
                    f"UPDATE {table} SET ext_table_catalog = ? WHERE ext_table_catalog = ?", [new, f"\0{new}"]
                )

    # -- whole databases ---------------------------------------------------------------
    def detach(self, db: str) -> None:
        self.cur.execute(f"DETACH DATABASE {quote_ident(db)}")

    def attach(self, path: str, db: str) -> None:
        """Attach a database file just detached (a swap, a rename); see
        attach_retrying."""
        literal = "'" + path.replace("'", "''") + "'"
        attach_retrying(lambda: self.cur.execute(f"ATTACH DATABASE {literal} AS {quote_ident(db)}"), db)

    def refresh_fakesnow_objects(self, db: str) -> None:
        """fakesnow's per-database information_schema views and macros embed the
        database's name; rebuild them after a database changed its name."""
        views = self.cur.execute(
            "SELECT view_name FROM duckdb_views() WHERE database_name = ? AND schema_name = '_fs_information_schema'",
            [db],
        ).fetchall()
        for (view,) in views:
            self.cur.execute(f"DROP VIEW {q(db, '_fs_information_schema', view)}")
        self.cur.execute(info_schema.per_db_creation_sql(db))
        self.cur.execute(macros.creation_sql(db))


def remove_database_files(path: str) -> None:
    for p in (path, path + ".wal"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(p)


def swap_files(a: str, b: str) -> None:
    """Exchange two database files (and their write-ahead logs, if any) on disk."""
    tmp = a + ".swap"
    for suffix in ("", ".wal"):
        pa_, pb_ = Path(a + suffix), Path(b + suffix)
        if pa_.exists():
            pa_.rename(tmp + suffix)
        if pb_.exists():
            pb_.rename(pa_)
        if Path(tmp + suffix).exists():
            Path(tmp + suffix).rename(pb_)


def attach_retrying(attach, db: str) -> None:
    """Run attach(), which attaches the file of database db just detached (a
    swap, a rename, a CREATE OR REPLACE). DuckDB closes a detached file only
    once nothing refers to it any more: a result another session has not yet
    released keeps it open for a moment, and attaching it again fails with
    "Unique file handle conflict". Such results are released by the garbage
    collector; try again after it, for up to about two seconds."""
    for attempt in range(40):
        try:
            attach()
            return
        except Exception as e:  # duckdb.Error, or fakesnow's wrapping of it
            if "Unique file handle conflict" not in str(e) or attempt == 39:
                raise
            logging.getLogger(__name__).info("attach %s: the detached file is still open; retrying", db)
            gc.collect()
            time.sleep(0.05)
