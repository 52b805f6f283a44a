//! The exact statements `airlock plan --show-sql` prints for the shop project,
//! pinned as a snapshot (paths filtered).

mod common;

use common::{filtered, fixture, Scratch};


#[test]
fn plan_show_sql_on_an_empty_warehouse() {
    let s = Scratch::new();
    let run = s.airlock(&fixture("shop"), &["plan", "--show-sql"]);
    run.assert_code(0);
    insta::assert_snapshot!(filtered(&s, &run.stdout));
}

#[test]
fn plan_json_names_release_and_status() {
    let s = Scratch::new();
    let run = s.airlock(&fixture("shop"), &["plan", "--format", "json"]);
    run.assert_code(0);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["status"], "planned");
    assert_eq!(v["release"], 1);
    assert_eq!(v["strategies"][0]["strategy"], "swap");
    insta::assert_json_snapshot!(v["strategies"][0]["nodes"]);
}
