//! The deploy lock: one holder per production location, named in the lock,
//! kept alive by a heartbeat, and never taken from a holder by itself.
//!
//! A lock is *stale* when its holder is provably gone: it ran on this host and
//! its pid is no longer alive, or its heartbeat is older than [`LEASE`]. A
//! stale lock is reported with the command that breaks it (`airlock unlock`);
//! a live one is refused unless `unlock --force`. Where the lock lives is the
//! warehouse's business (a file beside a DuckDB database).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use chrono::NaiveDateTime;

use crate::warehouse::Warehouse;

/// A holder whose heartbeat is older than this is considered gone.
pub const LEASE: Duration = Duration::from_secs(60);
/// How often a holder refreshes its heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.3f";

/// Who holds a deploy lock.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct LockInfo {
    pub release: Option<i64>,
    pub command: String,
    pub started_at: String,
    pub pid: u32,
    pub host: String,
    /// last sign of life (UTC); absent in locks written by older versions
    #[serde(default)]
    pub heartbeat: Option<String>,
}

impl LockInfo {
    /// This process, taking a lock for `command`.
    pub fn ours(command: &str, release: Option<i64>) -> LockInfo {
        let now = crate::ledger::now();
        LockInfo { release, command: command.to_string(), started_at: now.clone(), pid: std::process::id(), host: hostname(), heartbeat: Some(now) }
    }

    pub fn describe(&self) -> String {
        let release = self.release.map(|r| format!("release {r} ")).unwrap_or_default();
        format!("{release}({} started {}, pid {} on {})", self.command, self.started_at, self.pid, self.host)
    }

    /// Why this holder is provably gone, or None while it may be alive.
    pub fn stale_reason(&self) -> Option<String> {
        if self.host == hostname() && self.pid != 0 && !pid_alive(self.pid) {
            return Some(format!("pid {} is not running on {}", self.pid, self.host));
        }
        let beat = self.heartbeat.as_deref().unwrap_or(&self.started_at);
        match NaiveDateTime::parse_from_str(beat, TIME_FORMAT) {
            Ok(at) => {
                let age = chrono::Utc::now().naive_utc() - at;
                let lease = chrono::Duration::from_std(LEASE).expect("lease fits");
                (age > lease).then(|| format!("no heartbeat for {} s (lease {} s)", age.num_seconds(), LEASE.as_secs()))
            }
            Err(_) => Some(format!("its heartbeat '{beat}' cannot be read")),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Someone holds the lock. Exit code 3.
    #[error("{}", held_message(.location, .holder))]
    Held { location: String, holder: LockInfo },
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

fn held_message(location: &str, holder: &LockInfo) -> String {
    match holder.stale_reason() {
        Some(why) => format!(
            "{location} is locked by {}, and the lock is stale: {why}. Nothing was changed; break it with `airlock unlock` and run again \
             (if it died while publishing, `airlock recover` finishes or undoes that publish and takes the lock over itself)",
            holder.describe()
        ),
        None => format!("{location} is locked by {}; wait for it to finish (a second deploy never runs beside it)", holder.describe()),
    }
}

/// The lock-held error as the user sees it, whichever command hit it.
pub fn held(location: String, holder: LockInfo) -> anyhow::Error {
    anyhow::Error::new(LockError::Held { location, holder })
}

/// A held lock with its heartbeat running; `release` it when done. Dropping
/// it stops the heartbeat (the warehouse removes a DuckDB lock file on drop).
pub struct LockGuard {
    wh: Arc<dyn Warehouse>,
    info: Arc<std::sync::Mutex<LockInfo>>,
    beat: tokio::task::JoinHandle<()>,
}

impl LockGuard {
    /// Take the lock for `command`, or fail with [`LockError::Held`].
    pub async fn acquire(wh: Arc<dyn Warehouse>, command: &str) -> Result<LockGuard> {
        let info = LockInfo::ours(command, None);
        match wh.lock(&info).await {
            Ok(()) => {}
            Err(LockError::Held { location, holder }) => return Err(held(location, holder)),
            Err(LockError::Other(e)) => return Err(e),
        }
        Ok(Self::start(wh, info))
    }

    /// Start the heartbeat of a lock this process already holds.
    pub fn start(wh: Arc<dyn Warehouse>, info: LockInfo) -> LockGuard {
        let info = Arc::new(std::sync::Mutex::new(info));
        let beat = {
            let (wh, info) = (wh.clone(), info.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(HEARTBEAT).await;
                    let mut current = info.lock().expect("lock info poisoned").clone();
                    current.heartbeat = Some(crate::ledger::now());
                    if let Err(e) = wh.update_lock(&current).await {
                        tracing::warn!("could not refresh the lock heartbeat: {e:#}");
                    }
                }
            })
        };
        LockGuard { wh, info, beat }
    }

    /// Name the release this lock is for (shown to anyone who finds it held).
    pub async fn set_release(&self, release: i64) -> Result<()> {
        let current = {
            let mut info = self.info.lock().expect("lock info poisoned");
            info.release = Some(release);
            info.heartbeat = Some(crate::ledger::now());
            info.clone()
        };
        self.wh.update_lock(&current).await
    }

    /// Close the warehouse's connections, then let the lock go. On DuckDB
    /// closing the file checkpoints its log into it (12 s for a 15,000-model
    /// deploy): done while the lock is still ours and its heartbeat runs, in
    /// the command's own time. Left to the process's end, it came after the
    /// lock was gone and was cut off by the runtime's shutdown, leaving the
    /// log for the next command to replay.
    pub async fn release(self) -> Result<()> {
        crate::phase::mark("closing the warehouse");
        self.wh.release_connections();
        crate::phase::mark("warehouse closed");
        self.beat.abort();
        self.wh.unlock().await
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.beat.abort();
    }
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Whether a process with this pid exists on this host (a zombie counts as
/// alive until its parent reaps it).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    // signal 0 checks existence and permission without sending anything
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_pid_on_this_host_is_stale_and_a_live_one_is_not() {
        let mut info = LockInfo::ours("deploy", Some(1));
        assert_eq!(info.stale_reason(), None);
        info.pid = u32::MAX - 1;
        assert!(info.stale_reason().unwrap().contains("is not running"), "{:?}", info.stale_reason());
    }

    #[test]
    fn an_old_heartbeat_from_another_host_is_stale() {
        let mut info = LockInfo::ours("deploy", None);
        info.host = "elsewhere".into();
        info.heartbeat = Some("2020-01-01 00:00:00.000".into());
        assert!(info.stale_reason().unwrap().contains("no heartbeat"));
        info.heartbeat = Some(crate::ledger::now());
        assert_eq!(info.stale_reason(), None);
    }
}
