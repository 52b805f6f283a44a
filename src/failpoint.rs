//! Fault injection for tests of the real binary, from `AIRLOCK_FAILPOINT`
//! (comma-separated; inert when unset). Each point stands in for a failure a
//! real warehouse or machine produces, at the place it would happen:
//!
//! - `panic:NODE`      the build or test step of NODE panics
//! - `garble:TEST`     the failure count of TEST comes back unreadable
//! - `cleanup:error`   the work after a publish commit (dropping the audit
//!   location, old backups) fails
//! - `publish:K`       the process kills itself (SIGKILL) right before publish
//!   statement K (1-based)
//! - `publish:K:error` publish statement K fails as a warehouse error would
//! - `publish:external` the process kills itself right before the publish
//!   step done outside airlock (wap with `--builder dbt`: dbt rebuilding prod)

use std::sync::OnceLock;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Point {
    Panic(String),
    Garble(String),
    CleanupError,
    PublishKill(usize),
    PublishError(usize),
    PublishExternalKill,
}

fn points() -> &'static [Point] {
    static POINTS: OnceLock<Vec<Point>> = OnceLock::new();
    POINTS.get_or_init(|| std::env::var("AIRLOCK_FAILPOINT").map(|v| parse(&v)).unwrap_or_default())
}

fn parse(text: &str) -> Vec<Point> {
    text.split(',')
        .filter_map(|item| {
            let parts: Vec<&str> = item.trim().split(':').collect();
            match parts.as_slice() {
                ["panic", node] => Some(Point::Panic(node.to_string())),
                ["garble", test] => Some(Point::Garble(test.to_string())),
                ["cleanup", "error"] => Some(Point::CleanupError),
                ["publish", "external"] => Some(Point::PublishExternalKill),
                ["publish", k] => k.parse().ok().map(Point::PublishKill),
                ["publish", k, "error"] => k.parse().ok().map(Point::PublishError),
                _ => {
                    eprintln!("airlock: warning: AIRLOCK_FAILPOINT item '{item}' not understood; ignored");
                    None
                }
            }
        })
        .collect()
}

pub fn is_set(point: &Point) -> bool {
    points().contains(point)
}

/// `panic:NODE`: called at the start of NODE's step.
pub fn maybe_panic(node: &str) {
    if is_set(&Point::Panic(node.to_string())) {
        panic!("failpoint panic:{node}");
    }
}

/// SIGKILL: no destructor, no handler, exactly what a crash leaves.
fn kill_self() {
    // SAFETY: kill(2) on our own pid takes no pointers
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
}

/// `publish:K` / `publish:K:error`, called right before publish statement `k`.
pub fn before_publish_statement(k: usize) -> anyhow::Result<()> {
    if is_set(&Point::PublishKill(k)) {
        kill_self();
    }
    if is_set(&Point::PublishError(k)) {
        anyhow::bail!("failpoint publish:{k}:error: the warehouse refused publish statement {k}");
    }
    Ok(())
}

/// `publish:external` (and `publish:K`), called right before publish step
/// `k`, which another program does (dbt rebuilding prod).
pub fn before_external_step(k: usize) -> anyhow::Result<()> {
    if is_set(&Point::PublishExternalKill) {
        kill_self();
    }
    before_publish_statement(k)
}

/// The publish steps of the atomic batch about to run: statement index ->
/// publish step number (1-based), so `publish:K` fires inside the
/// transaction, where a real crash would.
static ATOMIC_BATCH: std::sync::Mutex<Option<Vec<usize>>> = std::sync::Mutex::new(None);

/// Arm `publish:K` for the next atomic batch (`steps[i]`: the step statement
/// i belongs to, 0 for none). Inert when no publish point is set.
pub fn arm_atomic_batch(steps: Vec<usize>) {
    if points().iter().any(|p| matches!(p, Point::PublishKill(_) | Point::PublishError(_))) {
        *ATOMIC_BATCH.lock().expect("failpoint poisoned") = Some(steps);
    }
}

pub fn disarm_atomic_batch() {
    *ATOMIC_BATCH.lock().expect("failpoint poisoned") = None;
}

/// Called by a warehouse before statement `i` of an atomic batch.
pub fn in_atomic_batch(i: usize) -> anyhow::Result<()> {
    let step = ATOMIC_BATCH.lock().expect("failpoint poisoned").as_ref().and_then(|m| m.get(i).copied()).unwrap_or(0);
    // only the first statement of a step stands for it
    let first = i == 0 || ATOMIC_BATCH.lock().expect("failpoint poisoned").as_ref().and_then(|m| m.get(i - 1).copied()) != Some(step);
    if step > 0 && first {
        before_publish_statement(step)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_point() {
        assert_eq!(
            parse("panic:orders, garble:unique_x,cleanup:error,publish:3,publish:2:error,publish:external"),
            vec![Point::Panic("orders".into()), Point::Garble("unique_x".into()), Point::CleanupError, Point::PublishKill(3), Point::PublishError(2), Point::PublishExternalKill]
        );
    }
}
