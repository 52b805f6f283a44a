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

/// The journal rows of a plan, as one INSERT: the first `done` steps (the
/// ledger step counting as the last) recorded as done, the rest pending.
fn insert(d: Dialect, release: i64, plan: &Plan, done: usize) -> Result<String> {
    let mut rows = Vec::with_capacity(plan.steps.len() + 1);
    let now = epoch_ms().to_string();
    for (i, step) in plan.steps.iter().chain(std::iter::once(&ledger_step(plan))).enumerate() {
        let json = serde_json::to_string(step)?;
        let (state, done_ms) = if i < done { ("done", Some(now.clone())) } else { ("pending", None) };
        rows.push(vec![Some(release.to_string()), Some((i + 1).to_string()), Some(step.object.clone()), Some(step.action.clone()), Some(json), Some(state.to_string()), done_ms]);
    }
    use super::Column::{Int, Text};
    Ok(super::insert_rows(d, &table(d), &[Int, Int, Text, Text, Text, Text, Int], &rows))
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
        after: vec![],
        external: false,
    }
}

/// Steps (0-based) recorded as done, in one statement.
fn mark_steps(d: Dialect, release: i64, steps: &[usize]) -> String {
    let list: Vec<String> = steps.iter().map(|k| (k + 1).to_string()).collect();
    format!("UPDATE {} SET state = 'done', done_ms = {} WHERE release_id = {release} AND step IN ({})", table(d), epoch_ms(), list.join(", "))
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
/// Independent steps run at most `concurrency` at once.
///
/// A plan whose last step is [`external`](Step::external) (dbt rebuilding
/// prod) stops before it: the release stays `publishing` with that step
/// pending, and the caller ends it with [`close_external`] once the step is
/// done, or [`abandon_external`]. Killed meanwhile, the journal says the
/// publish is unfinished, and `airlock recover` undoes it.
pub async fn publish(wh: &dyn Warehouse, release: &mut Release, plan: &Plan, concurrency: usize) -> Result<()> {
    let d = wh.dialect();
    let id = release.id;
    if let Some(k) = plan.steps.iter().position(|s| s.external).filter(|&k| k + 1 != plan.steps.len()) {
        bail!("publish step {} ({} {}) is done outside airlock but is not the last step: refusing the plan", k + 1, plan.steps[k].action, plan.steps[k].object);
    }
    let open = plan.steps.last().is_some_and(|s| s.external);
    // the steps airlock runs itself
    let n = plan.steps.len() - usize::from(open);
    if wh.capabilities().transactional_ddl {
        let mut stmts = vec![status_statement(d, id, "publishing"), insert(d, id, plan, if open { n } else { n + 1 })?];
        let mut step_of = vec![0, 0];
        for (k, step) in plan.steps[..n].iter().enumerate() {
            stmts.extend(step.sql.iter().cloned());
            step_of.extend(std::iter::repeat_n(k + 1, step.sql.len()));
        }
        let mut closing = release.clone();
        if open {
            closing.status = "publishing".into();
        } else {
            closing.status = "published".into();
            closing.mixed_ms = Some(0);
            stmts.extend(plan.objects.iter().cloned());
            stmts.push(finish_statement(d, &closing));
        }
        step_of.resize(stmts.len(), n + 1);
        crate::failpoint::arm_atomic_batch(step_of);
        let result = wh.execute_atomic(&stmts).await;
        crate::failpoint::disarm_atomic_batch();
        if let Err(e) = result {
            release.status = "running".into();
            release.mixed_ms = None;
            return Err(e.context("publishing (one transaction, rolled back: prod untouched)"));
        }
        *release = closing;
        return Ok(());
    }

    // step by step, each confirmed in the journal
    // the row says `publishing` with everything a recovery needs: the counts
    // and where the replaced objects are kept (a completed recovery keeps them)
    let mut publishing = release.clone();
    publishing.status = "publishing".into();
    wh.execute_atomic(&[finish_statement(d, &publishing), insert(d, id, plan, 0)?]).await.context("writing the publish journal")?;
    release.status = "publishing".into();
    let (mut first, mut last) = (None, None);
    let deps = crate::publish::dependencies(&plan.steps);
    let mut done = vec![false; n];
    let todo: Vec<usize> = (0..n).collect();
    let steps = &plan.steps;
    let run = |k: usize| async move {
        crate::failpoint::before_publish_statement(k + 1)?;
        run_step(wh, &steps[k].sql).await
    };
    let ran = schedule(wh, id, &deps, &todo, &mut done, concurrency, run, |k| {
        if steps[k].prod_change {
            let now = epoch_ms();
            first.get_or_insert(now);
            last = Some(now);
        }
    })
    .await;
    let failure = match ran.failure {
        None => None,
        Some(Failure::Record(e)) => {
            return Err(e.context("recording publish steps as done failed: prod may be mixed; run `airlock recover`"));
        }
        Some(Failure::Step(k, e)) => Some((k, e)),
    };
    let failure = match failure {
        Some(f) => Some(f),
        None if open => return Ok(()),
        None => {
            verify_grants(wh, release, plan).await?;
            // the last step closes the release: ledger rows, all in one DML transaction
            let close = async {
                crate::failpoint::before_publish_statement(n + 1)?;
                let mixed_ms = match (first, last) {
                    (Some(f), Some(l)) => l - f,
                    _ => 0,
                };
                let (closing, stmts) = closing_batch(d, release, plan, mixed_ms);
                wh.execute_atomic(&stmts).await?;
                anyhow::Ok(closing)
            };
            match close.await {
                Ok(closing) => {
                    *release = closing;
                    return Ok(());
                }
                Err(e) => Some((n, e)),
            }
        }
    };
    let Some((k, e)) = failure else { return Ok(()) };
    let (action, object) = steps.get(k).map(|s| (s.action.as_str(), s.object.as_str())).unwrap_or(("ledger", "the release"));
    let what = format!("publish step {} of {} ({action} {object}) failed", k + 1, n + 1);
    // every step that ran, and those that failed midway (an undo of a step
    // that did not happen puts back what is there already)
    let mut started: Vec<usize> = ran.completed.iter().chain(&ran.failed).copied().collect();
    started.sort_unstable();
    let to_undo: Vec<(usize, &Step)> = started.iter().map(|&k| (k, &steps[k])).collect();
    let mut undone = release.clone();
    match undo(wh, &mut undone, &to_undo, first.map(|f| epoch_ms() - f)).await {
        Ok(lines) => {
            tracing::info!("undone: {}", lines.join("; "));
            undone.status = "failed".into();
            wh.execute_atomic(&[finish_statement(d, &undone), mark(d, id, None, "undone")])
                .await
                .with_context(|| format!("{what}; it was undone (prod is as before), but recording that failed: run `airlock recover`"))?;
            *release = undone;
            let others = ran.completed.len();
            Err(e.context(format!("{what}; the {others} step{} done before it {} undone: prod is as before", if others == 1 { "" } else { "s" }, if others == 1 { "was" } else { "were" })))
        }
        Err(u) => Err(e.context(format!("{what}, and undoing it failed too ({u:#}): prod may be mixed; run `airlock recover`"))),
    }
}

/// The publish [`publish`] left open is finished: the other program has done
/// its external step (the last). Runs what that step holds for airlock (the
/// regrants on what the program re-created), records it done, checks the
/// privileges on prod, and closes the release as published, `mixed_ms`
/// being how long prod was part old, part new. On error the release stays
/// `publishing` (`airlock recover`).
pub async fn close_external(wh: &dyn Warehouse, release: &mut Release, plan: &Plan, mixed_ms: i64) -> Result<()> {
    let d = wh.dialect();
    let n = plan.steps.len();
    let Some(step) = plan.steps.last().filter(|s| s.external) else {
        bail!("release {}: the publish has no step done outside airlock to close", release.id);
    };
    run_step(wh, &step.sql).await.with_context(|| format!("publish step {n} ({} {}), once done outside airlock: run `airlock recover`", step.action, step.object))?;
    wh.execute(&mark(d, release.id, Some(n), "done")).await.with_context(|| format!("recording publish step {n} as done: run `airlock recover`"))?;
    verify_grants(wh, release, plan).await?;
    crate::failpoint::before_publish_statement(n + 1)?;
    let (closed, stmts) = closing_batch(d, release, plan, mixed_ms);
    wh.execute_atomic(&stmts).await.context("closing the release in the ledger: run `airlock recover`")?;
    *release = closed;
    Ok(())
}

/// The batch that closes a journaled publish, one DML transaction: the
/// release's objects, its row as published (`mixed_ms`: how long prod was
/// part old, part new), every step of its journal done. Returns the release
/// as that batch records it.
fn closing_batch(d: Dialect, release: &Release, plan: &Plan, mixed_ms: i64) -> (Release, Vec<String>) {
    let mut closed = release.clone();
    closed.status = "published".into();
    closed.mixed_ms = Some(mixed_ms);
    let mut stmts: Vec<String> = plan.objects.iter().cloned().collect();
    stmts.push(finish_statement(d, &closed));
    stmts.push(mark(d, release.id, None, "done"));
    (closed, stmts)
}

/// The external step of a publish [`publish`] left open failed: undo every
/// step (prod as before the publish) and close the release as failed, in
/// one batch. On error the release stays `publishing` (`airlock recover`).
pub async fn abandon_external(wh: &dyn Warehouse, release: &mut Release, plan: &Plan) -> Result<()> {
    let d = wh.dialect();
    let mut stmts = crate::publish::restore_statements(d, release, plan)?;
    stmts.push(mark(d, release.id, None, "undone"));
    wh.execute_atomic(&stmts).await.context("undoing the publish: run `airlock recover`")?;
    release.status = "failed".into();
    release.backup_schema = None;
    release.published = 0;
    Ok(())
}

/// What stopped a [`schedule`].
enum Failure {
    /// step k (0-based) failed
    Step(usize, anyhow::Error),
    /// the journal could not record steps that ran
    Record(anyhow::Error),
}

/// What a [`schedule`] ran.
struct Ran {
    failure: Option<Failure>,
    /// steps that ran to the end (recorded as done, or not when recording failed)
    completed: Vec<usize>,
    /// steps that failed, perhaps midway
    failed: Vec<usize>,
}

enum Event {
    Step(usize, Result<()>),
    Recorded(Vec<usize>, Result<()>),
}

/// Run the steps `todo` (0-based, in order), each once every step it depends
/// on is done, at most `limit` at once. A step counts as done (so its
/// dependents may start, and `on_done` hears of it) only once the journal
/// says so; steps that finish together are recorded by one statement, while
/// the others run on. After a failure nothing new starts; what runs finishes
/// and is recorded.
#[allow(clippy::too_many_arguments)]
async fn schedule<'a, F, Fut>(
    wh: &'a dyn Warehouse,
    release: i64,
    deps: &[Vec<usize>],
    todo: &[usize],
    done: &mut [bool],
    limit: usize,
    run: F,
    mut on_done: impl FnMut(usize),
) -> Ran
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<()>> + Send + 'a,
{
    use futures_util::future::BoxFuture;
    use futures_util::stream::{FuturesUnordered, StreamExt};
    let d = wh.dialect();
    let mut waiting: Vec<usize> = todo.to_vec();
    let mut inflight: FuturesUnordered<BoxFuture<'a, Event>> = FuturesUnordered::new();
    let (mut running, mut recording, mut can_record) = (0usize, false, true);
    let mut unrecorded = Vec::new();
    let mut ran = Ran { failure: None, completed: Vec::new(), failed: Vec::new() };
    loop {
        if ran.failure.is_none() {
            let mut i = 0;
            while running < limit.max(1) && i < waiting.len() {
                let k = waiting[i];
                if deps[k].iter().all(|&j| done[j]) {
                    waiting.remove(i);
                    running += 1;
                    let step = run(k);
                    inflight.push(Box::pin(async move { Event::Step(k, step.await) }));
                } else {
                    i += 1;
                }
            }
        }
        if !recording && can_record && !unrecorded.is_empty() {
            recording = true;
            let ks: Vec<usize> = std::mem::take(&mut unrecorded);
            let sql = mark_steps(d, release, &ks);
            inflight.push(Box::pin(async move {
                let r = wh.execute(&sql).await;
                Event::Recorded(ks, r)
            }));
        }
        let Some(event) = inflight.next().await else { break };
        match event {
            Event::Step(k, Ok(())) => {
                running -= 1;
                ran.completed.push(k);
                unrecorded.push(k);
            }
            Event::Step(k, Err(e)) => {
                running -= 1;
                ran.failed.push(k);
                ran.failure.get_or_insert(Failure::Step(k, e));
            }
            Event::Recorded(ks, Ok(())) => {
                recording = false;
                for k in ks {
                    done[k] = true;
                    on_done(k);
                }
            }
            Event::Recorded(ks, Err(e)) => {
                recording = false;
                can_record = false;
                let list: Vec<String> = ks.iter().map(|k| (k + 1).to_string()).collect();
                ran.failure.get_or_insert(Failure::Record(e.context(format!("recording publish step(s) {} as done", list.join(", ")))));
            }
        }
    }
    if ran.failure.is_none() {
        if let Some(&k) = waiting.first() {
            // a plan whose steps wait for one another: never happens with
            // plans from `publish::plan`, but must not pass for success
            ran.failure = Some(Failure::Step(k, anyhow::anyhow!("publish step {} waits for steps that never finish", k + 1)));
        }
    }
    ran
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

/// Undo `steps` (0-based number and step: those done, and those that may
/// have been in flight) in reverse, then close the release as
/// `recovered-back`/`failed` without backups. Returns what it did, a line
/// per step.
async fn undo(wh: &dyn Warehouse, release: &mut Release, steps: &[(usize, &Step)], mixed_ms: Option<i64>) -> Result<Vec<String>> {
    let d = wh.dialect();
    let mut lines = Vec::new();
    for &(k, step) in steps.iter().rev() {
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
/// (the audited objects); otherwise the publish is undone. Independent steps
/// run at most `concurrency` at once.
pub async fn recover(wh: &dyn Warehouse, release: &mut Release, force_undo: bool, concurrency: usize) -> Result<Recovery> {
    let d = wh.dialect();
    let id = release.id;
    let rows = read(wh, id).await?;
    if rows.is_empty() {
        bail!("release {id} is publishing but has no journal: it cannot be recovered automatically; inspect prod and the backups in {}", crate::publish::backup_schema(d, id));
    }
    let first_change = rows.iter().filter(|r| r.body.prod_change && r.state == "done").filter_map(|r| r.done_ms).min();
    let mixed_ms = first_change.map(|f| epoch_ms() - f).unwrap_or(0);
    // the steps that change the warehouse, in order (the journal numbers them 1..=n)
    let steps: Vec<&Row> = rows.iter().filter(|r| r.body.action != "ledger").collect();
    if steps.iter().enumerate().any(|(k, r)| r.step != k + 1) {
        bail!("the journal of release {id} has gaps in its step numbers: it cannot be recovered automatically; inspect prod and the backups in {}", crate::publish::backup_schema(d, id));
    }
    let bodies: Vec<Step> = steps.iter().map(|r| r.body.clone()).collect();
    let deps = crate::publish::dependencies(&bodies);
    let mut done: Vec<bool> = steps.iter().map(|r| r.state == "done").collect();
    let pending: Vec<usize> = (0..steps.len()).filter(|&k| !done[k]).collect();

    // forward only when everything still to do can be done: not a step done
    // outside airlock (dbt rebuilding prod), nor one whose inputs are gone
    let mut missing = Vec::new();
    let external: Vec<String> = pending.iter().filter(|&&k| bodies[k].external).map(|&k| format!("step {} ({} {})", k + 1, bodies[k].action, bodies[k].object)).collect();
    if !force_undo && external.is_empty() {
        let schemas: BTreeSet<String> = pending.iter().flat_map(|&k| bodies[k].needs.iter().chain(bodies[k].creates.iter()).map(|(s, _)| s.clone())).collect();
        let catalog = wh.catalog(&schemas.into_iter().collect::<Vec<_>>()).await?;
        let same = |a: &str, b: &str| if d.case_insensitive_names() { a.eq_ignore_ascii_case(b) } else { a == b };
        let exists = |(s, n): &(String, String)| catalog.iter().any(|e| same(&e.schema, s) && (n.is_empty() || same(&e.name, n)));
        for &k in &pending {
            for need in &bodies[k].needs {
                if !exists(need) {
                    missing.push(format!("{}.{}", need.0, need.1));
                }
            }
        }
        if missing.is_empty() {
            // a kept backup already there was made before the interruption:
            // making it again would keep the new object instead of the old
            let happened: BTreeSet<usize> = pending.iter().copied().filter(|&k| bodies[k].action == "keep" && bodies[k].creates.as_ref().is_some_and(exists)).collect();
            let bodies_ref = &bodies;
            let happened_ref = &happened;
            let run = |k: usize| async move {
                if happened_ref.contains(&k) {
                    return Ok(());
                }
                run_step(wh, &bodies_ref[k].sql).await.with_context(|| format!("completing step {} ({} {})", k + 1, bodies_ref[k].action, bodies_ref[k].object))
            };
            let ran = schedule(wh, id, &deps, &pending, &mut done, concurrency, run, |_| {}).await;
            match ran.failure {
                Some(Failure::Step(_, e)) | Some(Failure::Record(e)) => return Err(e),
                None => {}
            }
            let mut lines: Vec<String> = pending
                .iter()
                .map(|&k| {
                    let b = &bodies[k];
                    let how = if happened.contains(&k) { "had happened before the interruption" } else { "done" };
                    format!("step {} ({} {}): {how}", k + 1, b.action, b.object)
                })
                .collect();
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

    // back: what was done, and every step that may have been in flight (all
    // it waited for was done); undoing a step that had not started puts back
    // what is there already
    let to_undo: Vec<(usize, &Step)> = (0..bodies.len()).filter(|&k| done[k] || deps[k].iter().all(|&j| done[j])).map(|k| (k, &bodies[k])).collect();
    let mut lines = Vec::new();
    if !missing.is_empty() {
        lines.push(format!("cannot complete: {} no longer exist{}; undoing", missing.join(", "), if missing.len() == 1 { "s" } else { "" }));
    }
    if !external.is_empty() && !force_undo {
        lines.push(format!("cannot complete: {} is done outside airlock and did not finish; undoing", external.join(", ")));
    }
    lines.extend(undo(wh, release, &to_undo, Some(mixed_ms)).await?);
    release.status = "recovered-back".into();
    wh.execute_atomic(&[finish_statement(d, release), mark(d, id, None, "undone")]).await.context("recording the undo in the ledger")?;
    lines.push(format!("release {id} recorded as recovered-back: prod is as before release {id}"));
    Ok(Recovery { release: id, outcome: "recovered-back".into(), lines, mixed_ms })
}
