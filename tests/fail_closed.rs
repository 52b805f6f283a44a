//! Issue 7 acceptance, "fail closed": a gate that never opens by accident, a
//! ledger and a lock that never lie. Every test runs the real binary.

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{append, fixture, prod_checksums, Run, Scratch};

const PROD: &[&str] = &["main", "main_marts"];

fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n--- stderr\n{}", run.stdout, run.stderr))
}

/// A deploy with a failpoint set, in table and JSON form; both must block
/// with exit 1, name `reason`, and leave prod as it was.
fn blocks_with(s: &Scratch, project: &std::path::Path, failpoint: &str, extra: &[&str], reason: &str) {
    let before = prod_checksums(&s.db(), PROD);
    let mut args = vec!["deploy"];
    args.extend_from_slice(extra);
    // (a panicking step prints its panic on stderr, as a bug should: the code is checked alone)
    let run = Run::of(s.command(project, &args).env("AIRLOCK_FAILPOINT", failpoint));
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains(reason), "{}", run.stdout);
    assert!(run.stdout.contains("gave no verdict"), "{}", run.stdout);
    assert_eq!(prod_checksums(&s.db(), PROD), before);

    args.extend_from_slice(&["--format", "json"]);
    let run = Run::of(s.command(project, &args).env("AIRLOCK_FAILPOINT", failpoint));
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let v = json(&run);
    assert_eq!(v["status"], "blocked");
    assert!(v["counts"]["no_verdict"].as_u64().unwrap() >= 1, "{v}");
    let errors = v["errors"].as_array().unwrap();
    assert!(errors.iter().any(|e| e["message"].as_str().unwrap().contains(reason)), "{v:#}");
    assert_eq!(prod_checksums(&s.db(), PROD), before);
}

#[test]
fn a_test_step_that_panics_blocks_the_gate() {
    let s = Scratch::new();
    s.airlock(&fixture("shop"), &["deploy"]).assert_code(0);
    // the step of not_null on stg_orders panics (a test-only hook)
    blocks_with(&s, &fixture("shop"), "panic:not_null_stg_orders_order_id", &[], "panicked: failpoint panic:not_null_stg_orders_order_id");
}

#[test]
fn an_unreadable_test_count_blocks_the_gate() {
    let s = Scratch::new();
    s.airlock(&fixture("shop"), &["deploy"]).assert_code(0);
    blocks_with(&s, &fixture("shop"), "garble:unique_stg_customers_customer_id", &[], "is not a number: no verdict");
}

#[test]
fn a_test_that_cannot_run_blocks_the_gate() {
    let s = Scratch::new();
    // stg_payments is built, but its relationships test reads stg_orders,
    // which is neither selected nor in prod: no verdict, no publish
    let run = s.airlock(&fixture("shop"), &["deploy", "--select", "+stg_payments"]);
    run.assert_code(1);
    assert!(run.stdout.contains("cannot run: it reads model 'stg_orders', which is neither selected nor in prod"), "{}", run.stdout);
    assert_eq!(s.scalar("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema IN ('main', 'main_marts')"), "0");
    let plan = s.airlock(&fixture("shop"), &["plan", "--select", "+stg_payments"]);
    plan.assert_code(0);
    assert!(plan.stdout.contains("blocks the gate: test relationships_stg_payments_order_id: cannot run"), "{}", plan.stdout);
}

#[test]
fn a_model_with_two_statements_is_refused_at_load() {
    let s = Scratch::new();
    let project = s.copy_fixture("shop");
    s.airlock(&project, &["deploy"]).assert_code(0);
    let before = prod_checksums(&s.db(), PROD);
    std::fs::write(project.join("models/marts/evil.sql"), "select 1 as x;\ndrop table main_marts.orders\n").unwrap();
    let run = s.airlock(&project, &["deploy"]);
    run.assert_code(2);
    assert!(run.stderr.contains("models/marts/evil.sql:1: more than one SQL statement"), "{}", run.stderr);
    assert_eq!(prod_checksums(&s.db(), PROD), before);
    // a trailing semicolon is still one statement
    std::fs::write(project.join("models/marts/evil.sql"), "select 1 as x;\n-- done\n").unwrap();
    s.airlock(&project, &["deploy"]).assert_code(0);
}

fn slow_project(s: &Scratch) -> std::path::PathBuf {
    let project = s.copy_fixture("shop");
    // minutes of work for DuckDB: the run is still building when we stop it
    std::fs::write(project.join("models/marts/slow.sql"), "select sum(hash(i)) as h from range(0, 200000000000) t(i)\n").unwrap();
    project
}

fn spawn(s: &Scratch, project: &std::path::Path, args: &[&str]) -> Child {
    s.command(project, args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

/// Wait until the deploy holds the lock for a release and builds.
fn wait_for_release(s: &Scratch) {
    let lock = lock_file(s);
    let t = Instant::now();
    while !std::fs::read_to_string(&lock).is_ok_and(|l| l.contains("\"release\": 1")) {
        assert!(t.elapsed() < Duration::from_secs(60), "the deploy never took the lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(1500));
}

fn lock_file(s: &Scratch) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("{}.airlock-lock", s.db().canonicalize().unwrap_or(s.db()).display()))
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<i32> {
    let t = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn history(s: &Scratch, project: &std::path::Path) -> serde_json::Value {
    let run = s.airlock(project, &["history", "--format", "json"]);
    run.assert_code(0);
    json(&run)
}

#[test]
fn sigint_during_a_long_build_stops_within_5_seconds_and_records_interrupted() {
    for (signal, code) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let s = Scratch::new();
        let project = slow_project(&s);
        let mut child = spawn(&s, &project, &["deploy"]);
        wait_for_release(&s);
        let sent = Instant::now();
        unsafe { libc::kill(child.id() as i32, signal) };
        let exit = wait_exit(&mut child, Duration::from_secs(20));
        let took = sent.elapsed();
        assert_eq!(exit, Some(code), "exit after signal {signal}");
        assert!(took < Duration::from_secs(5), "took {took:?} to stop");
        let h = history(&s, &project);
        assert_eq!(h["releases"][0]["status"], "interrupted", "{h:#}");
        assert!(!lock_file(&s).exists(), "lock left behind");
        // the next deploy runs without `airlock unlock`
        std::fs::remove_file(project.join("models/marts/slow.sql")).unwrap();
        s.airlock(&project, &["deploy"]).assert_code(0);
    }
}

#[test]
fn a_lock_left_by_a_killed_deploy_is_reported_stale_and_unlock_breaks_it() {
    let s = Scratch::new();
    let project = slow_project(&s);
    let mut child = spawn(&s, &project, &["deploy"]);
    wait_for_release(&s);
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap(); // reaped: its pid is gone

    std::fs::remove_file(project.join("models/marts/slow.sql")).unwrap();
    let run = s.airlock(&project, &["deploy"]);
    run.assert_code(3);
    assert!(run.stderr.contains("locked by release 1"), "{}", run.stderr);
    assert!(run.stderr.contains("the lock is stale: pid"), "{}", run.stderr);
    assert!(run.stderr.contains("airlock unlock"), "{}", run.stderr);

    let unlock = s.airlock(&project, &["unlock"]);
    unlock.assert_code(0);
    assert!(unlock.stdout.contains("broke the lock held by release 1"), "{}", unlock.stdout);
    assert!(unlock.stdout.contains("release 1 it left running is recorded as interrupted"), "{}", unlock.stdout);
    assert_eq!(s.scalar("SELECT event || ' ' || release_id FROM airlock.events"), "lock broken 1");

    s.airlock(&project, &["deploy"]).assert_code(0);
    let h = history(&s, &project);
    assert_eq!(h["releases"][0]["status"], "published");
    assert_eq!(h["releases"][1]["status"], "interrupted");
}

#[test]
fn unlock_refuses_a_live_holder() {
    let s = Scratch::new();
    let project = slow_project(&s);
    let mut child = spawn(&s, &project, &["deploy"]);
    wait_for_release(&s);
    let run = s.airlock(&project, &["unlock"]);
    run.assert_code(3);
    assert!(run.stderr.contains("refuses to break it"), "{}", run.stderr);
    let second = s.airlock(&project, &["deploy", "--format", "json"]);
    second.assert_code(3);
    assert_eq!(json(&second)["status"], "locked");
    assert!(lock_file(&s).exists());
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert_eq!(wait_exit(&mut child, Duration::from_secs(20)), Some(130));
}

#[test]
fn a_cleanup_failure_after_a_good_publish_is_a_warning() {
    let s = Scratch::new();
    let run = Run::of(s.command(&fixture("shop"), &["deploy"]).env("AIRLOCK_FAILPOINT", "cleanup:error"));
    run.assert_code(0);
    assert!(run.stdout.contains("release 1 published"), "{}", run.stdout);
    assert!(run.stderr.contains("warning: published, but the cleanup after it failed"), "{}", run.stderr);
    assert_eq!(history(&s, &fixture("shop"))["releases"][0]["status"], "published");
    assert_eq!(s.scalar("SELECT COUNT(*) FROM main_marts.orders"), "28");
}

#[test]
fn rollback_and_history_work_when_a_model_no_longer_parses() {
    let s = Scratch::new();
    let project = s.copy_fixture("shop");
    s.airlock(&project, &["deploy"]).assert_code(0);
    let first = prod_checksums(&s.db(), PROD);
    append(&project.join("seeds/raw_customers.csv"), "21,Zoe,Quinn,zoe.quinn@example.com,2024-06-01\n");
    s.airlock(&project, &["deploy", "--strategy", "wac"]).assert_code(0);
    std::fs::write(project.join("models/marts/orders.sql"), "select {{ ref( from nowhere\n").unwrap();
    assert_eq!(s.airlock(&project, &["deploy"]).code, 2);
    history(&s, &project);
    let run = s.airlock(&project, &["rollback"]);
    run.assert_code(0);
    assert!(run.stdout.contains("restored release 1"), "{}", run.stdout);
    // views are untouched by wac and restored by swap's rollback alike
    assert_eq!(prod_checksums(&s.db(), PROD), first);
}

#[test]
fn json_output_on_bad_input_is_an_error_object() {
    let s = Scratch::new();
    let run = s.airlock(&fixture("shop"), &["deploy", "--select", "ordrs", "--format", "json"]);
    run.assert_code(2);
    let v = json(&run);
    assert_eq!(v["status"], "error");
    assert!(v["message"].as_str().unwrap().contains("did you mean 'orders'?"), "{v}");
}

#[test]
fn an_in_memory_duckdb_is_refused_for_deploy() {
    let s = Scratch::new();
    let project = s.copy_fixture("shop");
    std::fs::write(project.join("profiles.yml"), "shop:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      schema: main\n").unwrap();
    let run = s.airlock(&project, &["deploy"]);
    run.assert_code(2);
    assert!(run.stderr.contains("has no `path:`, so it is an in-memory DuckDB"), "{}", run.stderr);
    s.airlock(&project, &["plan"]).assert_code(0);
}

#[test]
fn a_strategy_file_with_an_undefined_variable_is_refused_at_load() {
    let s = Scratch::new();
    let dir = s.path().join("strategies");
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(fixture("strategies/marts-only.toml")).unwrap().replacen("{{ target }} AS SELECT", "{{ tagret }} AS SELECT", 1);
    std::fs::write(dir.join("marts-only.toml"), text).unwrap();
    let run = s.airlock(&fixture("shop"), &["deploy", "--strategy", "marts-only", "--strategies-dir", dir.to_str().unwrap()]);
    run.assert_code(2);
    assert!(run.stderr.contains("marts-only.toml: [sql.duckdb] clone_table: undefined variable 'tagret' (did you mean 'target'?)"), "{}", run.stderr);
    assert!(!s.db().exists(), "nothing may be written");
}

#[test]
fn a_project_strategy_that_shadows_a_built_in_says_so() {
    let s = Scratch::new();
    let dir = s.path().join("strategies");
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(fixture("strategies/marts-only.toml")).unwrap().replacen("name = \"marts-only\"", "name = \"wac\"", 1);
    std::fs::write(dir.join("wac.toml"), text).unwrap();
    let run = s.airlock(&fixture("shop"), &["strategies", "--strategies-dir", dir.to_str().unwrap(), "--format", "json"]);
    run.assert_code(0);
    let v = json(&run);
    let wac = v["strategies"].as_array().unwrap().iter().find(|s| s["name"] == "wac").unwrap().clone();
    assert!(wac["origin"].as_str().unwrap().ends_with("(replaces the built-in 'wac')"), "{wac}");
}

#[test]
fn wap_detects_a_top_level_model_that_is_not_what_the_gate_passed() {
    let s = Scratch::new();
    let project = s.copy_fixture("shop");
    s.airlock(&project, &["deploy", "--strategy", "wap"]).assert_code(0);
    let before = prod_checksums(&s.db(), PROD);
    std::fs::write(project.join("models/marts/lottery.sql"), "select i, random() as r from range(0, 50) t(i)\n").unwrap();
    let run = s.airlock(&project, &["deploy", "--strategy", "wap"]);
    run.assert_code(2);
    assert!(run.stdout.contains("\"main_marts\".\"lottery\" (50 rows) differs from \"main_marts__audit\".\"lottery\""), "{}", run.stdout);
    assert!(run.stdout.contains("prod restored"), "{}", run.stdout);
    assert_eq!(prod_checksums(&s.db(), PROD), before, "prod must be as before the publish");
    assert_eq!(history(&s, &project)["releases"][0]["status"], "failed");
    // the next deploys still work, and rollback skips the failed release
    std::fs::remove_file(project.join("models/marts/lottery.sql")).unwrap();
    s.airlock(&project, &["deploy", "--strategy", "wap"]).assert_code(0);
}
