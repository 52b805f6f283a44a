//! Phase marks: with `AIRLOCK_LOG=airlock::phase=debug`, each step of a long
//! command logs the time since the process started and the memory it holds
//! (where a plan or a deploy spends them, without a profiler). Off, a mark
//! costs one level check.

use std::sync::OnceLock;
use std::time::Instant;

static START: OnceLock<Instant> = OnceLock::new();

/// Where the clock starts: called first thing in `main`.
pub fn start() {
    START.get_or_init(Instant::now);
}

/// `  0.412 s    231 MiB  project loaded`, when asked for.
pub fn mark(what: &str) {
    if tracing::enabled!(target: "airlock::phase", tracing::Level::DEBUG) {
        let rss = resident_mib().map_or_else(|| "?".to_string(), |m| m.to_string());
        tracing::debug!(target: "airlock::phase", "{:7.3} s {rss:>6} MiB  {what}", START.get_or_init(Instant::now).elapsed().as_secs_f64());
    }
}

/// The process's resident memory now (Linux; None elsewhere).
fn resident_mib() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf reads a constant of the system and touches no memory of ours
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()? / (1024 * 1024))
}
