//! `airlock doctor`: what the native builder refuses (the same list deploy
//! refuses with), which builder is chosen and why, whether dbt is there and
//! supported; exit 0 when the chosen builder can run the project, 1 when it
//! cannot, 2 on bad input; never touches the warehouse.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

/// No dbt to start: the checks that do not need one stay fast.
const NO_DBT: &str = "/nonexistent/bin/dbt";

fn json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("doctor --format json printed no JSON ({e}):\n{}", run.stdout))
}

/// The `file: construct` lines of a refusal as the native deploy prints it.
fn refused_by_deploy(stderr: &str) -> Vec<String> {
    stderr.lines().filter(|l| l.starts_with("  ")).map(|l| l.trim().to_string()).collect()
}

fn refused_by_doctor(report: &Value) -> Vec<String> {
    report["native"]["refusals"]
        .as_array()
        .expect("refusals")
        .iter()
        .map(|r| format!("{}: {}", r["file"].as_str().unwrap(), r["construct"].as_str().unwrap()))
        .collect()
}

#[test]
fn dbt_features_through_the_native_builder_is_refused_and_doctor_lists_the_same() {
    let s = Scratch::new();
    let project = s.copy_fixture("dbt_features");
    let db = s.path().join("features.duckdb");
    let mut cmd = s.command(&project, &["deploy"]);
    cmd.env("AIRLOCK_FEATURES_DB", &db);
    let run = Run::of(&mut cmd);
    run.assert_code(2);
    for expected in [
        "the native builder does not support 2 constructs of this project yet (nothing was built); run it with --builder dbt",
        "snapshots/customers_snapshot.sql: snapshot",
        "packages.yml: package (local: local_pkg)",
    ] {
        assert!(run.stderr.contains(expected), "expected {expected:?} in:\n{}", run.stderr);
    }
    assert!(!db.exists(), "a refused deploy wrote the database");

    // doctor, native chosen (the default): exit 1, the same list, dbt's version
    let mut cmd = s.command(&project, &["doctor", "--format", "json", "--dbt", dbt()]);
    cmd.env("AIRLOCK_FEATURES_DB", &db);
    let doctor = Run::of(&mut cmd);
    doctor.assert_code(1);
    let report = json(&doctor);
    assert_eq!(refused_by_doctor(&report), refused_by_deploy(&run.stderr));
    assert_eq!(report["status"], "cannot_run");
    assert_eq!(report["builder"], "native");
    assert_eq!(report["native"]["complete"], false, "packages stop the load before rendering: {report:#}");
    assert_eq!(report["dbt"]["version"], "1.11.16");
    assert_eq!(report["dbt"]["supported"], true);
    assert_eq!(report["dbt"]["path"], dbt());
    assert!(report["message"].as_str().unwrap().contains("dbt 1.11.16 can run it with --builder dbt"), "{report:#}");

    // the dbt builder chosen in airlock.toml: it can run the project, exit 0
    std::fs::write(project.join("airlock.toml"), "[deploy]\nbuilder = \"dbt\"\n").unwrap();
    let mut cmd = s.command(&project, &["doctor", "--dbt", dbt()]);
    cmd.env("AIRLOCK_FEATURES_DB", &db);
    let table = Run::of(&mut cmd);
    table.assert_code(0);
    for expected in [
        "dbt (builder = \"dbt\" in airlock.toml)",
        "snapshots/customers_snapshot.sql",
        "package (local: local_pkg)",
        "dbt 1.11.16 at ",
        "the chosen builder (dbt 1.11.16) can run this project",
    ] {
        assert!(table.stdout.contains(expected), "expected {expected:?} in:\n{}", table.stdout);
    }
    assert!(table.stdout.contains('┆'), "not a table:\n{}", table.stdout);
    assert!(!db.exists(), "doctor wrote the database");
}

#[test]
fn refusals_found_after_rendering_are_listed_as_deploy_lists_them() {
    let s = Scratch::new();
    let project = fixture("bad/refuse_configs");
    let run = s.airlock(&project, &["deploy"]);
    run.assert_code(2);
    let doctor = s.airlock(&project, &["doctor", "--format", "json", "--dbt", NO_DBT]);
    doctor.assert_code(1);
    let report = json(&doctor);
    let listed = refused_by_doctor(&report);
    assert_eq!(listed.len(), 10, "{listed:#?}");
    assert_eq!(listed, refused_by_deploy(&run.stderr));
    assert_eq!(report["native"]["complete"], true);
    assert!(listed.contains(&"models/schema.yml: store_failures: true on test 'unique_events_id'".to_string()), "{listed:#?}");
    assert_eq!(report["dbt"]["problem"].as_str().map(|p| p.starts_with("not found: no executable '/nonexistent/bin/dbt'")), Some(true), "{report:#}");
    assert!(!s.path().join("bad.duckdb").exists());
}

#[test]
fn a_project_the_native_builder_runs_passes_and_a_missing_or_old_dbt_fails_the_dbt_builder() {
    let s = Scratch::new();
    let project = s.copy_fixture("shop");
    let run = s.airlock(&project, &["doctor", "--dbt", NO_DBT]);
    run.assert_code(0);
    assert!(run.stdout.contains("native (the default;") && run.stdout.contains("can run the project"), "{}", run.stdout);
    assert!(run.stdout.contains("the chosen builder (native) can run this project"), "{}", run.stdout);

    let run = s.airlock(&project, &["doctor", "--format", "json", "--builder", "dbt", "--dbt", NO_DBT]);
    run.assert_code(1);
    let report = json(&run);
    assert_eq!((report["can_run"].clone(), report["builder_reason"].clone()), (Value::Bool(false), Value::from("--builder")));
    assert_eq!(report["native"]["can_run"], true);

    // a dbt older than the builder supports
    let fake = s.path().join("old-dbt");
    std::fs::write(&fake, "#!/bin/sh\necho '{\"info\": {\"name\": \"MainReportVersion\", \"level\": \"info\", \"msg\": \"Running with dbt=1.5.0\"}, \"data\": {\"version\": \"=1.5.0\"}}'\n").unwrap();
    Command::new("chmod").arg("+x").arg(&fake).status().unwrap();
    let run = s.airlock(&project, &["doctor", "--builder", "dbt", "--dbt", fake.to_str().unwrap()]);
    run.assert_code(1);
    assert!(run.stdout.contains("dbt 1.5.0") && run.stdout.contains("not a version the dbt builder supports (1.8 to 1.11)"), "{}", run.stdout);
    assert!(!s.db().exists(), "doctor opened the warehouse");
}

#[test]
fn a_project_the_native_builder_cannot_load_is_named_and_bad_input_exits_2() {
    let s = Scratch::new();
    // a load error that is no refusal: listed with its message, exit 1
    let run = s.airlock(&fixture("bad/unknown_ref"), &["doctor", "--format", "json", "--dbt", NO_DBT]);
    run.assert_code(1);
    let report = json(&run);
    assert!(report["native"]["error"].as_str().is_some_and(|e| e.contains("unknown ref")), "{report:#}");

    // doctor's own input: flags, airlock.toml, the project dir
    let project = s.copy_fixture("shop");
    s.airlock(&project, &["doctor", "--builder", "dbx"]).assert_code(2);
    std::fs::write(project.join("airlock.toml"), "[deploy]\nbuilder = \"dbx\"\n").unwrap();
    let run = s.airlock(&project, &["doctor", "--format", "json"]);
    run.assert_code(2);
    assert!(run.stderr.contains("builder = 'dbx' is not a builder"), "{}", run.stderr);
    assert_eq!(json(&run)["status"], "error");
    s.airlock(&s.path().join("nowhere"), &["doctor"]).assert_code(2);
}
