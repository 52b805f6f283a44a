//! Bad input exits 2 with a message naming the file and line or value, never
//! panics, and writes nothing.

mod common;

use common::{fixture, Scratch};

fn rejects(name: &str, args: &[&str], expected: &[&str]) {
    let s = Scratch::new();
    let run = s.airlock(&fixture(&format!("bad/{name}")), args);
    run.assert_code(2);
    for e in expected {
        assert!(run.stderr.contains(e), "{name}: expected {e:?} in:\n{}", run.stderr);
    }
    assert!(run.stderr.starts_with("airlock: "), "{}", run.stderr);
    assert!(!s.path().join("bad.duckdb").exists(), "{name}: a database was written");
}

#[test]
fn a_cycle_is_named_whole() {
    rejects("cycle", &["deploy"], &["dependency cycle: a (models/a.sql) -> b (models/b.sql) -> c (models/c.sql) -> a (models/a.sql)"]);
}

#[test]
fn an_unknown_ref_names_file_line_and_the_closest_name() {
    rejects("unknown_ref", &["deploy"], &["unknown ref 'stg_orderz' in models/orders.sql:4 (did you mean 'stg_orders'?)"]);
}

#[test]
fn malformed_yaml_names_file_and_line() {
    rejects("malformed_yaml", &["deploy"], &["models/schema.yml", "line 1"]);
}

#[test]
fn a_jinja_syntax_error_names_file_and_line() {
    rejects("jinja_syntax", &["plan"], &["models/orders.sql:4", "syntax error"]);
}

#[test]
fn a_duplicate_model_names_both_files() {
    rejects("duplicate_model", &["deploy"], &["duplicate model name 'orders': models/a/orders.sql and models/b/orders.sql"]);
}

#[test]
fn a_missing_profile_names_the_profile_and_what_exists() {
    rejects("missing_profile", &["deploy"], &["profile 'nope'", "it defines: bad"]);
}

#[test]
fn bad_flags_and_settings_exit_2() {
    let s = Scratch::new();
    let run = s.airlock(&fixture("shop"), &["deploy", "--threads", "0"]);
    run.assert_code(2);
    assert!(run.stderr.contains("--threads 0"), "{}", run.stderr);
    let project = s.copy_fixture("shop");
    std::fs::write(project.join("airlock.toml"), "[deploy]\naudit_schema = \"{schema}\"\n").unwrap();
    let run = s.airlock(&project, &["deploy"]);
    run.assert_code(2);
    assert!(run.stderr.contains("airlock.toml: audit_schema"), "{}", run.stderr);
    std::fs::write(project.join("airlock.toml"), "[deploy]\nkeeep = 3\n").unwrap();
    let run = s.airlock(&project, &["deploy"]);
    run.assert_code(2);
    assert!(run.stderr.contains("airlock.toml") && run.stderr.contains("keeep"), "{}", run.stderr);
    assert!(!s.db().exists());
}

/// The statement log is written as statements finish, so a path it cannot
/// be written to fails the deploy before anything runs, naming the path.
#[test]
fn a_statement_log_that_cannot_be_written_fails_before_anything_runs() {
    let s = Scratch::new();
    let log = s.path().join("no-such-dir").join("statements.jsonl");
    let run = s.airlock(&fixture("shop"), &["deploy", "--statement-log", log.to_str().unwrap()]);
    run.assert_code(2);
    assert!(run.stderr.contains(&format!("cannot write --statement-log {}", log.display())), "{}", run.stderr);
    assert!(!s.db().exists(), "the warehouse was opened");
}

/// A construct the native builder does not implement is refused at load,
/// naming its file, the construct and `--builder dbt`; nothing is built.
fn refused(name: &str, expected: &[&str]) {
    let mut all = vec!["the native builder does not support", "run it with --builder dbt"];
    all.extend_from_slice(expected);
    rejects(name, &["deploy"], &all);
}

#[test]
fn snapshots_python_models_functions_unit_tests_and_packages_are_refused_together() {
    refused(
        "refuse_files",
        &[
            "5 constructs",
            "snapshots/orders_snapshot.sql: snapshot",
            "models/scores.py: Python model",
            "functions/double_it.sql: function / UDF",
            "models/unit.yml: unit test (unit_tests:)",
            "packages.yml: package (package: dbt-labs/dbt_utils)",
        ],
    );
}

#[test]
fn configs_that_change_what_dbt_builds_are_refused_with_where_they_are_set() {
    refused(
        "refuse_configs",
        &[
            "10 constructs",
            "config() in models/events.sql: on_schema_change: append_new_columns (only 'ignore' is built natively) on model 'events'",
            "config() in models/events.sql: incremental_predicates (incremental config) on model 'events'",
            "config() in models/events.sql: merge_exclude_columns (incremental config) on model 'events'",
            "models/schema.yml: model contract (contract: {enforced: true}) on model 'events'",
            "models/schema.yml: constraints on model 'events'",
            "models/schema.yml: model versions (versions:) on model 'customers'",
            "models/schema.yml: store_failures: true on test 'unique_events_id'",
            "models/schema.yml: fail_calc: sum(1) on test 'not_null_events_id'",
            "dbt_project.yml: quote_columns: true (seed) on seed 'people'",
            "dbt_project.yml: seed delimiter ';' on seed 'people'",
        ],
    );
}

#[test]
fn unknown_and_package_generic_tests_are_refused() {
    refused(
        "refuse_tests",
        &[
            "models/schema.yml: unknown test 'is_positive': no built-in test and no {% test is_positive %} in macros/ or tests/generic/",
            "models/schema.yml: package generic test 'dbt_utils.not_constant'",
        ],
    );
}

#[test]
fn naming_overrides_and_custom_materializations_are_refused() {
    refused("refuse_macros", &["macros/schema_name.sql: macro override generate_schema_name()", "macros/mat.sql: custom materialization"]);
}

#[test]
fn two_models_with_one_relation_name_both_files() {
    rejects("duplicate_relation", &["deploy"], &["two resources have the same relation main.orders: model 'a' (models/a.sql) and model 'b' (models/b.sql)"]);
}

#[test]
fn an_empty_unique_key_is_an_error() {
    rejects("empty_unique_key", &["deploy"], &["config() in models/events.sql: config 'unique_key' is empty"]);
}

#[test]
fn refused_configs_that_do_not_apply_to_the_node_do_not_refuse() {
    // on_schema_change matters to incremental models only, as in dbt: set on
    // folders of views and tables it does not stop the project
    let s = Scratch::new();
    let project = s.copy_fixture("shop");
    let text = std::fs::read_to_string(project.join("dbt_project.yml")).unwrap();
    let text = text.replacen("      +materialized: view\n", "      +materialized: view\n      +on_schema_change: append_new_columns\n", 1);
    assert!(text.contains("+on_schema_change"), "shop's dbt_project.yml has a staging folder of views");
    std::fs::write(project.join("dbt_project.yml"), text).unwrap();
    s.airlock(&project, &["deploy"]).assert_code(0);
    // the same on an incremental model is refused, naming it; prod unchanged
    let before = common::prod_checksums(&s.db(), &["main", "main_marts"]);
    let model = project.join("models/marts/fct_shipments.sql");
    let sql = std::fs::read_to_string(&model).unwrap();
    std::fs::write(&model, format!("{{{{ config(on_schema_change='fail') }}}}\n{sql}")).unwrap();
    let run = s.airlock(&project, &["deploy"]);
    run.assert_code(2);
    assert!(run.stderr.contains("config() in models/marts/fct_shipments.sql: on_schema_change: fail") && run.stderr.contains("--builder dbt"), "{}", run.stderr);
    assert!(before.len() > 5, "shop published: {before:?}");
    assert_eq!(common::prod_checksums(&s.db(), &["main", "main_marts"]), before);
}
