//! `airlock unlock`: break a deploy lock whose holder is gone. Explicit on
//! purpose: airlock never breaks a lock by itself.

use anyhow::Result;

use super::ExitStatus;
use crate::config::RunConfig;
use crate::project::profile::WarehouseSettings;
use crate::report;

pub async fn run(cfg: &RunConfig) -> Result<ExitStatus> {
    let WarehouseSettings::DuckDb { path } = &cfg.profile.warehouse;
    let lock = crate::warehouse::duckdb::lock_path(path);
    match std::fs::read_to_string(&lock) {
        Ok(text) => {
            let holder = serde_json::from_str::<crate::warehouse::LockInfo>(&text).map(|h| h.describe()).unwrap_or_else(|_| "unknown holder".into());
            std::fs::remove_file(&lock)?;
            report::emit(&format!("broke the lock held by {holder}"));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => report::emit("no lock held"),
        Err(e) => anyhow::bail!("cannot read {}: {e}", lock.display()),
    }
    Ok(ExitStatus::Success)
}
