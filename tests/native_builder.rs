//! The native builder against real dbt (dbt-core 1.11.16 + dbt-duckdb 1.11.1,
//! installed on first use by tests/dbt/install.sh, outside the clone): for each feature it
//! claims, the same fixture gives the same test verdicts and the same prod
//! tables as `dbt build`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{copy_dir, dbt, fixture, prod_checksums, Run, Scratch};
use serde_json::Value;

/// `dbt build` of `project` into `db`; its run results and manifest.
fn dbt_build(project: &Path, db: &Path) -> (Run, Value, Value) {
    let run = Run::of(
        Command::new(dbt())
            .args(["build", "--profiles-dir", ".", "--project-dir", "."])
            .current_dir(project)
            .env("NATIVE_TESTS_DB", db)
            .env("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
            .env_remove("DBT_PROFILES_DIR"),
    );
    let read = |f: &str| -> Value { serde_json::from_str(&std::fs::read_to_string(project.join("target").join(f)).unwrap_or_else(|e| panic!("dbt left no {f}: {e}\n{}", run.stdout))).unwrap() };
    let results = read("run_results.json");
    let manifest = read("manifest.json");
    (run, results, manifest)
}

/// dbt's verdict of every test, by the name airlock gives the test
/// (`{test}_{model}_{column}`): (status, failures).
fn dbt_verdicts(results: &Value, manifest: &Value) -> BTreeMap<String, (String, u64)> {
    let mut out = BTreeMap::new();
    for r in results["results"].as_array().unwrap() {
        let id = r["unique_id"].as_str().unwrap();
        if !id.starts_with("test.") {
            continue;
        }
        let node = &manifest["nodes"][id];
        let test = node["test_metadata"]["name"].as_str().unwrap();
        let model = node["attached_node"].as_str().unwrap().rsplit('.').next().unwrap();
        let name = match node["column_name"].as_str() {
            Some(col) => format!("{test}_{model}_{col}"),
            None => format!("{test}_{model}"),
        };
        let status = r["status"].as_str().unwrap().to_string();
        out.insert(name, (status, r["failures"].as_u64().unwrap_or(0)));
    }
    out
}

/// airlock's verdict of every test of a `--format json` report.
fn airlock_verdicts(report: &Value) -> BTreeMap<String, (String, u64)> {
    let failures: BTreeMap<&str, u64> =
        report["failures"].as_array().unwrap().iter().map(|f| (f["name"].as_str().unwrap(), f["failures"].as_u64().unwrap())).collect();
    report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "test")
        .map(|n| {
            let name = n["name"].as_str().unwrap();
            (name.to_string(), (n["status"].as_str().unwrap().to_string(), failures.get(name).copied().unwrap_or(0)))
        })
        .collect()
}

fn deploy_json(s: &Scratch, project: &Path, db: &Path) -> (Run, Value) {
    let run = Run::of(s.command(project, &["deploy", "--format", "json"]).env("NATIVE_TESTS_DB", db));
    let report = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("no JSON report ({e}):\n{}\n{}", run.stdout, run.stderr));
    (run, report)
}

/// A copy of a fixture for dbt (which writes target/ into the project).
fn copy_for_dbt(s: &Scratch, name: &str) -> PathBuf {
    let to = s.path().join(format!("dbt_{name}"));
    copy_dir(&fixture(name), &to);
    to
}

#[test]
fn custom_generic_tests_and_test_configs_give_dbts_verdicts_and_tables() {
    let s = Scratch::new();
    let ours = s.path().join("native.duckdb");
    let theirs = s.path().join("dbt.duckdb");
    let (run, report) = deploy_json(&s, &fixture("native_tests"), &ours);
    run.assert_code(0);
    assert!(
        run.stderr.contains("models/schema.yml: did not find matching node for patch with name 'ghost' in the 'models' section"),
        "properties of a model without a file warn as in dbt:\n{}",
        run.stderr
    );
    let (dbt_run, results, manifest) = dbt_build(&copy_for_dbt(&s, "native_tests"), &theirs);
    assert_eq!(dbt_run.code, 0, "dbt build:\n{}", dbt_run.stdout);

    let expected = dbt_verdicts(&results, &manifest);
    assert_eq!(expected.len(), 10, "{expected:?}");
    // the fixture exercises pass and warn through each config
    assert_eq!(expected["accepted_values_orders_status"], ("warn".to_string(), 2), "limit: 2 caps the 3 failing rows");
    assert_eq!(expected["at_least_orders_amount"], ("warn".to_string(), 2));
    assert_eq!(expected["exists_in_orders_customer_id"], ("warn".to_string(), 1));
    assert_eq!(expected["not_zero_orders_amount"], ("warn".to_string(), 1));
    assert_eq!(expected["is_positive_orders_amount"], ("pass".to_string(), 0), "where: leaves only the shipped row");
    assert_eq!(airlock_verdicts(&report), expected);

    let published = prod_checksums(&ours, &["main"]);
    assert_eq!(published.len(), 8, "{published:?}");
    assert_eq!(published, prod_checksums(&theirs, &["main"]));
}

#[test]
fn a_failing_custom_test_blocks_with_samples_as_dbt_fails_it() {
    let s = Scratch::new();
    let ours = s.path().join("native.duckdb");
    let theirs = s.path().join("dbt.duckdb");
    let project = s.copy_fixture("native_tests");
    deploy_json(&s, &project, &ours).0.assert_code(0);
    let before = prod_checksums(&ours, &["main"]);
    // without `error_if: ">1"` the missing customer is an error
    let yml = project.join("models/schema.yml");
    let text = std::fs::read_to_string(&yml).unwrap();
    let changed = text.replacen("              config:\n                error_if: \">1\"\n", "", 1);
    assert_ne!(changed, text);
    std::fs::write(&yml, changed).unwrap();

    let (run, report) = deploy_json(&s, &project, &ours);
    run.assert_code(1);
    let failed = report["failures"].as_array().unwrap().iter().find(|f| f["name"] == "exists_in_orders_customer_id").expect("the test is reported");
    assert_eq!(failed["failures"], 1);
    assert_eq!(failed["sample"]["rows"], serde_json::json!([["9"]]));
    assert_eq!(prod_checksums(&ours, &["main"]), before, "prod unchanged");

    let dbt_project = s.path().join("dbt_copy");
    copy_dir(&project, &dbt_project);
    let (_, results, manifest) = dbt_build(&dbt_project, &theirs);
    let verdicts = dbt_verdicts(&results, &manifest);
    assert_eq!(verdicts["exists_in_orders_customer_id"], ("fail".to_string(), 1));
    assert_eq!(airlock_verdicts(&report)["exists_in_orders_customer_id"], ("fail".to_string(), 1));
}
