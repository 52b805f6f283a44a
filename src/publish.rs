//! Making prod what was audited, in one transaction on warehouses whose DDL is
//! transactional: every changed prod object is first copied into the release's
//! backup schema (the rollback point), then replaced; the ledger rows are
//! written in the same transaction, so the ledger never disagrees with prod.

use crate::ledger::{self, Release, ReleaseObject};
use crate::warehouse::{CatalogEntry, Dialect, ObjectKind};

/// What a prod object should become.
#[derive(Debug, Clone)]
pub enum Desired {
    /// a table copied from this relation (audit or backup)
    Table { from: String },
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
            Desired::Table { .. } => "table",
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

/// Statements that apply `changes` (in order) and close the release in the ledger.
pub fn statements(d: Dialect, release: &Release, changes: &[Change]) -> Vec<String> {
    let backup = release.backup_schema.clone().unwrap_or_else(|| backup_schema(release.id));
    let mut out = vec![format!("CREATE SCHEMA IF NOT EXISTS {}", d.quote(&backup))];
    let mut schemas: Vec<&str> = changes.iter().filter(|c| !matches!(c.desired, Desired::Absent)).map(|c| c.schema.as_str()).collect();
    schemas.sort();
    schemas.dedup();
    for s in schemas {
        out.push(format!("CREATE SCHEMA IF NOT EXISTS {}", d.quote(s)));
    }
    for c in changes {
        let prod = d.relation(&c.schema, &c.name);
        let mut object = ReleaseObject {
            release_id: release.id,
            schema: c.schema.clone(),
            name: c.name.clone(),
            kind: c.desired.kind().to_string(),
            prev_kind: c.prev.as_ref().map(|p| p.kind.as_str().to_string()),
            backup_name: None,
            prev_view_ddl: None,
        };
        // keep what prod holds now
        match &c.prev {
            Some(p) if p.kind == ObjectKind::Table => {
                let name = format!("{}__{}", c.schema, c.name);
                out.push(format!("CREATE TABLE {} AS SELECT * FROM {prod}", d.relation(&backup, &name)));
                object.backup_name = Some(name);
            }
            Some(p) => object.prev_view_ddl = Some(p.view_ddl.clone().unwrap_or_default()),
            None => {}
        }
        // a kind change or a removal drops the old object first
        if let Some(p) = &c.prev {
            if p.kind.as_str() != c.desired.kind() || matches!(c.desired, Desired::ViewDdl { .. }) {
                out.push(format!("DROP {} IF EXISTS {prod}", if p.kind == ObjectKind::Table { "TABLE" } else { "VIEW" }));
            }
        }
        match &c.desired {
            Desired::Table { from } => out.push(format!("CREATE OR REPLACE TABLE {prod} AS SELECT * FROM {from}")),
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
        out.push(ledger::object_statement(d, &object));
    }
    out.push(ledger::finish_statement(d, release));
    out
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
