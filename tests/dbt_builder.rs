//! `--builder dbt` end to end with the real dbt (dbt-core 1.11.16 +
//! dbt-duckdb 1.11.1, installed by tests/dbt/install.sh outside the clone):
//! what it publishes against the native builder and against plain `dbt
//! build`, the gate on a failing test, and dbt missing / unsupported / a bad
//! profile.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// Plain dbt, as a user runs it, on `db` (the fixtures' profiles read it from the env).
fn plain_dbt(project: &Path, db_env: (&str, &Path), args: &[&str]) {
    let out = Command::new(dbt())
        .args(args)
        .arg("--project-dir")
        .arg(project)
        .arg("--profiles-dir")
        .arg(project)
        .current_dir(project)
        .env(db_env.0, db_env.1)
        .env("DBT_SEND_ANONYMOUS_USAGE_STATS", "False")
        .env_remove("DBT_PROFILES_DIR")
        .output()
        .expect("run dbt");
    assert!(out.status.success(), "dbt {args:?} failed:\n{}", String::from_utf8_lossy(&out.stdout));
}

/// airlock with the dbt builder on the features fixture, its database at `db`.
fn features_airlock(s: &Scratch, project: &Path, db: &Path, args: &[&str]) -> Run {
    let mut cmd = s.command(project, args);
    cmd.args(["--builder", "dbt", "--dbt", dbt()]).current_dir(project).env("AIRLOCK_FEATURES_DB", db);
    Run::of(&mut cmd)
}

fn features_copy(s: &Scratch) -> PathBuf {
    let project = s.copy_fixture("dbt_features");
    // a user runs `dbt deps` once: it links the local package into dbt_packages/
    plain_dbt(&project, ("AIRLOCK_FEATURES_DB", &s.path().join("deps.duckdb")), &["deps"]);
    project
}

/// [`prod_checksums`] for views that read CSV files relative to `dir` (the
/// shop's source): DuckDB resolves them against `file_search_path`.
fn checksums_reading_files(db: &Path, schemas: &[&str], dir: &Path) -> std::collections::BTreeMap<String, String> {
    let conn = duckdb::Connection::open_with_flags(db, duckdb::Config::default().access_mode(duckdb::AccessMode::ReadOnly).unwrap()).expect("open db");
    conn.execute_batch(&format!("SET file_search_path = '{}'", dir.display())).unwrap();
    let text = |sql: &str| -> Vec<Vec<String>> {
        let mut stmt = conn.prepare(&format!("SELECT COLUMNS(*)::VARCHAR FROM ({sql})")).expect("prepare");
        let mut rows = stmt.query([]).expect("query");
        let mut out = Vec::new();
        while let Some(row) = rows.next().unwrap() {
            let n = row.as_ref().column_count();
            out.push((0..n).map(|i| row.get::<_, Option<String>>(i).unwrap().unwrap_or_else(|| "NULL".into())).collect());
        }
        out
    };
    let list = schemas.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", ");
    let mut out = std::collections::BTreeMap::new();
    for o in text(&format!("SELECT table_schema, table_name, table_type FROM information_schema.tables WHERE table_schema IN ({list}) ORDER BY 1, 2")) {
        let rel = format!("\"{}\".\"{}\"", o[0], o[1]);
        let sum = text(&format!("SELECT COUNT(*), COALESCE(md5(string_agg(md5(t::VARCHAR), '' ORDER BY md5(t::VARCHAR))), '') FROM {rel} AS t"));
        out.insert(format!("{}.{}", o[0], o[1]), format!("{} rows={} md5={}", o[2], sum[0][0], sum[0][1]));
    }
    out
}

/// No prod object of the shop (a missing database holds none).
fn prod_empty(db: &Path) -> bool {
    !db.exists() || prod_checksums(db, &["main", "main_marts"]).is_empty()
}

const FEATURE_SCHEMAS: &[&str] = &["main", "main_marts", "main_snapshots"];

#[test]
fn shop_publishes_the_same_prod_tables_through_both_builders() {
    let native = Scratch::new();
    let project = native.copy_fixture("shop");
    // the shop's CSV source is read relative to the working directory (as dbt-duckdb does)
    let mut cmd = native.command(&project, &["deploy"]);
    cmd.current_dir(&project);
    Run::of(&mut cmd).assert_code(0);

    let with_dbt = Scratch::new();
    let project = with_dbt.copy_fixture("shop");
    // dbt behind a shell wrapper: airlock cannot drive its Python, so it runs
    // `dbt parse` and `dbt build` one by one (the features tests take the
    // one-process path)
    let wrapper = with_dbt.path().join("dbt-wrapper");
    std::fs::write(&wrapper, format!("#!/bin/sh\nexec '{}' \"$@\"\n", dbt())).unwrap();
    Command::new("chmod").arg("+x").arg(&wrapper).status().unwrap();
    let mut cmd = with_dbt.command(&project, &["deploy", "--builder", "dbt", "--dbt", wrapper.to_str().unwrap()]);
    cmd.current_dir(&project);
    let run = Run::of(&mut cmd);
    run.assert_code(0);
    assert!(run.stdout.contains("release 1 published"), "{}", run.stdout);

    let a = checksums_reading_files(&native.db(), &["main", "main_marts"], &native.path().join("shop"));
    let b = checksums_reading_files(&with_dbt.db(), &["main", "main_marts"], &project);
    assert!(a.contains_key("main_marts.orders") && a.contains_key("main_marts.customer_summary"), "{a:#?}");
    assert_eq!(a, b, "native (left) and --builder dbt (right) published different prod objects");
}

#[test]
fn features_publish_what_dbt_build_writes_and_a_failing_test_blocks() {
    let s = Scratch::new();
    let project = features_copy(&s);
    std::fs::create_dir_all(s.path().join("plain")).unwrap();
    std::fs::create_dir_all(s.path().join("air")).unwrap();
    // same file name: dbt names the DuckDB catalog after it, and views carry it
    let plain = s.path().join("plain/features.duckdb");
    let air = s.path().join("air/features.duckdb");

    plain_dbt(&project, ("AIRLOCK_FEATURES_DB", &plain), &["build"]);
    let run = features_airlock(&s, &project, &air, &["deploy"]);
    run.assert_code(0);
    assert!(run.stdout.contains("release 1 published"), "{}", run.stdout);
    let expected = prod_checksums(&plain, FEATURE_SCHEMAS);
    for table in ["main.stg_orders", "main.orders_incremental", "main_marts.orders_enriched", "main_snapshots.customers_snapshot", "main.raw_customers"] {
        assert!(expected.contains_key(table), "plain dbt build wrote no {table}: {expected:#?}");
    }
    assert_eq!(prod_checksums(&air, FEATURE_SCHEMAS), expected, "--builder dbt (left) published other than plain dbt build (right)");
    // the post_hook ran in audit and its effect was published
    assert_eq!(query(&air, "SELECT DISTINCT status FROM main_marts.orders_enriched WHERE status <> upper(status)").len(), 0);

    // a failing custom generic test blocks: sample rows in the report, prod unchanged
    let before = prod_checksums(&air, FEATURE_SCHEMAS);
    let run = features_airlock(&s, &project, &air, &["deploy", "--vars", "{break_orders: true}"]);
    run.assert_code(1);
    assert!(run.stdout.contains("FAIL is_positive(amount) on orders_incremental"), "{}", run.stdout);
    assert!(run.stdout.contains("-5.00") && run.stdout.contains("99"), "no failing row sampled:\n{}", run.stdout);
    assert!(run.stdout.contains("gate blocked by 1 failing test"), "{}", run.stdout);
    assert!(run.stdout.contains("skipped by dbt: orders_enriched"), "{}", run.stdout);
    assert_eq!(prod_checksums(&air, FEATURE_SCHEMAS), before, "a blocked deploy changed prod");

    // new data: the snapshot keeps history and the incremental model merges,
    // both on the latest prod (staged into audit), exactly as dbt does in place
    let customers = project.join("seeds/raw_customers.csv");
    let text = std::fs::read_to_string(&customers).unwrap().replace("1,Ada,gold,2024-01-01 00:00:00", "1,Ada,platinum,2024-03-01 00:00:00");
    std::fs::write(&customers, text).unwrap();
    append(&project.join("seeds/raw_orders.csv"), "6,3,700,placed,2024-03-02 08:00:00\n");
    plain_dbt(&project, ("AIRLOCK_FEATURES_DB", &plain), &["build"]);
    features_airlock(&s, &project, &air, &["deploy"]).assert_code(0);
    let expected = prod_checksums(&plain, FEATURE_SCHEMAS);
    assert_eq!(query(&plain, "SELECT count(*) FROM main_snapshots.customers_snapshot")[0][0], "4", "the snapshot should hold Ada's history");
    assert_eq!(prod_checksums(&air, FEATURE_SCHEMAS), expected, "second deploy: --builder dbt (left) differs from plain dbt build (right)");
}

#[test]
fn dbt_missing_unsupported_or_rejecting_the_profile_exits_2_with_dbts_message() {
    let s = Scratch::new();
    let project = s.copy_fixture("shop");
    let run = s.airlock(&project, &["deploy", "--builder", "dbt", "--dbt", "/nonexistent/bin/dbt"]);
    run.assert_code(2);
    assert!(run.stderr.contains("dbt not found") && run.stderr.contains("--dbt PATH"), "{}", run.stderr);
    assert!(prod_empty(&s.db()));

    // a dbt older than the builder supports
    let fake = s.path().join("old-dbt");
    std::fs::write(&fake, "#!/bin/sh\necho '{\"info\": {\"name\": \"MainReportVersion\", \"level\": \"info\", \"msg\": \"Running with dbt=1.5.0\"}, \"data\": {\"version\": \"=1.5.0\"}}'\n").unwrap();
    std::process::Command::new("chmod").arg("+x").arg(&fake).status().unwrap();
    let run = s.airlock(&project, &["deploy", "--builder", "dbt", "--dbt", fake.to_str().unwrap()]);
    run.assert_code(2);
    assert!(run.stderr.contains("dbt 1.5.0") && run.stderr.contains("not a version the dbt builder supports"), "{}", run.stderr);

    // builder = "dbt" in airlock.toml, and a profile dbt rejects: dbt's own words
    std::fs::write(project.join("airlock.toml"), "[deploy]\nbuilder = \"dbt\"\n").unwrap();
    // (`extensions:`, which airlock does not read; a bad `settings:` airlock refuses itself)
    append(&project.join("profiles.yml"), "      extensions: 5\n");
    let run = s.airlock(&project, &["deploy", "--dbt", dbt()]);
    run.assert_code(2);
    assert!(run.stderr.contains("Credentials in profile \"shop\", target \"dev\" invalid"), "{}", run.stderr);
    assert!(prod_empty(&s.db()), "a failed deploy wrote prod");
}

#[test]
fn plan_says_which_builder_runs_and_why() {
    let s = Scratch::new();
    let project = s.copy_fixture("shop");
    let run = s.airlock(&project, &["plan", "--offline"]);
    run.assert_code(0);
    assert!(run.stdout.contains("builder: native (the default;"), "{}", run.stdout);
    let run = s.airlock(&project, &["plan", "--builder", "dbt"]);
    run.assert_code(0);
    assert!(run.stdout.contains("builder: dbt (--builder)") && run.stdout.contains("schema 'main__audit' in place of 'main'"), "{}", run.stdout);
    std::fs::write(project.join("airlock.toml"), "[deploy]\nbuilder = \"dbt\"\n").unwrap();
    let run = s.airlock(&project, &["plan"]);
    assert!(run.stdout.contains("builder: dbt (builder = \"dbt\" in airlock.toml)"), "{}", run.stdout);
    std::fs::write(project.join("airlock.toml"), "[deploy]\nbuilder = \"dbx\"\n").unwrap();
    let run = s.airlock(&project, &["plan"]);
    run.assert_code(2);
    assert!(run.stderr.contains("builder = 'dbx' is not a builder"), "{}", run.stderr);
}

#[test]
fn wap_with_the_dbt_builder_rebuilds_the_marts_in_prod_with_dbt_itself() {
    let s = Scratch::new();
    let project = features_copy(&s);
    std::fs::create_dir_all(s.path().join("plain")).unwrap();
    std::fs::create_dir_all(s.path().join("air")).unwrap();
    let plain = s.path().join("plain/features.duckdb");
    let air = s.path().join("air/features.duckdb");
    plain_dbt(&project, ("AIRLOCK_FEATURES_DB", &plain), &["build"]);

    let run = features_airlock(&s, &project, &air, &["deploy", "--strategy", "wap"]);
    run.assert_code(0);
    assert!(run.stdout.contains("published: 1 object in prod (1 rebuilt there by dbt)"), "{}", run.stdout);
    // the mart, rebuilt in prod by dbt from the audited upstream, is what plain dbt build makes
    let mart = prod_checksums(&air, &["main_marts"]);
    assert_eq!(mart, prod_checksums(&plain, &["main_marts"]));
    assert!(mart.contains_key("main_marts.orders_enriched"), "{mart:#?}");
    // only the top-level models are published; their upstream stayed in audit
    assert!(prod_checksums(&air, &["main", "main_snapshots"]).is_empty(), "wap published more than the marts");
    assert!(run.stdout.contains("orders_incremental"), "{}", run.stdout);
    // dbt's rebuild is a step of the journal, recorded done before the release is published
    assert_eq!(query(&air, "SELECT status FROM airlock.releases WHERE id = 1"), vec![vec!["published".to_string()]]);
    let journal = query(&air, "SELECT action, state FROM airlock.journal WHERE release_id = 1 ORDER BY step");
    assert!(journal.iter().all(|r| r[1] == "done"), "{journal:?}");
    assert_eq!(journal[journal.len() - 2][0], "dbt-rebuild", "{journal:?}");
}

/// The features project published once by wap with the dbt builder: its
/// scratch, project, database and prod's checksums after release 1.
fn wap_published_once() -> (Scratch, PathBuf, PathBuf, std::collections::BTreeMap<String, String>) {
    let s = Scratch::new();
    let project = features_copy(&s);
    std::fs::create_dir_all(s.path().join("air")).unwrap();
    let air = s.path().join("air/features.duckdb");
    features_airlock(&s, &project, &air, &["deploy", "--strategy", "wap"]).assert_code(0);
    let before = prod_checksums(&air, FEATURE_SCHEMAS);
    (s, project, air, before)
}

#[test]
fn wap_with_the_dbt_builder_puts_prod_back_when_dbts_rebuild_is_not_what_the_gate_passed() {
    let (s, project, air, before) = wap_published_once();
    // a mart that dbt rebuilds differently in prod from what the gate passed in audit
    std::fs::write(project.join("models/marts/lottery.sql"), "select i, random() as r from range(0, 50) t(i)\n").unwrap();
    let run = features_airlock(&s, &project, &air, &["deploy", "--strategy", "wap"]);
    run.assert_code(2);
    assert!(run.stdout.contains("differs from") && run.stdout.contains("prod restored"), "{}", run.stdout);
    assert_eq!(prod_checksums(&air, FEATURE_SCHEMAS), before, "prod must be as before the publish");
    assert_eq!(query(&air, "SELECT status, published FROM airlock.releases WHERE id = 2"), vec![vec!["failed".to_string(), "0".to_string()]]);
    let journal = query(&air, "SELECT DISTINCT state FROM airlock.journal WHERE release_id = 2");
    assert_eq!(journal, vec![vec!["undone".to_string()]]);
}

#[test]
fn wap_with_the_dbt_builder_killed_before_dbt_rebuilds_prod_is_not_recorded_as_published() {
    let (s, project, air, before) = wap_published_once();

    // the process dies after the journal's own steps, right before dbt rebuilds the mart in prod
    let mut cmd = s.command(&project, &["deploy", "--strategy", "wap", "--builder", "dbt", "--dbt", dbt()]);
    cmd.current_dir(&project).env("AIRLOCK_FEATURES_DB", &air).env("AIRLOCK_FAILPOINT", "publish:external");
    let killed = Run::of(&mut cmd);
    assert_eq!(killed.code, -1, "the process must die by SIGKILL\n{}", killed.stderr);
    // the ledger does not claim a publish that did not happen
    let status = |id: i64| query(&air, &format!("SELECT status FROM airlock.releases WHERE id = {id}"))[0][0].clone();
    assert_eq!(status(2), "publishing");
    let warehouse_command = |args: &[&str]| Run::of(s.command(&project, args).current_dir(&project).env("AIRLOCK_FEATURES_DB", &air));
    let history = warehouse_command(&["history"]);
    assert!(history.stderr.contains("run `airlock recover`"), "{}", history.stderr);

    // recover cannot finish dbt's rebuild: it undoes the publish
    let recover = warehouse_command(&["recover"]);
    recover.assert_code(0);
    assert!(recover.stdout.contains("dbt-rebuild") && recover.stdout.contains("undoing"), "{}", recover.stdout);
    assert_eq!(status(2), "recovered-back");
    assert_eq!(prod_checksums(&air, FEATURE_SCHEMAS), before, "prod must be as release 1 left it");
    // and the next deploy publishes
    features_airlock(&s, &project, &air, &["deploy", "--strategy", "wap"]).assert_code(0);
    assert_eq!(status(3), "published");
}

#[test]
fn a_project_whose_audit_build_would_land_in_prod_is_refused_before_dbt_builds() {
    // a generate_schema_name that ignores target.schema: the audit target's
    // objects would be built in prod's schema
    let s = Scratch::new();
    let project = s.copy_fixture("shop");
    std::fs::write(
        project.join("macros/generate_schema_name.sql"),
        "{% macro generate_schema_name(custom_schema_name, node) %}main{% endmacro %}\n",
    )
    .unwrap();
    let mut cmd = s.command(&project, &["deploy", "--builder", "dbt", "--dbt", dbt()]);
    cmd.current_dir(&project);
    let run = Run::of(&mut cmd);
    run.assert_code(2);
    assert!(run.stderr.contains("which is a prod schema of this project") && run.stderr.contains("airlock will not build into prod"), "{}", run.stderr);
    // dbt parsed, and never built: nothing in the database's prod schema
    assert!(prod_empty(&s.db()), "dbt built although the audit location was refused");
}
