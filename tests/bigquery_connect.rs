//! The BigQuery adapter through the real client (gcp-bigquery-client)
//! against the local emulator: values as text, rows written, the catalog,
//! seeds with query parameters, scripts and transactions, the deploy lock,
//! and clear errors from `airlock deploy` (bad key file, unknown project,
//! missing dataset, permission denied) that never show key material.

mod common;

use std::sync::Arc;

use airlock::warehouse::{LockError, LockInfo, ObjectKind, SeedLoad, Warehouse};
use common::bigquery::{self as bq, Profile};
use common::Scratch;

fn text(cells: &[&str]) -> Vec<Option<String>> {
    cells.iter().map(|c| (*c != "NULL").then(|| c.to_string())).collect()
}

fn warehouse(dataset: &str) -> (tempfile::TempDir, Arc<dyn Warehouse>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let wh = Profile::new(dataset).open(dir.path());
    (dir, wh)
}

#[tokio::test(flavor = "multi_thread")]
async fn values_rows_written_and_the_catalog() {
    let _one = bq::exclusive();
    let (_dir, wh) = warehouse("s");
    assert_eq!(wh.describe(), format!("BigQuery project {} dataset s", bq::emulator().project));
    wh.execute("CREATE SCHEMA IF NOT EXISTS `s`").await.unwrap();
    wh.execute("CREATE TABLE `s`.`t` (id INT64, amount INT64, price FLOAT64, ok BOOL, d DATE, ts TIMESTAMP, name STRING)").await.unwrap();
    let inserted = wh
        .execute_counted(
            "INSERT INTO `s`.`t` VALUES (1, 15, 2.25, TRUE, '2024-06-15', TIMESTAMP '2024-06-15 12:30:45.5', 'it\\'s'), \
             (2, NULL, NULL, FALSE, '1969-12-31', TIMESTAMP '2024-06-15 00:00:00', NULL)",
        )
        .await
        .unwrap();
    assert_eq!(inserted, Some(2));
    let rows = wh.query("SELECT * FROM `s`.`t` ORDER BY id").await.unwrap();
    assert_eq!(rows.columns, ["id", "amount", "price", "ok", "d", "ts", "name"]);
    assert_eq!(rows.rows[0], text(&["1", "15", "2.25", "true", "2024-06-15", "2024-06-15 12:30:45.5", "it's"]));
    assert_eq!(rows.rows[1], text(&["2", "NULL", "NULL", "false", "1969-12-31", "2024-06-15 00:00:00", "NULL"]));
    assert_eq!(wh.execute_counted("UPDATE `s`.`t` SET name = 'x' WHERE id > 0").await.unwrap(), Some(2));
    assert_eq!(wh.execute_counted("CREATE OR REPLACE TABLE `s`.`c` AS SELECT * FROM `s`.`t`").await.unwrap(), Some(2));
    assert_eq!(wh.execute_counted("CREATE OR REPLACE VIEW `s`.`v` AS SELECT id FROM `s`.`t`").await.unwrap(), None);

    // the catalog: tables and views of the given datasets; a missing dataset holds nothing
    let catalog = wh.catalog(&["s".to_string(), "no_such_dataset".to_string()]).await.unwrap();
    let found: Vec<(String, String, ObjectKind)> = catalog.iter().map(|e| (e.schema.clone(), e.name.clone(), e.kind)).collect();
    assert_eq!(
        found,
        [("s".into(), "c".into(), ObjectKind::Table), ("s".into(), "t".into(), ObjectKind::Table), ("s".into(), "v".into(), ObjectKind::View)]
    );
    let ddl = catalog.iter().find(|e| e.name == "v").and_then(|e| e.view_ddl.clone()).unwrap();
    assert!(ddl.starts_with("CREATE OR REPLACE VIEW `s`.`v` AS"), "{ddl}");
    // the stored DDL re-creates the view
    wh.execute("DROP VIEW `s`.`v`").await.unwrap();
    wh.execute(&ddl).await.unwrap();
    assert_eq!(bq::scalar("SELECT COUNT(*) FROM `s`.`v`"), "2");

    // a failing statement is an error with BigQuery's reason, not a success
    let err = wh.execute("SELECT * FROM `s`.`no_such_table`").await.unwrap_err();
    assert!(format!("{err:#}").contains("notFound"), "{err:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn seeds_load_awkward_values_through_query_parameters() {
    let _one = bq::exclusive();
    let (dir, wh) = warehouse("seeds");
    wh.execute("CREATE SCHEMA IF NOT EXISTS `seeds`").await.unwrap();
    let file = dir.path().join("people.csv");
    std::fs::write(&file, "id,name,joined,score,active\n1,\"O'Brien; DROP TABLE x --\",2024-01-02,1.5,true\n2,back\\slash `tick`,,2,false\n3,,2024-03-04,,\n").unwrap();
    let seed = SeedLoad { target: "`seeds`.`people`".into(), file, column_types: [("score".to_string(), "NUMERIC".to_string())].into() };
    assert_eq!(wh.load_seed(&seed).await.unwrap(), Some(3));
    let rows = bq::query("SELECT id, name, CAST(joined AS STRING), CAST(CAST(score AS FLOAT64) AS STRING), active FROM `seeds`.`people` ORDER BY id");
    assert_eq!(rows[0], ["1", "O'Brien; DROP TABLE x --", "2024-01-02", "1.5", "True"]);
    assert_eq!(rows[1], ["2", "back\\slash `tick`", "NULL", "2.0", "False"]);
    assert_eq!(rows[2], ["3", "NULL", "2024-03-04", "NULL", "NULL"]);
    // loading again replaces the table
    assert_eq!(wh.load_seed(&seed).await.unwrap(), Some(3));
    assert_eq!(bq::scalar("SELECT COUNT(*) FROM `seeds`.`people`"), "3");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_script_keeps_its_temp_table_and_atomic_dml_rolls_back() {
    let _one = bq::exclusive();
    let (_dir, wh) = warehouse("script");
    wh.execute("CREATE SCHEMA IF NOT EXISTS `script`").await.unwrap();
    wh.execute("CREATE TABLE `script`.`t` (a INT64)").await.unwrap();
    // the incremental merge airlock emits: a temp table lives for the script
    let merge = [
        "CREATE OR REPLACE TEMP TABLE `airlock_new_t` AS SELECT 1 AS a UNION ALL SELECT 2",
        "DELETE FROM `script`.`t` WHERE EXISTS (SELECT 1 FROM `airlock_new_t` AS airlock_new WHERE airlock_new.a = `t`.a)",
        "INSERT INTO `script`.`t` SELECT * FROM `airlock_new_t`",
        "DROP TABLE `airlock_new_t`",
    ]
    .map(String::from);
    wh.execute_atomic(&merge).await.unwrap();
    wh.execute_atomic(&merge).await.unwrap();
    assert_eq!(bq::scalar("SELECT COUNT(*) FROM `script`.`t`"), "2");
    // DML in one transaction: the second statement fails, the first is undone
    let err = wh.execute_atomic(&["INSERT INTO `script`.`t` VALUES (3)".to_string(), "INSERT INTO `script`.`nope` VALUES (4)".to_string()]).await.unwrap_err();
    assert!(format!("{err:#}").contains("rolled back"), "{err:#}");
    assert_eq!(bq::scalar("SELECT COUNT(*) FROM `script`.`t`"), "2");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_deploy_lock_is_exclusive_and_taken_over_by_compare_and_set() {
    let _one = bq::exclusive();
    let dir = tempfile::tempdir().unwrap();
    let profile = Profile::new("lock");
    let (a, b) = (profile.open(dir.path()), profile.open(dir.path()));
    let mut ours = LockInfo::ours("deploy", Some(1));
    // JSON with a backslash and a quote survives the string literal
    ours.host = r"build\box 'one'".into();
    a.lock(&ours).await.unwrap();
    let theirs = LockInfo::ours("deploy", None);
    match b.lock(&theirs).await {
        Err(LockError::Held { holder, .. }) => assert_eq!(holder, ours),
        other => panic!("expected the lock to be held: {other:?}"),
    }
    let mut beat = ours.clone();
    beat.heartbeat = Some("2099-01-01 00:00:00.000".into());
    a.update_lock(&beat).await.unwrap();
    assert_eq!(b.lock_holder().await.unwrap(), Some(beat.clone()));
    let refused = b.take_over_lock(&ours, &theirs).await.unwrap_err();
    assert!(format!("{refused:#}").contains("changed hands"), "{refused:#}");
    b.take_over_lock(&beat, &theirs).await.unwrap();
    let lost = a.update_lock(&ours).await.unwrap_err();
    assert!(format!("{lost:#}").contains("no longer holds"), "{lost:#}");
    b.unlock().await.unwrap();
    assert_eq!(a.lock_holder().await.unwrap(), None);
    // a warehouse dropped while holding the lock releases it
    let c = profile.open(dir.path());
    c.lock(&theirs).await.unwrap();
    drop(c);
    assert_eq!(a.lock_holder().await.unwrap(), None);
}

/// Key material that must never be printed.
const KEY_BODY: &str = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDsecretKEYmaterial";

fn key_json(private_key: &str) -> String {
    serde_json::json!({
        "type": "service_account",
        "project_id": "airlock-emulator",
        "private_key_id": "0123456789abcdef",
        "private_key": private_key,
        "client_email": "airlock@airlock-emulator.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token"
    })
    .to_string()
}

/// `airlock deploy -vv` of the shop against `profile`: exit 2, its stderr;
/// checks that the key shows nowhere.
fn failing_deploy(profile: &Profile) -> String {
    let s = Scratch::new();
    let project = s.copy_fixture("shop");
    profile.write(&project);
    let run = s.airlock(&project, &["deploy", "--strategy", "wac", "-vv"]);
    run.assert_code(2);
    for out in [&run.stdout, &run.stderr] {
        assert!(!out.contains(KEY_BODY) && !out.contains("BEGIN PRIVATE KEY"), "key material was shown:\n{}\n{}", run.stdout, run.stderr);
    }
    run.stderr
}

#[test]
fn a_bad_key_file_fails_deploy_with_exit_2_without_showing_it() {
    let _one = bq::exclusive();
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        // not JSON: the key's text must not be echoed in the parse error
        (format!("-----BEGIN PRIVATE KEY-----\n{KEY_BODY}\n-----END PRIVATE KEY-----\n"), "not a service account key: not JSON"),
        (key_json(&format!("{KEY_BODY}")), "`private_key` is not a PEM private key"),
        (key_json("").replace("service_account", "authorized_user"), "`type` is not `service_account`"),
    ];
    for (i, (content, expected)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("key{i}.json"));
        std::fs::write(&file, content).unwrap();
        let mut profile = Profile::new("badkey");
        profile.method = "service-account".into();
        profile.extra.push(("keyfile".into(), format!("'{}'", file.display())));
        let stderr = failing_deploy(&profile);
        assert!(stderr.contains(expected) && stderr.contains(&format!("keyfile '{}'", file.display())), "{expected}: {stderr}");
    }
    // a missing key file is named
    let mut profile = Profile::new("badkey");
    profile.method = "service-account".into();
    profile.extra.push(("keyfile".into(), "/nonexistent/key.json".into()));
    let stderr = failing_deploy(&profile);
    assert!(stderr.contains("cannot read the key file '/nonexistent/key.json' (`keyfile`)"), "{stderr}");
    // nothing was written
    assert!(bq::query("SELECT schema_name FROM INFORMATION_SCHEMA.SCHEMATA").is_empty());
}

#[test]
fn a_good_key_is_never_printed_even_with_vv() {
    let _one = bq::exclusive();
    // a well-formed key reaches the emulator over plain http without a token:
    // the key is never used, and never shown
    let mut profile = Profile::new("analytics");
    profile.method = "service-account-json".into();
    profile.extra.push(("keyfile_json".into(), key_json(&format!("-----BEGIN PRIVATE KEY-----\n{KEY_BODY}\n-----END PRIVATE KEY-----\n"))));
    let s = Scratch::new();
    let project = s.copy_fixture("shop");
    profile.write(&project);
    let run = s.airlock(&project, &["plan", "-vv"]);
    for out in [&run.stdout, &run.stderr] {
        assert!(!out.contains(KEY_BODY) && !out.contains("BEGIN PRIVATE KEY"), "key material was shown:\n{}\n{}", run.stdout, run.stderr);
    }
    let loaded = format!("{:?}", profile.load(s.path()));
    assert!(!loaded.contains(KEY_BODY) && loaded.contains("***"), "{loaded}");
}

#[test]
fn an_unknown_project_fails_deploy_with_exit_2() {
    let _one = bq::exclusive();
    let mut profile = Profile::new("analytics");
    profile.project = "no-such-project".into();
    let stderr = failing_deploy(&profile);
    // one line, about the project first (the sources are checked in it, but that is not the news)
    let error = stderr.lines().rev().find(|l| l.starts_with("airlock: ")).unwrap_or_default();
    assert!(error.starts_with("airlock: BigQuery error (notFound, HTTP 404): Not found: Project no-such-project"), "{stderr}");
    assert!(stderr.contains("the project 'no-such-project' named in") && stderr.contains("profiles.yml target 'dev'"), "{stderr}");
}

#[test]
fn a_denied_dataset_fails_deploy_with_exit_2() {
    let _one = bq::exclusive();
    let profile = Profile::new("airlock_denied_prod");
    bq::sql(&["CREATE SCHEMA `landing`", "CREATE TABLE `landing`.`shipments` (shipment_id INT64, order_id INT64, shipped_at STRING, carrier STRING)"]);
    let stderr = failing_deploy(&profile);
    assert!(stderr.contains("accessDenied") && stderr.contains("Access Denied: Dataset airlock-emulator:airlock_denied_prod"), "{stderr}");
    assert!(stderr.contains("lack a permission on project 'airlock-emulator'") || stderr.contains("lack this permission on project 'airlock-emulator'"), "{stderr}");
    assert!(bq::query("SELECT schema_name FROM INFORMATION_SCHEMA.SCHEMATA WHERE schema_name LIKE 'airlock_denied%'").is_empty());
}

#[test]
fn a_missing_source_dataset_blocks_the_deploy_naming_it() {
    let _one = bq::exclusive();
    // the shop reads `landing.shipments`; no `landing` dataset exists
    let profile = Profile::new("analytics");
    let s = Scratch::new();
    let project = s.copy_fixture("shop");
    profile.write(&project);
    let run = s.airlock(&project, &["deploy", "--strategy", "wac"]);
    run.assert_code(2);
    // the source, its dataset and the project, before anything was written
    assert!(
        run.stderr.contains("source 'landing.shipments'") && run.stderr.contains("reads dataset 'landing', which does not exist in BigQuery project 'airlock-emulator'"),
        "{}",
        run.stderr
    );
    // nothing at all was written: no prod, no audit, no lock, no ledger
    assert!(bq::query("SELECT schema_name FROM INFORMATION_SCHEMA.SCHEMATA").is_empty());

    // the dataset exists but not the table: named too
    bq::sql(&["CREATE SCHEMA `landing`", "CREATE TABLE `landing`.`other` (id INT64)"]);
    let run = s.airlock(&project, &["deploy", "--strategy", "wac"]);
    run.assert_code(2);
    assert!(run.stderr.contains("source 'landing.shipments'") && run.stderr.contains("reads table 'landing.shipments', which does not exist"), "{}", run.stderr);
    let datasets = bq::query("SELECT schema_name FROM INFORMATION_SCHEMA.SCHEMATA");
    assert_eq!(datasets, [["landing"]], "a deploy stopped by a missing source wrote to BigQuery");
}

#[test]
fn a_backend_error_or_rate_limit_is_retried_with_a_warning() {
    let _one = bq::exclusive();
    let s = Scratch::new();
    let project = s.copy_fixture("shop");
    Profile::new("analytics").write(&project);
    // the emulator answers 503 / 429 the first time it sees each marker
    let id = bq::unique_prefix("r");
    std::fs::write(project.join("models/flaky_a.sql"), format!("select 'airlock_flaky_503_{id}' as a\n")).unwrap();
    std::fs::write(project.join("models/flaky_b.sql"), format!("select 'airlock_flaky_429_{id}' as b\n")).unwrap();
    // plan dry-runs every statement through jobs.insert
    let run = s.airlock(&project, &["plan", "--strategy", "wac"]);
    run.assert_code(0);
    for code in ["503", "429"] {
        assert!(run.stderr.contains(&format!("failed (HTTP {code}); retry 1 of 3")), "no warning for {code}:\n{}", run.stderr);
        assert!(bq::hooks()["flaked"].as_array().unwrap().iter().any(|m| m.as_str() == Some(&format!("airlock_flaky_{code}_{id}"))));
    }
}

#[test]
fn sigint_cancels_the_bigquery_jobs_in_flight() {
    let _one = bq::exclusive();
    let s = Scratch::new();
    let project = s.copy_fixture("shop");
    Profile::new("analytics").write(&project);
    bq::sql(&["CREATE SCHEMA `landing`", "CREATE TABLE `landing`.`shipments` (shipment_id INT64, order_id INT64, shipped_at STRING, carrier STRING)"]);
    // a model whose job the emulator keeps in flight for a minute
    std::fs::write(project.join("models/slow.sql"), "select 'airlock_slow_60000ms' as x\n").unwrap();
    let mut child = s.command(&project, &["deploy", "--strategy", "wac"]).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let started = std::time::Instant::now();
    let job = loop {
        if let Some(j) = bq::hooks()["in_flight"].as_array().unwrap().iter().filter_map(|j| j.as_str()).find(|j| j.starts_with("airlock_")) {
            break j.to_string();
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(90), "the slow job never started");
        assert!(child.try_wait().unwrap().is_none(), "deploy ended before the slow job started");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    // the job in flight was cancelled through jobs.cancel
    let cancelled = bq::hooks()["cancelled"].clone();
    assert!(cancelled.as_array().unwrap().iter().any(|j| j.as_str() == Some(job.as_str())), "{job} not in {cancelled}");
    assert_eq!(bq::scalar("SELECT status FROM `airlock`.`releases` ORDER BY id DESC LIMIT 1"), "interrupted");
    assert_eq!(bq::scalar("SELECT COUNT(*) FROM INFORMATION_SCHEMA.SCHEMATA WHERE schema_name IN ('analytics', 'analytics_marts')"), "0", "prod was written");
}

#[test]
fn plain_http_is_refused_except_for_127_0_0_1() {
    let dir = tempfile::tempdir().unwrap();
    let mut profile = Profile::new("analytics");
    profile.api_endpoint = "http://bigquery.example.com".into();
    let file = profile.write(dir.path());
    let err = airlock::project::profile::load_profile(&file, "shop", None).unwrap_err();
    assert!(format!("{err:#}").contains("plain http is allowed only for 127.0.0.1"), "{err:#}");
}
