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
