"""Emulated access control: GRANT, REVOKE, SHOW [FUTURE] GRANTS, USE ROLE|WAREHOUSE.

fakesnow has no privileges at all; the state lives in grants.GrantStore.
"""

from __future__ import annotations

from dataclasses import dataclass

from fakesnow import statement_type

from . import rowset
from .catalog import Catalog
from .context import OK, Context, Result, column, status
from .errors import SnowflakeError
from .grants import Name
from .sql import Parser, display_name

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
    *(
        column(c)
        for c in ("privilege", "granted_on", "name", "granted_to", "grantee_name", "grant_option", "granted_by")
    ),
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
            [
                _ltz(f.created_on),
                f.privilege,
                f.object_type,
                f"{display_name(name)}.<{f.object_type}>",
                "ROLE",
                f.grantee,
                str(f.grant_option).lower(),
            ]
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
        [
            _ltz(g.created_on),
            g.privilege,
            g.kind,
            display_name(g.name),
            "ROLE",
            g.grantee,
            str(g.grant_option).lower(),
            g.granted_by,
        ]
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
