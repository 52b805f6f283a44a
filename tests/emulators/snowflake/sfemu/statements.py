"""The statements the emulator runs itself instead of handing them to fakesnow.

``emulate`` recognises a statement by its leading keywords and either runs it
(returning a Result) or returns None, in which case fakesnow runs it and
``track`` keeps the grant state in step with what it did (CREATE, DROP,
RENAME). Each handler's docstring names the Snowflake behaviour it follows.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import duckdb
from fakesnow import statement_type
from fakesnow.fakes import FakeSnowflakeConnection

from . import rowset
from .catalog import Catalog, Relation, q, remove_database_files, swap_files, transaction
from .errors import SnowflakeError
from .grants import GrantStore, Name
from .sql import Parser, display_name

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
        try:
            self.conn._duck_conn.execute("COMMIT")  # noqa: SLF001
        except duckdb.TransactionException:
            pass  # no transaction was open
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


Handler = Callable[[Context, Parser], Result]


# --------------------------------------------------------------------------------------
# dispatch


def emulate(ctx: Context, sql: str) -> Result | None:
    """Run sql if it is a statement the emulator owns; None hands it to fakesnow."""
    try:
        p = Parser(sql)
    except SnowflakeError:
        return None  # let fakesnow report its own syntax error
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


# --------------------------------------------------------------------------------------
# ALTER ... SWAP WITH / RENAME TO


def alter_schema(ctx: Context, p: Parser) -> Result:
    p.expect("ALTER", "SCHEMA")
    if_exists = p.accept("IF", "EXISTS")
    first = p.name(2)
    if p.accept("SWAP", "WITH"):
        second = p.name(2)
        p.end()
        return swap_schemas(ctx, first, second, if_exists)
    if p.accept("RENAME", "TO"):
        second = p.name(2)
        p.end()
        return rename_schema(ctx, first, second, if_exists)
    raise PassThrough


def swap_schemas(ctx: Context, first: tuple[str, ...], second: tuple[str, ...], if_exists: bool) -> Result:
    """ALTER SCHEMA a SWAP WITH b: swaps all objects and metadata, including the
    privileges granted on the schemas and on the objects they contain, between the
    two schemas -- in effect a rename of both in a single operation."""
    a = ctx.schema_name(first, "ALTER SCHEMA")
    b = ctx.schema_name(second, "ALTER SCHEMA")
    ctx.commit_open_transaction()
    cur = ctx.cursor()
    cat = Catalog(cur)
    if not cat.schema_exists(*a):
        if if_exists:
            return status()
        raise SnowflakeError.does_not_exist("Schema", display_name(first))
    if not cat.schema_exists(*b):
        raise SnowflakeError.does_not_exist("Schema", display_name(second))
    if a[0] != b[0]:
        raise SnowflakeError.unsupported("ALTER SCHEMA ... SWAP WITH a schema in another database")
    if a == b:
        return status()
    db = a[0]
    tmp = (db, f"_EMULATOR_SWAP_{uuid.uuid4().hex}")
    with transaction(cur):
        cur.execute(f"CREATE SCHEMA {q(*tmp)}")
        rels_a = cat.move_schema_contents(a, tmp)
        rels_b = cat.move_schema_contents(b, a)
        cat.move_schema_contents(tmp, b)
        # views last: DuckDB binds a view's query when it is created
        cat.create_views(_views(rels_a), b)
        cat.create_views(_views(rels_b), a)
        cur.execute(f"DROP SCHEMA {q(*tmp)}")
    cat.ext_copy(_pairs(rels_a, a, b) + _pairs(rels_b, b, a), move=True)
    ctx.grants.swapped(a, b)
    return status()


def rename_schema(ctx: Context, first: tuple[str, ...], second: tuple[str, ...], if_exists: bool) -> Result:
    """ALTER SCHEMA a RENAME TO b: the schema keeps its objects and every privilege
    granted on it and on them. An unqualified new name stays in a's database."""
    a = ctx.schema_name(first, "ALTER SCHEMA")
    b = (a[0], second[0]) if len(second) == 1 else ctx.schema_name(second, "ALTER SCHEMA")
    ctx.commit_open_transaction()
    cur = ctx.cursor()
    cat = Catalog(cur)
    if not cat.schema_exists(*a):
        if if_exists:
            return status()
        raise SnowflakeError.does_not_exist("Schema", display_name(first))
    if b[0] != a[0]:
        raise SnowflakeError.unsupported("ALTER SCHEMA ... RENAME TO a schema in another database")
    if cat.schema_exists(*b):
        raise SnowflakeError.already_exists(display_name(second))
    with transaction(cur):
        cur.execute(f"CREATE SCHEMA {q(*b)}")
        rels = cat.move_schema_contents(a, b)
        cat.create_views(_views(rels), b)
        cat.drop_schema(*a)
    cat.ext_copy(_pairs(rels, a, b), move=True)
    ctx.grants.renamed(a, b)
    if (ctx.conn.database, ctx.conn.schema) == a:
        ctx.fakesnow(f"USE SCHEMA {q(*b)}")
    return status()


def alter_database(ctx: Context, p: Parser) -> Result:
    """ALTER DATABASE a SWAP WITH b: swaps all objects and metadata, including the
    privileges granted on the databases and everything in them, as if both were
    renamed in one operation."""
    p.expect("ALTER", "DATABASE")
    if_exists = p.accept("IF", "EXISTS")
    first = p.name(1)
    if not p.accept("SWAP", "WITH"):
        raise PassThrough
    second = p.name(1)
    p.end()
    a, b = ctx.database_name(first), ctx.database_name(second)
    ctx.commit_open_transaction()
    cur = ctx.cursor()
    cat = Catalog(cur)
    path_a, path_b = cat.database_path(a), cat.database_path(b)
    if path_a is None:
        if if_exists:
            return status()
        raise SnowflakeError.does_not_exist("Database", display_name(first))
    if path_b is None:
        raise SnowflakeError.does_not_exist("Database", display_name(second))
    if a == b:
        return status()
    if ":memory:" in (path_a, path_b):
        raise SnowflakeError.unsupported("ALTER DATABASE ... SWAP WITH for in-memory databases")
    # Each database is one DuckDB file: exchange the files and re-attach them, so
    # the swap costs the same whatever the databases hold.
    cat.detach(a)
    cat.detach(b)
    swap_files(path_a, path_b)
    cat.attach(path_a, a)
    cat.attach(path_b, b)
    cat.refresh_fakesnow_objects(a)
    cat.refresh_fakesnow_objects(b)
    cat.ext_rename_database({a: b, b: a})
    ctx.grants.swapped((a,), (b,))
    return status()


def alter_table(ctx: Context, p: Parser) -> Result:
    """ALTER TABLE a SWAP WITH b: swaps all content and metadata between the two
    tables, including all privilege grants; the tables are in effect renamed in a
    single transaction."""
    p.expect("ALTER", "TABLE")
    if_exists = p.accept("IF", "EXISTS")
    first = p.name()
    if not p.accept("SWAP", "WITH"):
        raise PassThrough
    second = p.name()
    p.end()
    a = ctx.object_name(first, "ALTER TABLE")
    b = ctx.object_name(second, "ALTER TABLE")
    ctx.commit_open_transaction()
    cur = ctx.cursor()
    cat = Catalog(cur)
    rel_a, rel_b = cat.relation(*a), cat.relation(*b)
    if rel_a is None or rel_a.kind != "TABLE":
        if if_exists:
            return status()
        raise SnowflakeError.does_not_exist("Table", display_name(first))
    if rel_b is None or rel_b.kind != "TABLE":
        raise SnowflakeError.does_not_exist("Table", display_name(second))
    if a[0] != b[0]:
        raise SnowflakeError.unsupported("ALTER TABLE ... SWAP WITH a table in another database")
    if a == b:
        return status()
    tmp = f"_EMULATOR_SWAP_{uuid.uuid4().hex}"
    with transaction(cur):
        if a[:2] == b[:2]:
            cur.execute(f"ALTER TABLE {q(*a)} RENAME TO {q(tmp)}")
            cur.execute(f"ALTER TABLE {q(*b)} RENAME TO {q(a[2])}")
            cur.execute(f"ALTER TABLE {q(*a[:2], tmp)} RENAME TO {q(b[2])}")
        else:  # different schemas: DuckDB cannot move a table, so copy both ways
            cat.copy_relation(rel_a, a[:2], (*b[:2], tmp))
            cur.execute(f"DROP TABLE {q(*a)}")
            cat.copy_relation(rel_b, b[:2], a)
            cur.execute(f"DROP TABLE {q(*b)}")
            cur.execute(f"ALTER TABLE {q(*b[:2], tmp)} RENAME TO {q(b[2])}")
    cat.ext_copy([(a, b), (b, a)], move=True)
    ctx.grants.swapped(a, b)
    return status()


# --------------------------------------------------------------------------------------
# CREATE ... CLONE


@dataclass
class CreateClone:
    or_replace: bool
    if_not_exists: bool
    target: tuple[str, ...]
    source: tuple[str, ...]
    copy_grants: bool


def _parse_create_clone(p: Parser, kind: str, allow_copy_grants: bool) -> CreateClone:
    p.expect("CREATE")
    or_replace = p.accept("OR", "REPLACE")
    p.accept("TRANSIENT")
    p.expect(kind)
    if_not_exists = p.accept("IF", "NOT", "EXISTS")
    target = p.name(1 if kind == "DATABASE" else 2 if kind == "SCHEMA" else 3)
    p.expect("CLONE")
    source = p.name(1 if kind == "DATABASE" else 2 if kind == "SCHEMA" else 3)
    if p.peek_words("AT") or p.peek_words("BEFORE"):
        raise SnowflakeError.unsupported("Time Travel (AT | BEFORE) in CLONE")
    copy_grants = allow_copy_grants and p.accept("COPY", "GRANTS")
    if not p.at_end():
        raise SnowflakeError.unsupported(f"CREATE {kind} ... CLONE with options: {p.rest_text()}")
    if or_replace and if_not_exists:
        raise SnowflakeError.syntax("OR REPLACE and IF NOT EXISTS are incompatible.")
    return CreateClone(or_replace, if_not_exists, target, source, copy_grants)


def create_schema_clone(ctx: Context, p: Parser) -> Result:
    """CREATE [OR REPLACE] SCHEMA x CLONE y: x gets copies of y's tables (with
    rows) and views (same definition text: unqualified names now resolve inside x,
    qualified ones still point where they did). Child objects keep all their
    grants; the clone does not inherit the grants on the source schema itself and
    is owned by the cloning role. Like CREATE SCHEMA, it becomes the current schema."""
    c = _parse_create_clone(p, "SCHEMA", allow_copy_grants=False)
    src = ctx.schema_name(c.source, "CREATE SCHEMA")
    dst = ctx.schema_name(c.target, "CREATE SCHEMA")
    ctx.commit_open_transaction()
    cur = ctx.cursor()
    cat = Catalog(cur)
    if not cat.schema_exists(*src):
        raise SnowflakeError.does_not_exist("Schema", display_name(c.source))
    if not cat.database_exists(dst[0]):
        raise SnowflakeError.does_not_exist("Database", display_name(dst[:1]))
    replaced = cat.schema_exists(*dst)
    if replaced and c.if_not_exists:
        return status(f"{display_name(dst[1:])} already exists, statement succeeded.")
    if replaced and not c.or_replace:
        raise SnowflakeError.already_exists(display_name(c.target))
    if replaced and src == dst:
        raise SnowflakeError.unsupported("CREATE OR REPLACE SCHEMA x CLONE x")
    with transaction(cur):
        if replaced:
            cat.drop_schema(*dst)
        rels = cat.copy_schema(src, dst)
    if replaced:
        cat.ext_delete(dst)
        ctx.grants.dropped(dst)
    cat.ext_copy(_pairs(rels, src, dst), move=False)
    ctx.grants.cloned_container("SCHEMA", src, dst, ctx.session.role)
    ctx.fakesnow(f"USE SCHEMA {q(*dst)}")
    return status(f"Schema {display_name(dst[1:])} successfully created.")


def create_database_clone(ctx: Context, p: Parser) -> Result:
    """CREATE [OR REPLACE] DATABASE x CLONE y: x gets copies of all of y's schemas,
    tables and views. Child objects keep all their grants; the clone does not
    inherit the grants on y itself and is owned by the cloning role. Like CREATE
    DATABASE, it becomes the current database (and PUBLIC, if cloned, the schema)."""
    c = _parse_create_clone(p, "DATABASE", allow_copy_grants=False)
    src, dst = ctx.database_name(c.source), ctx.database_name(c.target)
    ctx.commit_open_transaction()
    cur = ctx.cursor()
    cat = Catalog(cur)
    if not cat.database_exists(src):
        raise SnowflakeError.does_not_exist("Database", display_name(c.source))
    replaced = cat.database_exists(dst)
    if replaced and c.if_not_exists:
        return status(f"{display_name((dst,))} already exists, statement succeeded.")
    if replaced and not c.or_replace:
        raise SnowflakeError.already_exists(display_name(c.target))
    if replaced and src == dst:
        raise SnowflakeError.unsupported("CREATE OR REPLACE DATABASE x CLONE x")
    if replaced:
        _drop_database(ctx, cat, dst)
    ctx.fakesnow(f"CREATE DATABASE {q(dst)}")  # fakesnow attaches the file and adds its own objects
    pairs: list[tuple[tuple[str, str, str], tuple[str, str, str]]] = []
    with transaction(cur):
        for schema in cat.schemas(src):
            rels = cat.copy_schema((src, schema), (dst, schema))
            pairs += _pairs(rels, (src, schema), (dst, schema))
    cat.ext_copy(pairs, move=False)
    ctx.grants.cloned_container("DATABASE", (src,), (dst,), ctx.session.role)
    ctx.fakesnow(f"USE SCHEMA {q(dst, 'PUBLIC')}" if "PUBLIC" in cat.schemas(dst) else f"USE DATABASE {q(dst)}")
    return status(f"Database {display_name((dst,))} successfully created.")


def create_table_clone(ctx: Context, p: Parser) -> Result:
    """CREATE [OR REPLACE] TABLE x CLONE y [COPY GRANTS]: x gets y's columns and rows.
    An existing x is replaced only with OR REPLACE. Without COPY GRANTS the new table
    gets no grants from y but does get the schema's future grants; with COPY GRANTS
    it gets every privilege except OWNERSHIP from the table it replaces, or from y
    when it replaces none, and no future grants. The creating role owns it."""
    c = _parse_create_clone(p, "TABLE", allow_copy_grants=True)
    src = ctx.object_name(c.source, "CREATE TABLE")
    dst = ctx.object_name(c.target, "CREATE TABLE")
    ctx.commit_open_transaction()
    cur = ctx.cursor()
    cat = Catalog(cur)
    rel = cat.relation(*src)
    if rel is None or rel.kind != "TABLE":
        raise SnowflakeError.does_not_exist("Table", display_name(c.source))
    if not cat.schema_exists(*dst[:2]):
        raise SnowflakeError.does_not_exist("Schema", display_name(dst[:2]))
    existing = cat.relation(*dst)
    if existing is not None and (c.if_not_exists or not c.or_replace or existing.kind != "TABLE"):
        if c.if_not_exists:
            return status(f"{display_name(dst[2:])} already exists, statement succeeded.")
        raise SnowflakeError.already_exists(display_name(c.target))
    if existing is not None and src == dst:
        raise SnowflakeError.unsupported("CREATE OR REPLACE TABLE x CLONE x")
    copied = ctx.grants.on(dst if existing is not None else src) if c.copy_grants else None
    with transaction(cur):
        if existing is not None:
            cur.execute(f"DROP TABLE {q(*dst)}")
        cat.copy_relation(rel, src[:2], dst)
    if existing is not None:
        cat.ext_delete(dst)
        ctx.grants.dropped(dst)
    cat.ext_copy([(src, dst)], move=False)
    ctx.grants.created("TABLE", dst, ctx.session.role, copied)
    return status(f"Table {display_name(dst[2:])} successfully created.")


# --------------------------------------------------------------------------------------
# DROP DATABASE


def drop_database(ctx: Context, p: Parser) -> Result:
    """DROP DATABASE [IF EXISTS] x: drops the database, everything in it and every
    grant on them; a session using it is left without a current database."""
    p.expect("DROP", "DATABASE")
    if_exists = p.accept("IF", "EXISTS")
    parts = p.name(1)
    p.accept_any("CASCADE", "RESTRICT")
    p.end()
    db = ctx.database_name(parts)
    ctx.commit_open_transaction()
    cat = Catalog(ctx.cursor())
    if not cat.database_exists(db):
        if if_exists:
            return status(f"Drop statement executed successfully ({display_name(parts)} already dropped).")
        raise SnowflakeError.does_not_exist("Database", display_name(parts))
    _drop_database(ctx, cat, db)
    return status(f"{display_name(parts)} successfully dropped.")


def _drop_database(ctx: Context, cat: Catalog, db: str) -> None:
    if ctx.conn.database == db:
        ctx.conn._duck_conn.execute("USE memory.main")  # noqa: SLF001
        ctx.conn.database, ctx.conn._schema = None, None  # noqa: SLF001
        ctx.conn.database_set = ctx.conn.schema_set = False
    path = cat.database_path(db)
    cat.detach(db)
    if path and path != ":memory:":
        remove_database_files(path)
    cat.ext_delete((db,))
    ctx.grants.dropped((db,))


# --------------------------------------------------------------------------------------
# GRANT / REVOKE / SHOW GRANTS

_GRANT_KINDS = {"DATABASE": "Database", "SCHEMA": "Schema", "TABLE": "Table", "VIEW": "View"}
_PLURALS = {"TABLES": "TABLE", "VIEWS": "VIEW", "SCHEMAS": "SCHEMA"}


@dataclass
class GrantTarget:
    """What a GRANT/REVOKE names: one object, ALL <type>S IN a container, or FUTURE <type>S IN it."""

    scope: str  # "OBJECT" | "ALL" | "FUTURE"
    kind: str  # object kind, or for ALL/FUTURE the object type
    written: tuple[str, ...]  # the name as written (for messages)
    name: Name  # the resolved object or container


def _privileges(p: Parser) -> list[str]:
    words = p.words_until("ON")
    privileges = [" ".join(w.split()) for w in " ".join(words).split(",")]
    if not words or any(not priv for priv in privileges):
        raise p.error()
    if privileges[0] in ("ALL", "ALL PRIVILEGES"):
        raise SnowflakeError.unsupported("GRANT|REVOKE ALL PRIVILEGES")
    return privileges


def _grant_target(ctx: Context, p: Parser, operation: str) -> GrantTarget:
    p.expect("ON")
    scope = p.accept_any("ALL", "FUTURE") or "OBJECT"
    if scope == "OBJECT":
        kind = p.accept_any(*_GRANT_KINDS)
        if kind is None:
            raise SnowflakeError.unsupported(f"{operation} on {p.rest_text()}")
        written = p.name(1 if kind == "DATABASE" else 2 if kind == "SCHEMA" else 3)
    else:
        plural = p.accept_any(*_PLURALS)
        if plural is None:
            raise SnowflakeError.unsupported(f"{operation} on {scope} {p.rest_text()}")
        kind = _PLURALS[plural]
        p.expect("IN")
        container = p.accept_any("SCHEMA", "DATABASE")
        if container is None or (kind == "SCHEMA" and container != "DATABASE"):
            raise p.error()
        written = p.name(1 if container == "DATABASE" else 2)
        name = (ctx.database_name(written),) if container == "DATABASE" else ctx.schema_name(written, operation)
        cat = Catalog(ctx.cursor())
        exists = cat.database_exists(name[0]) if len(name) == 1 else cat.schema_exists(*name)
        if not exists:
            raise SnowflakeError.does_not_exist(container.title(), display_name(written))
        return GrantTarget(scope, kind, written, name)
    if kind == "DATABASE":
        name: Name = (ctx.database_name(written),)
    elif kind == "SCHEMA":
        name = ctx.schema_name(written, operation)
    else:
        name = ctx.object_name(written, operation)
    _check_exists(Catalog(ctx.cursor()), kind, name, written)
    return GrantTarget(scope, kind, written, name)


def _check_exists(cat: Catalog, kind: str, name: Name, written: tuple[str, ...]) -> None:
    if kind == "DATABASE":
        found = cat.database_exists(name[0])
    elif kind == "SCHEMA":
        found = cat.schema_exists(*name)
    else:
        rel = cat.relation(*name)
        found = rel is not None and rel.kind == kind
    if not found:
        raise SnowflakeError.does_not_exist(_GRANT_KINDS[kind], display_name(written))


def _role(ctx: Context, p: Parser, keyword: str) -> str:
    p.expect(keyword)
    if p.peek_words("DATABASE", "ROLE") or p.peek_words("USER") or p.peek_words("SHARE"):
        raise SnowflakeError.unsupported(f"GRANT|REVOKE {keyword} {p.rest_text()}")
    p.accept("ROLE")
    role = p.ident()
    if role in ctx.hooks.missing_roles:
        raise SnowflakeError.role_does_not_exist(display_name((role,)))
    return role


def _expand_all(ctx: Context, target: GrantTarget) -> list[Name]:
    """ON ALL <type>S IN <container>: the objects of that type existing right now."""
    cat = Catalog(ctx.cursor())
    if target.kind == "SCHEMA":
        return [(target.name[0], s) for s in cat.schemas(target.name[0])]
    schemas = [target.name] if len(target.name) == 2 else [(target.name[0], s) for s in cat.schemas(target.name[0])]
    return [(*s, r.name) for s in schemas for r in cat.relations(*s) if r.kind == target.kind]  # type: ignore[misc]


def grant(ctx: Context, p: Parser) -> Result:
    """GRANT <privileges> ON <object> | ALL <type>S IN ... | FUTURE <type>S IN ...
    TO ROLE r [WITH GRANT OPTION]; GRANT OWNERSHIP ON <object> TO ROLE r
    [COPY | REVOKE CURRENT GRANTS]."""
    p.expect("GRANT")
    if p.peek_words("ROLE") or p.peek_words("DATABASE", "ROLE"):
        raise SnowflakeError.unsupported("GRANT ROLE (role hierarchy)")
    privileges = _privileges(p)
    target = _grant_target(ctx, p, "GRANT")
    role = _role(ctx, p, "TO")
    if privileges == ["OWNERSHIP"]:
        return _grant_ownership(ctx, p, target, role)
    with_grant_option = p.accept("WITH", "GRANT", "OPTION")
    p.end()
    if "OWNERSHIP" in privileges:
        raise p.error()
    if target.scope == "FUTURE":
        ctx.grants.grant_future(target.kind, target.name, privileges, role, with_grant_option)
    else:
        names = [target.name] if target.scope == "OBJECT" else _expand_all(ctx, target)
        for name in names:
            ctx.grants.grant(target.kind, name, privileges, role, with_grant_option, ctx.session.role)
    return status()


def _grant_ownership(ctx: Context, p: Parser, target: GrantTarget, role: str) -> Result:
    """Ownership moves to the new role. Snowflake requires COPY or REVOKE CURRENT
    GRANTS when other roles hold privileges on the object; REVOKE drops them."""
    option = p.accept_any("COPY", "REVOKE")
    if option:
        p.expect("CURRENT", "GRANTS")
    p.end()
    if target.scope != "OBJECT":
        raise SnowflakeError.unsupported(f"GRANT OWNERSHIP ON {target.scope}")
    others = [g for g in ctx.grants.on(target.name) if g.privilege != "OWNERSHIP"]
    if others and option is None:
        raise SnowflakeError.unsupported("GRANT OWNERSHIP without COPY|REVOKE CURRENT GRANTS on an object with grants")
    if option == "REVOKE":
        for g in others:
            ctx.grants.revoke(g.kind, g.name, [g.privilege], g.grantee, grant_option_only=False)
    ctx.grants.set_owner(target.kind, target.name, role, ctx.session.role)
    return status()


def revoke(ctx: Context, p: Parser) -> Result:
    """REVOKE [GRANT OPTION FOR] <privileges> ON ... FROM ROLE r [CASCADE|RESTRICT];
    revoking a privilege that is not held succeeds without effect."""
    p.expect("REVOKE")
    if p.peek_words("ROLE") or p.peek_words("DATABASE", "ROLE"):
        raise SnowflakeError.unsupported("REVOKE ROLE (role hierarchy)")
    option_only = p.accept("GRANT", "OPTION", "FOR")
    privileges = _privileges(p)
    target = _grant_target(ctx, p, "REVOKE")
    role = _role(ctx, p, "FROM")
    p.accept_any("CASCADE", "RESTRICT")
    p.end()
    if "OWNERSHIP" in privileges:
        raise SnowflakeError.unsupported("REVOKE OWNERSHIP")
    if target.scope == "FUTURE":
        ctx.grants.revoke_future(target.kind, target.name, privileges, role)
    else:
        names = [target.name] if target.scope == "OBJECT" else _expand_all(ctx, target)
        for name in names:
            ctx.grants.revoke(target.kind, name, privileges, role, option_only)
    return status()


SHOW_GRANTS_COLUMNS = [
    column("created_on", "timestamp_ltz", 3),
    *(column(c) for c in ("privilege", "granted_on", "name", "granted_to", "grantee_name", "grant_option", "granted_by")),
]
SHOW_FUTURE_GRANTS_COLUMNS = [
    column("created_on", "timestamp_ltz", 3),
    *(column(c) for c in ("privilege", "grant_on", "name", "grant_to", "grantee_name", "grant_option")),
]


def _ltz(epoch_seconds: float) -> str:
    """A TIMESTAMP_LTZ(3) cell: the instant as epoch seconds with milliseconds."""
    return rowset.seconds_text(round(epoch_seconds * 1000) * 1_000_000, 3)


def show_grants(ctx: Context, p: Parser) -> Result:
    """SHOW GRANTS ON <DATABASE|SCHEMA|TABLE|VIEW> x, SHOW GRANTS TO ROLE r and
    SHOW FUTURE GRANTS IN <SCHEMA|DATABASE> x, with Snowflake's columns."""
    p.expect("SHOW")
    if p.accept("FUTURE", "GRANTS", "IN"):
        container = p.accept_any("SCHEMA", "DATABASE")
        if container is None:
            raise p.error()
        written = p.name(1 if container == "DATABASE" else 2)
        p.end()
        name = (ctx.database_name(written),) if container == "DATABASE" else ctx.schema_name(written, "SHOW")
        _check_exists(Catalog(ctx.cursor()), container, name, written)
        rows = [
            [_ltz(f.created_on), f.privilege, f.object_type, f"{display_name(name)}.<{f.object_type}>", "ROLE",
             f.grantee, str(f.grant_option).lower()]
            for f in ctx.grants.future_in(name)
        ]
        return Result(SHOW_FUTURE_GRANTS_COLUMNS, rows, statement_type.SHOW)
    p.expect("GRANTS")
    if p.accept("ON"):
        kind = p.accept_any(*_GRANT_KINDS)
        if kind is None:
            raise SnowflakeError.unsupported(f"SHOW GRANTS ON {p.rest_text()}")
        written = p.name(1 if kind == "DATABASE" else 2 if kind == "SCHEMA" else 3)
        p.end()
        if kind == "DATABASE":
            name: Name = (ctx.database_name(written),)
        elif kind == "SCHEMA":
            name = ctx.schema_name(written, "SHOW")
        else:
            name = ctx.object_name(written, "SHOW")
        _check_exists(Catalog(ctx.cursor()), kind, name, written)
        grants = ctx.grants.on(name)
    elif p.accept("TO"):
        p.accept("ROLE")
        role = p.ident()
        p.end()
        if role in ctx.hooks.missing_roles:
            raise SnowflakeError.role_does_not_exist(display_name((role,)))
        grants = ctx.grants.to_role(role)
    else:
        raise SnowflakeError.unsupported(f"SHOW GRANTS {p.rest_text()}")
    rows = [
        [_ltz(g.created_on), g.privilege, g.kind, display_name(g.name), "ROLE", g.grantee,
         str(g.grant_option).lower(), g.granted_by]
        for g in grants
    ]
    return Result(SHOW_GRANTS_COLUMNS, rows, statement_type.SHOW)


# --------------------------------------------------------------------------------------
# USE ROLE / USE WAREHOUSE (fakesnow accepts any name; the emulator tracks them)


def use(ctx: Context, p: Parser) -> Result | None:
    p.expect("USE")
    what = p.accept_any("ROLE", "WAREHOUSE")
    if what is None:
        return None
    name = p.ident()
    p.end()
    if what == "ROLE":
        if name in ctx.hooks.missing_roles:
            raise SnowflakeError.role_does_not_exist(display_name((name,)))
        ctx.session.role = name
    else:
        if name in ctx.hooks.missing_warehouses:
            raise SnowflakeError.object_missing_or_forbidden()
        ctx.session.warehouse = name
    return Result([column("status")], [[OK]], statement_type.USE)


class PassThrough(Exception):
    """Raised by a handler whose leading keywords matched but whose statement is not
    one the emulator owns (e.g. ALTER TABLE ... ADD COLUMN): fakesnow runs it."""


_HANDLERS: list[tuple[tuple[str, ...], Callable[[Context, Parser], Result | None]]] = [
    (("ALTER", "SCHEMA"), alter_schema),
    (("ALTER", "DATABASE"), alter_database),
    (("ALTER", "TABLE"), alter_table),
    (("CREATE", "SCHEMA"), create_schema_clone),
    (("CREATE", "DATABASE"), create_database_clone),
    (("CREATE", "TABLE"), create_table_clone),
    (("DROP", "DATABASE"), drop_database),
    (("GRANT",), grant),
    (("REVOKE",), revoke),
    (("SHOW", "GRANTS"), show_grants),
    (("SHOW", "FUTURE", "GRANTS"), show_grants),
    (("USE",), use),
]


# --------------------------------------------------------------------------------------
# bookkeeping for the statements fakesnow runs


@dataclass
class Tracked:
    action: str  # "CREATE" | "DROP" | "RENAME"
    kind: str
    name: Name
    new_name: Name | None = None
    or_replace: bool = False
    if_not_exists: bool = False
    copy_grants: bool = False
    existed: bool = False
    copied: list[Any] | None = None


_CREATE_MODIFIERS = ("LOCAL", "GLOBAL", "TEMP", "TEMPORARY", "VOLATILE", "TRANSIENT", "SECURE", "RECURSIVE")


def before(ctx: Context, sql: str) -> Tracked | None:
    """Read a CREATE/DROP/RENAME that fakesnow is about to run, noting what the grant
    state needs afterwards (whether the object existed, its grants for COPY GRANTS)."""
    try:
        p = Parser(sql)
        if p.accept("CREATE"):
            t = _tracked_create(ctx, p)
        elif p.accept("DROP"):
            kind = p.accept_any("TABLE", "VIEW", "SCHEMA")
            if kind is None:
                return None
            p.accept("IF", "EXISTS")
            t = Tracked("DROP", kind, _resolve(ctx, kind, p.name()))
        elif p.accept("ALTER"):
            kind = p.accept_any("TABLE", "VIEW")
            if kind is None:
                return None
            p.accept("IF", "EXISTS")
            name = _resolve(ctx, kind, p.name())
            if not p.accept("RENAME", "TO"):
                return None
            new = p.name()
            new_name = name[:2] + new if len(new) == 1 else _resolve(ctx, kind, new)
            t = Tracked("RENAME", kind, name, new_name)
        else:
            return None
    except SnowflakeError:
        return None  # fakesnow will report the problem
    if t is not None and t.action == "CREATE":
        t.existed = _exists(Catalog(ctx.cursor()), t.kind, t.name)
        if t.existed and t.or_replace and t.copy_grants:
            t.copied = ctx.grants.on(t.name)
    return t


def _tracked_create(ctx: Context, p: Parser) -> Tracked | None:
    or_replace = p.accept("OR", "REPLACE")
    while p.accept_any(*_CREATE_MODIFIERS):
        pass
    kind = p.accept_any("TABLE", "VIEW", "SCHEMA", "DATABASE")
    if kind is None:
        return None
    if_not_exists = p.accept("IF", "NOT", "EXISTS")
    name = _resolve(ctx, kind, p.name())
    copy_grants = any(
        a.is_word("COPY") and b.is_word("GRANTS") for a, b in zip(p.tokens[p.pos :], p.tokens[p.pos + 1 :])
    )
    return Tracked("CREATE", kind, name, None, or_replace, if_not_exists, copy_grants)


def _resolve(ctx: Context, kind: str, parts: tuple[str, ...]) -> Name:
    if kind == "DATABASE":
        return (ctx.database_name(parts),)
    if kind == "SCHEMA":
        return ctx.schema_name(parts, kind)
    return ctx.object_name(parts, kind)


def _exists(cat: Catalog, kind: str, name: Name) -> bool:
    if kind == "DATABASE":
        return cat.database_exists(name[0])
    if kind == "SCHEMA":
        return cat.schema_exists(*name)
    return cat.relation(*name) is not None


def after(ctx: Context, t: Tracked) -> None:
    """Update the grant state once fakesnow has run the statement successfully."""
    if t.action == "DROP":
        ctx.grants.dropped(t.name)
    elif t.action == "RENAME":
        assert t.new_name is not None
        ctx.grants.renamed(t.name, t.new_name)
    elif not t.existed:
        ctx.grants.created(t.kind, t.name, ctx.session.role)
    elif t.or_replace:
        ctx.grants.dropped(t.name)
        ctx.grants.created(t.kind, t.name, ctx.session.role, t.copied)


# --------------------------------------------------------------------------------------


def _views(rels: list[Relation]) -> list[Relation]:
    return [r for r in rels if r.kind == "VIEW"]


def _pairs(
    rels: list[Relation], src: tuple[str, str], dst: tuple[str, str]
) -> list[tuple[tuple[str, str, str], tuple[str, str, str]]]:
    return [((*src, r.name), (*dst, r.name)) for r in rels if r.kind == "TABLE"]

