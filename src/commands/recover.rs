//! `airlock recover [--undo]`: finish or undo a publish that was interrupted
//! midway (a crash, a kill, a network fault on a warehouse whose DDL is not
//! transactional). It reads the release's journal, completes the remaining
//! steps when the audited objects still exist (or undoes the steps done, from
//! their backups, with `--undo` or when it cannot complete), prints each step,
//! records `recovered-forward` or `recovered-back`, and releases the lock.
//!
//! It takes over a stale lock (the interrupted process is gone: finishing its
//! work is what the lock was for), never a live one.

use anyhow::Result;

use super::ExitStatus;
use crate::config::RunConfig;
use crate::ledger::lock::{LockGuard, LockInfo};
use crate::ledger::{self, journal};
use crate::report;

pub async fn run(cfg: &RunConfig, force_undo: bool) -> Result<ExitStatus> {
    let wh = cfg.open_warehouse(false)?;
    let mut notes = Vec::new();
    let guard = match wh.lock_holder().await? {
        Some(holder) => match holder.stale_reason() {
            Some(why) => {
                let ours = LockInfo::ours("recover", holder.release);
                wh.take_over_lock(&holder, &ours).await?;
                notes.push(format!("took over the stale lock of {} ({why})", holder.describe()));
                LockGuard::start(wh.clone(), ours)
            }
            None => return Err(crate::ledger::lock::held(wh.describe(), holder)),
        },
        None => LockGuard::acquire(wh.clone(), "recover").await?,
    };
    let result = recover(&*wh, force_undo, cfg.publish_concurrency, &mut notes).await;
    guard.release().await?;
    let (status, outcome) = result?;
    if cfg.format == crate::cli::Format::Json {
        report::json(&serde_json::json!({ "status": status, "release": outcome.as_ref().map(|o| o.release), "steps": notes, "inconsistency_ms": outcome.as_ref().map(|o| o.mixed_ms) }));
    } else {
        report::emit(&notes.join("\n"));
    }
    Ok(ExitStatus::Success)
}

async fn recover(wh: &dyn crate::warehouse::Warehouse, force_undo: bool, concurrency: usize, notes: &mut Vec<String>) -> Result<(String, Option<journal::Recovery>)> {
    ledger::ensure(wh).await?;
    for id in ledger::close_abandoned(wh).await? {
        notes.push(format!("release {id} was left running (before its publish) by a process that is gone: recorded as interrupted; prod was not touched"));
    }
    let Some(id) = ledger::publishing(wh).await? else {
        notes.push(format!("nothing to repair: no release is publishing in {}", wh.describe()));
        return Ok(("nothing-to-repair".into(), None));
    };
    let mut release = ledger::releases(wh).await?.into_iter().find(|r| r.id == id).expect("the publishing release is in the ledger");
    notes.push(format!("release {id} ({}) was interrupted while publishing; {}", release.strategy, if force_undo { "undoing it (--undo)" } else { "completing it" }));
    let recovery = journal::recover(wh, &mut release, force_undo, concurrency).await?;
    notes.extend(recovery.lines.iter().cloned());
    notes.push(format!("prod was mixed for {} ms", recovery.mixed_ms));
    Ok((recovery.outcome.clone(), Some(recovery)))
}
