//! Issue 8 acceptance: the publish journal and `airlock recover`. DuckDB runs
//! in the test mode where DDL is not transactional (each statement commits on
//! its own, as on Snowflake and BigQuery); a deploy killed (or failing) right
//! before publish step K, then `airlock recover`, must leave every prod
//! relation at the old release or the new one, never a mix, with the ledger
//! saying which, and the next deploy must run without `airlock unlock`.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;

use common::{append, mirror_project, prod_checksums, Run, Scratch};

const PROD: &[&str] = &["main", "main_marts"];

struct Case {
    s: Scratch,
    project: PathBuf,
    strategy: &'static str,
    autocommit: bool,
    base: PathBuf,
    old: BTreeMap<String, String>,
    new: BTreeMap<String, String>,
    /// publish steps of release 2, the ledger step included
    steps: usize,
}

impl Case {
    fn run(&self, args: &[&str], failpoint: Option<&str>) -> Run {
        let mut cmd = self.s.command(&self.project, args);
        if self.autocommit {
            cmd.env("AIRLOCK_TEST_DDL", "autocommit");
        }
        if let Some(f) = failpoint {
            cmd.env("AIRLOCK_FAILPOINT", f);
        }
        Run::of(cmd.stdin(Stdio::null()))
    }

    fn deploy_args(&self) -> Vec<&str> {
        vec!["deploy", "--strategy", self.strategy]
    }

    /// Prod back at release 1, no lock, no WAL.
    fn reset(&self) {
        for suffix in ["", ".wal", ".airlock-lock"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.s.db().display()));
        }
        std::fs::copy(&self.base, self.s.db()).unwrap();
    }

    fn status_of_release_2(&self) -> String {
        self.s.scalar("SELECT status FROM airlock.releases WHERE id = 2")
    }
}

/// Release 1 published; release 2 (a changed project) measured once without
/// faults: its prod checksums and its number of publish steps.
fn case(strategy: &'static str, autocommit: bool) -> Case {
    let s = Scratch::new();
    let project = if strategy == "mirror" { mirror_project(&s) } else { s.copy_fixture("shop") };
    let mut c = Case { s, project, strategy, autocommit, base: PathBuf::new(), old: BTreeMap::new(), new: BTreeMap::new(), steps: 0 };
    if strategy == "mirror" {
        c.run(&["deploy", "--strategy", "mirror"], None).assert_code(0);
        c.run(&["deploy", "--strategy", "swap"], None).assert_code(0);
        // release 2 refreshes the mirror with a new landing row
        append(&c.project.join("data/shipments.csv"), "26,5,2024-07-01,dhl\n");
    } else {
        c.run(&c.deploy_args(), None).assert_code(0);
        append(&c.project.join("seeds/raw_customers.csv"), "21,Zoe,Quinn,zoe.quinn@example.com,2024-06-01\n");
        append(&c.project.join("seeds/raw_orders.csv"), "31,21,2024-06-02,completed\n");
        append(&c.project.join("seeds/raw_payments.csv"), "36,31,credit_card,5000\n");
    }
    c.base = c.s.path().join("base.duckdb");
    std::fs::copy(c.s.db(), &c.base).unwrap();
    c.old = prod_checksums(&c.s.db(), PROD);
    let release_2 = if strategy == "mirror" { 3 } else { 2 };
    c.run(&c.deploy_args(), None).assert_code(0);
    c.new = prod_checksums(&c.s.db(), PROD);
    assert_ne!(c.old, c.new, "{strategy}: release 2 must change prod");
    c.steps = c.s.scalar(&format!("SELECT COUNT(*) FROM airlock.journal WHERE release_id = {release_2}")).parse().unwrap();
    assert!(c.steps >= 2, "{strategy}: {} journal steps", c.steps);
    c
}

fn release_id(c: &Case) -> i64 {
    if c.strategy == "mirror" {
        3
    } else {
        2
    }
}

/// Kill (or fail) at every publish step K, then recover.
fn every_step(strategy: &'static str, error: bool) {
    let c = case(strategy, true);
    let id = release_id(&c);
    for k in 1..=c.steps {
        c.reset();
        let point = if error { format!("publish:{k}:error") } else { format!("publish:{k}") };
        let run = c.run(&c.deploy_args(), Some(&point));
        if error {
            run.assert_code(2);
            assert!(run.stderr.contains(&format!("publish step {k} of")), "{strategy} K={k}: {}", run.stderr);
        } else {
            assert_eq!(run.code, -1, "{strategy} K={k}: the process must die by SIGKILL\n{}", run.stderr);
        }
        let recover = c.run(&["recover"], None);
        recover.assert_code(0);
        let now = prod_checksums(&c.s.db(), PROD);
        let status = c.s.scalar(&format!("SELECT status FROM airlock.releases WHERE id = {id}"));
        if now == c.new {
            assert_eq!(status, "recovered-forward", "{strategy} K={k}: prod is new, the ledger must say so\n{}", recover.stdout);
            // a completed recovery keeps the backups: the release rolls back
            c.run(&["rollback"], None).assert_code(0);
            assert_eq!(prod_checksums(&c.s.db(), PROD), c.old, "{strategy} K={k}: rollback after a forward recovery");
        } else {
            assert_eq!(now, c.old, "{strategy} K={k}: prod is a mix of old and new\n{}", recover.stdout);
            assert!(status == "recovered-back" || status == "failed", "{strategy} K={k}: prod is old, the ledger says {status}\n{}", recover.stdout);
        }
        if error {
            assert!(recover.stdout.contains("nothing to repair"), "{strategy} K={k}: a failed step is undone by the deploy itself\n{}", recover.stdout);
        }
        // the next deploy needs no `airlock unlock`
        c.run(&c.deploy_args(), None).assert_code(0);
        assert_eq!(prod_checksums(&c.s.db(), PROD), c.new, "{strategy} K={k}: the next deploy");
    }
}

#[test]
fn swap_kill_at_every_step_then_recover() {
    every_step("swap", false);
}

#[test]
fn swap_error_at_every_step() {
    every_step("swap", true);
}

#[test]
fn clone_back_kill_at_every_step_then_recover() {
    every_step("clone-back", false);
}

#[test]
fn clone_back_error_at_every_step() {
    every_step("clone-back", true);
}

#[test]
fn wap_kill_at_every_step_then_recover() {
    every_step("wap", false);
}

#[test]
fn wap_error_at_every_step() {
    every_step("wap", true);
}

#[test]
fn wac_kill_at_every_step_then_recover() {
    every_step("wac", false);
}

#[test]
fn wac_error_at_every_step() {
    every_step("wac", true);
}

#[test]
fn mirror_kill_at_every_step_then_recover() {
    every_step("mirror", false);
}

#[test]
fn mirror_error_at_every_step() {
    every_step("mirror", true);
}

#[test]
fn recover_undo_takes_prod_back_even_when_forward_is_possible() {
    let c = case("wac", true);
    c.reset();
    let mid = c.steps / 2 + 1;
    assert_eq!(c.run(&c.deploy_args(), Some(&format!("publish:{mid}"))).code, -1);
    assert_eq!(c.status_of_release_2(), "publishing");
    // the lock of the killed deploy is stale; unlock breaks it and points at recover
    let unlock = c.run(&["unlock"], None);
    unlock.assert_code(0);
    assert!(unlock.stdout.contains("release 2 was interrupted while publishing: run `airlock recover`"), "{}", unlock.stdout);
    // history shows the unfinished publish; deploy and rollback refuse to start
    let h = c.run(&["history", "--format", "json"], None);
    h.assert_code(0);
    assert!(h.stderr.contains("run `airlock recover`"), "{}", h.stderr);
    let v: serde_json::Value = serde_json::from_str(&h.stdout).unwrap();
    assert_eq!(v["releases"][0]["status"], "publishing");
    for args in [c.deploy_args(), vec!["rollback"]] {
        let run = c.run(&args, None);
        run.assert_code(2);
        assert!(run.stderr.contains("release 2 was interrupted while publishing"), "{}", run.stderr);
        assert!(run.stderr.contains("run `airlock recover`"), "{}", run.stderr);
    }
    let run = c.run(&["recover", "--undo"], None);
    run.assert_code(0);
    assert!(run.stdout.contains("undid step"), "{}", run.stdout);
    assert!(run.stdout.contains("recovered-back"), "{}", run.stdout);
    assert_eq!(prod_checksums(&c.s.db(), PROD), c.old);
    assert_eq!(c.status_of_release_2(), "recovered-back");
    let h = c.run(&["history", "--format", "json"], None);
    let v: serde_json::Value = serde_json::from_str(&h.stdout).unwrap();
    assert!(v["releases"][0]["mixed_ms"].as_i64().is_some(), "the inconsistency window is recorded: {v}");
}

#[test]
fn plain_duckdb_killed_at_any_step_keeps_the_old_release_and_recover_finds_nothing() {
    let c = case("swap", false);
    for k in 1..=c.steps {
        c.reset();
        assert_eq!(c.run(&c.deploy_args(), Some(&format!("publish:{k}"))).code, -1, "K={k}");
        assert_eq!(prod_checksums(&c.s.db(), PROD), c.old, "K={k}: one transaction, nothing of it may show");
        let run = c.run(&["recover"], None);
        run.assert_code(0);
        assert!(run.stdout.contains("nothing to repair"), "K={k}: {}", run.stdout);
        assert!(run.stdout.contains("recorded as interrupted"), "K={k}: {}", run.stdout);
        assert_eq!(prod_checksums(&c.s.db(), PROD), c.old);
    }
    c.run(&c.deploy_args(), None).assert_code(0);
    let h = c.run(&["history", "--format", "json"], None);
    let v: serde_json::Value = serde_json::from_str(&h.stdout).unwrap();
    assert_eq!(v["releases"][0]["mixed_ms"], 0, "one transaction: prod is never mixed");
}

#[test]
fn eight_deploys_at_once_publish_exactly_one_release() {
    let s = Scratch::new();
    let project = s.copy_fixture("shop");
    // slow enough that the winner still holds the lock when the others start
    std::fs::write(project.join("models/marts/slow.sql"), "select sum(hash(i)) as h from range(0, 300000000) t(i)\n").unwrap();
    let children: Vec<_> = (0..8).map(|_| s.command(&project, &["deploy"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()).collect();
    let outs: Vec<_> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    let codes: Vec<i32> = outs.iter().map(|o| o.status.code().unwrap_or(-1)).collect();
    assert_eq!(codes.iter().filter(|c| **c == 0).count(), 1, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 3).count(), 7, "{codes:?}");
    for o in outs.iter().filter(|o| o.status.code() == Some(3)) {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("is locked by") && err.contains("deploy started"), "{err}");
    }
    assert_eq!(s.scalar("SELECT COUNT(*) FROM airlock.releases WHERE status = 'published'"), "1");
    assert_eq!(s.scalar("SELECT COUNT(*) FROM airlock.releases"), "1");
}
