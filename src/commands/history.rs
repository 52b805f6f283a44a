//! `airlock history`: the ledger, newest first, with which releases can still
//! be restored.

use anyhow::Result;
use serde::Serialize;

use super::ExitStatus;
use crate::ledger::{self, Release};
use crate::report;
use crate::config::RunConfig;

#[derive(Serialize)]
struct HistoryRow {
    #[serde(flatten)]
    release: Release,
    can_roll_back_to: bool,
}

pub async fn run(cfg: &RunConfig) -> Result<ExitStatus> {
    let wh = cfg.open_warehouse(true)?;
    let has_ledger = ledger::exists(&*wh).await?;
    let all = if has_ledger { ledger::releases(&*wh).await? } else { vec![] };
    let rows: Vec<HistoryRow> = all.iter().rev().map(|r| HistoryRow { release: r.clone(), can_roll_back_to: ledger::restorable(&all, r.id) }).collect();
    let table = rows
        .iter()
        .map(|h| {
            let r = &h.release;
            let what = match r.restores {
                Some(to) => format!("rollback to {to}"),
                None => r.strategy.clone(),
            };
            vec![
                r.id.to_string(),
                r.started_at.clone(),
                r.status.clone(),
                what,
                r.selection.clone(),
                format!("{}/{}/{}", r.built, r.tests, r.failed),
                r.published.to_string(),
                match (r.mixed_ms, r.status.as_str()) {
                    (_, "publishing") => "until recovered".into(),
                    (Some(ms), _) => format!("{ms} ms"),
                    (None, _) => String::new(),
                },
                r.git_commit.as_deref().map(|c| c.chars().take(8).collect()).unwrap_or_default(),
                if h.can_roll_back_to { "yes".into() } else { "no".into() },
            ]
        })
        .collect();
    let empty = format!("no releases yet in {}", wh.describe());
    for r in all.iter().filter(|r| r.status == "publishing") {
        eprintln!("airlock: release {} was interrupted while publishing: prod may be mixed; run `airlock recover`", r.id);
    }
    report::print_table(
        cfg.format,
        &["release", "started (UTC)", "status", "strategy", "selection", "built/tests/failed", "published", "prod mixed", "commit", "can roll back to"],
        table,
        &serde_json::json!({ "status": "ok", "releases": rows }),
        &empty,
    );
    if cfg.format == crate::cli::Format::Table && all.iter().any(|r| r.mixed_ms.unwrap_or(0) > 0) {
        report::emit(
            "prod mixed: how long prod held part of the old release and part of the new one while publishing \
             (a publish that is not one transaction; a multi-schema swap is one atomic step per schema)\n",
        );
    }
    Ok(ExitStatus::Success)
}
