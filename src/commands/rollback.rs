//! `airlock rollback [--to RELEASE]`: make prod what it was right after a
//! retained release. Every release kept the versions it replaced, so the state
//! after release X is: for each object a later release changed, the version
//! the earliest such release replaced. The restore is itself a release (with
//! its own backups), published in one transaction.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::ExitStatus;
use crate::build::Catalog;
use crate::ledger::{self, Release, ReleaseObject};
use crate::publish::{self, Change, Desired};
use crate::report;
use crate::session::{lock_info, Session};
use crate::warehouse::{LockError, Warehouse};

#[derive(Serialize)]
struct RollbackReport {
    status: &'static str,
    release: i64,
    restored_release: i64,
    objects: Vec<String>,
    message: String,
}

pub async fn run(session: &Session, to: Option<i64>) -> Result<ExitStatus> {
    let wh = session.open_warehouse(false)?;
    match wh.lock(&lock_info("rollback", None)).await {
        Ok(()) => {}
        Err(LockError::Held { location, holder }) => bail!("{location} is locked by {holder}; cannot roll back while it runs"),
        Err(LockError::Other(e)) => return Err(e),
    }
    let result = restore(session, wh.clone(), to).await;
    wh.unlock().await?;
    result
}

async fn restore(session: &Session, wh: Arc<crate::warehouse::duckdb::DuckDb>, to: Option<i64>) -> Result<ExitStatus> {
    let d = wh.dialect();
    ledger::ensure(&*wh).await?;
    let all = ledger::releases(&*wh).await?;
    let published: Vec<&Release> = all.iter().filter(|r| r.status == "published").collect();
    let Some(current) = published.last() else { bail!("no published release to roll back in {}", wh.describe()) };
    let target = match to {
        Some(x) => {
            let Some(r) = all.iter().find(|r| r.id == x) else {
                let ids: Vec<String> = published.iter().map(|r| r.id.to_string()).collect();
                bail!("--to {x}: no such release (published releases: {})", ids.join(", "));
            };
            if r.status != "published" {
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
        let gone: Vec<String> = all.iter().filter(|r| r.id > target && r.status == "published" && r.backup_schema.is_none()).map(|r| r.id.to_string()).collect();
        bail!(
            "release {target} can no longer be restored: the backups of release {} were dropped (keep = {} in airlock.toml)",
            gone.join(", "),
            session.cfg.keep(session.registry.get(&session.cfg.strategy)?)
        );
    }
    let later: BTreeMap<i64, &Release> = all.iter().filter(|r| r.id > target && r.status == "published").map(|r| (r.id, r)).collect();
    let mut restore: BTreeMap<(String, String), ReleaseObject> = BTreeMap::new();
    for o in ledger::objects(&*wh, target).await? {
        if later.contains_key(&o.release_id) {
            restore.entry((o.schema.clone(), o.name.clone())).or_insert(o);
        }
    }
    let schemas: Vec<String> = restore.keys().map(|(s, _)| s.clone()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    let now = Catalog::new(wh.catalog(&schemas).await?);
    let (mut tables, mut views, mut drops) = (vec![], vec![], vec![]);
    for ((schema, name), o) in &restore {
        let prev = now.get(schema, name).cloned();
        let desired = match o.prev_kind.as_deref() {
            Some("table") => Desired::Table { from: o.backup_name.clone().context("the ledger names no backup for a replaced table")? },
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

    let id = ledger::next_id(&*wh).await?;
    wh.update_lock(&lock_info("rollback", Some(id))).await?;
    let mut release = Release {
        id,
        project: session.project().name.clone(),
        target: session.cfg.profile.target_name.clone(),
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
        backup_schema: Some(publish::backup_schema(id)),
        restores: Some(target),
    };
    wh.execute(&ledger::insert_statement(d, &release)).await?;
    release.status = "published".into();
    release.finished_at = Some(ledger::now());
    // restoring is copying tables back and re-creating views, object by object,
    // with the SQL of the configured strategy
    let mut strategy = session.registry.get(&session.cfg.strategy)?.clone();
    strategy.steps.publish = crate::strategy::Publish::Replace;
    let stmts = publish::statements(&strategy, d, &release, &changes, &[])?;
    if let Err(e) = wh.execute_atomic(&stmts).await {
        release.status = "error".into();
        let _ = wh.execute(&ledger::finish_statement(d, &release)).await;
        return Err(e.context("rolling back (nothing changed)"));
    }
    ledger::cleanup(&*wh, session.cfg.keep(&strategy) + 1).await?;
    let what = if target == 0 { "the state before the first release".to_string() } else { format!("release {target}") };
    let report = RollbackReport {
        status: "published",
        release: id,
        restored_release: target,
        objects: changes.iter().map(|c| d.relation(&c.schema, &c.name)).collect(),
        message: format!("release {id} restored {what}: {} object{} changed; the replaced versions are kept in {}", changes.len(), super::run::plural(changes.len()), publish::backup_schema(id)),
    };
    if session.cfg.format == crate::cli::Format::Json {
        report::json(&report);
    } else {
        report::emit(&report.message);
    }
    Ok(ExitStatus::Success)
}
