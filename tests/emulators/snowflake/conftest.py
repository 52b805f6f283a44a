"""Fixtures: one emulator per test session, started and stopped through start.sh /
stop.sh in a private state directory (a developer's running emulator is left
alone), plus two ways to talk to it: snowflake-connector-python, and a raw HTTP
client that speaks the wire protocol exactly as the Rust client does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import snowflake.connector

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # for the unit tests of sfemu


def run_script(name: str, state: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, AIRLOCK_EMULATOR_STATE=str(state))
    return subprocess.run(
        [str(HERE / name)], env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120
    )


def parse_lines(stdout: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line)


@dataclass
class Emulator:
    host: str
    port: int
    protocol: str
    python: str
    pid: int
    state: Path

    @property
    def url(self) -> str:
        return f"{self.protocol}://{self.host}:{self.port}"


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    state = tmp_path_factory.mktemp("snowflake-state")
    started = run_script("start.sh", state)
    assert started.returncode == 0, started.stderr
    env = parse_lines(started.stdout)
    yield Emulator(
        env["SNOWFLAKE_HOST"],
        int(env["SNOWFLAKE_PORT"]),
        env["SNOWFLAKE_PROTOCOL"],
        env["PYTHON"],
        int(env["PID"]),
        state,
    )
    stopped = run_script("stop.sh", state)
    assert stopped.returncode == 0, stopped.stderr


Connect = Callable[..., snowflake.connector.SnowflakeConnection]


@pytest.fixture(scope="session")
def connect(emulator: Emulator) -> Iterator[Connect]:
    """connect(**kw): a snowflake-connector-python connection to the emulator."""
    opened: list[snowflake.connector.SnowflakeConnection] = []

    def _connect(**kw: Any) -> snowflake.connector.SnowflakeConnection:
        kw.setdefault("user", "tester")
        kw.setdefault("password", "any password")
        conn = snowflake.connector.connect(
            account="test",
            host=emulator.host,
            port=emulator.port,
            protocol=emulator.protocol,
            login_timeout=30,
            network_timeout=60,
            **kw,
        )
        opened.append(conn)
        return conn

    yield _connect
    for conn in opened:
        conn.close()


class Sql:
    """A connection with helpers: all(sql) -> rows, one(sql) -> first row, error(sql) -> exception."""

    def __init__(self, conn: snowflake.connector.SnowflakeConnection):
        self.conn = conn

    def all(self, sql: str) -> list[tuple[Any, ...]]:
        with self.conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()

    def one(self, sql: str) -> tuple[Any, ...]:
        return self.all(sql)[0]

    def run(self, *statements: str) -> None:
        for sql in statements:
            self.all(sql)

    def error(self, sql: str) -> snowflake.connector.errors.Error:
        with pytest.raises(snowflake.connector.errors.Error) as info:
            self.all(sql)
        return info.value

    def grants_on(self, kind: str, name: str) -> set[tuple[str, str]]:
        """{(privilege, grantee)} from SHOW GRANTS ON <kind> <name>."""
        return {(r[1], r[5]) for r in self.all(f"SHOW GRANTS ON {kind} {name}")}


@pytest.fixture
def db(connect: Connect) -> tuple[str, Sql]:
    """A fresh database (unique name) with schema S, and a session using it."""
    name = f"T_{uuid.uuid4().hex[:10].upper()}"
    sql = Sql(connect(database=name, schema="S"))
    return name, sql


class RawClient:
    """The wire protocol as snowflake-connector-rs speaks it: JSON bodies without gzip,
    no SESSION_PARAMETERS unless given, `Snowflake Token="..."` authorization."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.token: str | None = None

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": "application/json", "Accept": "application/snowflake"}
        if self.token:
            headers["Authorization"] = f'Snowflake Token="{self.token}"'
        req = urllib.request.Request(self.base_url + path, json.dumps(body).encode(), headers, method="POST")
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())

    def login(self, user: str = "rust", **query: str) -> dict[str, Any]:
        qs = "&".join(f"{k}={urllib.request.quote(v)}" for k, v in query.items())
        data = {"ACCOUNT_NAME": "test", "LOGIN_NAME": user, "PASSWORD": "secret"}
        status, body = self.post(f"/session/v1/login-request?{qs}", {"data": data})
        assert status == 200
        if body.get("success"):
            self.token = body["data"]["token"]
        return body

    def query(self, sql: str) -> dict[str, Any]:
        status, body = self.post(f"/queries/v1/query-request?requestId={uuid.uuid4()}", {"sqlText": sql})
        assert status == 200, body
        return body


@pytest.fixture
def raw(emulator: Emulator) -> RawClient:
    return RawClient(emulator.url)
