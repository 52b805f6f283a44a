"""The ASGI app: fakesnow's server app behind a thin Snowflake-compatibility layer.

Requests flow as follows:

* login-request: test hooks (wrong password, missing role/warehouse) are
  checked, the body is normalised for fakesnow, then fakesnow logs in.
* query-request: a statement the emulator owns (statements.py) runs here;
  any other goes to fakesnow, with grant bookkeeping around it. Every answer
  leaves as Snowflake's JSON: Arrow results become JSON rowsets and errors
  carry a queryId, as the Rust client requires both.
* everything else (session delete, heartbeat, abort, ...) is fakesnow's.

Statements run one at a time (an asyncio lock): emulated statements take
several DuckDB steps, some outside any transaction (ATTACH/DETACH), and no
other session may observe them half done. Serial execution is a valid
schedule for Snowflake's semantics, and test workloads are small.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gzip
import json
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import fakesnow.server as fs_server
from fakesnow.instance import FakeSnow
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import Scope

from . import rewrite, rowset, statements, tracking
from .catalog import Catalog
from .context import Context, Hooks, Result, Session
from .errors import SnowflakeError
from .grants import GrantStore
from .sql import Parser

log = logging.getLogger("sfemu")
DEFAULT_ROLE = "SYSADMIN"  # the role fakesnow reports as every object's owner

# fakesnow logs an unexpected exception and answers HTTP 500 without its text;
# this captures the text so the client gets a readable Snowflake error instead.
_last_fakesnow_error: contextvars.ContextVar[str | None] = contextvars.ContextVar("last_error", default=None)


class _CaptureErrors(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            _last_fakesnow_error.set(f"{type(exc).__name__}: {exc}")


class Emulator:
    def __init__(self, data_dir: Path, hooks: Hooks):
        data_dir.mkdir(parents=True, exist_ok=True)
        # One shared fakesnow instance whose databases are files in data_dir: every
        # session sees the same data (airlock opens several), and a database can be
        # swapped or dropped by swapping or deleting its file.
        fs_server.shared_fs = FakeSnow(db_path=data_dir)
        self.hooks = hooks
        self.grants = GrantStore()
        self.sessions: dict[str, Session] = {}
        self.lock = asyncio.Lock()
        # test-only: every statement received, by the session's current database
        self.received: dict[str, list[str]] = {}

    # -- login ---------------------------------------------------------------------------
    async def login(self, request: Request) -> Response:
        body = json.loads(await _body(request))
        data = body.setdefault("data", {})
        params = request.query_params
        user = str(data.get("LOGIN_NAME", ""))
        role = _ident(params.get("roleName")) or DEFAULT_ROLE
        warehouse = _ident(params.get("warehouse"))

        if _ident(user) == self.hooks.reject_user:
            return _login_error("390100", "Incorrect username or password was specified.")
        if role in self.hooks.missing_roles:
            return _login_error(
                "390189",
                f"Role '{role}' specified in the connect string does not exist or not authorized. "
                "Contact your local system administrator, or attempt to login with another role, e.g. PUBLIC.",
            )

        # fakesnow indexes SESSION_PARAMETERS unconditionally; clients omit it when empty.
        session_params = data.setdefault("SESSION_PARAMETERS", {}) or {}
        data["SESSION_PARAMETERS"] = session_params
        # The emulator's DDL and grant layers keep one state per run, so every session
        # must share fakesnow's one database instance.
        session_params.pop("FAKESNOW_DB_PATH", None)

        query = dict(params)
        if not params.get("databaseName") and self.hooks.default_database:
            # like a Snowflake user whose DEFAULT_NAMESPACE names a database; fakesnow
            # needs a current database for timestamp functions.
            query["databaseName"] = self.hooks.default_database
        created = self._implicitly_created(query)
        response = await fs_server.login_request(_rebuilt(request, json.dumps(body).encode(), query))
        result = json.loads(bytes(response.body))
        token = (result.get("data") or {}).get("token")
        if token:
            for kind, name in created:
                self.grants.created(kind, name, role)
            # a missing warehouse does not fail the login; queries needing one fail later
            usable = None if warehouse in self.hooks.missing_warehouses else (warehouse or "EMULATOR_WH")
            self.sessions[token] = Session(user=user, role=role, warehouse=usable)
            info = result["data"].setdefault("sessionInfo", {})
            info.update({"roleName": role, "warehouseName": usable})
        return JSONResponse(result, status_code=response.status_code)

    def _implicitly_created(self, query: dict[str, str]) -> list[tuple[str, tuple[str, ...]]]:
        """The database and schema fakesnow will create because the login names them
        and they do not exist yet (a fakesnow convenience Snowflake lacks); the
        emulator records them as created by the login's role."""
        db = query.get("databaseName", "").upper() or None  # fakesnow upper-cases both
        schema = query.get("schemaName", "").upper() or None
        if db is None:
            return []
        cat = Catalog(fs_server.shared_fs.duck_conn.cursor())
        created: list[tuple[str, tuple[str, ...]]] = []
        if not cat.database_exists(db):
            created.append(("DATABASE", (db,)))
        if schema and not cat.schema_exists(db, schema):
            created.append(("SCHEMA", (db, schema)))
        cat.cur.close()
        return created

    # -- queries -------------------------------------------------------------------------
    async def query(self, request: Request) -> Response:
        token = (request.headers.get("Authorization") or "")[17:-1]
        conn = fs_server.sessions.get(token)
        session = self.sessions.get(token)
        if conn is None or session is None:
            return await fs_server.query_request(request)  # fakesnow answers "must login again"
        raw = await _body(request)
        body = json.loads(raw)
        sql = body.get("sqlText", "")
        self.received.setdefault(str(getattr(conn, "database", None) or "").upper(), []).append(sql)
        rewritten = rewrite.for_fakesnow(sql)
        if rewritten != sql:
            sql = body["sqlText"] = rewritten
            raw = json.dumps(body).encode()
        async with self.lock:
            ctx = Context(conn, session, self.grants, self.hooks)
            try:
                if session.warehouse is None and statements.needs_warehouse(sql):
                    raise SnowflakeError.no_active_warehouse()
                result = await run_in_threadpool(statements.emulate, ctx, sql)
                if result is not None:
                    return JSONResponse(_success(ctx, result))
                tracked = await run_in_threadpool(tracking.before, ctx, sql)
                _last_fakesnow_error.set(None)
                response = await fs_server.query_request(_rebuilt(request, raw))
                payload = json.loads(bytes(response.body))
                if payload.get("success") and tracked is not None:
                    tracking.after(ctx, tracked)
                return JSONResponse(_to_snowflake_json(payload, response.status_code, session))
            except SnowflakeError as e:
                return JSONResponse(_error(e))
            except Exception as e:  # an emulator bug or a DuckDB error inside an emulated statement
                log.exception("emulated statement failed: %s", sql)
                return JSONResponse(_error(SnowflakeError("000603", "XX000", f"SQL execution internal error: {e}")))
            finally:
                ctx.close()

    async def session(self, request: Request) -> Response:
        token = (request.headers.get("Authorization") or "")[17:-1]
        if request.query_params.get("delete"):
            self.sessions.pop(token, None)
        return await fs_server.session(request)

    async def statements_received(self, request: Request) -> Response:
        """Test-only: the statements sessions on a database sent (not a Snowflake
        endpoint). Lets a client's tests check which statement kinds reached a
        warehouse through its real client."""
        database = request.query_params.get("database", "").upper()
        return JSONResponse({"database": database, "statements": self.received.get(database, [])})

    async def health(self, _: Request) -> Response:
        """Test-only readiness probe used by start.sh (not a Snowflake endpoint)."""
        return JSONResponse({"ok": True, "emulator": "airlock-snowflake"})

    @contextlib.asynccontextmanager
    async def lifespan(self, _: Starlette) -> AsyncIterator[None]:
        # fakesnow's logger shares its handler list with uvicorn's, which uvicorn
        # resets while it configures logging, so capture at the root logger (the
        # records propagate there) once the server is up.
        capture = _CaptureErrors()
        logging.getLogger().addHandler(capture)
        yield
        logging.getLogger().removeHandler(capture)

    def app(self) -> Starlette:
        return Starlette(
            lifespan=self.lifespan,
            routes=[
                Route("/session/v1/login-request", self.login, methods=["POST"]),
                Route("/queries/v1/query-request", self.query, methods=["POST"]),
                Route("/session", self.session, methods=["POST"]),
                Route("/emulator/health", self.health, methods=["GET"]),
                Route("/emulator/statements", self.statements_received, methods=["GET"]),
                Mount("/", fs_server.app),
            ],
        )


# -- response shaping ------------------------------------------------------------------


def _success(ctx: Context, result: Result) -> dict[str, Any]:
    return {
        "data": {
            "parameters": [{"name": "TIMEZONE", "value": "Etc/UTC"}],
            "rowtype": result.rowtype,
            "rowset": result.rows,
            "total": len(result.rows),
            "returned": len(result.rows),
            "queryId": str(uuid.uuid4()),
            "statementTypeId": result.statement_type_id,
            "finalDatabaseName": ctx.conn.database,
            "finalSchemaName": ctx.conn.schema,
            "finalWarehouseName": ctx.session.warehouse,
            "finalRoleName": ctx.session.role,
            "queryResultFormat": "json",
        },
        "code": None,
        "message": None,
        "success": True,
    }


def _to_snowflake_json(payload: dict[str, Any], http_status: int, session: Session) -> dict[str, Any]:
    """fakesnow's answer, as Snowflake would have sent it in JSON."""
    if http_status >= 500:
        detail = _last_fakesnow_error.get() or payload.get("message") or "unknown error"
        return _error(SnowflakeError("000603", "XX000", f"SQL execution internal error: fakesnow failed: {detail}"))
    if not payload.get("success"):
        data = payload.get("data") or {}
        return _error(
            SnowflakeError(
                payload.get("code") or "000603", data.get("sqlState") or "XX000", payload.get("message") or ""
            )
        )
    data = payload["data"]
    if data.get("queryResultFormat") == "arrow":
        data["rowset"] = rowset.arrow_to_rowset(data.pop("rowsetBase64", ""), data.get("rowtype") or [])
        data["queryResultFormat"] = "json"
    data.setdefault("returned", len(data.get("rowset") or []))
    data["finalWarehouseName"] = session.warehouse
    data["finalRoleName"] = session.role
    return payload


def _error(e: SnowflakeError) -> dict[str, Any]:
    """Snowflake's error envelope. The Rust client requires data.queryId whenever data is present."""
    return {
        "data": {
            "internalError": False,
            "errorCode": e.code,
            "age": 0,
            "sqlState": e.sql_state,
            "queryId": str(uuid.uuid4()),
            "line": -1,
            "pos": -1,
            "type": "COMPILATION",
        },
        "code": e.code,
        "message": e.message,
        "success": False,
        "headers": None,
    }


def _login_error(code: str, message: str) -> Response:
    return JSONResponse(
        {
            "data": {"nextAction": "RETRY_LOGIN", "errorCode": code},
            "code": code,
            "message": message,
            "success": False,
            "headers": None,
        }
    )


# -- request plumbing ------------------------------------------------------------------


async def _body(request: Request) -> bytes:
    body = await request.body()
    if request.headers.get("Content-Encoding", "").lower() == "gzip":
        body = gzip.decompress(body)
    return body


def _rebuilt(request: Request, body: bytes, query: dict[str, str] | None = None) -> Request:
    """A copy of request with a plain (uncompressed) body and optionally new query params."""
    headers = [(k, v) for k, v in request.scope["headers"] if k.lower() not in (b"content-encoding", b"content-length")]
    headers.append((b"content-length", str(len(body)).encode()))
    scope: Scope = dict(request.scope, headers=headers)
    if query is not None:
        scope["query_string"] = urlencode(query).encode()
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(scope, receive)


def _ident(text: str | None) -> str | None:
    """A role/warehouse/user name from a login request, folded like an identifier."""
    if not text:
        return None
    try:
        p = Parser(text)
        name = p.ident()
        p.end()
        return name
    except SnowflakeError:
        return text
