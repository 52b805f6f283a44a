//! Issue 7: no panic on any input. Mutated projects (dbt_project.yml,
//! models, macros, properties YAML, profiles) and mutated strategy files go
//! through the loader, the DAG and the strategy parser in-process; a panic
//! anywhere fails the test and prints the input that caused it.
//!
//! Bounded by time: `AIRLOCK_FUZZ_SECONDS` (default 15). The long run:
//! `AIRLOCK_FUZZ_SECONDS=600 cargo test --release --test fuzz -- --nocapture`

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};

/// Pieces that matter to the loader and the parsers, spliced in at random.
const FRAGMENTS: &[&str] = &[
    "{{", "}}", "{%", "%}", "{#", "#}", "{{ ref('stg_orders') }}", "{{ ref('nope') }}", "{{ source('landing', 'shipments') }}",
    "{{ config(materialized='table') }}", "{{ config(enabled=false) }}", "{{ var('x') }}", "{{ var('min_order_date', 1) }}",
    "{% macro café() %}x{% endmacro %}", "{% test é(model, column_name) %}select 1{% endtest %}", "{% macro", "{% endmacro %}",
    "{{ this }}", "{{ is_incremental() }}", "{{ env_var('HOME') }}", ";", "; drop table x", "'", "\"", "`", "$$", "$a$", "--", "/*", "*/",
    "\n", "\n  ", ":", ": ", "- ", "- name: x\n", "[", "]", "{", "}", "+materialized: ", "+materialised: table", "+enabled: \"{{ var('on', false) }}\"",
    "+pre-hook: \"select 1\"", "+post-hook: [\"select 1; select 2\"]", "tests:", "data_tests:", "relationships:", "to: ref('x')",
    "é", "日本", "\u{0}", "\u{feff}", "\t", "\\", "~", "&a", "*a", "!!binary", "null", "true", "1e999", "-1", "18446744073709551616",
    "[[x]]", "name = \"y\"", "publish = \"swap\"", "stage = \"clone_prod\"", "{{ tagret }}", "{{ source }}", "[support]\nbigquery = true\n",
];

#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, usize),
    Delete(usize, usize),
    Duplicate(usize),
    Text(usize, String),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        (any::<usize>(), 0..FRAGMENTS.len()).prop_map(|(at, f)| Edit::Insert(at, f)),
        (any::<usize>(), 1usize..40).prop_map(|(at, n)| Edit::Delete(at, n)),
        any::<usize>().prop_map(Edit::Duplicate),
        (any::<usize>(), "\\PC{0,12}").prop_map(|(at, t)| Edit::Text(at, t)),
    ];
    proptest::collection::vec(edit, 0..8)
}

/// Apply edits at char boundaries (positions are taken modulo the length).
fn mutate(text: &str, edits: &[Edit]) -> String {
    let mut s = text.to_string();
    let boundary = |s: &str, at: usize| -> usize {
        if s.is_empty() {
            return 0;
        }
        let mut i = at % (s.len() + 1);
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    for e in edits {
        match e {
            Edit::Insert(at, f) => {
                let i = boundary(&s, *at);
                s.insert_str(i, FRAGMENTS[*f]);
            }
            Edit::Delete(at, n) => {
                let i = boundary(&s, *at);
                let j = boundary(&s, i + n);
                if j > i {
                    s.replace_range(i..j, "");
                }
            }
            Edit::Duplicate(at) => {
                let i = boundary(&s, *at);
                let line = s[i..].lines().next().unwrap_or("").to_string();
                s.insert_str(i, &format!("{line}\n"));
            }
            Edit::Text(at, t) => {
                let i = boundary(&s, *at);
                s.insert_str(i, t);
            }
        }
    }
    s
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

const PROJECT_FILES: &[&str] = &[
    "dbt_project.yml",
    "models/marts/orders.sql",
    "models/staging/stg_orders.sql",
    "models/staging/schema.yml",
    "models/staging/sources.yml",
    "models/marts/schema.yml",
    "macros/cents_to_dollars.sql",
    "tests/assert_order_totals_non_negative.sql",
    "profiles.yml",
];

/// Load a mutated project the way every command does; errors are fine,
/// panics are not (the caller catches them).
fn load(root: &Path) {
    let Ok(header) = airlock::project::read_header(root) else { return };
    let _ = airlock::project::profile::load_profile(&root.join("profiles.yml"), &header.profile, None);
    let target = serde_json::json!({"name": "dev", "schema": "main", "type": "duckdb", "threads": 1, "database": "shop", "path": "shop.duckdb"});
    let Ok(loaded) = airlock::project::load_project(header, target, BTreeMap::new()) else { return };
    if let Ok(dag) = airlock::graph::Dag::new(&loaded.project) {
        let _ = dag.select(&loaded.project, &["+orders".to_string(), "tag:mart".to_string()], &[]);
        let _ = dag.topo_order();
    }
}

#[test]
fn no_input_makes_the_loader_or_the_strategy_parser_panic() {
    let seconds: u64 = std::env::var("AIRLOCK_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(15);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let shop = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/shop");
    let strategies: Vec<(String, String)> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("strategies"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| (p.display().to_string(), std::fs::read_to_string(&p).unwrap()))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mut runner = TestRunner::new(Config { failure_persistence: None, ..Config::default() });
    let case = (0..PROJECT_FILES.len(), edits(), 0..strategies.len(), edits(), "\\PC{0,40}");
    let mut cases = 0u64;
    // panics are caught per case; keep their default report quiet
    std::panic::set_hook(Box::new(|_| {}));
    while Instant::now() < deadline {
        let (file, project_edits, strategy, strategy_edits, sql) = case.new_tree(&mut runner).unwrap().current();
        let root = dir.path().join(format!("p{}", cases % 4));
        let _ = std::fs::remove_dir_all(&root);
        copy_tree(&shop, &root);
        let path = root.join(PROJECT_FILES[file]);
        let mutated = mutate(&std::fs::read_to_string(&path).unwrap(), &project_edits);
        std::fs::write(&path, &mutated).unwrap();
        let (name, text) = &strategies[strategy];
        let toml = mutate(text, &strategy_edits);

        let outcome = catch_unwind(AssertUnwindSafe(|| {
            load(&root);
            let _ = airlock::strategy::Strategy::parse(&toml, name);
            let _ = airlock::sqltext::second_statement(&sql);
            let _ = airlock::sqltext::second_statement(&mutated);
        }));
        if outcome.is_err() {
            let _ = std::panic::take_hook();
            panic!("panic on input #{cases}\n--- {} ---\n{mutated}\n--- strategy {name} ---\n{toml}\n--- sql ---\n{sql}", PROJECT_FILES[file]);
        }
        cases += 1;
    }
    let _ = std::panic::take_hook();
    eprintln!("fuzz: {cases} inputs in {seconds} s, no panic");
    assert!(cases > 0);
}
