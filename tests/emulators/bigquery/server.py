"""Launch bqemulator behind a thin translation layer that makes it answer like BigQuery.

bqemulator 1.4.0 (PyPI) speaks BigQuery's REST v2 API over DuckDB. This
file runs it in-process and wraps its ASGI app so that the few answers
airlock depends on match what real BigQuery documents. Each rule below
is pinned by a test in test_emulator.py; README.md lists them.

    python server.py --project airlock-emulator --ready-file FILE [--port N]

Binds 127.0.0.1 only. With --port 0 (the default) the OS picks a free port;
once the server answers, "PORT PID" is written to --ready-file, so start.sh
never races another process for a port and knows the server's own pid.

Test hooks (not BigQuery behaviour, just a way to provoke it):
  * any dataset whose name starts with DENIED_PREFIX behaves as one the
    caller has no IAM role on: every request that names it gets 403
    accessDenied;
  * the emulator owns exactly one project (--project); any other project
    in a request path is answered 404 notFound, as BigQuery answers a
    project that does not exist.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import hashlib
import json
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

import bqemulator

PINNED_VERSION = "1.4.0"
DENIED_PREFIX = "airlock_denied_"

# Every patch below reaches into bqemulator's internals; fail loudly rather
# than half-work if someone bumps the pin without re-checking them.
if bqemulator.__version__ != PINNED_VERSION:
    sys.exit(f"server.py is written against bqemulator {PINNED_VERSION}, found {bqemulator.__version__}")

# BigQuery maps an ErrorProto reason to an HTTP status
# (https://cloud.google.com/bigquery/docs/error-messages); the status
# strings are Google's canonical codes for those HTTP statuses.
REASON_TO_HTTP = {
    "accessDenied": 403, "billingNotEnabled": 403, "blocked": 403, "quotaExceeded": 403,
    "rateLimitExceeded": 403, "responseTooLarge": 403, "duplicate": 409, "notFound": 404,
    "internalError": 500, "backendError": 503, "notImplemented": 501,
}
HTTP_TO_STATUS = {
    400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 409: "ALREADY_EXISTS",
    500: "INTERNAL", 501: "NOT_IMPLEMENTED", 503: "UNAVAILABLE",
}

API = "/bigquery/v2"
PROJECT_PATH = re.compile(r"^(?:/upload)?/bigquery/v2/projects/([^/]+)(/.*)?$")
TABLE_PATH = re.compile(r"^/datasets/([^/]+)/tables/([^/]+)$")
TABLES_PATH = re.compile(r"^/datasets/[^/]+/tables$")
JOB_PATH = re.compile(r"^/(jobs|queries)/([^/]+)$")
# One name part: a backticked run (may hold dots, `p.d.t`) or a bare identifier.
_NAME = r"(?:`[^`]+`|[A-Za-z0-9_\-]+)(?:\s*\.\s*(?:`[^`]+`|[A-Za-z0-9_\-]+))*"
REPLACE_CLONE = re.compile(
    rf"^\s*CREATE\s+OR\s+REPLACE\s+TABLE\s+(?P<dest>{_NAME})\s+CLONE\s+(?P<src>{_NAME})\s*;?\s*$",
    re.IGNORECASE,
)
DENIED_NAME = re.compile(rf"\b{DENIED_PREFIX}\w*", re.IGNORECASE)


# --------------------------------------------------------------------------- responses


@dataclass
class Reply:
    status: int
    body: Any  # decoded JSON, or raw bytes for a body this layer does not read
    headers: list[tuple[bytes, bytes]] | None = None

    def json(self) -> dict[str, Any]:
        return self.body if isinstance(self.body, dict) else {}


def error_reply(code: int, reason: str, message: str, **extra: str) -> Reply:
    """BigQuery's HTTP error body. Every ErrorProto value is a string:
    gcp-bigquery-client decodes `errors` as Vec<HashMap<String, String>>."""
    proto = {"message": message, "domain": "global", "reason": reason, **extra}
    return Reply(code, {"error": {"code": code, "message": message, "errors": [proto],
                                  "status": HTTP_TO_STATUS.get(code, "UNKNOWN")}})


def error_reply_from_proto(proto: dict[str, Any]) -> Reply:
    """The HTTP error BigQuery sends for a failed job whose errorResult is `proto`."""
    code = REASON_TO_HTTP.get(proto.get("reason", ""), 400)
    extra = {k: str(v) for k, v in proto.items() if k not in ("message", "reason", "domain")}
    return error_reply(code, proto.get("reason", "invalid"), proto.get("message", ""), **extra)


def split_table_name(raw: str, project: str) -> tuple[str, str, str] | None:
    parts = [p.strip() for p in raw.replace("`", "").split(".")]
    if len(parts) == 2:
        return project, parts[0], parts[1]
    return tuple(parts) if len(parts) == 3 else None  # type: ignore[return-value]


def table_path(project: str, dataset: str, table: str) -> str:
    return f"{API}/projects/{quote(project)}/datasets/{quote(dataset)}/tables/{quote(table)}"


# --------------------------------------------------------------------------- the layer

ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


class BigQueryFidelity:
    """ASGI middleware in front of bqemulator's FastAPI app.

    Requests it has no rule for stream straight through. For the others it
    buffers the JSON body, may ask the wrapped app questions of its own
    through in-process sub-requests (REST calls only: they leave no job
    behind), and rewrites the answer.
    """

    def __init__(self, app: ASGIApp, project: str) -> None:
        self.app = app
        self.project = project
        # Jobs this layer failed itself (the 403 hook on jobs.insert); bqemulator
        # never saw them, so jobs.get / getQueryResults are answered from here.
        self.denied_jobs: dict[str, dict[str, Any]] = {}

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        match = PROJECT_PATH.match(scope.get("path", "")) if scope["type"] == "http" else None
        if match is None:
            return await self.app(scope, receive, send)
        project, rest = unquote(match.group(1)), match.group(2) or ""
        reply = await self.route(scope, receive, project, rest)
        if reply is None:
            return await self.app(scope, receive, send)
        await self.respond(send, reply)

    async def route(self, scope: dict, receive: Callable, project: str, rest: str) -> Reply | None:
        method, upload = scope["method"], scope["path"].startswith("/upload")
        if project != self.project:
            return error_reply(404, "notFound", f"Not found: Project {project}")
        if (denied := self.denied_path(method, project, rest)) is not None:
            return denied
        if upload:
            return None
        if method == "POST" and rest in ("/queries", "/jobs", "/datasets"):
            raw = await read_body(scope, receive)
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                return await self.call_app(dict(scope), raw)  # let bqemulator word the 400
            if rest == "/datasets":
                return self.denied_new_dataset(project, body) or await self.forward(scope, body)
            return await self.run_query(scope, project, rest, body)
        if method != "GET":
            return None
        if rest == "/datasets":
            return self.complete_dataset_list(await self.forward(scope))
        if (m := TABLE_PATH.match(rest)) is not None:
            return await self.fresh_table(scope, project, unquote(m.group(1)), unquote(m.group(2)))
        if TABLES_PATH.match(rest):
            return self.tables_as_bigquery_types(await self.forward(scope))
        if (m := JOB_PATH.match(rest)) is not None:
            return await self.job_lookup(scope, project, m.group(1), unquote(m.group(2)))
        return None

    # -- 403 hook ---------------------------------------------------------------

    def denied_path(self, method: str, project: str, rest: str) -> Reply | None:
        parts = rest.split("/")  # ["", "datasets", DATASET, "tables", TABLE, "data"]
        if len(parts) < 3 or parts[1] != "datasets" or not unquote(parts[2]).lower().startswith(DENIED_PREFIX):
            return None
        under = parts[3:]
        if under[:1] == ["tables"] and len(under) == 3:  # .../tables/T/data or /insertAll
            permission = "bigquery.tables.getData" if method == "GET" else "bigquery.tables.updateData"
        elif under[:1] == ["tables"]:
            permission = {"GET": "bigquery.tables.get" if len(under) == 2 else "bigquery.tables.list",
                          "POST": "bigquery.tables.create", "DELETE": "bigquery.tables.delete",
                          }.get(method, "bigquery.tables.update")
        else:
            permission = {"GET": "bigquery.datasets.get", "DELETE": "bigquery.datasets.delete",
                          }.get(method, "bigquery.datasets.update")
        return access_denied(project, unquote(parts[2]), permission)

    def denied_new_dataset(self, project: str, body: dict[str, Any]) -> Reply | None:
        dataset = body.get("datasetReference", {}).get("datasetId", "")
        if dataset.lower().startswith(DENIED_PREFIX):
            return error_reply(403, "accessDenied",
                               f"Access Denied: Project {project}: User does not have "
                               f"bigquery.datasets.create permission in project {project}.")
        return None

    def denied_job(self, project: str, body: dict[str, Any], sql: str) -> Reply | None:
        """A query or job naming a denied dataset anywhere (SQL, destination, sources)."""
        m = DENIED_NAME.search(json.dumps(body))
        if m is None:
            return None
        config = body.get("configuration", {})
        if not sql:  # copy, load, extract jobs
            permission = "bigquery.tables.export" if "extract" in config else "bigquery.tables.create"
        else:
            verb = sql.split(None, 1)[0].upper()
            permission = {
                "CREATE": "bigquery.tables.create", "DROP": "bigquery.tables.delete",
                "ALTER": "bigquery.tables.update", "INSERT": "bigquery.tables.updateData",
                "UPDATE": "bigquery.tables.updateData", "DELETE": "bigquery.tables.updateData",
                "MERGE": "bigquery.tables.updateData", "TRUNCATE": "bigquery.tables.updateData",
            }.get(verb, "bigquery.tables.getData")
        return access_denied(project, m.group(0), permission)

    # -- queries and jobs -----------------------------------------------------

    async def run_query(self, scope: dict, project: str, rest: str, body: dict[str, Any]) -> Reply:
        is_insert = rest == "/jobs"
        sql = (body.get("configuration", {}).get("query", {}).get("query") if is_insert
               else body.get("query")) or ""
        if (denied := self.denied_job(project, body, sql)) is not None:
            return self.fail_inserted_job(project, body, denied) if is_insert else denied
        dry_run = body.get("dryRun") or body.get("configuration", {}).get("dryRun")
        replaced = False if dry_run else await self.drop_clone_target(scope, project, sql)

        reply = await self.forward(scope, body)
        answer = reply.json()
        stats = answer.get("statistics", {}).get("query", {}) if is_insert else answer
        if replaced and stats.get("ddlOperationPerformed") == "CREATE":
            stats["ddlOperationPerformed"] = "REPLACE"  # what BigQuery reports when the table existed
        if not is_insert and reply.status == 200 and answer.get("errors"):
            # bqemulator answers a failed jobs.query 200 + `errors`; BigQuery answers
            # it like getQueryResults: the HTTP error of the job's errorResult.
            return error_reply_from_proto(answer["errors"][0])
        return reply

    async def drop_clone_target(self, scope: dict, project: str, sql: str) -> bool:
        """Make room for `CREATE OR REPLACE TABLE x CLONE y` when x exists.

        bqemulator parses OR REPLACE but still refuses an existing x. BigQuery
        replaces x, so drop it first; only when y exists, so that a failing
        statement leaves x untouched as it would on BigQuery. Views and
        snapshots are left alone: BigQuery does not replace those with a table.
        """
        m = REPLACE_CLONE.match(sql or "")
        if m is None:
            return False
        dest, src = split_table_name(m["dest"], project), split_table_name(m["src"], project)
        if dest is None or src is None:
            return False
        dest_type = (await self.get_table(scope, *dest)).get("type")
        if dest_type not in ("TABLE", "CLONE") or not await self.get_table(scope, *src):
            return False
        dropped = await self.subrequest(scope, "DELETE", table_path(*dest))
        return dropped.status < 300

    def fail_inserted_job(self, project: str, body: dict[str, Any], error: Reply) -> Reply:
        """jobs.insert: BigQuery accepts the job, which ends DONE with status.errorResult."""
        job_id = body.get("jobReference", {}).get("jobId") or f"denied_{len(self.denied_jobs)}"
        proto = {k: v for k, v in error.body["error"]["errors"][0].items() if k != "domain"}
        job = {
            "kind": "bigquery#job",
            "id": f"{project}:{job_id}",
            "jobReference": {"projectId": project, "jobId": job_id, "location": "US"},
            "configuration": body.get("configuration", {}),
            "status": {"state": "DONE", "errorResult": proto, "errors": [proto]},
            "statistics": {},
        }
        self.denied_jobs[job_id] = job
        return Reply(200, job)

    async def job_lookup(self, scope: dict, project: str, kind: str, job_id: str) -> Reply:
        """jobs.get answers 200 with status.errorResult for a failed job;
        jobs.getQueryResults answers that errorResult as an HTTP error."""
        job = self.denied_jobs.get(job_id)
        if job is None:
            reply = await self.forward(scope)
            if kind == "jobs" or reply.status == 200:
                return reply
            # bqemulator keeps no results for a failed job and answers 404 for the job.
            job = (await self.subrequest(scope, "GET", f"{API}/projects/{project}/jobs/{job_id}")).json()
            if not job.get("status", {}).get("errorResult"):
                return reply
        if kind == "jobs":
            return Reply(200, job)
        return error_reply_from_proto(job["status"]["errorResult"])

    # -- tables and datasets ----------------------------------------------------

    async def fresh_table(self, scope: dict, project: str, dataset: str, table: str) -> Reply:
        """tables.get: numRows counted now, and BigQuery's table types.

        bqemulator records numRows when a table is created and never updates
        it after DML; BigQuery's numRows reflects committed DML.
        """
        reply = self.tables_as_bigquery_types(await self.forward(scope))
        table_json = reply.json()
        if reply.status == 200 and table_json.get("type") == "TABLE":
            # tabledata.list counts the rows live, and leaves no job behind.
            data = await self.subrequest(scope, "GET", table_path(project, dataset, table) + "/data",
                                         query_string=b"maxResults=0")
            if data.status == 200 and "totalRows" in data.json():
                table_json["numRows"] = data.json()["totalRows"]
        return reply

    @staticmethod
    def tables_as_bigquery_types(reply: Reply) -> Reply:
        """BigQuery's Table.type has no CLONE: a clone is a TABLE (with a cloneDefinition)."""
        answer = reply.json()
        for table in [answer, *answer.get("tables", [])]:
            if table.get("type") == "CLONE":
                table["type"] = "TABLE"
        return reply

    @staticmethod
    def complete_dataset_list(reply: Reply) -> Reply:
        """datasets.list: BigQuery always sends an etag; gcp-bigquery-client requires
        both `etag` and `datasets` to decode the list."""
        answer = reply.json()
        if reply.status == 200 and answer:
            answer.setdefault("datasets", [])
            answer.setdefault("etag", hashlib.sha1(json.dumps(answer, sort_keys=True).encode()).hexdigest())
        return reply

    async def get_table(self, scope: dict, project: str, dataset: str, table: str) -> dict[str, Any]:
        reply = await self.subrequest(scope, "GET", table_path(project, dataset, table))
        return reply.json() if reply.status == 200 else {}

    # -- plumbing ------------------------------------------------------------------

    async def forward(self, scope: dict, body: dict[str, Any] | None = None) -> Reply:
        """The wrapped app's answer to this request (body re-sent if it was read)."""
        payload = b"" if body is None else json.dumps(body).encode()
        return await self.call_app(dict(scope), payload)

    async def subrequest(self, scope: dict, method: str, path: str, query_string: bytes = b"") -> Reply:
        """Ask the wrapped app something of our own, in-process."""
        payload = b""
        sub = {**scope, "method": method, "path": path, "raw_path": path.encode(), "query_string": query_string,
               "headers": [(b"content-type", b"application/json"),
                           (b"content-length", str(len(payload)).encode())]}
        return await self.call_app(sub, payload)

    async def call_app(self, scope: dict, payload: bytes) -> Reply:
        if scope["method"] in ("POST", "PUT", "PATCH"):
            headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() not in (b"content-length",
                                                                                        b"content-encoding")]
            scope["headers"] = [*headers, (b"content-length", str(len(payload)).encode())]
        sent = False

        async def receive() -> dict:
            nonlocal sent
            if sent:
                await asyncio.Event().wait()  # like a client that keeps the connection open
            sent = True
            return {"type": "http.request", "body": payload, "more_body": False}

        status, headers, chunks = 500, [], []

        async def send(message: dict) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status, headers = message["status"], message.get("headers", [])
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        raw = b"".join(chunks)
        is_json = any(k.lower() == b"content-type" and b"json" in v for k, v in headers)
        return Reply(status, json.loads(raw) if is_json and raw else raw, headers)

    @staticmethod
    async def respond(send: Callable, reply: Reply) -> None:
        raw = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        headers = [(k, v) for k, v in (reply.headers or []) if k.lower() not in (b"content-length",
                                                                                 b"content-type")]
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": raw})


def access_denied(project: str, dataset: str, permission: str) -> Reply:
    where = f"{project}:{dataset}"
    return error_reply(403, "accessDenied",
                       f"Access Denied: Dataset {where}: User does not have {permission} "
                       f"permission for dataset {where}.")


async def read_body(scope: dict, receive: Callable) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    raw = b"".join(chunks)
    # Clients may gzip request bodies; the body is re-sent uncompressed.
    if any(k.lower() == b"content-encoding" and b"gzip" in v.lower() for k, v in scope.get("headers", [])):
        raw = gzip.decompress(raw)
    return raw


# --------------------------------------------------------------------------- patches


def patch_bqemulator(project: str) -> None:
    from bqemulator import server as bq_server
    from bqemulator.sql.rewriter import information_schema
    from bqemulator.storage import engine

    # bqemulator refuses to start unless it can INSTALL DuckDB's spatial
    # extension, which is a download. Only GEOGRAPHY needs it; airlock does not.
    engine.DuckDBEngine._load_spatial = lambda self: None

    # INFORMATION_SCHEMA.TABLES: BigQuery's table_type for a table clone is
    # CLONE (its base_table_* columns are documented as set only for CLONE
    # and SNAPSHOT); bqemulator reports BASE TABLE.
    information_schema._BQ_TABLE_TYPE_MAP["CLONE"] = "CLONE"

    # INFORMATION_SCHEMA.VIEWS.view_definition is the view's SQL as written.
    # bqemulator inlines it as a string literal escaped the ANSI way ('') into
    # SQL it then parses as BigQuery's, where '' is no escape: every quoted
    # string in a view's definition lost its quotes ('EUR' came back as EUR).
    # BigQuery string literals escape with a backslash.
    def bigquery_literal(value: str | None) -> str:
        if value is None:
            return "NULL"
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"

    information_schema._sql_literal = bigquery_literal

    create_app = bq_server.create_app
    bq_server.create_app = lambda context: BigQueryFidelity(create_app(context), project)


async def serve(args: argparse.Namespace) -> None:
    from bqemulator.config import LogFormat, LogLevel, Settings
    from bqemulator.server import EmulatorServer

    settings = Settings(
        rest_host="127.0.0.1", rest_port=args.port, grpc_host="127.0.0.1", grpc_port=0,
        default_project_id=args.project, enable_format_extensions=False,  # avro: another download
        log_level=LogLevel.WARNING, log_format=LogFormat.CONSOLE,
    )
    server = EmulatorServer(settings)
    await server.start()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    if args.ready_file:
        tmp = f"{args.ready_file}.tmp"
        with open(tmp, "w") as f:
            f.write(f"{server.rest_port} {os.getpid()}\n")
        os.replace(tmp, args.ready_file)  # start.sh never reads half a file
    try:
        await stop.wait()
    finally:
        await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", required=True, help="the one project id the emulator owns")
    parser.add_argument("--port", type=int, default=0, help="REST port on 127.0.0.1 (0: pick a free one)")
    parser.add_argument("--ready-file", help='write "PORT PID" here once serving')
    args = parser.parse_args()
    patch_bqemulator(args.project)
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
