//! `airlock deploy` and `airlock build`: lock, build into audit, gate, and
//! (deploy only) publish in one transaction with the ledger. The release row
//! always ends in a final status, whatever stops the run.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};

use super::ExitStatus;
use crate::build::{self, Catalog, Counts, Outcome, StepResult};
use crate::interrupt::Interrupt;
use crate::ledger::lock::LockGuard;
use crate::ledger::{self, Release};
use crate::prepare::{prepare, Prepared};
use crate::project::NodeKind;
use crate::publish;
use crate::report::{self, NodeError, NodeLine, Progress, RunReport, TestFailure};
use crate::session::Session;
use crate::strategy::Publish;
use crate::warehouse::{Recording, StatementLog, Warehouse};

pub async fn run(session: &Session, publish: bool, statement_log: Option<&std::path::Path>) -> Result<ExitStatus> {
    let started = Instant::now();
    let command = if publish { "deploy" } else { "build" };
    // a strategy that cannot run on this selection is refused before anything is written
    let selected = crate::prepare::scoped_selection(session, session.registry.get(&session.cfg.strategy)?)?;
    let log = statement_log.map(StatementLog::create).transpose()?;
    let wh = Arc::new(Recording::new(session.open_warehouse(false)?, log));
    let dyn_wh: Arc<dyn Warehouse> = wh.clone();
    // what the run reads but never creates must be there before anything is written
    dyn_wh.check_reads(&source_reads(session, &selected)).await?;
    let guard = LockGuard::acquire(dyn_wh.clone(), command).await?;
    let interrupt = Interrupt::install(dyn_wh.clone())?;
    let mut release = None;
    let result = pipeline(session, &wh, publish, started, &guard, &interrupt, &mut release).await;
    let result = close_release(&*wh, result, release.as_mut(), &interrupt).await;
    // closes the warehouse first (DuckDB: the final checkpoint), then the lock
    let unlocked = guard.release().await;
    wh.finish_log();
    let status = result?;
    unlocked?;
    Ok(status)
}

/// The sources the selection reads: (what, schema, table).
fn source_reads(session: &Session, selected: &std::collections::BTreeSet<crate::project::NodeId>) -> Vec<(String, String, String)> {
    let project = session.project();
    let sources: std::collections::BTreeSet<&crate::project::NodeId> =
        selected.iter().flat_map(|id| project.node(id).depends_on.iter()).filter(|d| project.node(d).kind == NodeKind::Source).collect();
    sources
        .into_iter()
        .map(|id| {
            let node = project.node(id);
            let rel = session.layout.source_relation(node);
            (format!("source '{}' ({})", node.name, node.path.display()), rel.schema, rel.identifier)
        })
        .collect()
}

/// Whatever ended the run, the release row gets a final status: `failed` for
/// an error, `interrupted` for a signal (and the signal's exit code).
pub(crate) async fn close_release(wh: &dyn Warehouse, result: Result<ExitStatus>, release: Option<&mut Release>, interrupt: &Interrupt) -> Result<ExitStatus> {
    let result = match (result, interrupt.exit_code()) {
        (Ok(status), _) => Ok(status),
        // a step cut short by the signal surfaces as an error: it is the interrupt
        (Err(e), Some(code)) => {
            tracing::debug!("stopped by the signal: {e:#}");
            eprintln!("airlock: interrupted: nothing published, prod untouched; the lock is released");
            Ok(ExitStatus::Interrupted(code))
        }
        (Err(e), None) => Err(e),
    };
    if let Some(r) = release {
        if r.status == "publishing" {
            eprintln!("airlock: release {} stopped in the middle of its publish: prod may be mixed until `airlock recover` completes or undoes it", r.id);
        } else if r.status == "running" {
            let status = match &result {
                Ok(ExitStatus::Interrupted(_)) => "interrupted",
                Ok(ExitStatus::Blocked) => "blocked",
                _ => "failed",
            };
            r.status = status.to_string();
            r.finished_at = Some(ledger::now());
            if let Err(e) = wh.execute(&ledger::finish_statement(wh.dialect(), r)).await {
                eprintln!("airlock: warning: could not record release {} as {status}: {e:#}", r.id);
            }
        }
    }
    result
}

async fn pipeline(
    session: &Session,
    wh: &Arc<Recording>,
    publish: bool,
    started: Instant,
    guard: &LockGuard,
    interrupt: &Interrupt,
    release: &mut Option<Release>,
) -> Result<ExitStatus> {
    let command = if publish { "deploy" } else { "build" };
    let cfg = &session.cfg;
    let strategy = session.registry.get(&cfg.strategy)?;
    let project = session.project();
    let layout = &session.layout;
    let dialect = layout.dialect;
    let dyn_wh: Arc<dyn Warehouse> = wh.clone();

    ledger::ensure(&**wh).await?;
    ledger::refuse_if_publishing(&**wh, command).await?;
    // we hold the lock: a release still `running` belongs to a process that is gone
    for id in ledger::close_abandoned(&**wh).await? {
        eprintln!("airlock: release {id} was left running by a process that is gone; recorded as interrupted");
    }
    if publish {
        let id = ledger::next_id(&**wh).await?;
        let r = Release {
            id,
            project: project.name.clone(),
            target: cfg.profile.target_name.clone(),
            strategy: strategy.name.clone(),
            selection: cfg.selection_text(),
            started_at: ledger::now(),
            finished_at: None,
            status: "running".into(),
            built: 0,
            tests: 0,
            failed: 0,
            warned: 0,
            published: 0,
            git_commit: ledger::git_commit(&cfg.project_dir),
            backup_schema: None,
            restores: None,
            mixed_ms: None,
        };
        wh.execute(&ledger::insert_statement(dialect, &r)).await?;
        *release = Some(r);
        guard.set_release(id).await?;
    }

    let prod_schemas: Vec<String> = session.all_prod_schemas().into_iter().collect();
    let prod = Catalog::new(wh.dialect(), wh.catalog(&prod_schemas).await?);
    let mut prepared = prepare(session, strategy, &prod)?;
    crate::phase::mark("deploy: prepared");
    let audit_schemas: Vec<String> = match session.layout.audit_db() {
        Some(db) => vec![db.to_string()],
        None => prepared.locations.iter().map(|(_, a)| a.clone()).collect(),
    };
    // a clean audit location (staged from prod where the strategy says so):
    // nothing from an earlier run may leak into this gate
    wh.execute_atomic(&prepared.prep).await.context("preparing the audit location")?;
    for hook in &prepared.on_run_start {
        wh.execute(hook).await.context("on-run-start hook (dbt_project.yml) failed: nothing built")?;
    }
    // the steps move into the run: `prepare` shares them with nothing, and a
    // copy would hold every rendered statement twice during the build
    let steps = Arc::try_unwrap(std::mem::take(&mut prepared.steps)).unwrap_or_else(|shared| (*shared).clone());

    let progress = Progress::new(steps.iter().map(|s| s.group.len().max(1)).sum(), command);
    let results = build::run_steps(dyn_wh.clone(), project, steps, cfg.threads, &progress, interrupt.stop_flag()).await;
    progress.finish();
    if interrupt.exit_code().is_none() {
        for hook in &prepared.on_run_end {
            wh.execute(hook).await.context("on-run-end hook (dbt_project.yml) failed: nothing published")?;
        }
    }
    crate::phase::mark("deploy: built and tested");
    let counts = Counts::of(&results, project);

    let mut report = RunReport {
        command: command.into(),
        status: String::new(),
        release: release.as_ref().map(|r| r.id),
        project: project.name.clone(),
        target: cfg.profile.target_name.clone(),
        warehouse: wh.describe(),
        strategy: Some(strategy.name.clone()),
        selection: cfg.selection_text(),
        counts,
        nodes: node_lines(session, &results),
        failures: failures(session, &results),
        errors: errors(session, &results),
        published: vec![],
        audit_schemas: audit_schemas.clone(),
        warnings: vec![],
        seconds: 0.0,
        message: String::new(),
    };
    if let Some(r) = release.as_mut() {
        fill_counts(r, &counts, 0);
    }

    let kept = format!("the audit build is kept in {} for inspection", audit_schemas.join(", "));
    let exit = if let Some(code) = interrupt.exit_code() {
        report.status = "interrupted".into();
        report.message = format!("interrupted: nothing published, prod untouched; {kept}");
        ExitStatus::Interrupted(code)
    } else if counts.errors > 0 {
        report.status = "error".into();
        report.message = format!("{} node{} failed to build: nothing published, prod untouched; {kept}", counts.errors, plural(counts.errors));
        ExitStatus::Error
    } else if counts.failed > 0 || counts.no_verdict > 0 {
        report.status = "blocked".into();
        let mut why = Vec::new();
        if counts.failed > 0 {
            why.push(format!("{} failing test{}", counts.failed, plural(counts.failed)));
        }
        if counts.no_verdict > 0 {
            why.push(format!("{} test{} that gave no verdict", counts.no_verdict, plural(counts.no_verdict)));
        }
        report.message = format!("gate blocked by {}: nothing published, prod untouched; {kept}", why.join(" and "));
        ExitStatus::Blocked
    } else if !publish {
        report.status = "audited".into();
        report.message = format!("gate green; audit build in {} (build never publishes)", audit_schemas.join(", "));
        ExitStatus::Success
    } else if !interrupt.enter_publish() {
        report.status = "interrupted".into();
        report.message = format!("interrupted before publishing: nothing published, prod untouched; {kept}");
        ExitStatus::Interrupted(interrupt.exit_code().unwrap_or(130))
    } else {
        let r = release.as_mut().expect("deploy has a release");
        publish_release(session, wh, r, &prepared, &mut report).await?
    };
    if let Some(r) = release.as_mut() {
        if r.status == "running" {
            r.status = match exit {
                ExitStatus::Blocked => "blocked",
                ExitStatus::Interrupted(_) => "interrupted",
                _ => "failed",
            }
            .into();
            r.finished_at = Some(ledger::now());
            fill_counts(r, &counts, 0);
            wh.execute(&ledger::finish_statement(dialect, r)).await.with_context(|| format!("recording release {} as {}", r.id, r.status))?;
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    report::print_run(&report, cfg.format);
    Ok(exit)
}

/// Publish a green release. Everything after the publish commit (checks that
/// can restore, dropping the audit location, old backups) can fail only as a
/// warning: a published release exits 0 and says `published`.
async fn publish_release(session: &Session, wh: &Arc<Recording>, r: &mut Release, prepared: &Prepared<'_>, report: &mut RunReport) -> Result<ExitStatus> {
    let cfg = &session.cfg;
    let strategy = prepared.strategy;
    let dialect = session.layout.dialect;
    // a table the warehouse cannot replace in place is dropped first, journaled
    let (changes, layout_notes) = publish::recreate_where_layout_differs(&**wh, dialect, &prepared.changes, Some(&session.layout), true).await?;
    let changes = &changes;
    for note in layout_notes {
        eprintln!("airlock: {note}");
    }
    r.finished_at = Some(ledger::now());
    r.backup_schema = Some(publish::backup_schema(dialect, r.id));
    r.published = changes.len() as i64;
    // privileges on prod, carried over by every step and compared at the end
    let prod_locations: Vec<String> = prepared.locations.iter().map(|(p, _)| p.clone()).collect();
    let (grants, grant_check) = crate::grants::before_publish(&**wh, changes, &prod_locations, session.layout.audit_database.as_ref().map(|a| a.prod.as_str())).await?;
    let mut plan = publish::plan(strategy, dialect, r, changes, &prepared.locations, session.layout.audit_database.as_ref(), &grants)?;
    plan.grant_check = grant_check;
    crate::phase::mark("deploy: publishing");
    if let Err(e) = ledger::journal::publish(&**wh, r, &plan, cfg.publish_concurrency).await {
        if r.status != "publishing" {
            r.backup_schema = None;
        }
        return Err(e);
    }
    report.published = changes.iter().map(|c| dialect.relation(&c.schema, &c.name)).collect();

    // wap: what was rebuilt in prod must be what was gated
    if strategy.steps.publish == Publish::Rebuild {
        let differ = publish::compare_rebuilt(&**wh, dialect, changes, &session.layout).await?;
        if !differ.is_empty() {
            let list = differ.join("; ");
            if strategy.param_str("verify").as_deref() == Some("warn") {
                report.warnings.push(format!("rebuilt in prod but different from the audited twin (verify = \"warn\"): {list}"));
            } else {
                let restore = publish::restore_statements(dialect, r, &plan)?;
                wh.execute_atomic(&restore).await.context("restoring prod after the wap check failed")?;
                r.status = "failed".into();
                r.backup_schema = None;
                report.status = "failed".into();
                report.published.clear();
                report.message = format!(
                    "release {} failed: rebuilt in prod, different from what the gate passed: {list}; prod restored to its state before the publish \
                     (a non-deterministic model? set verify = \"warn\" in the wap strategy's [params] to publish anyway)",
                    r.id
                );
                return Ok(ExitStatus::Error);
            }
        }
    }

    crate::phase::mark("deploy: published");
    // the audit copies are spent; prod and the backups hold everything
    let drops = session.layout.drop_audit(&prod_locations);
    let keep = cfg.keep(strategy);
    let cleanup = async {
        if crate::failpoint::is_set(&crate::failpoint::Point::CleanupError) {
            anyhow::bail!("failpoint cleanup:error");
        }
        wh.execute_atomic(&drops).await.context("dropping the audit schemas")?;
        ledger::cleanup(&**wh, keep).await
    };
    let dropped = match cleanup.await {
        Ok(d) => d,
        Err(e) => {
            report.warnings.push(format!("published, but the cleanup after it failed (nothing to undo; it is retried by the next deploy): {e:#}"));
            vec![]
        }
    };
    crate::phase::mark("deploy: audit dropped");
    report.status = "published".into();
    report.message = format!(
        "release {} published: {} object{} in prod; previous versions kept in {}{}",
        r.id,
        changes.len(),
        plural(changes.len()),
        r.backup_schema.as_deref().unwrap_or_default(),
        if dropped.is_empty() { String::new() } else { format!("; backups of release{} {} dropped (keep = {keep})", plural(dropped.len()), join_ids(&dropped)) }
    );
    if !prepared.unbuilt_tagged.is_empty() {
        report.message.push_str(&format!(
            "\nnot published (tagged {}, but not built in this run): {}",
            strategy.param_list("tags").join(", "),
            prepared.unbuilt_tagged.join(", ")
        ));
    }
    Ok(ExitStatus::Success)
}

fn fill_counts(r: &mut Release, c: &Counts, published: usize) {
    r.built = c.built as i64;
    r.tests = c.tests as i64;
    r.failed = c.failed as i64;
    r.warned = c.warned as i64;
    r.published = published as i64;
}

fn node_lines(session: &Session, results: &[StepResult]) -> Vec<NodeLine> {
    let mut lines: Vec<NodeLine> = results
        .iter()
        .map(|r| {
            let n = session.project().node(&r.id);
            NodeLine {
                name: n.name.clone(),
                kind: n.kind.as_str().into(),
                materialization: if n.kind == NodeKind::Test { "test".into() } else { n.materialization.as_str().into() },
                status: match &r.outcome {
                    Outcome::Built => "built".into(),
                    Outcome::Pass => "pass".into(),
                    Outcome::Warn { .. } => "warn".into(),
                    Outcome::Fail { .. } => "fail".into(),
                    Outcome::Error { .. } => "error".into(),
                    Outcome::Skipped { because } => format!("skipped ({because} failed)"),
                },
                seconds: r.micros as f64 / 1e6,
                rows: r.rows.filter(|_| n.kind != NodeKind::Test),
            }
        })
        .collect();
    let order: std::collections::HashMap<String, usize> = session.dag.topo_order().iter().enumerate().map(|(i, id)| (session.project().node(id).name.clone(), i)).collect();
    lines.sort_by_key(|l| (order.get(&l.name).copied().unwrap_or(usize::MAX), l.name.clone()));
    lines
}

fn failures(session: &Session, results: &[StepResult]) -> Vec<TestFailure> {
    let mut out: Vec<TestFailure> = results
        .iter()
        .filter_map(|r| {
            let (failures, sample, severity) = match &r.outcome {
                Outcome::Fail { failures, sample } => (*failures, sample.clone(), "error"),
                Outcome::Warn { failures, sample } => (*failures, sample.clone(), "warn"),
                _ => return None,
            };
            let n = session.project().node(&r.id);
            let on = n.attached_to.as_deref().map(|a| session.project().node(a).name.clone()).unwrap_or_default();
            Some(TestFailure { test: crate::gate::describe(n), name: n.name.clone(), on, severity: severity.into(), failures, sample })
        })
        .collect();
    out.sort_by(|a, b| (a.severity != "error", &a.name).cmp(&(b.severity != "error", &b.name)));
    out
}

fn errors(session: &Session, results: &[StepResult]) -> Vec<NodeError> {
    let mut out: Vec<NodeError> = results
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Error { message } => {
                let n = session.project().node(&r.id);
                Some(NodeError { node: format!("{} ({})", n.name, n.path.display()), message: message.clone() })
            }
            _ => None,
        })
        .collect();
    out.sort_by(|a, b| a.node.cmp(&b.node));
    out
}

pub fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn join_ids(ids: &[i64]) -> String {
    ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}
