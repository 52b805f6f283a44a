//! The Snowflake adapter through the real client (snowflake-connector-rs)
//! against the local emulator: values as text, rows written, the catalog,
//! seeds with bind values, the deploy lock, sessions, retries, and clear
//! login errors from `airlock deploy` that never show the password.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock::warehouse::{LockError, LockInfo, ObjectKind, SeedLoad, Warehouse};
use common::snowflake::{self as sf, Profile};
use common::{HeldPort, Scratch};

fn text(cells: &[&str]) -> Vec<Option<String>> {
    cells.iter().map(|c| (*c != "NULL").then(|| c.to_string())).collect()
}

/// A warehouse on a database of its own, and the folder of its profiles.yml.
fn warehouse(prefix: &str) -> (tempfile::TempDir, String, Arc<dyn Warehouse>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sf::unique_database(prefix);
    let wh = Profile::new(&db).open(dir.path());
    (dir, db, wh)
}

#[tokio::test(flavor = "multi_thread")]
async fn values_come_back_as_text() {
    let (_dir, _db, wh) = warehouse("text");
    wh.execute("CREATE SCHEMA IF NOT EXISTS S").await.unwrap();
    wh.execute("CREATE TABLE S.T (ID INTEGER, AMOUNT NUMBER(10,2), PRICE FLOAT, OK BOOLEAN, D DATE, TS TIMESTAMP_NTZ, CLOCK TIME, NAME VARCHAR)").await.unwrap();
    wh.execute(
        "INSERT INTO S.T VALUES (1, 1.5, 2.25, TRUE, '2024-06-15', '2024-06-15 12:30:45.5', '08:09:10', 'it''s'), \
         (2, NULL, NULL, FALSE, '1969-12-31', '2024-06-15 00:00:00', NULL, NULL), (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    )
    .await
    .unwrap();
    let rows = wh.query("SELECT * FROM S.T ORDER BY ID").await.unwrap();
    assert_eq!(rows.columns, ["ID", "AMOUNT", "PRICE", "OK", "D", "TS", "CLOCK", "NAME"]);
    assert_eq!(rows.rows[0], text(&["1", "1.50", "2.25", "true", "2024-06-15", "2024-06-15 12:30:45.5", "08:09:10", "it's"]));
    assert_eq!(rows.rows[1], text(&["2", "NULL", "NULL", "false", "1969-12-31", "2024-06-15 00:00:00", "NULL", "NULL"]));
    assert_eq!(rows.rows[2], text(&["3", "NULL", "NULL", "NULL", "NULL", "NULL", "NULL", "NULL"]));
    assert_eq!(wh.describe(), format!("Snowflake account test database {_db}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_written_are_reported_for_ctas_and_dml_not_for_views() {
    let (_dir, _db, wh) = warehouse("counted");
    wh.execute("CREATE SCHEMA IF NOT EXISTS S").await.unwrap();
    let cases = [
        ("CREATE OR REPLACE TABLE S.T AS SELECT 1 AS ID, 'a' AS NAME UNION ALL SELECT 2, 'b' UNION ALL SELECT 3, 'c'", Some(3)),
        ("INSERT INTO S.T VALUES (4, 'd'), (5, 'e')", Some(2)),
        ("UPDATE S.T SET NAME = 'x' WHERE ID > 3", Some(2)),
        ("DELETE FROM S.T WHERE ID = 5", Some(1)),
        ("MERGE INTO S.T t USING (SELECT 1 AS ID, 'm' AS NAME UNION ALL SELECT 9, 'n') s ON t.ID = s.ID WHEN MATCHED THEN UPDATE SET NAME = s.NAME WHEN NOT MATCHED THEN INSERT (ID, NAME) VALUES (s.ID, s.NAME)", Some(2)),
        ("CREATE OR REPLACE VIEW S.V AS SELECT * FROM S.T", None),
        ("CREATE SCHEMA IF NOT EXISTS S2", None),
    ];
    for (sql, expected) in cases {
        assert_eq!(wh.execute_counted(sql).await.unwrap(), expected, "{sql}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_catalog_lists_tables_and_views_of_the_given_schemas_with_view_ddl() {
    let (_dir, _db, wh) = warehouse("catalog");
    for sql in [
        "CREATE SCHEMA IF NOT EXISTS S1",
        "CREATE SCHEMA IF NOT EXISTS S2",
        "CREATE SCHEMA IF NOT EXISTS OTHER",
        "CREATE TABLE S1.ORDERS AS SELECT 1 AS ID UNION ALL SELECT 2 UNION ALL SELECT 3",
        "CREATE VIEW S1.BIG_ORDERS AS SELECT ID FROM S1.ORDERS WHERE ID > 1",
        "CREATE TABLE S2.EMPTY (ID INTEGER)",
        "CREATE TABLE OTHER.HIDDEN (ID INTEGER)",
    ] {
        wh.execute(sql).await.unwrap();
    }
    let found = wh.catalog(&["S1".into(), "S2".into()]).await.unwrap();
    let names: Vec<(String, String, ObjectKind)> = found.iter().map(|e| (e.schema.clone(), e.name.clone(), e.kind)).collect();
    assert_eq!(
        names,
        [("S1".into(), "BIG_ORDERS".into(), ObjectKind::View), ("S1".into(), "ORDERS".into(), ObjectKind::Table), ("S2".into(), "EMPTY".into(), ObjectKind::Table)]
    );
    assert_eq!(found[1].rows, Some(3));
    assert_eq!(found[0].rows, None);
    // the view's DDL re-creates it
    let ddl = found[0].view_ddl.clone().expect("view ddl");
    assert!(ddl.to_uppercase().starts_with("CREATE") && !ddl.ends_with(';'), "{ddl}");
    wh.execute("DROP VIEW S1.BIG_ORDERS").await.unwrap();
    wh.execute(&ddl).await.unwrap();
    assert_eq!(wh.query("SELECT COUNT(*) FROM S1.BIG_ORDERS").await.unwrap().rows, [text(&["2"])]);
    assert!(wh.catalog(&["NOPE".into()]).await.unwrap().is_empty());
    assert!(wh.catalog(&[]).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn seeds_load_awkward_values_through_bind_values() {
    let (dir, db, wh) = warehouse("seed");
    wh.execute("CREATE SCHEMA IF NOT EXISTS \"RAW\"").await.unwrap();
    let csv = dir.path().join("raw_people.csv");
    std::fs::write(
        &csv,
        "id,name,note,amount,joined_on,active\n\
         1,\"O'Brien, Jr.\",\"back\\slash and \"\"quotes\"\"; DROP TABLE x; --\",12.5,2024-01-02,true\n\
         2,Zoë 🚀 Straße,,7,2024-01-03,false\n\
         3,,\"two\nlines\",,,\n",
    )
    .unwrap();
    let seed = SeedLoad {
        target: "\"RAW\".\"PEOPLE\"".into(),
        file: csv,
        column_types: BTreeMap::from([("amount".to_string(), "NUMBER(10,2)".to_string())]),
    };
    assert_eq!(wh.load_seed(&seed).await.unwrap(), Some(3));
    // loading again replaces the table
    assert_eq!(wh.load_seed(&seed).await.unwrap(), Some(3));
    let [rows, types]: [Vec<Vec<String>>; 2] = sf::sql(
        &db,
        &[
            "SELECT ID, NAME, NOTE, AMOUNT, JOINED_ON, ACTIVE FROM RAW.PEOPLE ORDER BY ID",
            "SELECT COLUMN_NAME, DATA_TYPE, NUMERIC_SCALE FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_SCHEMA = 'RAW' AND TABLE_NAME = 'PEOPLE' ORDER BY ORDINAL_POSITION",
        ],
    )
    .try_into()
    .unwrap();
    assert_eq!(
        rows,
        [
            vec!["1", "O'Brien, Jr.", "back\\slash and \"quotes\"; DROP TABLE x; --", "12.50", "2024-01-02", "True"],
            vec!["2", "Zoë 🚀 Straße", "NULL", "7.00", "2024-01-03", "False"],
            vec!["3", "NULL", "two\nlines", "NULL", "NULL", "NULL"],
        ]
    );
    let types: Vec<(String, String)> = types.into_iter().map(|r| (r[0].clone(), r[1].clone())).collect();
    let expected = [("ID", "NUMBER"), ("NAME", "TEXT"), ("NOTE", "TEXT"), ("AMOUNT", "NUMBER"), ("JOINED_ON", "DATE"), ("ACTIVE", "BOOLEAN")];
    assert_eq!(types, expected.map(|(c, t)| (c.to_string(), t.to_string())));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_deploy_lock_is_exclusive_and_taken_over_by_compare_and_set() {
    let dir = tempfile::tempdir().unwrap();
    let db = sf::unique_database("lock");
    let profile = Profile::new(&db);
    let (a, b) = (profile.open(dir.path()), profile.open(dir.path()));
    let mut ours = LockInfo::ours("deploy", Some(1));
    // JSON with a backslash and a quote survives the string literal
    ours.host = r"build\box 'one'".into();
    a.lock(&ours).await.unwrap();

    let theirs = LockInfo::ours("deploy", None);
    match b.lock(&theirs).await {
        Err(LockError::Held { location, holder }) => {
            assert_eq!(holder, ours);
            assert_eq!(location, format!("Snowflake account test database {db}"));
            let message = LockError::Held { location, holder }.to_string();
            assert!(message.contains("is locked by release 1") && message.contains(r"build\box 'one'"), "{message}");
        }
        other => panic!("expected the lock to be held: {other:?}"),
    }

    let mut beat = ours.clone();
    beat.heartbeat = Some("2099-01-01 00:00:00.000".into());
    a.update_lock(&beat).await.unwrap();
    assert_eq!(b.lock_holder().await.unwrap(), Some(beat.clone()));

    // the holder moved on: taking over from what it was is refused
    let refused = b.take_over_lock(&ours, &theirs).await.unwrap_err();
    assert!(format!("{refused:#}").contains("changed hands"), "{refused:#}");
    assert_eq!(b.lock_holder().await.unwrap(), Some(beat.clone()));

    b.take_over_lock(&beat, &theirs).await.unwrap();
    assert_eq!(a.lock_holder().await.unwrap(), Some(theirs.clone()));
    // the old holder notices it lost the lock instead of overwriting it
    let lost = a.update_lock(&ours).await.unwrap_err();
    assert!(format!("{lost:#}").contains("no longer holds"), "{lost:#}");
    assert_eq!(a.lock_holder().await.unwrap(), Some(theirs.clone()));

    b.unlock().await.unwrap();
    assert_eq!(a.lock_holder().await.unwrap(), None);
    a.lock(&ours).await.unwrap();
    a.unlock().await.unwrap();

    // a warehouse dropped while holding the lock releases it
    let c = profile.open(dir.path());
    c.lock(&theirs).await.unwrap();
    drop(c);
    assert_eq!(a.lock_holder().await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_script_runs_in_one_session_and_atomic_dml_rolls_back() {
    let (_dir, _db, wh) = warehouse("session");
    let script = [
        "CREATE SCHEMA IF NOT EXISTS S",
        "CREATE OR REPLACE TEMP TABLE SCRATCH AS SELECT 1 AS A",
        "INSERT INTO SCRATCH VALUES (2)",
        "CREATE TABLE S.KEPT AS SELECT * FROM SCRATCH",
    ]
    .map(String::from);
    wh.execute_script(&script).await.unwrap();
    assert_eq!(wh.query("SELECT COUNT(*) FROM S.KEPT").await.unwrap().rows, [text(&["2"])]);

    let failing = ["INSERT INTO S.KEPT VALUES (3)", "INSERT INTO S.MISSING VALUES (4)"].map(String::from);
    let err = wh.execute_atomic(&failing).await.unwrap_err();
    assert!(format!("{err:#}").contains("statement 2 of 2"), "{err:#}");
    assert_eq!(wh.query("SELECT COUNT(*) FROM S.KEPT").await.unwrap().rows, [text(&["2"])]);
    wh.execute_atomic(&["INSERT INTO S.KEPT VALUES (3)".to_string()]).await.unwrap();
    assert_eq!(wh.query("SELECT COUNT(*) FROM S.KEPT").await.unwrap().rows, [text(&["3"])]);
}

/// A TCP front for the emulator that misbehaves first: refuses connections
/// until `opens_after`, and answers HTTP 503 to the requests `fail` picks.
struct FlakyFront {
    port: u16,
    failed: Arc<AtomicUsize>,
}

impl FlakyFront {
    fn start(opens_after: Duration, fail: impl Fn(&str, usize) -> bool + Send + 'static) -> FlakyFront {
        // refused until the front listens; no other test can take the port meanwhile
        let held = HeldPort::new();
        let port = held.port;
        let failed = Arc::new(AtomicUsize::new(0));
        let counter = failed.clone();
        let target = sf::emulator().port;
        std::thread::spawn(move || {
            std::thread::sleep(opens_after);
            let listener = held.listen();
            for (seen, conn) in listener.incoming().enumerate() {
                let Ok(mut client) = conn else { continue };
                let Some(request) = read_request(&mut client) else { continue };
                let line = String::from_utf8_lossy(&request).lines().next().unwrap_or_default().to_string();
                if fail(&line, seen) {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let _ = client.write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                    continue;
                }
                let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", target)) else { continue };
                let _ = upstream.write_all(&request);
                pipe(client, upstream);
            }
        });
        FlakyFront { port, failed }
    }
}

/// One HTTP request: headers and a Content-Length body.
fn read_request(conn: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return Some(buf);
            }
        }
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn pipe(a: TcpStream, b: TcpStream) {
    let (mut a2, mut b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
    let (mut a, mut b) = (a, b);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut a2, &mut b2);
        let _ = b2.shutdown(std::net::Shutdown::Write);
    });
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut b, &mut a);
        let _ = a.shutdown(std::net::Shutdown::Write);
    });
}

fn through(front: &FlakyFront, prefix: &str) -> (tempfile::TempDir, Arc<dyn Warehouse>) {
    let dir = tempfile::tempdir().unwrap();
    let mut profile = Profile::new(&sf::unique_database(prefix));
    profile.port = front.port;
    let wh = profile.open(dir.path());
    (dir, wh)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_connection_is_retried_until_the_server_accepts() {
    let front = FlakyFront::start(Duration::from_millis(600), |_, _| false);
    let (_dir, wh) = through(&front, "refused");
    let started = Instant::now();
    assert_eq!(wh.query("SELECT 1 AS ONE").await.unwrap().rows, [text(&["1"])]);
    assert!(started.elapsed() >= Duration::from_millis(500), "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn http_503_at_login_and_at_submission_is_retried() {
    // the first two logins and the first statement submission get 503
    let front = FlakyFront::start(Duration::ZERO, {
        let queries = AtomicUsize::new(0);
        move |line, seen| (line.contains("login-request") && seen < 2) || (line.contains("query-request") && queries.fetch_add(1, Ordering::SeqCst) == 0)
    });
    let (_dir, wh) = through(&front, "flaky");
    assert_eq!(wh.query("SELECT 2 AS TWO").await.unwrap().rows, [text(&["2"])]);
    assert_eq!(front.failed.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_port_fails_after_bounded_retries_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut profile = Profile::new(&sf::unique_database("closed"));
    let closed = HeldPort::new();
    profile.port = closed.port;
    let wh = profile.open(dir.path());
    let started = Instant::now();
    let err = format!("{:#}", wh.query("SELECT 1").await.unwrap_err());
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
    assert!(err.contains("cannot reach Snowflake for account 'test'") && err.contains("(4 attempts)") && err.contains("refused"), "{err}");
    assert!(err.contains("profiles.yml target 'dev'"), "{err}");
}

const PASSWORD: &str = "pw-Sup3r-S3cret-9f7c";

/// `airlock deploy` of the shop against `profile` (its password set to
/// [`PASSWORD`]); checks exit 2 and that the password shows nowhere.
fn failing_deploy(mut profile: Profile, verbose: bool) -> String {
    profile.password = PASSWORD.into();
    let s = Scratch::new();
    let project = s.copy_fixture("shop");
    profile.write(&project);
    let dir = project.to_str().unwrap();
    let mut args = vec!["deploy", "--profiles-dir", dir];
    if verbose {
        args.push("-vv");
    }
    let run = s.airlock(&project, &args);
    run.assert_code(2);
    assert!(!run.stdout.contains(PASSWORD) && !run.stderr.contains(PASSWORD), "the password was shown:\n{}\n{}", run.stdout, run.stderr);
    run.stderr
}

#[test]
fn a_wrong_password_fails_deploy_with_exit_2_and_never_shows_the_password() {
    for verbose in [false, true] {
        let mut profile = Profile::new(&sf::unique_database("badpw"));
        profile.user = "EMULATOR_WRONG_PASSWORD".into();
        let stderr = failing_deploy(profile, verbose);
        assert!(
            stderr.contains("Snowflake login failed for user 'EMULATOR_WRONG_PASSWORD' on account 'test': Incorrect username or password was specified."),
            "{stderr}"
        );
    }
}

#[test]
fn an_unknown_host_fails_deploy_with_exit_2() {
    for verbose in [false, true] {
        let mut profile = Profile::new(&sf::unique_database("nohost"));
        profile.host = "no-such-host.invalid".into();
        let stderr = failing_deploy(profile, verbose);
        assert!(stderr.contains("cannot reach Snowflake for account 'test' at http://no-such-host.invalid:"), "{stderr}");
        assert!(stderr.contains("check `account`, `host`, `port` and `protocol` in"), "{stderr}");
    }
}

#[test]
fn a_missing_role_fails_deploy_with_exit_2() {
    for verbose in [false, true] {
        let mut profile = Profile::new(&sf::unique_database("norole"));
        profile.role = Some("EMULATOR_MISSING_ROLE".into());
        let stderr = failing_deploy(profile, verbose);
        assert!(
            stderr.contains("Snowflake login failed for user 'tester' on account 'test': Role 'EMULATOR_MISSING_ROLE' specified in the connect string does not exist or not authorized."),
            "{stderr}"
        );
    }
}

#[test]
fn a_missing_warehouse_fails_deploy_with_exit_2() {
    for verbose in [false, true] {
        let mut profile = Profile::new(&sf::unique_database("nowh"));
        profile.warehouse = Some("EMULATOR_MISSING_WAREHOUSE".into());
        let stderr = failing_deploy(profile, verbose);
        assert!(stderr.contains("No active warehouse selected in the current session"), "{stderr}");
        assert!(stderr.contains("the warehouse 'EMULATOR_MISSING_WAREHOUSE' named in"), "{stderr}");
    }
}

#[test]
fn the_profile_debug_output_hides_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let mut profile = Profile::new("ANY_DB");
    profile.password = PASSWORD.into();
    let loaded = profile.load(dir.path());
    let shown = format!("{loaded:?}");
    assert!(!shown.contains(PASSWORD) && shown.contains("***"), "{shown}");
}

/// A fresh RSA key as PKCS#8 PEM in `dir` (by openssl), encrypted with
/// `passphrase` when given; its path.
fn rsa_key(dir: &std::path::Path, passphrase: Option<&str>) -> std::path::PathBuf {
    let plain = dir.join("rsa_key.pem");
    let made = std::process::Command::new("openssl").args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out"]).arg(&plain).output().expect("openssl");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let Some(pass) = passphrase else { return plain };
    let encrypted = dir.join("rsa_key.p8");
    let made = std::process::Command::new("openssl")
        .args(["pkcs8", "-topk8", "-v2", "aes-256-cbc", "-passout", &format!("pass:{pass}"), "-in"])
        .arg(&plain)
        .arg("-out")
        .arg(&encrypted)
        .output()
        .expect("openssl");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    encrypted
}

#[tokio::test(flavor = "multi_thread")]
async fn key_pair_and_oauth_profiles_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let db = sf::unique_database("auth");
    let plain = rsa_key(dir.path(), None);
    let encrypted = rsa_key(dir.path(), Some("open sesame"));
    let cases = [
        vec![("private_key_path", plain.display().to_string())],
        vec![("private_key_path", encrypted.display().to_string()), ("private_key_passphrase", "open sesame".into())],
        vec![("private_key", std::fs::read_to_string(&plain).unwrap())],
        vec![("authenticator", "oauth".into()), ("token", "an-access-token".into())],
    ];
    for extra in cases {
        let mut profile = Profile::new(&db);
        profile.password = String::new();
        profile.extra = extra.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let wh = profile.open(dir.path());
        assert_eq!(wh.query("SELECT 1 AS ONE").await.unwrap().rows, [text(&["1"])], "{:?}", extra.first());
    }
}

#[test]
fn a_wrong_key_passphrase_fails_deploy_clearly_without_showing_it() {
    let s = Scratch::new();
    let encrypted = rsa_key(s.path(), Some("right horse battery"));
    let project = s.copy_fixture("shop");
    let mut profile = Profile::new(&sf::unique_database("badkey"));
    profile.password = String::new();
    profile.extra = vec![("private_key_path".into(), encrypted.display().to_string()), ("private_key_passphrase".into(), PASSWORD.into())];
    profile.write(&project);
    let run = s.airlock(&project, &["deploy", "--profiles-dir", project.to_str().unwrap(), "-vv"]);
    run.assert_code(2);
    assert!(run.stderr.contains("Snowflake login failed for user 'tester' on account 'test': private key error"), "{}", run.stderr);
    assert!(run.stderr.contains(&format!("(the key from private_key_path '{}' in", encrypted.display())), "{}", run.stderr);
    assert!(!run.stdout.contains(PASSWORD) && !run.stderr.contains(PASSWORD), "{}\n{}", run.stdout, run.stderr);
    let key = std::fs::read_to_string(&encrypted).unwrap();
    let body = key.lines().nth(1).unwrap();
    assert!(!run.stderr.contains(body), "the key was shown:\n{}", run.stderr);
}

/// A front that forwards logins to the emulator and holds every statement
/// until Snowflake's abort-request for it arrives, then answers as Snowflake
/// does for a cancelled statement. The emulator runs statements too fast (and
/// fakesnow ignores aborts) to cancel one there.
fn aborting_front() -> (u16, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let aborted = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = aborted.clone();
    let target = sf::emulator().port;
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut client) = conn else { continue };
            let aborted = seen.clone();
            std::thread::spawn(move || {
                let Some(request) = read_request(&mut client) else { return };
                let text = String::from_utf8_lossy(&request).to_string();
                let line = text.lines().next().unwrap_or_default().to_string();
                let respond = |client: &mut TcpStream, body: &str| {
                    let _ = client.write_all(format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).as_bytes());
                };
                if line.contains("abort-request") {
                    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
                    let id = serde_json::from_str::<serde_json::Value>(body).ok().and_then(|v| v["requestId"].as_str().map(str::to_string)).unwrap_or_default();
                    aborted.lock().unwrap().push(id);
                    respond(&mut client, r#"{"success":true}"#);
                } else if line.contains("query-request") {
                    let started = Instant::now();
                    while aborted.lock().unwrap().is_empty() && started.elapsed() < Duration::from_secs(20) {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    respond(&mut client, r#"{"code":"000604","sqlState":"57014","message":"SQL execution canceled","success":false,"data":{"queryId":"q-1"}}"#);
                } else if let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", target)) {
                    let _ = upstream.write_all(&request);
                    pipe(client, upstream);
                }
            });
        }
    });
    (port, aborted)
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_aborts_the_statements_in_flight() {
    let (port, aborted) = aborting_front();
    let dir = tempfile::tempdir().unwrap();
    let mut profile = Profile::new(&sf::unique_database("cancel"));
    profile.port = port;
    let wh = profile.open(dir.path());
    let running = {
        let wh = wh.clone();
        tokio::spawn(async move { wh.execute("SELECT 'a long statement'").await })
    };
    // cancel once the statement is in flight (its login done)
    let started = Instant::now();
    while !running.is_finished() && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        wh.cancel().await;
        if !aborted.lock().unwrap().is_empty() {
            break;
        }
    }
    let err = tokio::time::timeout(Duration::from_secs(10), running).await.expect("the statement ends").unwrap().unwrap_err();
    assert!(format!("{err:#}").contains("cancel"), "{err:#}");
    assert_eq!(aborted.lock().unwrap().len(), 1, "one abort-request for the one statement");
}
