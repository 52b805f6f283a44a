//! Issue 9 acceptance on the Snowflake emulator, through the real binary and
//! the real Rust client: every strategy's round trip on fixtures/shop (green
//! deploy with DuckDB's prod rows, red deploy leaving prod unchanged, a second
//! release, rollback), privileges on prod identical across every publish, no
//! prod view naming the audit or a backup location, a kill at every publish
//! step then `recover`, and every statement kind airlock sends to Snowflake
//! exercised against the emulator.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::snowflake::{self as sf, Profile};
use common::{append, mirror_project, Run, Scratch};

const PROD: &[&str] = &["ANALYTICS", "ANALYTICS_MARTS"];

/// One test's database on the emulator, with the shop (and its failing twin)
/// pointed at it, and the landing table the shop's source reads.
struct Shop {
    s: Scratch,
    db: String,
    project: PathBuf,
    failing: PathBuf,
}

impl Shop {
    fn new(prefix: &str) -> Shop {
        Self::with_project(prefix, |s| s.copy_fixture("shop"))
    }

    fn with_project(prefix: &str, make: impl Fn(&Scratch) -> PathBuf) -> Shop {
        let s = Scratch::new();
        let db = sf::unique_database(prefix);
        let profile = Profile::new(&db);
        let project = make(&s);
        profile.write(&project);
        let failing = s.copy_fixture("shop_failing");
        profile.write(&failing);
        load_landing(&db, &project.join("data/shipments.csv"));
        Shop { s, db, project, failing }
    }

    /// The shop with a database-level audit location (`audit_database`):
    /// its source lives in a database of its own, as a database swap needs.
    fn with_audit_database(prefix: &str) -> Shop {
        let s = Scratch::new();
        let db = sf::unique_database(prefix);
        let raw = format!("{db}_RAW");
        let profile = Profile::new(&db);
        let make = |fixture: &str| {
            let project = s.copy_fixture(fixture);
            profile.write(&project);
            std::fs::write(project.join("airlock.toml"), "[deploy]\naudit_database = \"{database}__audit\"\n").unwrap();
            let sources = project.join("models/staging/sources.yml");
            let text = std::fs::read_to_string(&sources).unwrap();
            std::fs::write(&sources, text.replacen("  - name: landing\n", &format!("  - name: landing\n    database: {raw}\n"), 1)).unwrap();
            project
        };
        let (project, failing) = (make("shop"), make("shop_failing"));
        load_landing(&raw, &project.join("data/shipments.csv"));
        sf::sql(&raw, &[&format!("CREATE DATABASE IF NOT EXISTS \"{db}\"")]);
        Shop { s, db, project, failing }
    }

    /// A new customer in the seeds (a change that reaches tables and views).
    fn add_customer(&self) {
        append(&self.project.join("seeds/raw_customers.csv"), "21,Zoe,Quinn,zoe.quinn@example.com,2024-06-01\n");
    }

    /// The second release's data: the new customer, an order and its payment
    /// (ORDERS' amount 866.27 -> 916.27).
    fn grow_seeds(&self) {
        self.add_customer();
        append(&self.project.join("seeds/raw_orders.csv"), "31,21,2024-06-02,completed\n");
        append(&self.project.join("seeds/raw_payments.csv"), "36,31,credit_card,5000\n");
    }

    fn airlock(&self, project: &Path, args: &[&str]) -> Run {
        Run::of(self.s.command(project, args).env_remove("AIRLOCK_FAILPOINT"))
    }

    fn deploy(&self, strategy: &str) -> Run {
        self.airlock(&self.project, &["deploy", "--strategy", strategy])
    }

    fn scalar(&self, sql: &str) -> String {
        sf::query(&self.db, sql).remove(0).remove(0)
    }

    /// Every prod table and view: kind, rows and a hash of its sorted rows.
    fn checksums(&self) -> BTreeMap<String, String> {
        let objects = prod_objects(&self.db).1;
        let selects: Vec<String> = objects.iter().map(|(schema, name, _)| format!("SELECT * FROM \"{schema}\".\"{name}\"")).collect();
        let results = sf::sql(&self.db, &selects.iter().map(String::as_str).collect::<Vec<_>>());
        let mut out = BTreeMap::new();
        for ((schema, name, kind), rows) in objects.iter().zip(results) {
            let mut rows: Vec<String> = rows.into_iter().map(|r| r.join("|")).collect();
            rows.sort();
            out.insert(format!("{schema}.{name}"), format!("{kind} rows={} hash={:x}", rows.len(), fnv(&rows.join("\n"))));
        }
        out
    }

    /// Every privilege on the prod database, its schemas and their objects.
    fn grants(&self) -> BTreeSet<String> {
        let (schemas, objects) = prod_objects(&self.db);
        let mut targets: Vec<String> = vec![format!("DATABASE \"{}\"", self.db)];
        targets.extend(schemas.iter().map(|s| format!("SCHEMA \"{s}\"")));
        targets.extend(objects.iter().map(|(schema, name, kind)| format!("{kind} \"{schema}\".\"{name}\"")));
        let shows: Vec<String> = targets.iter().map(|t| format!("SHOW GRANTS ON {t}")).collect();
        let results = sf::sql(&self.db, &shows.iter().map(String::as_str).collect::<Vec<_>>());
        let mut out = BTreeSet::new();
        for (target, rows) in targets.iter().zip(results) {
            for g in rows {
                // privilege, granted_on, name, granted_to, grantee_name, grant_option
                out.insert(format!("{} on {target} to {} {} option={}", g[1], g[4], g[5], g[6]));
            }
        }
        out
    }

    /// Readers of prod, as a team would grant them after the first release.
    fn grant_readers(&self) {
        let (schemas, objects) = prod_objects(&self.db);
        let mut stmts = vec![format!("GRANT USAGE ON DATABASE \"{}\" TO ROLE REPORTER", self.db)];
        for s in &schemas {
            stmts.push(format!("GRANT USAGE ON SCHEMA \"{s}\" TO ROLE REPORTER"));
        }
        for (schema, name, kind) in &objects {
            stmts.push(format!("GRANT SELECT ON {kind} \"{schema}\".\"{name}\" TO ROLE REPORTER"));
        }
        if objects.iter().any(|(s, n, _)| s == "ANALYTICS_MARTS" && n == "ORDERS") {
            stmts.push("GRANT SELECT ON TABLE \"ANALYTICS_MARTS\".\"ORDERS\" TO ROLE FINANCE WITH GRANT OPTION".into());
        }
        let refs: Vec<&str> = stmts.iter().map(String::as_str).collect();
        sf::sql(&self.db, &refs);
    }

    /// No prod view may name the audit location or a backup.
    fn assert_views_point_at_prod(&self, when: &str) {
        for (schema, name, ddl) in view_definitions(&self.db) {
            let upper = ddl.to_uppercase();
            assert!(!upper.contains("__AUDIT") && !upper.contains("AIRLOCK_R"), "{when}: prod view {schema}.{name} names a non-prod location:\n{ddl}");
        }
    }
}

/// The landing table the shop's `landing.shipments` source names (on
/// Snowflake a source is a table, not a file).
fn load_landing(db: &str, csv: &Path) {
    let text = std::fs::read_to_string(csv).unwrap();
    let values: Vec<String> = text
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            format!("({}, {}, '{}', '{}')", f[0], f[1], f[2], f[3])
        })
        .collect();
    sf::sql(
        db,
        &[
            "CREATE SCHEMA IF NOT EXISTS LANDING",
            "CREATE OR REPLACE TABLE LANDING.SHIPMENTS (SHIPMENT_ID INTEGER, ORDER_ID INTEGER, SHIPPED_AT VARCHAR, CARRIER VARCHAR)",
            &format!("INSERT INTO LANDING.SHIPMENTS VALUES {}", values.join(", ")),
        ],
    );
}

/// The prod schemas that exist, and (schema, name, TABLE|VIEW) of every
/// prod object, read in one session.
fn prod_objects(db: &str) -> (Vec<String>, Vec<(String, String, String)>) {
    let list = PROD.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", ");
    let mut r = sf::sql(
        db,
        &[
            &format!("SELECT schema_name FROM information_schema.schemata WHERE schema_name IN ({list}) ORDER BY 1"),
            &format!("SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema IN ({list}) AND table_type = 'BASE TABLE'"),
            &format!("SELECT table_schema, table_name FROM information_schema.views WHERE table_schema IN ({list})"),
        ],
    );
    let views = r.remove(2);
    let tables = r.remove(1);
    let schemas = r.remove(0).into_iter().map(|row| row[0].clone()).collect();
    let mut out: Vec<(String, String, String)> = tables.into_iter().map(|t| (t[0].clone(), t[1].clone(), "TABLE".to_string())).collect();
    out.extend(views.into_iter().map(|v| (v[0].clone(), v[1].clone(), "VIEW".to_string())));
    out.sort();
    (schemas, out)
}

fn view_definitions(db: &str) -> Vec<(String, String, String)> {
    let list = PROD.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", ");
    sf::query(db, &format!("SELECT table_schema, table_name, view_definition FROM information_schema.views WHERE table_schema IN ({list})"))
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone(), r[2].clone()))
        .collect()
}

fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

/// The statements sessions on `db` sent to the emulator.
fn received(db: &str) -> Vec<String> {
    let e = sf::emulator();
    let script = "import json,sys,urllib.request\nprint(urllib.request.urlopen(sys.argv[1], timeout=60).read().decode())";
    let url = format!("{}://{}:{}/emulator/statements?database={db}", e.protocol, e.host, e.port);
    let out = std::process::Command::new(&e.python).args(["-c", script, &url]).output().expect("run python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    v["statements"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

/// A statement's kind: its leading keywords, then the keywords that change
/// what it does (CLONE, SWAP WITH, COPY GRANTS, ...). Names and values drop out.
fn kind(sql: &str) -> String {
    let upper: String = sql.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join(" ");
    let mut words = Vec::new();
    for w in upper.split_whitespace() {
        if w.starts_with('"') || w.starts_with('(') || w.starts_with('\'') || !w.chars().all(|c| c.is_ascii_alphabetic() || c == '_') {
            break;
        }
        words.push(w.to_ascii_uppercase());
    }
    if words.first().map(String::as_str) == Some("GRANT") {
        words.truncate(1);
        for on in ["ON DATABASE", "ON SCHEMA", "ON TABLE", "ON VIEW"] {
            if upper.to_ascii_uppercase().contains(on) {
                words.push(on.into());
            }
        }
    }
    let rest = upper.to_ascii_uppercase();
    for marker in [" ADD COLUMN IF NOT EXISTS", " CLONE ", " SWAP WITH ", " RENAME TO ", " COPY GRANTS", " CASCADE", " WHERE EXISTS"] {
        if rest.contains(marker) {
            words.push(marker.trim().to_string());
        }
    }
    words.join(" ")
}

fn round_trip(strategy: &str) -> String {
    let shop = Shop::new(&format!("rt_{}", strategy.replace('-', "_")));
    let run = shop.deploy(strategy);
    run.assert_code(0);
    assert!(run.stdout.contains("release 1 published"), "{strategy}: {}", run.stdout);
    // the rows DuckDB publishes (tests/strategies.rs)
    assert_eq!(shop.scalar("SELECT COUNT(*) FROM ANALYTICS_MARTS.ORDERS"), "28", "{strategy}");
    assert_eq!(shop.scalar("SELECT TO_CHAR(ROUND(SUM(AMOUNT), 2)) FROM ANALYTICS_MARTS.ORDERS"), "866.27", "{strategy}");
    assert_eq!(shop.scalar("SELECT COUNT(*) FROM ANALYTICS_MARTS.CUSTOMERS"), "20", "{strategy}");
    assert_eq!(shop.scalar("SELECT COUNT(*) FROM ANALYTICS_MARTS.FCT_SHIPMENTS"), "25", "{strategy}");
    shop.assert_views_point_at_prod(&format!("{strategy}, release 1"));
    shop.grant_readers();
    let first = shop.checksums();
    let grants = shop.grants();
    assert!(grants.iter().any(|g| g.contains("REPORTER")), "{strategy}: {grants:?}");

    // red gate: prod unchanged, privileges too
    let failing = shop.airlock(&shop.failing, &["deploy", "--strategy", strategy]);
    failing.assert_code(1);
    assert_eq!(shop.checksums(), first, "{strategy}: a blocked deploy changed prod");
    assert_eq!(shop.grants(), grants, "{strategy}: a blocked deploy changed privileges");

    // a second release keeps every privilege
    shop.grow_seeds();
    let second = shop.deploy(strategy);
    second.assert_code(0);
    assert_eq!(shop.scalar("SELECT COUNT(*) FROM ANALYTICS_MARTS.CUSTOMERS"), "21", "{strategy}");
    assert_eq!(shop.scalar("SELECT TO_CHAR(ROUND(SUM(AMOUNT), 2)) FROM ANALYTICS_MARTS.ORDERS"), "916.27", "{strategy}");
    assert_eq!(shop.grants(), grants, "{strategy}: the second publish changed privileges on prod");
    shop.assert_views_point_at_prod(&format!("{strategy}, release 2"));

    // rollback restores release 1, privileges and all
    let back = shop.airlock(&shop.project, &["rollback"]);
    back.assert_code(0);
    assert_eq!(shop.checksums(), first, "{strategy}: rollback did not restore release 1");
    assert_eq!(shop.grants(), grants, "{strategy}: rollback changed privileges on prod");
    shop.assert_views_point_at_prod(&format!("{strategy}, rollback"));
    let history = shop.airlock(&shop.project, &["history", "--format", "json"]);
    history.assert_code(0);
    let h: serde_json::Value = serde_json::from_str(&history.stdout).unwrap();
    let statuses: Vec<&str> = h["releases"].as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["published", "published", "blocked", "published"], "{strategy}: {}", history.stdout);
    shop.db
}

#[test]
fn every_strategy_round_trips_and_every_statement_kind_reaches_the_emulator() {
    let mut kinds_sent = BTreeSet::new();
    for strategy in ["swap", "clone-back", "wap", "wac"] {
        let db = round_trip(strategy);
        kinds_sent.extend(received(&db).iter().map(|s| kind(s)));
    }
    kinds_sent.extend(mirror_round_trip().iter().map(|s| kind(s)));

    // every kind of statement airlock emits for Snowflake: builds, gate,
    // publish primitives of every strategy, grants, ledger, lock, journal
    let expected = [
        "BEGIN",
        "COMMIT",
        "SELECT",
        "SHOW GRANTS ON SCHEMA",
        "SHOW GRANTS ON TABLE",
        "SHOW GRANTS ON VIEW",
        "GRANT ON SCHEMA",
        "GRANT ON TABLE",
        "GRANT ON VIEW",
        "CREATE SCHEMA IF NOT EXISTS",
        "CREATE OR REPLACE SCHEMA",
        "CREATE OR REPLACE SCHEMA CLONE",
        "CREATE SCHEMA CLONE",
        "ALTER SCHEMA SWAP WITH",
        "ALTER SCHEMA RENAME TO",
        "DROP SCHEMA IF EXISTS CASCADE",
        "CREATE OR REPLACE TABLE",
        "CREATE OR REPLACE TABLE CLONE COPY GRANTS",
        "CREATE OR REPLACE TABLE COPY GRANTS",
        "CREATE TABLE CLONE",
        "CREATE OR REPLACE VIEW",
        "CREATE OR REPLACE VIEW COPY GRANTS",
        "CREATE OR REPLACE TEMP TABLE",
        "DELETE FROM WHERE EXISTS",
        "INSERT INTO",
        "DROP TABLE",
        "DROP TABLE IF EXISTS",
        "CREATE TABLE IF NOT EXISTS",
        "ALTER TABLE ADD COLUMN IF NOT EXISTS",
        "UPDATE",
    ];
    let missing: Vec<&str> = expected.iter().copied().filter(|k| !kinds_sent.contains(*k)).collect();
    assert!(missing.is_empty(), "statement kinds never sent to the emulator: {missing:?}\nsent: {kinds_sent:#?}");
}

/// mirror: a tested frozen copy of the sources; a broken source leaves it as it was.
fn mirror_round_trip() -> Vec<String> {
    let shop = Shop::with_project("rt_mirror", mirror_project);
    let run = shop.deploy("mirror");
    run.assert_code(0);
    assert_eq!(shop.scalar("SELECT COUNT(*) FROM ANALYTICS.RAW_SHIPMENTS"), "25");
    shop.grant_readers();
    let first = shop.checksums();
    let grants = shop.grants();
    // a duplicate shipment in the landing table fails the mirror's tests
    sf::sql(&shop.db, &["INSERT INTO LANDING.SHIPMENTS VALUES (1, 3, '2024-01-08', 'ups')"]);
    shop.deploy("mirror").assert_code(1);
    assert_eq!(shop.checksums(), first, "a blocked mirror refresh changed prod");
    // the landing table fixed and grown: the mirror follows, privileges kept
    sf::sql(&shop.db, &["DELETE FROM LANDING.SHIPMENTS WHERE SHIPMENT_ID = 1 AND CARRIER = 'ups' AND ORDER_ID = 3", "INSERT INTO LANDING.SHIPMENTS VALUES (1, 3, '2024-01-08', 'ups'), (26, 5, '2024-02-01', 'dhl')"]);
    shop.deploy("mirror").assert_code(0);
    assert_eq!(shop.scalar("SELECT COUNT(*) FROM ANALYTICS.RAW_SHIPMENTS"), "26");
    assert_eq!(shop.grants(), grants, "the mirror refresh changed privileges");
    shop.airlock(&shop.project, &["rollback"]).assert_code(0);
    assert_eq!(shop.checksums(), first, "rollback did not restore the first mirror");
    assert_eq!(shop.grants(), grants);
    received(&shop.db)
}

#[test]
fn a_swap_killed_at_every_publish_step_is_recovered() {
    let shop = Shop::new("kill_swap");
    recover_after_every_step(&shop, "swap", || shop.add_customer());
}

#[test]
fn an_object_by_object_publish_killed_at_every_step_is_recovered() {
    let shop = Shop::with_project("kill_mirror", mirror_project);
    recover_after_every_step(&shop, "mirror", || sf::sql(&shop.db, &["INSERT INTO LANDING.SHIPMENTS VALUES (26, 5, '2024-02-01', 'dhl')"]).truncate(0));
}

#[test]
fn a_clone_back_killed_at_every_publish_step_is_recovered() {
    let shop = Shop::new("kill_clone_back");
    recover_after_every_step(&shop, "clone-back", || shop.add_customer());
}

#[test]
fn a_wap_killed_at_every_publish_step_is_recovered() {
    let shop = Shop::new("kill_wap");
    recover_after_every_step(&shop, "wap", || append(&shop.project.join("seeds/raw_payments.csv"), "36,30,credit_card,5000\n"));
}

#[test]
fn a_wac_killed_at_every_publish_step_is_recovered() {
    let shop = Shop::new("kill_wac");
    recover_after_every_step(&shop, "wac", || append(&shop.project.join("seeds/raw_payments.csv"), "36,30,credit_card,5000\n"));
}

/// Privileges lost while a publish runs (the emulator's `AIRLOCK_LOST_*` hook
/// revokes them at the swap): the release is not recorded as published, the
/// message names the privilege, and `recover --undo` puts back prod and every
/// privilege.
#[test]
fn privileges_lost_during_a_publish_fail_the_release_and_recover_undo_restores_them() {
    let shop = Shop::new("lost_grant");
    shop.deploy("swap").assert_code(0);
    shop.grant_readers();
    sf::sql(&shop.db, &["GRANT USAGE ON SCHEMA ANALYTICS_MARTS TO ROLE AIRLOCK_LOST_AUDITOR", "GRANT SELECT ON TABLE ANALYTICS_MARTS.ORDERS TO ROLE AIRLOCK_LOST_AUDITOR"]);
    let old = shop.checksums();
    let grants = shop.grants();
    assert!(grants.iter().any(|g| g.contains("AIRLOCK_LOST_AUDITOR")), "{grants:#?}");
    shop.add_customer();

    let run = shop.deploy("swap");
    assert_ne!(run.code, 0, "a publish that lost privileges passed:\n{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("privileges on prod differ"), "{}", run.stderr);
    assert!(run.stderr.contains("AIRLOCK_LOST_AUDITOR"), "the message does not name the lost privilege: {}", run.stderr);
    assert!(run.stderr.contains("recover --undo"), "{}", run.stderr);
    let history = shop.airlock(&shop.project, &["history", "--format", "json"]);
    let h: serde_json::Value = serde_json::from_str(&history.stdout).unwrap();
    assert_eq!(h["releases"][0]["status"], "publishing", "{}", history.stdout);
    // a deploy now refuses: the release must be settled first
    shop.deploy("swap").assert_code(2);

    let undo = shop.airlock(&shop.project, &["recover", "--undo"]);
    undo.assert_code(0);
    assert_eq!(shop.checksums(), old, "recover --undo did not put back the previous release:\n{}", undo.stdout);
    assert_eq!(shop.grants(), grants, "recover --undo did not put back the privileges");
    shop.assert_views_point_at_prod("after recover --undo");
    let history = shop.airlock(&shop.project, &["history", "--format", "json"]);
    let h: serde_json::Value = serde_json::from_str(&history.stdout).unwrap();
    assert_eq!(h["releases"][0]["status"], "recovered-back", "{}", history.stdout);
}

/// A publish killed before each of its steps, then `airlock recover`: prod is
/// the old release or the new one, the ledger says which, privileges intact.
fn recover_after_every_step(shop: &Shop, strategy: &str, change: impl Fn()) {
    shop.deploy(strategy).assert_code(0);
    shop.grant_readers();
    let old = shop.checksums();
    let grants = shop.grants();
    change();
    let mut new: Option<BTreeMap<String, String>> = None;
    let mut k = 1;
    loop {
        let killed = Run::of(shop.s.command(&shop.project, &["deploy", "--strategy", strategy]).env("AIRLOCK_FAILPOINT", format!("publish:{k}")));
        if killed.code == 0 {
            // past the last step: the publish completed, with what recovery made
            let now = shop.checksums();
            if let Some(n) = &new {
                assert_eq!(&now, n, "{strategy}: the complete publish differs from the recovered ones");
            }
            assert_eq!(shop.grants(), grants, "{strategy}: privileges changed by a complete publish");
            break;
        }
        assert!(killed.code != 0, "{strategy} K={k}");
        let recover = shop.airlock(&shop.project, &["recover"]);
        let history = shop.airlock(&shop.project, &["history", "--format", "json"]);
        let h: serde_json::Value = serde_json::from_str(&history.stdout).unwrap_or_else(|e| panic!("{e}: {}", history.stdout));
        let last = &h["releases"][0];
        let status = last["status"].as_str().unwrap().to_string();
        let now = shop.checksums();
        match status.as_str() {
            "recovered-forward" | "published" => {
                recover.assert_code(0);
                if let Some(n) = &new {
                    assert_eq!(&now, n, "{strategy} K={k}: recovered forward but prod is not the new release");
                }
                assert_ne!(now, old, "{strategy} K={k}: recovered forward but prod is the old release");
                new.get_or_insert(now);
                // back to the old release for the next K
                shop.airlock(&shop.project, &["rollback"]).assert_code(0);
                assert_eq!(shop.checksums(), old, "{strategy} K={k}: rollback after recovery");
            }
            "recovered-back" | "failed" | "interrupted" => {
                assert_eq!(now, old, "{strategy} K={k}: {status} but prod is not the old release\n{}\n{}", recover.stdout, recover.stderr);
            }
            other => panic!("{strategy} K={k}: release left {other}\n{}\n{}", recover.stdout, recover.stderr),
        }
        assert_eq!(shop.grants(), grants, "{strategy} K={k}: privileges changed");
        shop.assert_views_point_at_prod(&format!("{strategy} K={k}"));
        k += 1;
        assert!(k < 40, "{strategy}: the publish never completed");
    }
}

#[test]
fn kinds_drop_names_and_values() {
    assert_eq!(kind("CREATE OR REPLACE TABLE \"A\".\"B\" CLONE \"C\".\"D\" COPY GRANTS"), "CREATE OR REPLACE TABLE CLONE COPY GRANTS");
    assert_eq!(kind("ALTER SCHEMA \"A__AUDIT\" SWAP WITH \"A\""), "ALTER SCHEMA SWAP WITH");
    assert_eq!(kind("GRANT SELECT ON TABLE \"A\".\"B\" TO ROLE \"R\""), "GRANT ON TABLE");
    assert_eq!(kind("SELECT COUNT(*) FROM x"), "SELECT");
}

#[test]
fn a_deploy_from_another_machine_fails_fast_naming_the_holder() {
    let shop = Shop::new("lock");
    // the lock row a deploy on another machine holds (heartbeat fresh)
    let now = chrono_like_now();
    let holder = format!(r#"{{"release":7,"command":"deploy","started_at":"{now}","pid":4242,"host":"build-agent-7","heartbeat":"{now}"}}"#);
    sf::sql(&shop.db, &["CREATE SCHEMA IF NOT EXISTS AIRLOCK", &format!("CREATE TABLE AIRLOCK.DEPLOY_LOCK AS SELECT CAST('{holder}' AS VARCHAR) AS INFO")]);
    let started = std::time::Instant::now();
    let run = shop.deploy("swap");
    run.assert_code(3);
    assert!(run.stderr.contains("build-agent-7") && run.stderr.contains("pid 4242"), "{}", run.stderr);
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "the second deploy waited for the lock");
    assert!(prod_objects(&shop.db).1.is_empty(), "a refused deploy wrote to prod");
}

/// Now as the ledger writes it (`YYYY-MM-DD HH:MM:SS.fff`, UTC), from the emulator.
fn chrono_like_now() -> String {
    let e = sf::emulator();
    let out = std::process::Command::new(&e.python)
        .args(["-c", "import datetime; print(datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%S.%f')[:-3])"])
        .output()
        .expect("python");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn names_fold_to_upper_case_unless_the_project_quotes_them() {
    let s = Scratch::new();
    let plan = |project: &Path| {
        let run = s.airlock(project, &["plan", "--offline", "--dialect", "snowflake", "--strategy", "wac", "--show-sql"]);
        run.assert_code(0);
        run.stdout
    };
    let folded = plan(&common::fixture("shop"));
    assert!(folded.contains(r#"CREATE OR REPLACE TABLE "MAIN_MARTS"."ORDERS" CLONE "MAIN_MARTS__AUDIT"."ORDERS" COPY GRANTS"#), "{folded}");
    let quoted = s.copy_fixture("shop");
    append(&quoted.join("dbt_project.yml"), "quoting:\n  schema: true\n  identifier: true\n");
    let kept = plan(&quoted);
    assert!(kept.contains(r#"CREATE OR REPLACE TABLE "main_marts"."orders" CLONE "main_marts__audit"."orders" COPY GRANTS"#), "{kept}");
}

/// The same round trip against a real Snowflake account, when one is
/// configured: AIRLOCK_SNOWFLAKE_ACCOUNT, _USER, _PASSWORD, _DATABASE (a
/// database the tests may fill and empty), optional _ROLE and _WAREHOUSE.
#[test]
fn real_account_round_trip() {
    let var = |k: &str| std::env::var(format!("AIRLOCK_SNOWFLAKE_{k}")).ok().filter(|v| !v.is_empty());
    let (Some(account), Some(user), Some(password), Some(database)) = (var("ACCOUNT"), var("USER"), var("PASSWORD"), var("DATABASE")) else {
        // written past the test harness's capture, so the skip shows in every run
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "SKIPPED real_account_round_trip: set AIRLOCK_SNOWFLAKE_ACCOUNT, _USER, _PASSWORD and _DATABASE to run it against a real Snowflake account");
        return;
    };
    let s = Scratch::new();
    let project = s.copy_fixture("shop");
    let mut yaml = format!(
        "shop:\n  target: real\n  outputs:\n    real:\n      type: snowflake\n      account: '{account}'\n      user: '{user}'\n      password: \"{{{{ env_var('AIRLOCK_SNOWFLAKE_PASSWORD') }}}}\"\n      database: '{database}'\n      schema: AIRLOCK_TEST\n      threads: 4\n"
    );
    for (k, key) in [("ROLE", "role"), ("WAREHOUSE", "warehouse")] {
        if let Some(v) = var(k) {
            yaml.push_str(&format!("      {key}: '{v}'\n"));
        }
    }
    std::fs::write(project.join("profiles.yml"), yaml).unwrap();
    // the landing table the source names, made by the project's own hooks
    let csv = std::fs::read_to_string(project.join("data/shipments.csv")).unwrap();
    let rows: Vec<String> = csv.lines().skip(1).filter(|l| !l.is_empty()).map(|l| {
        let f: Vec<&str> = l.split(',').collect();
        format!("({}, {}, ''{}'', ''{}'')", f[0], f[1], f[2], f[3])
    }).collect();
    append(
        &project.join("dbt_project.yml"),
        &format!(
            "on-run-start:\n  - 'create schema if not exists LANDING'\n  - 'create or replace table LANDING.SHIPMENTS as select column1 as shipment_id, column2 as order_id, column3 as shipped_at, column4 as carrier from values {}'\n",
            rows.join(", ")
        ),
    );
    let run = Run::of(s.command(&project, &["deploy", "--strategy", "swap"]).env("AIRLOCK_SNOWFLAKE_PASSWORD", &password));
    assert!(!run.stdout.contains(&password) && !run.stderr.contains(&password), "the password was printed");
    run.assert_code(0);
    Run::of(s.command(&project, &["rollback"]).env("AIRLOCK_SNOWFLAKE_PASSWORD", &password)).assert_code(0);
}

/// `audit_database`: the audit location is a zero-copy clone of prod's
/// database and `swap` exchanges the databases in one statement; the ledger
/// lives in a database of its own, so the swap cannot carry it away.
#[test]
fn a_database_swap_round_trips_with_the_ledger_outside_prod() {
    let shop = Shop::with_audit_database("rt_dbswap");
    let db = &shop.db;
    let plan = shop.airlock(&shop.project, &["plan", "--strategy", "swap", "--show-sql"]);
    plan.assert_code(0);
    assert!(plan.stdout.contains(&format!("ALTER DATABASE \"{db}__AUDIT\" SWAP WITH \"{db}\"")), "{}", plan.stdout);
    let run = shop.deploy("swap");
    run.assert_code(0);
    assert!(run.stdout.contains("release 1 published"), "{}", run.stdout);
    assert_eq!(shop.scalar("SELECT COUNT(*) FROM ANALYTICS_MARTS.ORDERS"), "28");
    assert_eq!(shop.scalar("SELECT TO_CHAR(ROUND(SUM(AMOUNT), 2)) FROM ANALYTICS_MARTS.ORDERS"), "866.27");
    assert_eq!(shop.scalar("SELECT COUNT(*) FROM ANALYTICS_MARTS.FCT_SHIPMENTS"), "25");
    shop.assert_views_point_at_prod("database swap, release 1");
    // the ledger is in its own database, not in prod (a swap would carry it away)
    assert_eq!(shop.scalar(&format!("SELECT COUNT(*) FROM \"{db}__AIRLOCK\".AIRLOCK.RELEASES WHERE STATUS = 'published'")), "1");
    assert_eq!(shop.scalar("SELECT COUNT(*) FROM INFORMATION_SCHEMA.SCHEMATA WHERE SCHEMA_NAME = 'AIRLOCK'"), "0", "a ledger inside the swapped prod database");
    shop.grant_readers();
    let first = shop.checksums();
    let grants = shop.grants();
    assert!(grants.iter().any(|g| g.starts_with(&format!("USAGE on DATABASE \"{db}\" to ROLE REPORTER"))), "{grants:#?}");

    let failing = shop.airlock(&shop.failing, &["deploy", "--strategy", "swap"]);
    failing.assert_code(1);
    assert_eq!(shop.checksums(), first, "a blocked database swap changed prod");
    assert_eq!(shop.grants(), grants, "a blocked database swap changed privileges");

    shop.grow_seeds();
    shop.deploy("swap").assert_code(0);
    assert_eq!(shop.scalar("SELECT TO_CHAR(ROUND(SUM(AMOUNT), 2)) FROM ANALYTICS_MARTS.ORDERS"), "916.27");
    assert_eq!(shop.grants(), grants, "the second database swap changed privileges on prod (the database's own included)");
    shop.assert_views_point_at_prod("database swap, release 2");
    // the demoted prod database is release 2's backup
    assert_eq!(shop.scalar(&format!("SELECT COUNT(*) FROM \"AIRLOCK_R3__{db}\".ANALYTICS_MARTS.CUSTOMERS")), "20");

    shop.airlock(&shop.project, &["rollback"]).assert_code(0);
    assert_eq!(shop.checksums(), first, "rollback did not restore release 1");
    assert_eq!(shop.grants(), grants, "rollback changed privileges on prod");
    shop.assert_views_point_at_prod("database swap, rollback");

    let kinds: BTreeSet<String> = received(db).iter().map(|s| kind(s)).collect();
    let expected = [
        "CREATE OR REPLACE DATABASE CLONE",
        "USE DATABASE",
        "ALTER DATABASE SWAP WITH",
        "ALTER DATABASE RENAME TO",
        "CREATE DATABASE IF NOT EXISTS",
        "DROP DATABASE IF EXISTS",
        "SHOW GRANTS ON DATABASE",
        "GRANT ON DATABASE",
    ];
    let missing: Vec<&str> = expected.iter().copied().filter(|k| !kinds.contains(*k)).collect();
    assert!(missing.is_empty(), "database-swap statement kinds never sent to the emulator: {missing:?}\nsent: {kinds:#?}");
}

#[test]
fn a_database_swap_killed_at_every_publish_step_is_recovered() {
    let shop = Shop::with_audit_database("kill_dbswap");
    recover_after_every_step(&shop, "swap", || shop.add_customer());
}

/// A source in prod's own database would be swapped away with the demoted
/// release: refused before anything is written.
#[test]
fn a_database_swap_refuses_a_source_inside_prod() {
    let shop = Shop::new("dbswap_src");
    std::fs::write(shop.project.join("airlock.toml"), "[deploy]\naudit_database = \"{database}__audit\"\n").unwrap();
    let run = shop.deploy("swap");
    run.assert_code(2);
    assert!(run.stderr.contains("source 'landing.shipments' lives in the prod database") && run.stderr.contains("database:"), "{}", run.stderr);
    let wac = Shop::with_audit_database("dbswap_wac");
    let run = wac.deploy("wac");
    run.assert_code(2);
    assert!(run.stderr.contains("strategy 'wac' cannot publish from an audit database"), "{}", run.stderr);
    assert_eq!(wac.scalar("SELECT COUNT(*) FROM INFORMATION_SCHEMA.SCHEMATA WHERE SCHEMA_NAME LIKE 'ANALYTICS%'"), "0", "a refused deploy wrote to prod");
}

#[test]
fn a_first_deploy_keeps_the_grants_on_a_prod_schema_made_beforehand() {
    let shop = Shop::new("preset");
    // an administrator made the (empty) prod schema and let readers in
    sf::sql(&shop.db, &["CREATE SCHEMA ANALYTICS", "GRANT USAGE ON SCHEMA ANALYTICS TO ROLE REPORTER"]);
    shop.deploy("swap").assert_code(0);
    let grants = shop.grants();
    assert!(grants.iter().any(|g| g.starts_with("USAGE on SCHEMA \"ANALYTICS\" to ROLE REPORTER")), "the swap lost the schema's grant: {grants:#?}");
}
