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
    project that does not exist;
  * a jobs.insert / jobs.query whose body holds `airlock_flaky_503_<id>`
    (or `_429_`) is answered HTTP 503 backendError (429 rateLimitExceeded)
    the first time that exact marker is seen, and runs normally after;
  * one whose body holds `airlock_slow_<n>ms` waits n ms before it runs
    (a job in flight, to cancel); jobs.cancel of such a job ends it with
    reason `stopped`;
  * GET /airlock-emulator/hooks answers {"in_flight": [job ids waiting],
    "cancelled": [job ids jobs.cancel named], "flaked": [markers failed]}.
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
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
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
    400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 409: "ALREADY_EXISTS", 429: "RESOURCE_EXHAUSTED",
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
FLAKY = re.compile(r"airlock_flaky_(?P<code>503|429)_\w+")
SLOW = re.compile(r"airlock_slow_(?P<ms>\d+)ms")
CANCEL_PATH = re.compile(r"^/jobs/([^/]+)/cancel$")
# `ds`.INFORMATION_SCHEMA.X / ds.INFORMATION_SCHEMA.X: a dataset-qualified view
DATASET_INFO_SCHEMA = re.compile(r"(?:`(?P<q>[^`]+)`|(?P<b>\b[A-Za-z_][\w-]*))\s*\.\s*`?INFORMATION_SCHEMA\b", re.IGNORECASE)
HOOKS_PATH = "/airlock-emulator/hooks"
# CREATE SNAPSHOT TABLE dest CLONE src OPTIONS(expiration_timestamp = expr)
SNAPSHOT_OPTIONS = re.compile(
    rf"^\s*(?P<head>CREATE\s+SNAPSHOT\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(?P<dest>{_NAME})\s+CLONE\s+{_NAME})"
    r"\s+OPTIONS\s*\((?P<options>.*)\)\s*;?\s*$",
    re.IGNORECASE | re.DOTALL,
)
EXPIRATION = re.compile(r"^\s*expiration_timestamp\s*=\s*(?P<expr>.+?)\s*$", re.IGNORECASE | re.DOTALL)
EXPIRATION_ADD = re.compile(
    r"^TIMESTAMP_ADD\s*\(\s*CURRENT_TIMESTAMP\s*\(\s*\)\s*,\s*INTERVAL\s+(?P<n>\d+)\s+(?P<unit>DAY|HOUR|MINUTE|SECOND)\s*\)$",
    re.IGNORECASE,
)
EXPIRATION_LITERAL = re.compile(r"^TIMESTAMP\s+'(?P<ts>[^']+)'$", re.IGNORECASE)
# CREATE OR REPLACE TABLE dest [PARTITION BY ...] [CLUSTER BY ...] [OPTIONS(...)] AS ...
REPLACE_AS = re.compile(rf"^\s*CREATE\s+OR\s+REPLACE\s+TABLE\s+(?P<dest>{_NAME})(?P<spec>.*?)\bAS\b", re.IGNORECASE | re.DOTALL)
PARTITION_BY = re.compile(r"\bPARTITION\s+BY\s+(?:DATE\s*\(\s*)?`?(?P<col>\w+)", re.IGNORECASE)
# BigQuery's on-demand billing: bytes billed are rounded up to the MB, with a
# minimum of 10 MB per table a query references (and per INFORMATION_SCHEMA query).
MB = 1024 * 1024
MIN_BILLED = 10 * MB
# BigQuery's logical data sizes (https://cloud.google.com/bigquery/pricing#data),
# bytes per value; STRING and BYTES are 2 + their length.
TYPE_BYTES = {"INTEGER": 8, "INT64": 8, "FLOAT": 8, "FLOAT64": 8, "BOOLEAN": 1, "BOOL": 1, "DATE": 8,
              "DATETIME": 8, "TIME": 8, "TIMESTAMP": 8, "NUMERIC": 16, "BIGNUMERIC": 32, "INTERVAL": 16}


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
        # (dataset, table) -> expirationTime in ms since the epoch, from OPTIONS(expiration_timestamp)
        self.expirations: dict[tuple[str, str], int] = {}
        # test hooks: markers already failed once, slow jobs waiting, jobs.cancel calls
        self.flaked: list[str] = []
        self.in_flight: dict[str, asyncio.Event] = {}
        self.cancelled: list[str] = []
        # bqemulator runs every request on ONE DuckDB connection, some of them
        # on worker threads; DuckDB 2.0 refuses a call on a busy connection
        # ("connection is busy with another call") instead of waiting. So
        # the wrapped app answers one request at a time. The test hooks wait
        # (slow jobs, in-flight jobs) before this, so requests still overlap
        # as a client sees them.
        self.app_lock = asyncio.Lock()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and scope.get("path") == HOOKS_PATH:
            return await self.respond(send, Reply(200, {"in_flight": sorted(self.in_flight),
                                                        "cancelled": self.cancelled, "flaked": self.flaked}))
        match = PROJECT_PATH.match(scope.get("path", "")) if scope["type"] == "http" else None
        if match is None:
            if scope["type"] != "http":  # lifespan: start-up and shut-down, never a query
                return await self.app(scope, receive, send)
            async with self.app_lock:
                return await self.app(scope, receive, send)
        project, rest = unquote(match.group(1)), match.group(2) or ""
        reply = await self.route(scope, receive, project, rest)
        if reply is None:
            async with self.app_lock:
                return await self.app(scope, receive, send)
        await self.respond(send, reply)

    async def route(self, scope: dict, receive: Callable, project: str, rest: str) -> Reply | None:
        method, upload = scope["method"], scope["path"].startswith("/upload")
        if project != self.project:
            return error_reply(404, "notFound", f"Not found: Project {project}")
        await self.expire_tables(scope, project)
        if (denied := self.denied_path(method, project, rest)) is not None:
            return denied
        if upload:
            return None
        if method == "POST" and (m := CANCEL_PATH.match(rest)) is not None:
            job_id = unquote(m.group(1))
            self.cancelled.append(job_id)
            if job_id in self.in_flight:  # bqemulator has not seen it yet: BigQuery's answer
                self.in_flight[job_id].set()
                return Reply(200, {"kind": "bigquery#jobCancelResponse", "job": {
                    "jobReference": {"projectId": project, "jobId": job_id, "location": "US"},
                    "status": {"state": "RUNNING"}}})
            return None
        if method == "POST" and rest in ("/queries", "/jobs", "/datasets"):
            raw = await read_body(scope, receive)
            if rest != "/datasets" and (flaky := FLAKY.search(raw.decode(errors="replace"))) is not None \
                    and flaky.group(0) not in self.flaked:
                self.flaked.append(flaky.group(0))
                if flaky["code"] == "429":
                    return error_reply(429, "rateLimitExceeded", "Exceeded rate limits: too many api requests per user per method for this user_method.")
                return error_reply(503, "backendError", "Backend error. Job aborted.")
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
        if (slow := SLOW.search(sql)) is not None:
            job_id = body.get("jobReference", {}).get("jobId") or f"slow_{len(self.cancelled)}_{time.time()}"
            cancel = self.in_flight.setdefault(job_id, asyncio.Event())
            try:
                await asyncio.wait_for(cancel.wait(), timeout=int(slow["ms"]) / 1000)
                stopped = error_reply(400, "stopped", "Job execution was cancelled: User requested cancellation")
                return self.fail_inserted_job(project, body, stopped) if is_insert else stopped
            except asyncio.TimeoutError:
                pass
            finally:
                self.in_flight.pop(job_id, None)
        dry_run = body.get("dryRun") or body.get("configuration", {}).get("dryRun")
        query_config = body.get("configuration", {}).get("query", {}) if is_insert else body
        limit = query_config.get("maximumBytesBilled")
        processed = None
        if dry_run or limit:
            processed, billed, missing = await self.estimate_bytes(scope, project, sql)
            if dry_run and missing:
                # BigQuery validates every table a dry run reads; bqemulator skips that for DDL
                p, d, t = missing[0]
                return error_reply(404, "notFound", f"Not found: Table {p}:{d}.{t} was not found in location US")
            if limit and not dry_run and billed > int(limit):
                refused = error_reply(400, "bytesBilledLimitExceeded",
                                      f"Query exceeded limit for bytes billed: {int(limit)}. {billed} or higher required.")
                return self.fail_inserted_job(project, body, refused) if is_insert else refused
        if (missing := await self.missing_info_schema_dataset(scope, project, sql)) is not None:
            return self.fail_inserted_job(project, body, missing) if is_insert else missing
        if (refused := await self.refuse_partitioning_change(scope, project, sql)) is not None:
            return self.fail_inserted_job(project, body, refused) if is_insert else refused
        expires = None
        if (m := SNAPSHOT_OPTIONS.match(sql)) is not None:
            expires, bad = snapshot_expiration(m["options"])
            if bad is not None:
                return self.fail_inserted_job(project, body, bad) if is_insert else bad
            sql = m["head"]  # bqemulator cannot parse OPTIONS here: sent without, recorded by this layer
            if is_insert:
                body["configuration"]["query"]["query"] = sql
            else:
                body["query"] = sql
        replaced = False if dry_run else await self.drop_clone_target(scope, project, sql)

        reply = await self.forward(scope, body)
        answer = reply.json()
        stats = answer.get("statistics", {}).get("query", {}) if is_insert else answer
        if reply.status == 200 and expires is not None and not dry_run and not answer.get("errors") \
                and not answer.get("status", {}).get("errorResult"):
            dest = split_table_name(m["dest"], project)
            if dest is not None:
                self.expirations[(dest[1], dest[2])] = expires
        if processed is not None and reply.status == 200:
            # bqemulator always says 0; BigQuery says what the query reads
            if is_insert:
                answer.setdefault("statistics", {})["totalBytesProcessed"] = str(processed)
                answer["statistics"].setdefault("query", {})["totalBytesProcessed"] = str(processed)
            else:
                answer["totalBytesProcessed"] = str(processed)
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

    async def missing_info_schema_dataset(self, scope: dict, project: str, sql: str) -> Reply | None:
        """`ds.INFORMATION_SCHEMA.TABLES` of a dataset that does not exist: BigQuery
        fails notFound; bqemulator answers no rows."""
        for m in DATASET_INFO_SCHEMA.finditer(sql or ""):
            dataset = (m["q"] or m["b"]).split(".")[-1]
            if dataset.lower().startswith("region-"):
                continue
            found = await self.subrequest(scope, "GET", f"{API}/projects/{quote(project)}/datasets/{quote(dataset)}")
            if found.status == 404:
                return error_reply(404, "notFound", f"Not found: Dataset {project}:{dataset} was not found in location US")
        return None

    async def refuse_partitioning_change(self, scope: dict, project: str, sql: str) -> Reply | None:
        """BigQuery refuses to replace a table by one partitioned differently:
        `CREATE OR REPLACE TABLE x CLONE y` when y's partitioning differs from
        x's, and `CREATE OR REPLACE TABLE x [PARTITION BY c] AS ...` when c is
        not x's partitioning column. bqemulator replaces it."""
        if (m := REPLACE_CLONE.match(sql or "")) is not None:
            dest, src = split_table_name(m["dest"], project), split_table_name(m["src"], project)
            if dest is None or src is None:
                return None
            old, new = await self.get_table(scope, *dest), await self.get_table(scope, *src)
            if not old or not new:
                return None
            old_spec, new_spec = partitioning_spec(old), partitioning_spec(new)
        elif (m := REPLACE_AS.match(sql or "")) is not None:
            dest = split_table_name(m["dest"], project)
            old = await self.get_table(scope, *dest) if dest is not None else {}
            if not old:
                return None
            old_spec = partitioning_spec(old)
            col = PARTITION_BY.search(m["spec"])
            new_spec = "none" if col is None else f"interval(type:day,field:{col['col']})"
            if col is not None and old_spec.endswith(f"field:{col['col']})"):
                new_spec = old_spec  # the same column; the granularity is not compared
        else:
            return None
        if old.get("type") not in ("TABLE", "CLONE") or old_spec == new_spec:
            return None
        return error_reply(400, "invalidQuery",
                           "Cannot replace a table with a different partitioning spec. Instead, DROP the table, "
                           f"and then recreate it. New partitioning spec is {new_spec} and existing spec is {old_spec}.")

    async def expire_tables(self, scope: dict, project: str) -> None:
        """BigQuery deletes a table once its expirationTime has passed."""
        now = int(time.time() * 1000)
        for (dataset, table), at in list(self.expirations.items()):
            if at <= now:
                await self.subrequest(scope, "DELETE", table_path(project, dataset, table))
                del self.expirations[(dataset, table)]

    async def estimate_bytes(self, scope: dict, project: str, sql: str) -> tuple[int, int, list]:
        """(bytes processed, bytes billed, tables not found) of a query, BigQuery's way but coarser:
        every column of each table it reads counts (BigQuery counts only the
        columns referenced), views count as the tables they read, a clone,
        a snapshot, CREATE VIEW, DDL without a query and INSERT ... VALUES read nothing.
        Billed: each table at least 10 MB, plus 10 MB when the query reads
        INFORMATION_SCHEMA, rounded up to the MB."""
        tables, info_schema = referenced_tables(sql, project)
        processed, billed, missing = 0, MIN_BILLED if info_schema else 0, []
        for ref in tables:
            size = await self.table_bytes(scope, *ref, depth=0)
            if size is None:
                missing.append(ref)
                continue
            processed += size
            billed += max(size, MIN_BILLED)
        return processed, -(-billed // MB) * MB, missing

    async def table_bytes(self, scope: dict, project: str, dataset: str, table: str, depth: int) -> int | None:
        """A table's logical bytes (a view's: of the tables it reads); None when it does not exist."""
        meta = await self.get_table(scope, project, dataset, table)
        if not meta:
            return None
        if depth > 8:
            return 0
        if meta.get("type") in ("VIEW", "MATERIALIZED_VIEW"):
            tables, _ = referenced_tables(meta.get("view", {}).get("query", ""), project)
            return sum([await self.table_bytes(scope, *ref, depth=depth + 1) or 0 for ref in tables])
        fields = meta.get("schema", {}).get("fields", [])
        data = (await self.subrequest(scope, "GET", table_path(project, dataset, table) + "/data",
                                      query_string=b"maxResults=1000000")).json()
        total = 0
        for row in data.get("rows", []):
            for field, cell in zip(fields, row.get("f", [])):
                total += value_bytes(field, cell.get("v"))
        return total

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
        if reply.status == 200 and (dataset, table) in self.expirations:
            table_json["expirationTime"] = str(self.expirations[(dataset, table)])
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

        async with self.app_lock:
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


def partitioning_spec(table: dict[str, Any]) -> str:
    """A table's partitioning in the words of BigQuery's refusal message."""
    if (tp := table.get("timePartitioning")) is not None:
        field = tp.get("field", "_PARTITIONTIME")
        return f"interval(type:{tp.get('type', 'DAY').lower()},field:{field})"
    if (rp := table.get("rangePartitioning")) is not None:
        return f"range(field:{rp.get('field')})"
    return "none"


def snapshot_expiration(options: str) -> tuple[int | None, Reply | None]:
    """expirationTime (ms) from a snapshot's OPTIONS: TIMESTAMP_ADD(CURRENT_TIMESTAMP(),
    INTERVAL n DAY|HOUR|MINUTE|SECOND) or TIMESTAMP 'literal'; anything else is refused
    by this emulation (400), never silently dropped."""
    m = EXPIRATION.match(options)
    if m is None:
        return None, error_reply(400, "invalidQuery", f"emulator: unsupported snapshot OPTIONS({options})")
    expr = m["expr"].strip()
    if (add := EXPIRATION_ADD.match(expr)) is not None:
        seconds = {"DAY": 86400, "HOUR": 3600, "MINUTE": 60, "SECOND": 1}[add["unit"].upper()] * int(add["n"])
        return int(time.time() * 1000) + seconds * 1000, None
    if (lit := EXPIRATION_LITERAL.match(expr)) is not None:
        try:
            at = datetime.fromisoformat(lit["ts"].replace(" UTC", "+00:00").replace("Z", "+00:00"))
        except ValueError:
            return None, error_reply(400, "invalidQuery", f"Invalid timestamp: '{lit['ts']}'")
        if at.tzinfo is None:
            at = at.replace(tzinfo=timezone.utc)
        return int(at.timestamp() * 1000), None
    return None, error_reply(400, "invalidQuery", f"emulator: unsupported expiration_timestamp expression {expr}")


def referenced_tables(sql: str, project: str) -> tuple[list[tuple[str, str, str]], bool]:
    """The tables a query reads (project, dataset, table), and whether it reads
    INFORMATION_SCHEMA. Targets of CREATE and INSERT are written, not read."""
    import sqlglot
    from sqlglot import exp

    if re.search(r"\bCLONE\b", sql or "", re.IGNORECASE) or re.match(r"^\s*DROP\b", sql or "", re.IGNORECASE):
        return [], False
    try:
        statements = sqlglot.parse(sql, read="bigquery")
    except Exception:  # noqa: BLE001 - bqemulator words the syntax error
        return [], False
    out: list[tuple[str, str, str]] = []
    info_schema = False
    for st in statements:
        if st is None:
            continue
        if isinstance(st, exp.Create) and str(st.args.get("kind", "")).upper() == "VIEW":
            continue  # a view is stored, not run
        written = set()
        if isinstance(st, (exp.Create, exp.Insert)):
            target = st.this.this if isinstance(st.this, exp.Schema) else st.this
            if isinstance(target, exp.Table):
                written.add(id(target))
        ctes = {cte.alias_or_name.lower() for cte in st.find_all(exp.CTE)}
        for t in st.find_all(exp.Table):
            parts = [p.name for p in t.parts]
            if id(t) in written or (len(parts) == 1 and parts[0].lower() in ctes):
                continue
            # sqlglot reads `ds`.INFORMATION_SCHEMA.TABLES as two parts: ds, "INFORMATION_SCHEMA.TABLES"
            if any("INFORMATION_SCHEMA" in p.upper() for p in parts):
                info_schema = True
                continue
            if len(parts) == 2:
                ref = (project, parts[0], parts[1])
            elif len(parts) == 3:
                ref = (parts[0], parts[1], parts[2])
            else:
                continue
            if ref not in out:
                out.append(ref)
    return out, info_schema


def value_bytes(field: dict[str, Any], value: Any) -> int:
    if value is None:
        return 0
    if field.get("mode") == "REPEATED" or field.get("type") in ("RECORD", "STRUCT", "JSON"):
        return len(json.dumps(value))
    if field.get("type") in ("STRING", "BYTES"):
        return 2 + len(str(value).encode())
    return TYPE_BYTES.get(field.get("type", ""), 8)


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

    # tables.get of a view: BigQuery's Table resource carries the view's SQL in
    # view.query (https://cloud.google.com/bigquery/docs/reference/rest/v2/tables#ViewDefinition);
    # bqemulator omits it. The byte estimate reads through views with it.
    from bqemulator.api.routes import tables as table_routes

    table_to_rest = table_routes._table_to_rest

    def table_with_view_query(t):  # noqa: ANN001, ANN202 - bqemulator's TableMeta
        body = table_to_rest(t)
        if t.table_type == "VIEW" and getattr(t, "view_query", None):
            body["view"] = {"query": t.view_query, "useLegacySql": False}
        return body

    table_routes._table_to_rest = table_with_view_query

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
