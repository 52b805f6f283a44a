//! `airlock rollback [--to RELEASE]`: make prod what it was right after a
//! retained release. Every release kept the versions it replaced, so the state
//! after release X is: for each object a later release changed, the version
//! the earliest such release replaced. The restore is itself a release (with
//! its own backups), published in one transaction with its ledger rows.
//!
//! Rollback needs only the profile and the ledger, never the project (a
//! broken model is the usual reason to roll back), and restores with the SQL
//! of the strategy recorded in the release it undoes.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::ExitStatus;
use crate::build::Catalog;
use crate::ledger::{self, Release, ReleaseObject};
use crate::publish::{self, Change, Desired};
use crate::config::RunConfig;
use crate::ledger::lock::LockGuard;
use crate::report;
use crate::warehouse::Warehouse;

#[derive(Serialize)]
struct RollbackReport {
    status: &'static str,
    release: i64,
    restored_release: i64,
    objects: Vec<String>,
    message: String,
}

pub async fn run(cfg: &RunConfig, to: Option<i64>) -> Result<ExitStatus> {
    let wh = cfg.open_warehouse(false)?;
    let guard = LockGuard::acquire(wh.clone(), "rollback").await?;
    let result = restore(cfg, wh.clone(), &guard, to).await;
    guard.release().await?;
    result
}

async fn restore(cfg: &RunConfig, wh: Arc<dyn Warehouse>, guard: &LockGuard, to: Option<i64>) -> Result<ExitStatus> {
    let d = wh.dialect();
    ledger::ensure(&*wh).await?;
    ledger::refuse_if_publishing(&*wh, "rollback").await?;
    for id in ledger::close_abandoned(&*wh).await? {
        eprintln!("airlock: release {id} was left running by a process that is gone; recorded as interrupted");
    }
    let registry = crate::strategy::Registry::load(Some(&cfg.strategies_dir))?.apply(&cfg.settings.deploy);
    let all = ledger::releases(&*wh).await?;
    let published: Vec<&Release> = all.iter().filter(|r| r.is_published()).collect();
    let Some(current) = published.last() else { bail!("no published release to roll back in {}", wh.describe()) };
    let target = match to {
        Some(x) => {
            let Some(r) = all.iter().find(|r| r.id == x) else {
                let ids: Vec<String> = published.iter().map(|r| r.id.to_string()).collect();
                bail!("--to {x}: no such release (published releases: {})", ids.join(", "));
            };
            if !r.is_published() {
                bail!("--to {x}: release {x} was {}, never published; choose a published release (see `airlock history`)", r.status);
            }
            if x == current.id {
                bail!("--to {x}: release {x} is what prod holds now; nothing to roll back");
            }
            x
        }
        // the release before the one in effect; 0 = before the first release
        None => published.iter().rev().nth(1).map(|r| r.id).unwrap_or(0),
    };
    if !ledger::restorable(&all, target) {
        let gone: Vec<String> = all.iter().filter(|r| r.id > target && r.is_published() && r.backup_schema.is_none()).map(|r| r.id.to_string()).collect();
        bail!(
            "release {target} can no longer be restored: the backups of release {} were dropped (keep = {} in airlock.toml)",
            gone.join(", "),
            cfg.settings.deploy.keep.map(|k| k.to_string()).unwrap_or_else(|| "the strategy's".into())
        );
    }
    let later: BTreeMap<i64, &Release> = all.iter().filter(|r| r.id > target && r.is_published()).map(|r| (r.id, r)).collect();
    let mut restore: BTreeMap<(String, String), ReleaseObject> = BTreeMap::new();
    for o in ledger::objects(&*wh, target).await? {
        if later.contains_key(&o.release_id) {
            restore.entry((o.schema.clone(), o.name.clone())).or_insert(o);
        }
    }
    let schemas: Vec<String> = restore.keys().map(|(s, _)| s.clone()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    let now = Catalog::new(wh.dialect(), wh.catalog(&schemas).await?);
    let (mut tables, mut views, mut drops) = (vec![], vec![], vec![]);
    for ((schema, name), o) in &restore {
        let prev = now.get(schema, name).cloned();
        let desired = match o.prev_kind.as_deref() {
            Some("table") => {
                let from = o.backup_name.clone().context("the ledger names no backup for a replaced table")?;
                let (database, schema, name) = d.split_qualified(&from).with_context(|| format!("the ledger's backup name {from} is not a relation"))?;
                // a backup in another database (a database swap's demoted
                // one) is not in the session's catalog: its clone says if it is gone
                Desired::Table { source: database.is_none().then_some((schema, name)), from }
            }
            Some(_) => Desired::ViewDdl { ddl: o.prev_view_ddl.clone().unwrap_or_default() },
            None => Desired::Absent,
        };
        if matches!(desired, Desired::Absent) && prev.is_none() {
            continue;
        }
        let change = Change { schema: schema.clone(), name: name.clone(), desired, prev };
        match change.desired {
            Desired::Table { .. } => tables.push(change),
            Desired::Absent => drops.push(change),
            _ => views.push(change),
        }
    }
    tables.extend(views);
    tables.extend(drops);
    let changes = tables;

    // restore with the SQL of the strategy that published what is undone
    // (a rollback release has no strategy of its own: take the newest publish
    // it undoes, else the newest publish there is)
    let publishes = |r: &Release| r.restores.is_none() && r.is_published();
    let undone = later
        .values()
        .rev()
        .copied()
        .find(|r| publishes(r))
        .or_else(|| all.iter().rev().find(|r| publishes(r)))
        .map(|r| r.strategy.clone())
        .with_context(|| format!("no release before {} names the strategy to restore with", current.id))?;
    let mut strategy = registry
        .get(&undone)
        .with_context(|| format!("release {} was published with strategy '{undone}', whose file is needed to restore it", current.id))?
        .clone();
    strategy.steps.publish = crate::strategy::Publish::Replace;

    let id = ledger::next_id(&*wh).await?;
    guard.set_release(id).await?;
    let mut release = Release {
        id,
        project: cfg.header.name.clone(),
        target: cfg.profile.target_name.clone(),
        strategy: "rollback".into(),
        selection: format!("rollback --to {target}"),
        started_at: ledger::now(),
        finished_at: None,
        status: "running".into(),
        built: 0,
        tests: 0,
        failed: 0,
        warned: 0,
        published: changes.len() as i64,
        git_commit: None,
        backup_schema: Some(publish::backup_schema(d, id)),
        restores: Some(target),
        mixed_ms: None,
    };
    // a rollback is a release, published through the journal like any other
    wh.execute(&ledger::insert_statement(d, &release)).await?;
    release.finished_at = Some(ledger::now());
    // a table the warehouse cannot replace in place by its backup is dropped first, journaled
    let (changes, layout_notes) = publish::recreate_where_layout_differs(&*wh, d, &changes, None, true).await?;
    for note in layout_notes {
        eprintln!("airlock: {note}");
    }
    // privileges on prod are kept and checked as by any publish
    let (grants, grant_check) = crate::grants::before_publish(&*wh, &changes, &schemas, cfg.audit_database.as_ref().map(|a| a.prod.as_str())).await?;
    let mut plan = publish::plan(&strategy, d, &release, &changes, &[], None, &grants)?;
    plan.grant_check = grant_check;
    if let Err(e) = ledger::journal::publish(&*wh, &mut release, &plan, cfg.publish_concurrency).await {
        if release.status == "running" {
            release.status = "failed".into();
            release.backup_schema = None;
            let _ = wh.execute(&ledger::finish_statement(d, &release)).await;
        }
        return Err(e.context("rolling back"));
    }
    if let Err(e) = ledger::cleanup(&*wh, cfg.keep(&strategy) + 1).await {
        eprintln!("airlock: warning: rolled back, but dropping old backups failed (retried by the next deploy): {e:#}");
    }
    let what = if target == 0 { "the state before the first release".to_string() } else { format!("release {target}") };
    let report = RollbackReport {
        status: "published",
        release: id,
        restored_release: target,
        objects: changes.iter().map(|c| d.relation(&c.schema, &c.name)).collect(),
        message: format!("release {id} restored {what}: {} object{} changed; the replaced versions are kept in {}", changes.len(), super::run::plural(changes.len()), publish::backup_schema(d, id)),
    };
    if cfg.format == crate::cli::Format::Json {
        report::json(&report);
    } else {
        report::emit(&report.message);
    }
    Ok(ExitStatus::Success)
}
