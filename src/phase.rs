//! Phase marks: with `AIRLOCK_LOG=airlock::phase=debug`, each step of a long
//! command logs the time since the process started (where a plan or a
//! deploy spends it, without a profiler). Off, a mark costs one level check.

use std::sync::OnceLock;
use std::time::Instant;

static START: OnceLock<Instant> = OnceLock::new();

/// Where the clock starts: called first thing in `main`.
pub fn start() {
    START.get_or_init(Instant::now);
}

/// `  0.412 s  project loaded`, when asked for.
pub fn mark(what: &str) {
    tracing::debug!(target: "airlock::phase", "{:7.3} s  {what}", START.get_or_init(Instant::now).elapsed().as_secs_f64());
}
