//! `airlock unlock`: break a deploy lock whose holder is gone. Explicit on
//! purpose: airlock never breaks a lock by itself. A holder that looks alive
//! is refused unless `--force`; the break is recorded in the ledger, and a
//! release the holder left `running` is recorded `interrupted`.

use anyhow::Result;

use super::ExitStatus;
use crate::config::RunConfig;
use crate::ledger::{self, lock::LockGuard, lock::LockInfo};
use crate::report;

pub async fn run(cfg: &RunConfig, force: bool) -> Result<ExitStatus> {
    let wh = cfg.open_warehouse(false)?;
    let Some(holder) = wh.lock_holder().await? else {
        report::emit(&format!("no lock held on {}", wh.describe()));
        return Ok(ExitStatus::Success);
    };
    let stale = holder.stale_reason();
    if stale.is_none() && !force {
        return Err(crate::ledger::lock::held(wh.describe(), holder).context(
            "its holder looks alive (same host and running, or a fresh heartbeat), so `airlock unlock` refuses to break it; \
             pass --force only if you know that process is gone",
        ));
    }
    // take the lock over in one step, so nobody slips in between
    let ours = LockInfo::ours("unlock", None);
    wh.take_over_lock(&holder, &ours).await?;
    let guard = LockGuard::start(wh.clone(), ours);
    let why = stale.clone().unwrap_or_else(|| "broken with --force".into());
    let recorded = async {
        ledger::ensure(&*wh).await?;
        let d = wh.dialect();
        wh.execute(&ledger::event_statement(d, "lock broken", holder.release, &format!("{}: {why}", holder.describe()))).await?;
        let abandoned = ledger::close_abandoned(&*wh).await?;
        Ok::<_, anyhow::Error>((abandoned, ledger::publishing(&*wh).await?))
    }
    .await;
    guard.release().await?;
    let mut message = format!("broke the lock held by {} ({why})", holder.describe());
    match recorded {
        Ok((ids, publishing)) => {
            for id in ids {
                message.push_str(&format!("; release {id} it left running is recorded as interrupted"));
            }
            if let Some(id) = publishing {
                message.push_str(&format!("; release {id} was interrupted while publishing: run `airlock recover` to finish or undo it"));
            }
        }
        Err(e) => eprintln!("airlock: warning: the lock is broken, but recording it in the ledger failed: {e:#}"),
    }
    report::emit(&message);
    Ok(ExitStatus::Success)
}
