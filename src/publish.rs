//! Making prod what was audited. The statements come from the strategy's SQL
//! templates for the dialect: location-level (`swap_location`,
//! `clone_location`) where the strategy has them for this dialect, per object
//! otherwise. Every replaced prod object is first kept in the release's backup
//! location (the rollback point), and the ledger rows are part of the same
//! batch, which runs as one transaction where DDL is transactional (DuckDB).

use std::collections::BTreeSet;

use anyhow::Result;

use crate::ledger::{self, Release, ReleaseObject};
use crate::strategy::{Publish, Strategy};
use crate::warehouse::{CatalogEntry, Dialect, ObjectKind};

/// What a prod object should become.
#[derive(Debug, Clone)]
pub enum Desired {
    /// a table cloned/copied from this relation (audit or backup)
    Table { from: String },
    /// a table rebuilt in prod from this SELECT (wap)
    Rebuild { select: String },
    /// a view with this SELECT, rendered against prod names
    View { select: String },
    /// a view re-created from stored DDL (rollback)
    ViewDdl { ddl: String },
    /// no object (rollback of an object a release created)
    Absent,
}

impl Desired {
    fn kind(&self) -> &'static str {
        match self {
            Desired::Table { .. } | Desired::Rebuild { .. } => "table",
            Desired::View { .. } | Desired::ViewDdl { .. } => "view",
            Desired::Absent => "absent",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Change {
    pub schema: String,
    pub name: String,
    pub desired: Desired,
    /// what prod holds now
    pub prev: Option<CatalogEntry>,
}

pub fn backup_schema(release: i64) -> String {
    format!("airlock_r{release}")
}

/// Statements that apply `changes` (in order) and close the release in the
/// ledger. `locations`: (prod, audit) schema pairs, for location-level publish.
pub fn statements(strategy: &Strategy, d: Dialect, release: &Release, changes: &[Change], locations: &[(String, String)]) -> Result<Vec<String>> {
    let backup = release.backup_schema.clone().unwrap_or_else(|| backup_schema(release.id));
    let location_level = match strategy.steps.publish {
        Publish::Swap => strategy.template(d, "swap_location").is_some(),
        Publish::CloneBack => strategy.template(d, "clone_location").is_some() && strategy.template(d, "snapshot_location").is_some(),
        _ => false,
    };
    let mut out = Vec::new();
    if location_level {
        for (prod, audit) in locations {
            let kept = d.quote(&format!("{backup}__{prod}"));
            let (p, a) = (d.quote(prod), d.quote(audit));
            if strategy.steps.publish == Publish::Swap {
                out.push(strategy.render(d, "swap_location", &[("audit", &a), ("prod", &p)])?);
                out.push(strategy.render(d, "keep_demoted", &[("audit", &a), ("backup", &kept)])?);
            } else {
                out.push(strategy.render(d, "snapshot_location", &[("source", &p), ("target", &kept)])?);
                out.push(strategy.render(d, "clone_location", &[("source", &a), ("target", &p)])?);
            }
        }
        let objects: Vec<ReleaseObject> = changes
            .iter()
            .map(|c| {
                let kept = format!("{backup}__{}", c.schema);
                object(release, c, |_| Some(d.relation(&kept, &c.name)))
            })
            .collect();
        out.extend(ledger::objects_statement(d, &objects));
        out.push(ledger::finish_statement(d, release));
        return Ok(out);
    }

    out.push(format!("CREATE SCHEMA IF NOT EXISTS {}", d.quote(&backup)));
    let schemas: BTreeSet<&str> = changes.iter().filter(|c| !matches!(c.desired, Desired::Absent)).map(|c| c.schema.as_str()).collect();
    for s in schemas {
        out.push(format!("CREATE SCHEMA IF NOT EXISTS {}", d.quote(s)));
    }
    let mut objects = Vec::with_capacity(changes.len());
    for c in changes {
        let prod = d.relation(&c.schema, &c.name);
        let kept = d.relation(&backup, &format!("{}__{}", c.schema, c.name));
        // keep what prod holds now
        if c.prev.as_ref().is_some_and(|p| p.kind == ObjectKind::Table) {
            out.push(strategy.render(d, "snapshot_table", &[("source", &prod), ("target", &kept)])?);
        }
        // a kind change or a removal drops the old object first
        if let Some(p) = &c.prev {
            if p.kind.as_str() != c.desired.kind() || matches!(c.desired, Desired::ViewDdl { .. }) {
                out.push(format!("DROP {} IF EXISTS {prod}", if p.kind == ObjectKind::Table { "TABLE" } else { "VIEW" }));
            }
        }
        match &c.desired {
            Desired::Table { from } => out.push(strategy.render(d, "clone_table", &[("source", from), ("target", &prod)])?),
            Desired::Rebuild { select } => out.push(strategy.render(d, "rebuild_table", &[("target", &prod), ("sql", select)])?),
            Desired::View { select } => out.push(format!("CREATE OR REPLACE VIEW {prod} AS\n{select}")),
            Desired::ViewDdl { ddl } => {
                // the warehouse's DDL may leave the schema implicit: pin it
                if d == Dialect::DuckDb {
                    out.push(format!("SET schema = {}", d.literal(&c.schema)));
                    out.push(ddl.clone());
                    out.push("RESET schema".into());
                } else {
                    out.push(ddl.clone());
                }
            }
            Desired::Absent => {}
        }
        objects.push(object(release, c, |p| (p.kind == ObjectKind::Table).then(|| kept.clone())));
    }
    out.extend(ledger::objects_statement(d, &objects));
    out.push(ledger::finish_statement(d, release));
    Ok(out)
}

fn object(release: &Release, c: &Change, backup: impl Fn(&CatalogEntry) -> Option<String>) -> ReleaseObject {
    ReleaseObject {
        release_id: release.id,
        schema: c.schema.clone(),
        name: c.name.clone(),
        kind: c.desired.kind().to_string(),
        prev_kind: c.prev.as_ref().map(|p| p.kind.as_str().to_string()),
        backup_name: c.prev.as_ref().and_then(&backup),
        prev_view_ddl: c.prev.as_ref().filter(|p| p.kind == ObjectKind::View).map(|p| p.view_ddl.clone().unwrap_or_default()),
    }
}

/// Run independent statements (one per object, e.g. table clones on a
/// warehouse without transactional DDL) with at most `limit` in flight.
/// Returns the first error after letting the statements in flight finish.
pub async fn run_bounded(wh: std::sync::Arc<dyn crate::warehouse::Warehouse>, statements: Vec<String>, limit: usize) -> anyhow::Result<()> {
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(limit.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for sql in statements {
        let permit = sem.clone().acquire_owned().await.expect("semaphore open");
        let wh = wh.clone();
        set.spawn(async move {
            let r = wh.execute(&sql).await;
            drop(permit);
            r
        });
    }
    let mut first_err = None;
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(anyhow::anyhow!("publish task stopped: {e}"));
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}
