"""Emulated DDL that fakesnow lacks: SWAP WITH, schema and database RENAME, CLONE, DROP DATABASE.

Each handler's docstring states the Snowflake behaviour it implements.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

from .catalog import Catalog, Relation, attach_retrying, q, remove_database_files, swap_files, transaction
from .context import Context, PassThrough, Result, status
from .errors import SnowflakeError
from .sql import Parser, display_name

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
    cat.create_pending_views()
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
    cat.create_pending_views()
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
    if p.accept("RENAME", "TO"):
        second = p.name(1)
        p.end()
        return rename_database(ctx, first, second, if_exists)
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


def rename_database(ctx: Context, first: tuple[str, ...], second: tuple[str, ...], if_exists: bool) -> Result:
    """ALTER DATABASE a RENAME TO b: the database keeps its schemas, objects and
    every privilege granted on it and on them; renaming to a name that exists
    fails with "Object 'B' already exists."."""
    a, b = ctx.database_name(first), ctx.database_name(second)
    ctx.commit_open_transaction()
    cat = Catalog(ctx.cursor())
    path = cat.database_path(a)
    if path is None:
        if if_exists:
            return status()
        raise SnowflakeError.does_not_exist("Database", display_name(first))
    if cat.database_exists(b):
        raise SnowflakeError.already_exists(display_name(second))
    if path == ":memory:":
        raise SnowflakeError.unsupported("ALTER DATABASE ... RENAME TO for in-memory databases")
    # one DuckDB file per database, named after it: move the file and re-attach
    new_path = str(Path(path).with_name(f"{b}.db"))
    cat.detach(a)
    for suffix in ("", ".wal"):
        if Path(path + suffix).exists():
            Path(path + suffix).rename(new_path + suffix)
    cat.attach(new_path, b)
    cat.refresh_fakesnow_objects(b)
    cat.ext_rename_database({a: b})
    ctx.grants.renamed((a,), (b,))
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
    cat.create_pending_views()
    if replaced:
        cat.ext_delete(dst)
        ctx.grants.dropped(dst)
    cat.ext_copy(_pairs(rels, src, dst), move=False)
    ctx.grants.cloned_container("SCHEMA", src, dst, ctx.session.role)
    ctx.fakesnow(f"USE SCHEMA {q(*dst)}")
    return status(f"Schema {display_name(dst[1:])} successfully created.")


def create_or_replace_schema(ctx: Context, p: Parser) -> Result:
    """CREATE OR REPLACE SCHEMA x: an existing x is dropped with everything in it
    (and the grants on it and its objects), then x is created empty, as CREATE
    SCHEMA does. DuckDB refuses to replace a schema that holds objects, so the
    drop is done here and fakesnow creates the new schema."""
    p.expect("CREATE", "OR", "REPLACE", "SCHEMA")
    target = p.name(2)
    dst = ctx.schema_name(target, "CREATE SCHEMA")
    cur = ctx.cursor()
    cat = Catalog(cur)
    if cat.schema_exists(*dst):
        ctx.commit_open_transaction()
        with transaction(cur):
            cat.drop_schema(*dst)
        cat.ext_delete(dst)
        ctx.grants.dropped(dst)
    raise PassThrough


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
    # fakesnow attaches the file and adds its own objects; the file of the
    # database just replaced may still be open for a moment
    attach_retrying(lambda: ctx.fakesnow(f"CREATE DATABASE {q(dst)}"), dst)
    pairs: list[tuple[tuple[str, str, str], tuple[str, str, str]]] = []
    with transaction(cur):
        for schema in cat.schemas(src):
            rels = cat.copy_schema((src, schema), (dst, schema))
            pairs += _pairs(rels, (src, schema), (dst, schema))
    cat.create_pending_views()
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


def _views(rels: list[Relation]) -> list[Relation]:
    return [r for r in rels if r.kind == "VIEW"]


def _pairs(
    rels: list[Relation], src: tuple[str, str], dst: tuple[str, str]
) -> list[tuple[tuple[str, str, str], tuple[str, str, str]]]:
    return [((*src, r.name), (*dst, r.name)) for r in rels if r.kind == "TABLE"]
