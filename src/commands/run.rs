//! `airlock deploy` and `airlock build`: lock, build into audit, gate, and
//! (deploy only) publish in one transaction with the ledger.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};

use super::ExitStatus;
use crate::build::{self, Catalog, Counts, Outcome, StepResult};
use crate::ledger::{self, Release};
use crate::prepare::prepare;
use crate::project::NodeKind;
use crate::publish;
use crate::report::{self, NodeError, NodeLine, Progress, RunReport, TestFailure};
use crate::session::{lock_info, Session};
use crate::warehouse::{LockError, Recording, Warehouse};

pub async fn run(session: &Session, publish: bool, statement_log: Option<&std::path::Path>) -> Result<ExitStatus> {
    let started = Instant::now();
    let command = if publish { "deploy" } else { "build" };
    // a strategy that cannot run on this selection is refused before anything is written
    crate::prepare::scoped_selection(session, session.registry.get(&session.cfg.strategy)?)?;
    let duck = session.open_warehouse(false)?;
    let wh = Arc::new(Recording::new(duck.clone()));
    match wh.lock(&lock_info(command, None)).await {
        Ok(()) => {}
        Err(LockError::Held { location, holder }) => {
            anyhow::bail!("{location} is locked by {holder}; a second {command} cannot run at the same time. If that process is gone, run `airlock unlock`")
        }
        Err(LockError::Other(e)) => return Err(e),
    }
    let result = pipeline(session, &wh, publish, started).await;
    let unlocked = wh.unlock().await;
    if let Some(path) = statement_log {
        write_statement_log(path, &wh)?;
    }
    let status = result?;
    unlocked?;
    Ok(status)
}

fn write_statement_log(path: &std::path::Path, wh: &Recording) -> Result<()> {
    let mut text = String::new();
    for s in wh.statements() {
        text.push_str(&serde_json::to_string(&s)?);
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("cannot write --statement-log {}", path.display()))
}

async fn pipeline(session: &Session, wh: &Arc<Recording>, publish: bool, started: Instant) -> Result<ExitStatus> {
    let command = if publish { "deploy" } else { "build" };
    let cfg = &session.cfg;
    let strategy = session.registry.get(&cfg.strategy)?;
    let project = session.project();
    let layout = &session.layout;
    let dialect = layout.dialect;
    let dyn_wh: Arc<dyn Warehouse> = wh.clone();

    ledger::ensure(&**wh).await?;
    let mut release = None;
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
        };
        wh.execute(&ledger::insert_statement(dialect, &r)).await?;
        wh.update_lock(&lock_info("deploy", Some(id))).await?;
        release = Some(r);
    }

    let prod_schemas: Vec<String> = session.all_prod_schemas().into_iter().collect();
    let prod = Catalog::new(wh.catalog(&prod_schemas).await?);
    let prepared = match prepare(session, strategy, &prod) {
        Ok(p) => p,
        Err(e) => {
            if let Some(r) = &mut release {
                close(&**wh, r, "error", &Counts::default(), 0).await;
            }
            return Err(e);
        }
    };
    let audit_schemas: Vec<String> = prepared.locations.iter().map(|(_, a)| a.clone()).collect();
    // a clean audit location (staged from prod where the strategy says so):
    // nothing from an earlier run may leak into this gate
    wh.execute_atomic(&prepared.prep).await.context("preparing the audit location")?;
    let steps = prepared.steps.clone();

    let progress = Progress::new(steps.iter().map(|s| s.group.len().max(1)).sum(), command);
    let results = build::run_steps(dyn_wh.clone(), project, steps, cfg.threads, &progress).await;
    progress.finish();
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
        seconds: 0.0,
        message: String::new(),
    };

    let exit = if counts.errors > 0 {
        report.status = "error".into();
        report.message = format!("{} node{} failed to build: nothing published, prod untouched; the audit build is kept in {} for inspection", counts.errors, plural(counts.errors), audit_schemas.join(", "));
        ExitStatus::Error
    } else if counts.failed > 0 {
        report.status = "blocked".into();
        report.message = format!("gate blocked by {} failing test{}: nothing published, prod untouched; the audit build is kept in {} for inspection", counts.failed, plural(counts.failed), audit_schemas.join(", "));
        ExitStatus::Blocked
    } else if !publish {
        report.status = "audited".into();
        report.message = format!("gate green; audit build in {} (build never publishes)", audit_schemas.join(", "));
        ExitStatus::Success
    } else {
        let r = release.as_mut().expect("deploy has a release");
        let changes = &prepared.changes;
        r.status = "published".into();
        r.finished_at = Some(ledger::now());
        r.backup_schema = Some(publish::backup_schema(r.id));
        fill_counts(r, &counts, changes.len());
        let stmts = publish::statements(strategy, dialect, r, changes, &prepared.locations)?;
        wh.execute_atomic(&stmts).await.context("publishing (rolled back: prod untouched)")?;
        report.published = changes.iter().map(|c| dialect.relation(&c.schema, &c.name)).collect();
        // the audit copies are spent; prod and the backups hold everything
        let drops: Vec<String> = audit_schemas.iter().map(|s| format!("DROP SCHEMA IF EXISTS {} CASCADE", dialect.quote(s))).collect();
        if let Err(e) = wh.execute_atomic(&drops).await {
            tracing::warn!("could not drop the audit schemas: {e:#}");
        }
        let keep = cfg.keep(strategy);
        let dropped = ledger::cleanup(&**wh, keep).await?;
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
        ExitStatus::Success
    };
    if let Some(r) = &mut release {
        if r.status == "running" {
            close(&**wh, r, &report.status.clone(), &counts, 0).await;
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    report::print_run(&report, cfg.format);
    Ok(exit)
}


fn fill_counts(r: &mut Release, c: &Counts, published: usize) {
    r.built = c.built as i64;
    r.tests = c.tests as i64;
    r.failed = c.failed as i64;
    r.warned = c.warned as i64;
    r.published = published as i64;
}

/// Record how a release ended when it did not publish. Best effort: the
/// report of what happened matters more than the ledger row.
async fn close(wh: &dyn Warehouse, r: &mut Release, status: &str, c: &Counts, published: usize) {
    r.status = status.to_string();
    r.finished_at = Some(ledger::now());
    fill_counts(r, c, published);
    if let Err(e) = wh.execute(&ledger::finish_statement(wh.dialect(), r)).await {
        tracing::warn!("could not record release {} as {status}: {e:#}", r.id);
    }
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
