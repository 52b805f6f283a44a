"""Grant bookkeeping around the DDL that fakesnow runs itself (CREATE, DROP, RENAME)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .catalog import Catalog
from .context import Context
from .errors import SnowflakeError
from .grants import Name
from .sql import Parser

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
        a.is_word("COPY") and b.is_word("GRANTS")
        for a, b in zip(p.tokens[p.pos :], p.tokens[p.pos + 1 :], strict=False)
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
