//! Issue 2 acceptance: deploy, gate, publish, rollback, plan, incremental and
//! the deploy lock, through the real binary on DuckDB.

mod common;

use common::{append, fixture, prod_checksums, Scratch};

const PROD: &[&str] = &["main", "main_marts"];

#[test]
fn deploy_publishes_the_shop_and_history_lists_it() {
    let s = Scratch::new();
    let run = s.airlock(&fixture("shop"), &["deploy"]);
    run.assert_code(0);
    assert!(run.stdout.contains("release 1 published"), "{}", run.stdout);
    // the warn-severity test is reported but does not block
    assert!(run.stdout.contains("WARN accepted_values(carrier)"), "{}", run.stdout);
    assert!(run.stdout.contains("postnl"), "{}", run.stdout);

    assert_eq!(s.scalar("SELECT COUNT(*) FROM main_marts.orders"), "28");
    assert_eq!(s.scalar("SELECT COUNT(*) FROM main_marts.customers"), "20");
    assert_eq!(s.scalar("SELECT round(sum(amount), 2) FROM main_marts.orders"), "866.27");
    assert_eq!(s.scalar("SELECT COUNT(*) FROM main_marts.fct_shipments"), "25");
    assert_eq!(s.scalar("SELECT COUNT(*) FROM main.raw_payments"), "35");
    assert_eq!(
        s.query("SELECT total_customers, customers_with_orders, total_orders, total_revenue FROM main_marts.customer_summary"),
        vec![vec!["20", "14", "28", "866.27"]]
    );
    // nothing of the audit location stays behind, and no prod view points at it
    assert_eq!(s.scalar("SELECT COUNT(*) FROM duckdb_schemas() WHERE schema_name LIKE '%__audit'"), "0");
    assert_eq!(s.scalar("SELECT COUNT(*) FROM duckdb_views() WHERE NOT internal AND sql ILIKE '%__audit%'"), "0");

    let history = s.airlock(&fixture("shop"), &["history", "--format", "json"]);
    history.assert_code(0);
    let json: serde_json::Value = serde_json::from_str(&history.stdout).unwrap();
    assert_eq!(json["releases"][0]["id"], 1);
    assert_eq!(json["releases"][0]["status"], "published");
    assert_eq!(json["releases"][0]["strategy"], "swap");
}

#[test]
fn a_failing_test_blocks_and_leaves_prod_byte_for_byte_unchanged() {
    let s = Scratch::new();
    s.airlock(&fixture("shop"), &["deploy"]).assert_code(0);
    let before = prod_checksums(&s.db(), PROD);
    assert!(before.len() >= 12, "{before:?}");

    let run = s.airlock(&fixture("shop_failing"), &["deploy"]);
    run.assert_code(1);
    assert!(run.stdout.contains("FAIL relationships(order_id) on stg_payments"), "{}", run.stdout);
    for bad in ["99", "104", "131"] {
        assert!(run.stdout.contains(bad), "sample row {bad} missing:\n{}", run.stdout);
    }
    assert!(run.stdout.contains("prod untouched"), "{}", run.stdout);
    assert_eq!(prod_checksums(&s.db(), PROD), before);

    let json = s.airlock(&fixture("shop_failing"), &["deploy", "--format", "json"]);
    json.assert_code(1);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["status"], "blocked");
    assert_eq!(v["release"], 3);
    assert_eq!(prod_checksums(&s.db(), PROD), before);
}

#[test]
fn rollback_restores_the_previous_release() {
    let s = Scratch::new();
    let project = s.copy_fixture("shop");
    s.airlock(&project, &["deploy"]).assert_code(0);
    let first = prod_checksums(&s.db(), PROD);

    // release 2: one more customer with one order and payment
    append(&project.join("seeds/raw_customers.csv"), "21,Zoe,Quinn,zoe.quinn@example.com,2024-06-01\n");
    append(&project.join("seeds/raw_orders.csv"), "31,21,2024-06-02,completed\n");
    append(&project.join("seeds/raw_payments.csv"), "36,31,credit_card,5000\n");
    s.airlock(&project, &["deploy"]).assert_code(0);
    assert_eq!(s.scalar("SELECT COUNT(*) FROM main_marts.customers"), "21");
    assert_eq!(s.scalar("SELECT round(sum(amount), 2) FROM main_marts.orders"), "916.27");

    let run = s.airlock(&project, &["rollback"]);
    run.assert_code(0);
    assert!(run.stdout.contains("restored release 1"), "{}", run.stdout);
    assert_eq!(s.scalar("SELECT COUNT(*) FROM main_marts.customers"), "20");
    assert_eq!(prod_checksums(&s.db(), PROD), first);

    // the rollback is a release too, and can itself be undone with --to
    let run = s.airlock(&project, &["rollback", "--to", "2"]);
    run.assert_code(0);
    assert_eq!(s.scalar("SELECT COUNT(*) FROM main_marts.customers"), "21");
}

#[test]
fn plan_writes_nothing() {
    let s = Scratch::new();
    // no database yet: plan must not create one
    let run = s.airlock(&fixture("shop"), &["plan", "--show-sql"]);
    run.assert_code(0);
    assert!(!s.db().exists(), "plan created the database");
    assert!(run.stdout.contains("CREATE OR REPLACE TABLE \"main_marts__audit\".\"orders\""), "{}", run.stdout);

    s.airlock(&fixture("shop"), &["deploy"]).assert_code(0);
    let bytes = std::fs::read(s.db()).unwrap();
    let run = s.airlock(&fixture("shop"), &["plan", "--show-sql"]);
    run.assert_code(0);
    assert!(run.stdout.contains("incremental on a copy of prod"), "{}", run.stdout);
    assert!(std::fs::read(s.db()).unwrap() == bytes, "plan changed the database file");
    assert!(!s.path().join("shop.duckdb.wal").exists());
}

#[test]
fn incremental_model_keeps_every_row_across_deploys() {
    let s = Scratch::new();
    let project = s.copy_fixture("shop");
    s.airlock(&project, &["deploy"]).assert_code(0);
    assert_eq!(s.scalar("SELECT COUNT(*) FROM main_marts.fct_shipments"), "25");

    // the landing file is rotated: old rows gone, three new ones (and one changed row)
    let csv = project.join("data/shipments.csv");
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let mut rotated = format!("{header}\n");
    rotated.push_str("26,5,2024-07-01,dhl\n27,6,2024-07-02,ups\n28,8,2024-07-03,fedex\n");
    std::fs::write(&csv, rotated).unwrap();
    let run = s.airlock(&project, &["deploy"]);
    run.assert_code(0);
    assert_eq!(s.scalar("SELECT COUNT(*) FROM main_marts.fct_shipments"), "28");
    assert_eq!(s.scalar("SELECT COUNT(DISTINCT shipment_id) FROM main_marts.fct_shipments"), "28");
    assert_eq!(s.scalar("SELECT min(shipment_id) || '-' || max(shipment_id) FROM main_marts.fct_shipments"), "1-28");

    // merge on unique_key: a re-delivered row replaces, never duplicates
    std::fs::write(&csv, format!("{header}\n28,8,2024-07-03,fedex\n29,9,2024-07-04,dhl\n")).unwrap();
    s.airlock(&project, &["deploy"]).assert_code(0);
    assert_eq!(s.scalar("SELECT COUNT(*) FROM main_marts.fct_shipments"), "29");
}

#[test]
fn a_second_deploy_fails_fast_naming_the_lock_holder() {
    let s = Scratch::new();
    let project = s.copy_fixture("shop");
    // a model slow enough to hold the lock while the second deploy starts
    std::fs::write(
        project.join("models/marts/slow.sql"),
        "select sum(hash(range)) as h from range(0, 400000000)\n",
    )
    .unwrap();
    let first = s.command(&project, &["deploy"]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let lock = std::path::PathBuf::from(format!("{}.airlock-lock", s.db().display()));
    let t = std::time::Instant::now();
    loop {
        if std::fs::read_to_string(&lock).is_ok_and(|l| l.contains("\"release\": 1")) {
            break;
        }
        assert!(t.elapsed().as_secs() < 60, "the first deploy never took the lock");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let second = s.airlock(&project, &["deploy"]);
    second.assert_code(3);
    assert!(second.stderr.contains("locked by release 1"), "{}", second.stderr);
    assert!(second.stderr.contains("started 20"), "{}", second.stderr);
    let out = first.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!lock.exists(), "lock left behind");
}

#[test]
fn build_gates_without_publishing() {
    let s = Scratch::new();
    let run = s.airlock(&fixture("shop"), &["build"]);
    run.assert_code(0);
    assert_eq!(s.scalar("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema IN ('main', 'main_marts')"), "0");
    assert_eq!(s.scalar("SELECT COUNT(*) FROM main_marts__audit.orders"), "28");
    s.airlock(&fixture("shop_failing"), &["build"]).assert_code(1);
}

#[test]
fn selection_builds_the_subset_and_reads_the_rest_from_prod() {
    let s = Scratch::new();
    s.airlock(&fixture("shop"), &["deploy"]).assert_code(0);
    let run = s.airlock(&fixture("shop"), &["deploy", "--select", "orders+", "--format", "json"]);
    run.assert_code(0);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let built: Vec<&str> = v["nodes"].as_array().unwrap().iter().filter(|n| n["kind"] != "test").map(|n| n["name"].as_str().unwrap()).collect();
    assert_eq!(built, vec!["orders"], "{}", run.stdout);
    // the rows each build wrote, as the warehouse reports them
    assert_eq!(v["nodes"].as_array().unwrap().iter().find(|n| n["name"] == "orders").unwrap()["rows"], 28, "{}", run.stdout);
    let full = s.airlock(&fixture("shop"), &["deploy", "--format", "json"]);
    full.assert_code(0);
    let all: serde_json::Value = serde_json::from_str(&full.stdout).unwrap();
    // a seed is loaded by the warehouse (Warehouse::load_seed), and says how many rows
    assert_eq!(all["nodes"].as_array().unwrap().iter().find(|n| n["name"] == "raw_customers").unwrap()["rows"], 20, "{}", full.stdout);
    assert_eq!(v["published"], serde_json::json!(["\"main_marts\".\"orders\""]));

    let bad = s.airlock(&fixture("shop"), &["deploy", "--select", "ordrs"]);
    bad.assert_code(2);
    assert!(bad.stderr.contains("--select 'ordrs' matches no node (did you mean 'orders'?)"), "{}", bad.stderr);
}


/// The tests of a node run as one query, relationships tests included (they
/// also read the relation they point to). One of them failing still blocks,
/// with its own count and sample; the others of the group still pass; and
/// what the failure skips names the failing test.
#[test]
fn a_failing_relationships_test_in_a_fused_group_blocks_with_its_count_and_sample() {
    let s = Scratch::new();
    let log = s.path().join("statements.jsonl");
    let run = s.airlock(&fixture("shop_failing"), &["deploy", "--format", "json", "--statement-log", log.to_str().unwrap()]);
    run.assert_code(1);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["status"], "blocked");
    let failure = v["failures"].as_array().unwrap().iter().find(|f| f["name"] == "relationships_stg_payments_order_id").expect("the failing test is reported");
    assert_eq!(failure["severity"], "error");
    assert_eq!(failure["failures"], 3);
    assert_eq!(failure["sample"]["rows"], serde_json::json!([["99"], ["104"], ["131"]]));
    let status = |name: &str| v["nodes"].as_array().unwrap().iter().find(|n| n["name"] == name).map(|n| n["status"].as_str().unwrap().to_string());
    for other in ["unique_stg_payments_payment_id", "not_null_stg_payments_payment_id", "accepted_values_stg_payments_payment_method"] {
        assert_eq!(status(other).as_deref(), Some("pass"), "{other}");
    }
    assert_eq!(status("int_customer_orders").as_deref(), Some("skipped (relationships_stg_payments_order_id failed)"));

    // stg_payments' four tests were counted by one query
    let statements: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["sql"].as_str().unwrap().to_string())
        .collect();
    let counts: Vec<&String> = statements.iter().filter(|q| q.contains("\"stg_payments\"") && q.contains("airlock_n0")).collect();
    assert_eq!(counts.len(), 1, "{counts:#?}");
    assert!(counts[0].contains("LEFT JOIN") && counts[0].contains("airlock_n3"), "{}", counts[0]);
    assert_eq!(s.scalar("SELECT COUNT(*) FROM duckdb_tables() WHERE schema_name IN ('main', 'main_marts')"), "0", "prod untouched");
}

/// DuckDB's own threads follow `--threads` (one pool per database, shared
/// by the statements airlock runs at once); `SET threads` in an
/// `on-run-start` hook overrides them.
#[test]
fn duckdb_threads_follow_threads_and_on_run_start_overrides_them() {
    let s = Scratch::new();
    let project = s.copy_fixture("shop");
    std::fs::write(project.join("models/marts/engine_threads.sql"), "select current_setting('threads') as threads\n").unwrap();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    s.airlock(&project, &["deploy", "--threads", "1"]).assert_code(0);
    assert_eq!(s.scalar("SELECT threads FROM main_marts.engine_threads"), cores.to_string(), "one statement at a time gets every core");
    s.airlock(&project, &["deploy", "--threads", "2"]).assert_code(0);
    assert_eq!(s.scalar("SELECT threads FROM main_marts.engine_threads"), cores.saturating_sub(1).max(1).to_string());
    append(&project.join("dbt_project.yml"), "on-run-start: \"SET threads = 3\"\n");
    s.airlock(&project, &["deploy", "--threads", "2"]).assert_code(0);
    assert_eq!(s.scalar("SELECT threads FROM main_marts.engine_threads"), "3");
}
