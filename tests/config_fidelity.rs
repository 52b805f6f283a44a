//! Issue 7, dbt config fidelity: what real projects write in their configs
//! means what dbt makes it mean. Every test runs the real binary.

mod common;

use common::{Run, Scratch};

fn set_project_yml(project: &std::path::Path, from: &str, to: &str) {
    let path = project.join("dbt_project.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "dbt_project.yml lacks {from:?}");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

fn tables(s: &Scratch, schema: &str) -> Vec<String> {
    s.query(&format!("SELECT table_name FROM information_schema.tables WHERE table_schema = '{schema}' ORDER BY 1")).into_iter().map(|r| r[0].clone()).collect()
}

#[test]
fn config_enabled_false_in_a_models_sql_disables_it() {
    let s = Scratch::new();
    let project = s.copy_fixture("shop");
    std::fs::write(project.join("models/marts/draft.sql"), "{{ config(enabled=false) }}\nselect 1 as x\n").unwrap();
    s.airlock(&project, &["deploy"]).assert_code(0);
    assert!(!tables(&s, "main_marts").contains(&"draft".to_string()), "{:?}", tables(&s, "main_marts"));
    let plan = s.airlock(&project, &["plan"]);
    assert!(plan.stdout.contains("draft: disabled"), "{}", plan.stdout);
    // a model that still refers to it is an error naming both
    std::fs::write(project.join("models/marts/uses_draft.sql"), "select * from {{ ref('draft') }}\n").unwrap();
    let run = s.airlock(&project, &["deploy"]);
    run.assert_code(2);
    assert!(run.stderr.contains("ref 'draft' points at a disabled model (models/marts/draft.sql)"), "{}", run.stderr);
}

#[test]
fn jinja_in_dbt_project_values_is_rendered_as_dbt_does() {
    let s = Scratch::new();
    let project = s.copy_fixture("shop");
    std::fs::create_dir_all(project.join("models/extras")).unwrap();
    std::fs::write(project.join("models/extras/extra.sql"), "select 42 as answer\n").unwrap();
    set_project_yml(&project, "    marts:\n", "    extras:\n      +enabled: \"{{ var('load_extras', false) }}\"\n      +materialized: \"{{ 'table' if target.name == 'dev' else 'view' }}\"\n    marts:\n");
    s.airlock(&project, &["deploy"]).assert_code(0);
    assert!(!tables(&s, "main").contains(&"extra".to_string()));
    s.airlock(&project, &["deploy", "--vars", "{load_extras: true}"]).assert_code(0);
    assert_eq!(s.scalar("SELECT table_type || ' ' || (SELECT answer FROM main.extra) FROM information_schema.tables WHERE table_name = 'extra'"), "BASE TABLE 42");
}

#[test]
fn full_refresh_false_protects_an_incremental_model_from_full_refresh() {
    let s = Scratch::new();
    let project = s.copy_fixture("shop");
    let model = project.join("models/marts/fct_shipments.sql");
    let sql = std::fs::read_to_string(&model).unwrap();
    std::fs::write(&model, format!("{{{{ config(full_refresh=false) }}}}\n{sql}")).unwrap();
    s.airlock(&project, &["deploy"]).assert_code(0);
    let csv = project.join("data/shipments.csv");
    let header = std::fs::read_to_string(&csv).unwrap().lines().next().unwrap().to_string();
    std::fs::write(&csv, format!("{header}\n26,5,2024-07-01,dhl\n27,6,2024-07-02,ups\n")).unwrap();
    s.airlock(&project, &["deploy", "--full-refresh"]).assert_code(0);
    // protected: the 25 earlier rows stay, the 2 new ones are added
    assert_eq!(s.scalar("SELECT COUNT(*) FROM main_marts.fct_shipments"), "27");
    // without the protection --full-refresh rebuilds it from the landing file
    std::fs::write(&model, sql).unwrap();
    s.airlock(&project, &["deploy", "--full-refresh"]).assert_code(0);
    assert_eq!(s.scalar("SELECT COUNT(*) FROM main_marts.fct_shipments"), "2");
}

#[test]
fn an_unknown_config_key_warns_with_the_closest_known_one() {
    let s = Scratch::new();
    let project = s.copy_fixture("shop");
    set_project_yml(&project, "      +schema: marts\n", "      +schema: marts\n      +materialised: view\n");
    let run = s.airlock(&project, &["plan"]);
    run.assert_code(0);
    assert!(run.stderr.contains("dbt_project.yml: unknown config key 'materialised' (did you mean 'materialized'?)"), "{}", run.stderr);
    assert_eq!(run.stderr.matches("unknown config key").count(), 1, "warned once: {}", run.stderr);
}

fn hooked_project(s: &Scratch, base: &str) -> std::path::PathBuf {
    let project = s.copy_fixture(base);
    set_project_yml(
        &project,
        "models:\n",
        "on-run-start: \"create table if not exists {{ target.schema }}.run_log as select 'start' as event\"\n\
         on-run-end: [\"insert into {{ target.schema }}.run_log values ('end')\"]\n\
         models:\n",
    );
    let model = project.join("models/marts/orders.sql");
    let sql = std::fs::read_to_string(&model).unwrap();
    let hooks = "{{ config(\n    pre_hook=\"create or replace table {{ this.schema }}.orders_hook_seen as select '{{ this }}' as this_was\",\n    post_hook=[\"delete from {{ this }} where order_id = 30\"]\n) }}\n";
    std::fs::write(&model, format!("{hooks}{sql}")).unwrap();
    project
}

#[test]
fn hooks_run_in_the_audit_location_around_their_model_and_never_in_prod_before_the_gate() {
    let s = Scratch::new();
    // build keeps the audit location: the hooks ran there, against audit names
    let project = hooked_project(&s, "shop");
    s.airlock(&project, &["build"]).assert_code(0);
    assert_eq!(s.scalar("SELECT this_was FROM main_marts__audit.orders_hook_seen"), "\"main_marts__audit\".\"orders\"");
    assert_eq!(s.scalar("SELECT string_agg(event, ',' ORDER BY event DESC) FROM main__audit.run_log"), "start,end");
    assert_eq!(s.scalar("SELECT COUNT(*) FROM main_marts__audit.orders"), "27");
    assert!(tables(&s, "main_marts").is_empty() && tables(&s, "main").is_empty(), "build wrote to prod");

    // a red gate: the hooks ran in audit only, prod is untouched
    let failing = hooked_project(&s, "shop_failing");
    s.airlock(&failing, &["deploy"]).assert_code(1);
    assert!(tables(&s, "main_marts").is_empty() && tables(&s, "main").is_empty(), "a hook reached prod before the gate");

    // green: the post-hook's effect travels with the audited table
    let run = s.airlock(&project, &["deploy"]);
    run.assert_code(0);
    assert_eq!(s.scalar("SELECT COUNT(*) FROM main_marts.orders"), "27");
    assert!(!tables(&s, "main").contains(&"run_log".to_string()));
    assert!(!tables(&s, "main_marts").contains(&"orders_hook_seen".to_string()));
    let plan = s.airlock(&project, &["plan", "--show-sql"]);
    assert!(plan.stdout.contains("delete from \"main_marts__audit\".\"orders\" where order_id = 30"), "{}", plan.stdout);
}

#[test]
fn a_hook_with_two_statements_is_refused_at_load() {
    let s = Scratch::new();
    let project = s.copy_fixture("shop");
    set_project_yml(&project, "      +schema: marts\n", "      +schema: marts\n      +post-hook: \"select 1; drop table x\"\n");
    let run = s.airlock(&project, &["deploy"]);
    run.assert_code(2);
    assert!(run.stderr.contains("(hook):1: more than one SQL statement"), "{}", run.stderr);
}

#[test]
fn plan_lists_what_a_build_leaves_out_and_why() {
    let s = Scratch::new();
    let project = s.copy_fixture("shop");
    std::fs::write(project.join("models/marts/draft.sql"), "{{ config(enabled=false) }}\nselect 1 as x\n").unwrap();
    s.airlock(&project, &["deploy"]).assert_code(0);
    let run = Run::of(&mut s.command(&project, &["plan", "--select", "orders", "--format", "json"]));
    run.assert_code(0);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let left: Vec<&str> = v["strategies"][0]["left_out"].as_array().unwrap().iter().map(|x| x.as_str().unwrap()).collect();
    assert!(left.contains(&"customers: not selected (read from prod)"), "{left:?}");
    assert!(left.contains(&"draft: disabled (enabled: false, models/marts/draft.sql)"), "{left:?}");
}

/// dbt-duckdb's `config_options` (given when the database opens) and
/// `settings` (SET on each connection) in profiles.yml hold for what airlock
/// builds, as for dbt's own runs; they were silently ignored before.
#[test]
fn a_duckdb_profiles_config_options_and_settings_hold_for_the_build() {
    let s = Scratch::new();
    let project = s.copy_fixture("shop");
    common::append(&project.join("profiles.yml"), "      config_options:\n        default_block_size: 16384\n      settings:\n        memory_limit: 1GB\n        checkpoint_threshold: 16MB");
    std::fs::write(
        project.join("models/marts/settings_seen.sql"),
        "{{ config(materialized='table') }}\nselect current_setting('memory_limit') as memory_limit, current_setting('checkpoint_threshold') as checkpoint_threshold\n",
    )
    .unwrap();
    s.airlock(&project, &["deploy"]).assert_code(0);
    assert_eq!(s.query("SELECT memory_limit, checkpoint_threshold FROM main_marts.settings_seen"), [["953.6 MiB", "15.2 MiB"]]);
    // a creation setting: the file airlock created has the block size asked for
    assert_eq!(s.scalar("SELECT block_size FROM pragma_database_size()"), "16384");
}

#[test]
fn an_unknown_duckdb_setting_fails_naming_it_and_publishes_nothing() {
    let s = Scratch::new();
    let project = s.copy_fixture("shop");
    common::append(&project.join("profiles.yml"), "      settings:\n        memory_limitt: 1GB");
    let run = s.airlock(&project, &["deploy"]);
    run.assert_code(2);
    assert!(run.stderr.contains("the profile's setting 'memory_limitt'") && run.stderr.contains("unrecognized configuration parameter"), "{}", run.stderr);
    let published = if s.db().exists() { s.scalar("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema LIKE 'main%'") } else { "0".into() };
    assert_eq!(published, "0");
}
