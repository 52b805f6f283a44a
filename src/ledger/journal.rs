//! The publish journal. Before the first publish statement the release goes
//! to `publishing` and the whole plan is written to `airlock.journal`: every
//! step, the object it changes and how to undo it. Each step is marked done
//! when the warehouse confirms it. Where DDL is transactional (DuckDB) the
//! journal, the publish and the ledger rows commit together, so a publish is
//! never seen half done. Elsewhere a crash leaves the journal from which
//! [`recover`] completes the publish or undoes it, and the release says which.
//!
//! Step numbers are 1-based: steps 1..=N change the warehouse, step N+1
//! writes the ledger rows that close the release. `AIRLOCK_FAILPOINT=publish:K`
//! counts the same way.

use std::collections::BTreeSet;

use anyhow::{bail, Context, Result};

use super::{finish_statement, status_statement, Release};
use crate::publish::{Plan, Step};
use crate::warehouse::{Dialect, Warehouse};

fn table(d: Dialect) -> String {
    super::t(d, "journal")
}

fn epoch_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The journal rows of a plan, as one INSERT.
fn insert(d: Dialect, release: i64, plan: &Plan, state: &str) -> Result<String> {
    let mut rows = Vec::with_capacity(plan.steps.len() + 1);
    for (i, step) in plan.steps.iter().chain(std::iter::once(&ledger_step(plan))).enumerate() {
        let json = serde_json::to_string(step)?;
        let done = if state == "done" { epoch_ms().to_string() } else { "NULL".into() };
        rows.push(format!("({release}, {}, {}, {}, {}, {}, {done})", i + 1, d.literal(&step.object), d.literal(&step.action), d.literal(&json), d.literal(state)));
    }
    Ok(format!("INSERT INTO {} VALUES\n{}", table(d), rows.join(",\n")))
}

/// The last step: the ledger rows of the release's objects.
fn ledger_step(plan: &Plan) -> Step {
    Step {
        object: "airlock.release_objects".into(),
        action: "ledger".into(),
        sql: plan.objects.iter().cloned().collect(),
        undo: Some(vec![]),
        creates: None,
        needs: vec![],
        prod_change: false,
    }
}

fn mark(d: Dialect, release: i64, step: Option<usize>, state: &str) -> String {
    let which = step.map(|n| format!(" AND step = {n}")).unwrap_or_default();
    format!("UPDATE {} SET state = {}, done_ms = COALESCE(done_ms, {}) WHERE release_id = {release}{which}", table(d), d.literal(state), epoch_ms())
}

async fn run_step(wh: &dyn Warehouse, sql: &[String]) -> Result<()> {
    match sql {
        [] => Ok(()),
        [one] => wh.execute(one).await,
        many => wh.execute_script(many).await,
    }
}

/// Publish `plan` for `release`. On return `release.status` is the truth:
/// `published`; `failed` (nothing took effect, or what did was undone); or
/// `publishing` (interrupted mid-way and not undone: `airlock recover`).
pub async fn publish(wh: &dyn Warehouse, release: &mut Release, plan: &Plan) -> Result<()> {
    let d = wh.dialect();
    let id = release.id;
    let n = plan.steps.len();
    if wh.capabilities().transactional_ddl {
        release.status = "published".into();
        release.mixed_ms = Some(0);
        let mut stmts = vec![status_statement(d, id, "publishing"), insert(d, id, plan, "done")?];
        let mut step_of = vec![0, 0];
        for (k, step) in plan.steps.iter().enumerate() {
            stmts.extend(step.sql.iter().cloned());
            step_of.extend(std::iter::repeat_n(k + 1, step.sql.len()));
        }
        stmts.extend(plan.objects.iter().cloned());
        stmts.push(finish_statement(d, release));
        step_of.resize(stmts.len(), n + 1);
        crate::failpoint::arm_atomic_batch(step_of);
        let result = wh.execute_atomic(&stmts).await;
        crate::failpoint::disarm_atomic_batch();
        if let Err(e) = result {
            release.status = "running".into();
            release.mixed_ms = None;
            return Err(e.context("publishing (one transaction, rolled back: prod untouched)"));
        }
        return Ok(());
    }

    // step by step, each confirmed in the journal
    // the row says `publishing` with everything a recovery needs: the counts
    // and where the replaced objects are kept (a completed recovery keeps them)
    let mut publishing = release.clone();
    publishing.status = "publishing".into();
    wh.execute_atomic(&[finish_statement(d, &publishing), insert(d, id, plan, "pending")?]).await.context("writing the publish journal")?;
    release.status = "publishing".into();
    let (mut first, mut last) = (None, None);
    for k in 0..=n {
        if k == n {
            verify_grants(wh, release, plan).await?;
        }
        let attempt = async {
            crate::failpoint::before_publish_statement(k + 1)?;
            if k == n {
                // the last step closes the release: ledger rows, all in one DML transaction
                let mut closing = release.clone();
                closing.status = "published".into();
                closing.mixed_ms = Some(match (first, last) {
                    (Some(f), Some(l)) => l - f,
                    _ => 0,
                });
                let mut stmts: Vec<String> = plan.objects.iter().cloned().collect();
                stmts.push(finish_statement(d, &closing));
                stmts.push(mark(d, id, None, "done"));
                wh.execute_atomic(&stmts).await?;
                *release = closing;
                return Ok(());
            }
            run_step(wh, &plan.steps[k].sql).await
        };
        if let Err(e) = attempt.await {
            let (action, object) = plan.steps.get(k).map(|s| (s.action.as_str(), s.object.as_str())).unwrap_or(("ledger", "the release"));
            let what = format!("publish step {} of {} ({action} {object}) failed", k + 1, n + 1);
            let mut undone = release.clone();
            let done = &plan.steps[..(k + 1).min(n)];
            return match undo(wh, &mut undone, done, first.map(|f| epoch_ms() - f)).await {
                Ok(lines) => {
                    tracing::info!("undone: {}", lines.join("; "));
                    undone.status = "failed".into();
                    wh.execute_atomic(&[finish_statement(d, &undone), mark(d, id, None, "undone")])
                        .await
                        .with_context(|| format!("{what}; it was undone (prod is as before), but recording that failed: run `airlock recover`"))?;
                    *release = undone;
                    Err(e.context(format!("{what}; the {k} step{} before it were undone: prod is as before", if k == 1 { "" } else { "s" })))
                }
                Err(u) => Err(e.context(format!("{what}, and undoing it failed too ({u:#}): prod may be mixed; run `airlock recover`"))),
            };
        }
        if k == n {
            break;
        }
        let now = epoch_ms();
        if plan.steps[k].prod_change {
            first.get_or_insert(now);
            last = Some(now);
        }
        wh.execute(&mark(d, id, Some(k + 1), "done")).await.with_context(|| format!("recording publish step {} as done: run `airlock recover`", k + 1))?;
    }
    Ok(())
}

/// Every step is done: the privileges on prod must be what they were. A
/// difference stops here, the release left `publishing`: the operator decides
/// whether prod stands (`airlock recover`) or goes back (`recover --undo`).
async fn verify_grants(wh: &dyn Warehouse, release: &Release, plan: &Plan) -> Result<()> {
    let Some(check) = &plan.grant_check else { return Ok(()) };
    let differ = check.run(wh).await.with_context(|| format!("verifying the privileges on prod after publishing release {}: run `airlock recover` or `airlock recover --undo`", release.id))?;
    if differ.is_empty() {
        return Ok(());
    }
    bail!(
        "release {} is not recorded as published: the privileges on prod differ from before the publish: {}. \
         Prod holds the new release; `airlock recover --undo` puts back the previous state, `airlock recover` keeps it as it is",
        release.id,
        differ.join("; ")
    )
}

/// A journal row as read back.
struct Row {
    step: usize,
    state: String,
    done_ms: Option<i64>,
    body: Step,
}

async fn read(wh: &dyn Warehouse, release: i64) -> Result<Vec<Row>> {
    let sql = format!("SELECT step, state, done_ms, step_json FROM {} WHERE release_id = {release} ORDER BY step", table(wh.dialect()));
    let rows = wh.query(&sql).await?;
    rows.rows
        .into_iter()
        .map(|r| {
            let get = |i: usize| r.get(i).cloned().flatten();
            let body: Step = serde_json::from_str(&get(3).unwrap_or_default()).with_context(|| format!("journal of release {release}: a step cannot be read"))?;
            Ok(Row {
                step: get(0).and_then(|v| v.parse().ok()).unwrap_or(0),
                state: get(1).unwrap_or_default(),
                done_ms: get(2).and_then(|v| v.parse().ok()),
                body,
            })
        })
        .collect()
}

/// Undo `steps` (those done, and the one that may have been in flight) in
/// reverse, then close the release as `recovered-back`/`failed` without
/// backups. Returns what it did, a line per step.
async fn undo(wh: &dyn Warehouse, release: &mut Release, steps: &[Step], mixed_ms: Option<i64>) -> Result<Vec<String>> {
    let d = wh.dialect();
    let mut lines = Vec::new();
    for (k, step) in steps.iter().enumerate().rev() {
        let Some(undo) = &step.undo else {
            bail!("step {} ({} {}) cannot be undone; run `airlock recover` without --undo to complete the publish", k + 1, step.action, step.object);
        };
        run_step(wh, undo).await.with_context(|| format!("undoing step {} ({} {})", k + 1, step.action, step.object))?;
        lines.push(format!("undid step {} ({} {})", k + 1, step.action, step.object));
    }
    release.backup_schema = None;
    release.published = 0;
    release.mixed_ms = mixed_ms;
    release.finished_at = Some(super::now());
    let backup = crate::publish::backup_schema(d, release.id);
    // the backups held only what was restored; drop them before the ledger
    // stops naming them
    if let Err(e) = wh.execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", d.quote(&backup))).await {
        tracing::warn!("could not drop {backup}: {e:#}");
    }
    Ok(lines)
}

/// What `airlock recover` did.
pub struct Recovery {
    pub release: i64,
    /// recovered-forward | recovered-back
    pub outcome: String,
    pub lines: Vec<String>,
    pub mixed_ms: i64,
}

/// Complete (or with `force_undo`, undo) the publish of `release`, which the
/// ledger shows as `publishing`. Forward needs every remaining step's inputs
/// (the audited objects); otherwise the publish is undone.
pub async fn recover(wh: &dyn Warehouse, release: &mut Release, force_undo: bool) -> Result<Recovery> {
    let d = wh.dialect();
    let id = release.id;
    let rows = read(wh, id).await?;
    if rows.is_empty() {
        bail!("release {id} is publishing but has no journal: it cannot be recovered automatically; inspect prod and the backups in {}", crate::publish::backup_schema(d, id));
    }
    let first_change = rows.iter().filter(|r| r.body.prod_change && r.state == "done").filter_map(|r| r.done_ms).min();
    let mixed_ms = first_change.map(|f| epoch_ms() - f).unwrap_or(0);
    let pending: Vec<&Row> = rows.iter().filter(|r| r.state != "done").collect();

    // forward only when everything still to do can be done
    let mut missing = Vec::new();
    if !force_undo {
        let schemas: BTreeSet<String> = pending.iter().flat_map(|r| r.body.needs.iter().chain(r.body.creates.iter()).map(|(s, _)| s.clone())).collect();
        let catalog = wh.catalog(&schemas.into_iter().collect::<Vec<_>>()).await?;
        let same = |a: &str, b: &str| if d.case_insensitive_names() { a.eq_ignore_ascii_case(b) } else { a == b };
        let exists = |(s, n): &(String, String)| catalog.iter().any(|e| same(&e.schema, s) && (n.is_empty() || same(&e.name, n)));
        for r in &pending {
            for need in &r.body.needs {
                if !exists(need) {
                    missing.push(format!("{}.{}", need.0, need.1));
                }
            }
        }
        if missing.is_empty() {
            let mut lines = Vec::new();
            for r in pending.iter().filter(|r| r.body.action != "ledger") {
                if r.body.action == "keep" && r.body.creates.as_ref().is_some_and(exists) {
                    lines.push(format!("step {} ({} {}): had happened before the interruption", r.step, r.body.action, r.body.object));
                } else {
                    run_step(wh, &r.body.sql).await.with_context(|| format!("completing step {} ({} {})", r.step, r.body.action, r.body.object))?;
                    lines.push(format!("step {} ({} {}): done", r.step, r.body.action, r.body.object));
                }
                wh.execute(&mark(d, id, Some(r.step), "done")).await?;
            }
            release.status = "recovered-forward".into();
            release.finished_at = Some(super::now());
            release.mixed_ms = Some(mixed_ms);
            let mut stmts: Vec<String> = rows.iter().filter(|r| r.body.action == "ledger").flat_map(|r| r.body.sql.clone()).collect();
            stmts.push(finish_statement(d, release));
            stmts.push(mark(d, id, None, "done"));
            wh.execute_atomic(&stmts).await.context("closing the release in the ledger")?;
            lines.push(format!("release {id} recorded as recovered-forward: prod holds release {id}"));
            return Ok(Recovery { release: id, outcome: "recovered-forward".into(), lines, mixed_ms });
        }
    }

    // back: what was done, and the step that may have been in flight
    let upto = rows.iter().filter(|r| r.body.action != "ledger").take_while(|r| r.state == "done").count() + 1;
    let steps: Vec<Step> = rows.iter().filter(|r| r.body.action != "ledger").take(upto).map(|r| r.body.clone()).collect();
    let mut lines = Vec::new();
    if !missing.is_empty() {
        lines.push(format!("cannot complete: {} no longer exist{}; undoing", missing.join(", "), if missing.len() == 1 { "s" } else { "" }));
    }
    lines.extend(undo(wh, release, &steps, Some(mixed_ms)).await?);
    release.status = "recovered-back".into();
    wh.execute_atomic(&[finish_statement(d, release), mark(d, id, None, "undone")]).await.context("recording the undo in the ledger")?;
    lines.push(format!("release {id} recorded as recovered-back: prod is as before release {id}"));
    Ok(Recovery { release: id, outcome: "recovered-back".into(), lines, mixed_ms })
}
