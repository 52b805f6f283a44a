"""Pins the BigQuery emulator to what BigQuery documents, one behaviour per test.

The emulator is started through start.sh, as everyone else starts it, with a
state dir of its own so a developer's running emulator is left alone. Tests
talk to it with google-cloud-bigquery (what a person would use) and with raw
HTTP (what gcp-bigquery-client, airlock's client, sees on the wire).
Each test's docstring names the documented behaviour it pins.

    tests/emulators/bigquery/test.sh
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

HERE = Path(__file__).resolve().parent
DENIED = "airlock_denied_"  # server.py's DENIED_PREFIX
STATUS_OF_CODE = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 409: "ALREADY_EXISTS",
                  429: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE"}


# --------------------------------------------------------------------------- lifecycle helpers


def run_script(name: str, state: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AIRLOCK_EMULATOR_STATE": str(state), "CI": "true"}
    return subprocess.run([str(HERE / name)], env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120, check=False)


def start(state: Path) -> dict[str, str]:
    done = run_script("start.sh", state)
    assert done.returncode == 0, done.stderr
    return dict(line.split("=", 1) for line in done.stdout.splitlines())


def alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bigquery-state")


@pytest.fixture(scope="session")
def emulator(state: Path):
    lines = start(state)
    yield lines
    run_script("stop.sh", state)


@pytest.fixture(scope="session")
def client(emulator: dict[str, str]) -> bigquery.Client:
    return bigquery.Client(project=emulator["BIGQUERY_PROJECT"], credentials=AnonymousCredentials(),
                           client_options=ClientOptions(api_endpoint=emulator["BIGQUERY_ENDPOINT"]))


@pytest.fixture
def api(emulator: dict[str, str]) -> str:
    """REST v2 base URL of the emulator's project."""
    return f"{emulator['BIGQUERY_ENDPOINT']}/bigquery/v2/projects/{emulator['BIGQUERY_PROJECT']}"


@pytest.fixture
def ds(client: bigquery.Client):
    """A fresh dataset per test, so tests never see each other's tables."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    client.create_dataset(name)
    yield name
    client.delete_dataset(name, delete_contents=True, not_found_ok=True)


def jobs_query(api: str, sql: str, **extra) -> requests.Response:
    return requests.post(f"{api}/queries", json={"query": sql, "useLegacySql": False, **extra}, timeout=30)


def values(client: bigquery.Client, sql: str) -> list[tuple]:
    return [tuple(row.values()) for row in client.query_and_wait(sql)]


def assert_bigquery_error(response: requests.Response, code: int, reason: str) -> dict:
    """BigQuery's error body (https://cloud.google.com/bigquery/docs/errors):
    {"error": {"code", "message", "errors": [ErrorProto...], "status"}}.
    gcp-bigquery-client decodes `errors` as Vec<HashMap<String, String>>,
    so every ErrorProto value must be a string."""
    assert response.status_code == code, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["status"] == STATUS_OF_CODE[code]
    assert error["message"]
    assert error["errors"][0]["reason"] == reason
    assert error["errors"][0]["message"] == error["message"]
    assert all(isinstance(v, str) for proto in error["errors"] for v in proto.values()), error["errors"]
    return error


# --------------------------------------------------------------------------- start.sh / stop.sh


def test_start_prints_the_interface_and_reuses_a_running_emulator(emulator, state):
    """start.sh prints BIGQUERY_ENDPOINT, BIGQUERY_PROJECT, PYTHON, PID, writes
    them to bigquery.env, and a second start.sh reuses the running server."""
    assert list(emulator) == ["BIGQUERY_ENDPOINT", "BIGQUERY_PROJECT", "PYTHON", "PID"]
    assert emulator["BIGQUERY_ENDPOINT"].startswith("http://127.0.0.1:")
    assert (state / "bigquery.env").read_text().splitlines() == [f"{k}={v}" for k, v in emulator.items()]
    assert start(state) == emulator
    done = subprocess.run([emulator["PYTHON"], "-c", "import google.cloud.bigquery"], check=False)
    assert done.returncode == 0
    health = requests.get(f"{emulator['BIGQUERY_ENDPOINT']}/healthz", timeout=5).json()
    assert health["status"] == "ok"


def test_stop_ends_the_server_and_start_brings_up_a_new_one(tmp_path):
    """stop.sh ends the server by pid and removes the state file; stopping
    again is a no-op; start.sh after a stop starts a fresh server."""
    first = start(tmp_path)
    assert run_script("stop.sh", tmp_path).returncode == 0
    assert not alive(first["PID"])
    assert not (tmp_path / "bigquery.env").exists()
    assert run_script("stop.sh", tmp_path).returncode == 0

    second = start(tmp_path)
    try:
        assert second["PID"] != first["PID"]
        assert requests.get(f"{second['BIGQUERY_ENDPOINT']}/healthz", timeout=5).ok
    finally:
        run_script("stop.sh", tmp_path)
    assert not alive(second["PID"])


# --------------------------------------------------------------------------- clones and snapshots


def test_create_or_replace_clone_replaces_an_existing_table(client, api, ds):
    """CREATE OR REPLACE TABLE x CLONE y: "replaces any table with the same
    name if it exists" (DDL reference, CREATE TABLE CLONE), and the job reports
    ddlOperationPerformed=REPLACE ("the query replaced the DDL target")."""
    client.query_and_wait(f"CREATE TABLE {ds}.src AS SELECT id FROM UNNEST([1, 2]) AS id")
    client.query_and_wait(f"CREATE TABLE {ds}.dst AS SELECT 9 AS id")

    via_jobs_query = jobs_query(api, f"CREATE OR REPLACE TABLE {ds}.dst CLONE {ds}.src")
    assert via_jobs_query.status_code == 200, via_jobs_query.text
    assert via_jobs_query.json()["ddlOperationPerformed"] == "REPLACE"
    assert values(client, f"SELECT id FROM {ds}.dst ORDER BY id") == [(1,), (2,)]

    client.query_and_wait(f"INSERT INTO {ds}.src (id) VALUES (3)")
    via_jobs_insert = client.query(f"CREATE OR REPLACE TABLE `{ds}`.`dst` CLONE `{ds}.src`")
    via_jobs_insert.result()
    assert via_jobs_insert.ddl_operation_performed == "REPLACE"
    assert values(client, f"SELECT id FROM {ds}.dst ORDER BY id") == [(1,), (2,), (3,)]


def test_create_or_replace_clone_of_a_missing_table_fails_and_keeps_the_target(client, api, ds):
    """A statement that fails changes nothing: replacing from a missing base
    table answers notFound (404) and the old table is still there."""
    client.query_and_wait(f"CREATE TABLE {ds}.dst AS SELECT 9 AS id")
    response = jobs_query(api, f"CREATE OR REPLACE TABLE {ds}.dst CLONE {ds}.missing")
    assert_bigquery_error(response, 404, "notFound")
    assert values(client, f"SELECT id FROM {ds}.dst") == [(9,)]


def test_a_clone_is_an_independent_copy(client, ds):
    """Table clones: "changes made to a table clone do not affect the base
    table, and changes made to the base table do not affect the clone"."""
    client.query_and_wait(f"CREATE TABLE {ds}.base AS SELECT id FROM UNNEST([1, 2]) AS id")
    client.query_and_wait(f"CREATE TABLE {ds}.copy CLONE {ds}.base")
    client.query_and_wait(f"INSERT INTO {ds}.copy (id) VALUES (3)")
    client.query_and_wait(f"DELETE FROM {ds}.base WHERE id = 1")
    assert values(client, f"SELECT id FROM {ds}.base ORDER BY id") == [(2,)]
    assert values(client, f"SELECT id FROM {ds}.copy ORDER BY id") == [(1,), (2,), (3,)]


def test_a_snapshot_is_read_only_and_restores_its_base_table(client, api, ds):
    """Table snapshots: CREATE SNAPSHOT TABLE keeps the data as it was, is
    read-only (DML fails), and is restored with CREATE [OR REPLACE] TABLE ...
    CLONE snapshot, to a new table or over the base table."""
    client.query_and_wait(f"CREATE TABLE {ds}.base AS SELECT id FROM UNNEST([1, 2]) AS id")
    client.query_and_wait(f"CREATE SNAPSHOT TABLE {ds}.snap CLONE {ds}.base")
    client.query_and_wait(f"UPDATE {ds}.base SET id = id * 10 WHERE TRUE")
    assert client.get_table(f"{ds}.snap").table_type == "SNAPSHOT"
    assert values(client, f"SELECT id FROM {ds}.snap ORDER BY id") == [(1,), (2,)]
    assert_bigquery_error(jobs_query(api, f"INSERT INTO {ds}.snap (id) VALUES (3)"), 400, "invalidQuery")

    client.query_and_wait(f"CREATE TABLE {ds}.restored CLONE {ds}.snap")
    assert values(client, f"SELECT id FROM {ds}.restored ORDER BY id") == [(1,), (2,)]
    client.query_and_wait(f"CREATE OR REPLACE TABLE {ds}.base CLONE {ds}.snap")
    assert values(client, f"SELECT id FROM {ds}.base ORDER BY id") == [(1,), (2,)]


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(("sql", "code", "reason", "raised"), [
    ("SELEC 1", 400, "invalidQuery", exceptions.BadRequest),
    ("SELECT * FROM {ds}.missing", 404, "notFound", exceptions.NotFound),
    ("CREATE TABLE {ds}.taken (id INT64)", 409, "duplicate", exceptions.Conflict),
])
def test_a_failing_jobs_query_answers_an_http_error(client, api, ds, sql, code, reason, raised):
    """jobs.query: when the query fails, BigQuery answers "like
    jobs.getQueryResults", with a non-success HTTP status (google-cloud-bigquery
    _job_helpers) whose code follows the ErrorProto reason (error messages
    doc: invalidQuery 400, notFound 404, duplicate 409)."""
    client.query_and_wait(f"CREATE TABLE {ds}.taken (id INT64)")
    assert_bigquery_error(jobs_query(api, sql.format(ds=ds)), code, reason)
    with pytest.raises(raised):
        client.query_and_wait(sql.format(ds=ds))


def test_a_failing_inserted_job_is_done_with_an_error_result(client, api):
    """jobs.insert accepts the job, which ends DONE with status.errorResult
    (and the same ErrorProto in status.errors); jobs.get answers it 200; and
    jobs.getQueryResults answers the errorResult as an HTTP error."""
    job_id = f"failing_{uuid.uuid4().hex[:8]}"
    inserted = requests.post(f"{api}/jobs", timeout=30, json={
        "jobReference": {"jobId": job_id},
        "configuration": {"query": {"query": "SELEC 1", "useLegacySql": False}},
    })
    assert inserted.status_code == 200, inserted.text
    for job in (inserted.json(), requests.get(f"{api}/jobs/{job_id}", timeout=30).json()):
        assert job["status"]["state"] == "DONE"
        assert job["status"]["errorResult"]["reason"] == "invalidQuery"
        assert job["status"]["errorResult"] in job["status"]["errors"]
    assert_bigquery_error(requests.get(f"{api}/queries/{job_id}", timeout=30), 400, "invalidQuery")
    with pytest.raises(exceptions.BadRequest):
        client.query("SELEC 1").result()


# --------------------------------------------------------------------------- table metadata


def test_num_rows_is_fresh_after_dml(client, ds):
    """Table.numRows is the table's row count, DML included (tables.get)."""
    table = f"{ds}.t"
    client.query_and_wait(f"CREATE TABLE {table} AS SELECT 1 AS id")
    client.query_and_wait(f"INSERT INTO {table} (id) VALUES (2), (3)")
    assert client.get_table(table).num_rows == 3
    client.query_and_wait(f"DELETE FROM {table} WHERE id = 1")
    assert client.get_table(table).num_rows == 2
    client.query_and_wait(f"MERGE {table} T USING (SELECT 7 AS id) S ON T.id = S.id "
                          f"WHEN NOT MATCHED THEN INSERT (id) VALUES (S.id)")
    assert client.get_table(table).num_rows == 3
    client.query_and_wait(f"CREATE TABLE {ds}.c CLONE {table}")
    client.query_and_wait(f"INSERT INTO {ds}.c (id) VALUES (8)")
    assert client.get_table(f"{ds}.c").num_rows == 4


def test_information_schema_tables_reports_each_table_type(client, ds):
    """INFORMATION_SCHEMA.TABLES has a row per table or view, table_type one of
    BASE TABLE, CLONE, SNAPSHOT, VIEW (base_table_* set for CLONE and SNAPSHOT)."""
    client.query_and_wait(f"CREATE TABLE {ds}.a_table AS SELECT 1 AS id")
    client.query_and_wait(f"CREATE VIEW {ds}.b_view AS SELECT id FROM {ds}.a_table")
    client.query_and_wait(f"CREATE TABLE {ds}.c_clone CLONE {ds}.a_table")
    client.query_and_wait(f"CREATE SNAPSHOT TABLE {ds}.d_snapshot CLONE {ds}.a_table")
    assert values(client, f"SELECT table_name, table_type, base_table_name "
                          f"FROM {ds}.INFORMATION_SCHEMA.TABLES ORDER BY table_name") == [
        ("a_table", "BASE TABLE", None),
        ("b_view", "VIEW", None),
        ("c_clone", "CLONE", "a_table"),
        ("d_snapshot", "SNAPSHOT", "a_table"),
    ]


def test_information_schema_views_gives_a_definition_that_recreates_the_view(client, ds):
    """INFORMATION_SCHEMA.VIEWS.view_definition is the SQL query that defines
    the view: run again as a view's query it defines the same view, string
    literals (with quotes and backslashes) included."""
    client.query_and_wait(f"CREATE VIEW {ds}.v AS SELECT 1 AS a, 'EUR' AS currency, 'it\\'s' AS c, 'back\\\\slash' AS d")
    (definition,) = values(client, f"SELECT view_definition FROM {ds}.INFORMATION_SCHEMA.VIEWS WHERE table_name = 'v'")[0]
    assert "'EUR'" in definition
    client.query_and_wait(f"CREATE OR REPLACE VIEW {ds}.w AS {definition}")
    assert values(client, f"SELECT a, currency, c, d FROM {ds}.w") == [(1, "EUR", "it's", "back\\slash")]


def test_information_schema_of_a_missing_dataset_is_not_found(client, api, ds):
    """A dataset-qualified INFORMATION_SCHEMA view of a dataset that does not
    exist fails notFound ("Not found: Dataset p:d was not found in location
    US"); of an existing empty dataset it has no rows."""
    error = assert_bigquery_error(jobs_query(api, "SELECT table_name FROM `no_such_ds`.INFORMATION_SCHEMA.TABLES"), 404, "notFound")
    assert error["message"] == f"Not found: Dataset {client.project}:no_such_ds was not found in location US"
    assert_bigquery_error(jobs_query(api, "SELECT * FROM no_such_ds.INFORMATION_SCHEMA.COLUMNS"), 404, "notFound")
    assert values(client, f"SELECT table_name FROM `{ds}`.INFORMATION_SCHEMA.TABLES") == []


def test_tables_get_and_list_use_the_rest_table_types(client, ds):
    """REST Table.type is TABLE, VIEW, SNAPSHOT, ...: it has no CLONE, a
    clone is a TABLE (tables.get and tables.list)."""
    client.query_and_wait(f"CREATE TABLE {ds}.a_table AS SELECT 1 AS id")
    client.query_and_wait(f"CREATE VIEW {ds}.b_view AS SELECT id FROM {ds}.a_table")
    client.query_and_wait(f"CREATE TABLE {ds}.c_clone CLONE {ds}.a_table")
    client.query_and_wait(f"CREATE SNAPSHOT TABLE {ds}.d_snapshot CLONE {ds}.a_table")
    expected = {"a_table": "TABLE", "b_view": "VIEW", "c_clone": "TABLE", "d_snapshot": "SNAPSHOT"}
    assert {t.table_id: t.table_type for t in client.list_tables(ds)} == expected
    assert {name: client.get_table(f"{ds}.{name}").table_type for name in expected} == expected


def test_datasets_list_carries_etag_and_datasets(api, ds):
    """datasets.list answers an etag and a datasets array (gcp-bigquery-client
    0.28 cannot decode the list without both)."""
    listing = requests.get(f"{api}/datasets", timeout=30).json()
    assert listing["etag"]
    assert ds in [d["datasetReference"]["datasetId"] for d in listing["datasets"]]


# --------------------------------------------------------------------------- test hooks


def test_a_denied_dataset_answers_access_denied(client, api):
    """Test hook for IAM: a dataset named airlock_denied_* behaves as one the
    caller has no role on: accessDenied, HTTP 403 (error messages doc), naming
    the missing permission, on jobs.query, REST calls and jobs.insert (whose
    job ends DONE with the errorResult)."""
    dataset = f"{DENIED}{uuid.uuid4().hex[:6]}"
    error = assert_bigquery_error(jobs_query(api, f"CREATE TABLE {dataset}.t AS SELECT 1 AS id"),
                                  403, "accessDenied")
    assert error["message"].startswith("Access Denied: ")
    assert "User does not have bigquery.tables.create permission" in error["message"]
    assert_bigquery_error(requests.get(f"{api}/datasets/{dataset}/tables/t", timeout=30), 403, "accessDenied")
    created = requests.post(f"{api}/datasets", json={"datasetReference": {"datasetId": dataset}}, timeout=30)
    assert_bigquery_error(created, 403, "accessDenied")

    job = client.query(f"SELECT * FROM {dataset}.t")
    with pytest.raises(exceptions.Forbidden, match="bigquery.tables.getData"):
        job.result()
    assert job.state == "DONE"
    assert job.error_result["reason"] == "accessDenied"
    with pytest.raises(exceptions.Forbidden):
        client.get_dataset(dataset)


def test_an_unknown_project_answers_not_found(api, emulator):
    """Test hook for a bad project id: the emulator owns one project
    (BIGQUERY_PROJECT); any other answers notFound, HTTP 404, as BigQuery does
    for a project that does not exist."""
    other = api.replace(emulator["BIGQUERY_PROJECT"], "no-such-project-42")
    for response in (requests.get(f"{other}/datasets", timeout=30), jobs_query(other, "SELECT 1")):
        error = assert_bigquery_error(response, 404, "notFound")
        assert error["message"] == "Not found: Project no-such-project-42"


# --------------------------------------------------------------------------- queries


def test_a_script_with_a_temp_table_and_merge_runs(client, ds):
    """Multi-statement queries (scripts) run as one job: a TEMP TABLE lives for
    the script, MERGE applies, and the result is the last statement's."""
    client.query_and_wait(f"CREATE TABLE {ds}.target AS SELECT 1 AS id, 'old' AS v")
    result = values(client, f"""
        CREATE TEMP TABLE staged AS SELECT 1 AS id, 'new' AS v UNION ALL SELECT 2, 'added';
        MERGE {ds}.target T USING staged S ON T.id = S.id
          WHEN MATCHED THEN UPDATE SET v = S.v
          WHEN NOT MATCHED THEN INSERT (id, v) VALUES (S.id, S.v);
        SELECT COUNT(*) FROM {ds}.target;
    """)
    assert result == [(2,)]
    assert values(client, f"SELECT id, v FROM {ds}.target ORDER BY id") == [(1, "new"), (2, "added")]


def test_a_rolled_back_transaction_changes_nothing(client, ds):
    """Multi-statement transactions: ROLLBACK TRANSACTION discards the
    transaction's DML; COMMIT TRANSACTION keeps it."""
    client.query_and_wait(f"CREATE TABLE {ds}.t AS SELECT 1 AS id")
    client.query_and_wait(f"BEGIN TRANSACTION; INSERT INTO {ds}.t (id) VALUES (2); ROLLBACK TRANSACTION;")
    assert values(client, f"SELECT id FROM {ds}.t") == [(1,)]
    client.query_and_wait(f"BEGIN TRANSACTION; INSERT INTO {ds}.t (id) VALUES (2); COMMIT TRANSACTION;")
    assert values(client, f"SELECT id FROM {ds}.t ORDER BY id") == [(1,), (2,)]


def test_a_dry_run_validates_without_running(client, api, ds):
    """dryRun: the query is validated and its schema and byte estimate
    returned, but it does not run (a dry-run CREATE creates nothing); an
    invalid query, or one reading a table that does not exist, answers its
    error (a CREATE ... AS SELECT too). The estimate (an emulation) is the
    logical size of the tables read: INT64 8 bytes, STRING 2 + its length
    (BigQuery's data size rules), every column counted."""
    client.query_and_wait(f"CREATE TABLE {ds}.t AS SELECT 1 AS id, 'x' AS name")
    selected = jobs_query(api, f"SELECT id, name FROM {ds}.t", dryRun=True)
    assert selected.status_code == 200, selected.text
    assert [f["name"] for f in selected.json()["schema"]["fields"]] == ["id", "name"]
    assert selected.json()["totalBytesProcessed"] == str(8 + 2 + 1)

    assert jobs_query(api, f"CREATE TABLE {ds}.new AS SELECT 1 AS id", dryRun=True).status_code == 200
    assert requests.get(f"{api}/datasets/{ds}/tables/new", timeout=30).status_code == 404
    assert_bigquery_error(jobs_query(api, f"SELECT * FROM {ds}.missing", dryRun=True), 404, "notFound")
    # a statement that creates from a missing table too (bqemulator alone says 200)
    missing = assert_bigquery_error(jobs_query(api, f"CREATE TABLE {ds}.new AS SELECT * FROM {ds}.missing", dryRun=True),
                                    404, "notFound")
    assert missing["message"].startswith(f"Not found: Table {client.project}:{ds}.missing")
    job = client.query(f"SELECT id FROM {ds}.t", job_config=bigquery.QueryJobConfig(dry_run=True))
    assert job.total_bytes_processed == 11


def test_dry_run_bytes_follow_the_tables_a_statement_reads(client, api, ds):
    """Bytes processed grow with the data read: a view counts as the tables it
    reads, a CREATE ... AS SELECT as its SELECT; a clone, a snapshot, a
    CREATE VIEW and INSERT ... VALUES read nothing (BigQuery: clones and snapshots are free to
    create; DML bills the tables it reads)."""
    client.query_and_wait(f"CREATE TABLE {ds}.t AS SELECT n AS id FROM UNNEST(GENERATE_ARRAY(1, 100)) AS n")
    client.query_and_wait(f"CREATE VIEW {ds}.v AS SELECT id FROM {ds}.t")

    def dry(sql: str) -> int:
        answer = jobs_query(api, sql, dryRun=True)
        assert answer.status_code == 200, answer.text
        return int(answer.json()["totalBytesProcessed"])

    assert client.get_table(f"{ds}.v").view_query.strip() == f"SELECT id FROM {ds}.t"
    assert dry(f"SELECT id FROM {ds}.t") == 800
    assert dry(f"SELECT id FROM {ds}.v") == 800
    assert dry(f"CREATE OR REPLACE TABLE {ds}.u AS SELECT a.id FROM {ds}.t a JOIN {ds}.v b USING (id)") == 1600
    assert dry(f"CREATE OR REPLACE TABLE {ds}.u CLONE {ds}.t") == 0
    assert dry(f"INSERT INTO {ds}.t (id) VALUES (1)") == 0
    assert dry(f"CREATE OR REPLACE VIEW {ds}.w AS SELECT id FROM {ds}.t") == 0


def test_maximum_bytes_billed_fails_a_query_that_would_bill_more(client, api, ds):
    """maximumBytesBilled: a query whose bytes billed would exceed it fails
    without running, reason bytesBilledLimitExceeded, "Query exceeded limit
    for bytes billed: N. M or higher required." Bytes billed (on-demand) are
    at least 10 MB per table referenced, rounded up to the MB; a query that
    reads no table bills nothing."""
    client.query_and_wait(f"CREATE TABLE {ds}.a AS SELECT 1 AS id")
    client.query_and_wait(f"CREATE TABLE {ds}.b AS SELECT 1 AS id")
    ten_mb = 10 * 1024 * 1024
    limit = {"maximumBytesBilled": str(ten_mb)}
    assert jobs_query(api, f"SELECT id FROM {ds}.a", **limit).status_code == 200
    assert jobs_query(api, "SELECT 1", maximumBytesBilled="1").status_code == 200
    error = assert_bigquery_error(jobs_query(api, f"SELECT * FROM {ds}.a JOIN {ds}.b USING (id)", **limit),
                                  400, "bytesBilledLimitExceeded")
    assert error["message"] == f"Query exceeded limit for bytes billed: {ten_mb}. {2 * ten_mb} or higher required."
    # through jobs.insert: the job ends DONE with that errorResult, and wrote nothing
    job = client.query(f"CREATE TABLE {ds}.c AS SELECT * FROM {ds}.a JOIN {ds}.b USING (id)",
                       job_config=bigquery.QueryJobConfig(maximum_bytes_billed=ten_mb))
    # (the Python client knows no exception for this reason: it raises a 500)
    with pytest.raises(exceptions.GoogleAPICallError, match="exceeded limit for bytes billed"):
        job.result()
    assert requests.get(f"{api}/datasets/{ds}/tables/c", timeout=30).status_code == 404


def test_replacing_a_table_with_a_different_partitioning_is_refused(client, api, ds):
    """CREATE OR REPLACE TABLE cannot change a table's partitioning: 400
    invalidQuery "Cannot replace a table with a different partitioning spec.
    Instead, DROP the table, and then recreate it. ...", whether the new
    table is a CLONE or a query; the table is left as it was. DROP then
    CREATE ... CLONE works."""
    client.query_and_wait(f"CREATE TABLE {ds}.p (id INT64, d DATE) PARTITION BY d")
    client.query_and_wait(f"INSERT INTO {ds}.p VALUES (1, DATE '2024-01-01')")
    client.query_and_wait(f"CREATE TABLE {ds}.flat (id INT64, d DATE)")
    for sql in (f"CREATE OR REPLACE TABLE {ds}.p CLONE {ds}.flat",
                f"CREATE OR REPLACE TABLE {ds}.p AS SELECT * FROM {ds}.flat"):
        error = assert_bigquery_error(jobs_query(api, sql), 400, "invalidQuery")
        assert error["message"].startswith("Cannot replace a table with a different partitioning spec."), error
        assert "existing spec is interval(type:day,field:d)" in error["message"]
        assert values(client, f"SELECT id FROM {ds}.p") == [(1,)]
    # the same partitioning replaces; so does DROP, then CLONE
    client.query_and_wait(f"CREATE OR REPLACE TABLE {ds}.p PARTITION BY d AS SELECT * FROM {ds}.p")
    client.query_and_wait(f"DROP TABLE {ds}.p")
    client.query_and_wait(f"CREATE TABLE {ds}.p CLONE {ds}.flat")
    assert client.get_table(f"{ds}.p").time_partitioning is None


def test_a_snapshot_with_an_expiration_expires(client, api, ds):
    """CREATE SNAPSHOT TABLE ... OPTIONS(expiration_timestamp = ...): tables.get
    reports expirationTime (ms since the epoch), and BigQuery deletes the
    snapshot once that time has passed. bqemulator cannot parse the OPTIONS;
    the layer records them (TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL n
    unit) or a TIMESTAMP literal) and refuses any other expression."""
    client.query_and_wait(f"CREATE TABLE {ds}.base AS SELECT 1 AS id")
    client.query_and_wait(f"CREATE SNAPSHOT TABLE {ds}.month CLONE {ds}.base "
                          f"OPTIONS(expiration_timestamp = TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL 30 DAY))")
    month = client.get_table(f"{ds}.month")
    assert month.table_type == "SNAPSHOT"
    assert abs(month.expires.timestamp() - (time.time() + 30 * 86400)) < 60
    client.query_and_wait(f"CREATE SNAPSHOT TABLE {ds}.fixed CLONE {ds}.base "
                          f"OPTIONS(expiration_timestamp = TIMESTAMP '2099-01-01 00:00:00 UTC')")
    assert client.get_table(f"{ds}.fixed").expires.year == 2099
    client.query_and_wait(f"CREATE SNAPSHOT TABLE {ds}.brief CLONE {ds}.base "
                          f"OPTIONS(expiration_timestamp = TIMESTAMP_ADD(CURRENT_TIMESTAMP(), INTERVAL 1 SECOND))")
    assert values(client, f"SELECT id FROM {ds}.brief") == [(1,)]
    time.sleep(1.5)
    assert requests.get(f"{api}/datasets/{ds}/tables/brief", timeout=30).status_code == 404
    assert values(client, f"SELECT id FROM {ds}.month") == [(1,)]
    assert_bigquery_error(jobs_query(api, f"CREATE SNAPSHOT TABLE {ds}.odd CLONE {ds}.base "
                                          f"OPTIONS(expiration_timestamp = NULL)"), 400, "invalidQuery")


def test_a_gzipped_request_body_is_understood(api):
    """Clients may send Content-Encoding: gzip request bodies; the translation
    layer reads them like bqemulator does."""
    body = gzip.compress(json.dumps({"query": "SELECT 41 + 1 AS answer", "useLegacySql": False}).encode())
    response = requests.post(f"{api}/queries", data=body, timeout=30,
                             headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert response.status_code == 200, response.text
    assert response.json()["rows"] == [{"f": [{"v": "42"}]}]



# --------------------------------------------------------------------------- test hooks


def test_a_flaky_marker_fails_once_then_runs(api, emulator):
    """Hook: `airlock_flaky_503_<id>` / `_429_`: the first request holding the
    marker answers 503 backendError / 429 rateLimitExceeded (what BigQuery
    answers when it asks to be retried), every later one runs."""
    marker = f"airlock_flaky_503_{uuid.uuid4().hex[:8]}"
    assert_bigquery_error(jobs_query(api, f"SELECT '{marker}' AS m"), 503, "backendError")
    again = jobs_query(api, f"SELECT '{marker}' AS m")
    assert again.status_code == 200 and again.json()["rows"] == [{"f": [{"v": marker}]}], again.text
    limited = f"airlock_flaky_429_{uuid.uuid4().hex[:8]}"
    assert_bigquery_error(jobs_query(api, f"SELECT '{limited}' AS m"), 429, "rateLimitExceeded")
    assert jobs_query(api, f"SELECT '{limited}' AS m").status_code == 200
    hooks = requests.get(f"{emulator['BIGQUERY_ENDPOINT']}/airlock-emulator/hooks", timeout=30).json()
    assert marker in hooks["flaked"] and limited in hooks["flaked"]


def test_a_slow_job_is_in_flight_until_cancelled(api, emulator):
    """Hook: `airlock_slow_<n>ms` keeps a job in flight for n ms; jobs.cancel
    (BigQuery: 200, a jobCancelResponse) is recorded and ends the job with
    reason `stopped`."""
    import threading
    hooks_url = f"{emulator['BIGQUERY_ENDPOINT']}/airlock-emulator/hooks"
    job_id = f"slow_{uuid.uuid4().hex[:8]}"
    answer: dict = {}
    body = {"jobReference": {"jobId": job_id},
            "configuration": {"query": {"query": "SELECT 'airlock_slow_20000ms' AS m", "useLegacySql": False}}}
    insert = threading.Thread(target=lambda: answer.update(requests.post(f"{api}/jobs", json=body, timeout=60).json()))
    insert.start()
    for _ in range(100):
        if job_id in requests.get(hooks_url, timeout=30).json()["in_flight"]:
            break
        time.sleep(0.05)
    cancelled = requests.post(f"{api}/jobs/{job_id}/cancel", timeout=30)
    assert cancelled.status_code == 200 and cancelled.json()["kind"] == "bigquery#jobCancelResponse", cancelled.text
    insert.join(timeout=10)
    assert answer["status"]["errorResult"]["reason"] == "stopped", answer
    hooks = requests.get(hooks_url, timeout=30).json()
    assert job_id in hooks["cancelled"] and job_id not in hooks["in_flight"]
