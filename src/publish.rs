//! Making prod what was audited. A publish is a plan of [`Step`]s, each with
//! the statements that carry it out and the statements that undo it (from the
//! backup it keeps), so an interrupted publish can be completed or undone
//! (`ledger::journal`). The statements come from the strategy's SQL templates
//! for the dialect: location-level (`swap_location`, `clone_location`) where
//! the strategy has them for this dialect, per object otherwise. Every
//! replaced prod object is first kept in the release's backup location (the
//! rollback point).

use std::collections::BTreeSet;

use anyhow::{Context, Result};

use crate::ledger::{self, Release, ReleaseObject};
use crate::compile::AuditDatabase;
use crate::strategy::{Publish, Strategy};
use crate::grants::Target;
use crate::warehouse::{CatalogEntry, Dialect, ObjectKind};

/// What a prod object should become.
#[derive(Debug, Clone)]
pub enum Desired {
    /// a table cloned/copied from `from` (audit or backup), whose (schema,
    /// name) is `source`: it must exist to (re)do the step (None: in another
    /// database, where the session's catalog cannot tell)
    Table { from: String, source: Option<(String, String)> },
    /// a table rebuilt in prod from this SELECT (wap)
    Rebuild { select: String },
    /// a view with this SELECT, rendered against prod names (shared by the
    /// strategies a comparison plans)
    View { select: std::sync::Arc<str> },
    /// a view re-created from stored DDL (rollback)
    ViewDdl { ddl: String },
    /// no object (rollback of an object a release created)
    Absent,
    /// `then`, but the prod table is dropped first: the warehouse refuses to
    /// replace it in place (BigQuery: partitioning or clustering differ, `why`)
    Recreate { then: Box<Desired>, why: String },
}

impl Desired {
    fn kind(&self) -> &'static str {
        match self {
            Desired::Table { .. } | Desired::Rebuild { .. } => "table",
            Desired::View { .. } | Desired::ViewDdl { .. } => "view",
            Desired::Absent => "absent",
            Desired::Recreate { then, .. } => then.kind(),
        }
    }

    /// What the object becomes, whether or not the old one is dropped first.
    pub fn target(&self) -> &Desired {
        match self {
            Desired::Recreate { then, .. } => then,
            other => other,
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

/// One journaled publish step.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Step {
    /// the object it changes, quoted
    pub object: String,
    /// keep | drop | replace | create-schema | swap | rename
    pub action: String,
    /// run in one session, in order
    pub sql: Vec<String>,
    /// what undoes it; None when it cannot be undone (then only forward)
    pub undo: Option<Vec<String>>,
    /// the object it creates (schema, name): found already there, a step
    /// that was in flight when the process died has happened
    pub creates: Option<(String, String)>,
    /// relations that must still exist to (re)do it (the audited source)
    pub needs: Vec<(String, String)>,
    /// whether prod changes here (counts for the inconsistency window)
    pub prod_change: bool,
    /// the steps (0-based) that must be done before this one starts; steps
    /// with disjoint dependencies run at once (`--publish-concurrency`).
    /// A journal without them (every list empty) runs in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<usize>,
    /// done by another program (dbt rebuilding prod), never by airlock: a
    /// publish interrupted before it is recorded done can only be undone
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub external: bool,
}

impl Step {
    fn new(object: String, action: &str, sql: Vec<String>, undo: Option<Vec<String>>, prod_change: bool) -> Step {
        Step { object, action: action.into(), sql, undo, creates: None, needs: vec![], prod_change, after: vec![], external: false }
    }
}

/// Each step after the one before it: a plan run in order.
fn in_order(steps: &mut [Step]) {
    for (k, step) in steps.iter_mut().enumerate() {
        step.after = k.checked_sub(1).into_iter().collect();
    }
}

/// The steps each step waits for (0-based). A plan whose steps name none
/// (one step, or a journal written before steps named them) runs in order.
pub fn dependencies(steps: &[Step]) -> Vec<Vec<usize>> {
    if steps.iter().all(|s| s.after.is_empty()) {
        return (0..steps.len()).map(|k| k.checked_sub(1).into_iter().collect()).collect();
    }
    steps.iter().map(|s| s.after.clone()).collect()
}

/// A publish: the steps, then the ledger rows that close the release.
#[derive(Debug, Clone)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// the rows of `release_objects` for this release (one INSERT), if any
    pub objects: Option<String>,
    /// privileges to compare once every step is done, before the release is
    /// recorded as published
    pub grant_check: Option<crate::grants::Check>,
}

impl Plan {
    /// End the plan with a step another program does (dbt rebuilding the
    /// prod tables), after every other step; nothing for airlock to undo
    /// there (the steps before it keep the backups that restore prod).
    /// [`crate::ledger::journal::publish`] stops before it. `after_it`: what
    /// airlock runs once the other program is done, before the step counts
    /// as done (prod's privileges, granted again on the tables it re-created).
    pub fn push_external(&mut self, object: String, action: &str, after_it: Vec<String>) {
        // a plan whose steps name no dependencies runs in order already
        let after = if self.steps.iter().all(|s| s.after.is_empty()) { vec![] } else { (0..self.steps.len()).collect() };
        self.steps.push(Step { after, external: true, ..Step::new(object, action, after_it, Some(vec![]), true) });
    }

    /// Every statement in order, as a transactional warehouse runs them
    /// (plans show these), ending with the ledger rows and `finish`.
    pub fn statements(&self, d: Dialect, release: &Release) -> Vec<String> {
        let mut out: Vec<String> = self.steps.iter().flat_map(|s| s.sql.iter().cloned()).collect();
        out.extend(self.objects.clone());
        out.push(ledger::finish_statement(d, release));
        out
    }

    /// How many [`Plan::statements`] there are, without copying them.
    pub fn statement_count(&self) -> usize {
        self.steps.iter().map(|s| s.sql.len()).sum::<usize>() + usize::from(self.objects.is_some()) + 1
    }
}

/// Where a release keeps the prod objects it replaced.
pub fn backup_schema(d: Dialect, release: i64) -> String {
    d.fold(&format!("airlock_r{release}"))
}

/// The privileges prod holds before a publish (empty where the warehouse has
/// none to keep): every step that (re)creates a prod object grants them again.
pub type Grants = BTreeSet<crate::grants::Grant>;

/// GRANTs that give `onto` what `from` holds in `grants`.
fn regrant(d: Dialect, grants: &Grants, from: &Target, onto: &Target) -> Vec<String> {
    crate::grants::statements(d, grants, from, onto)
}

fn object_target(c: &Change, kind: ObjectKind) -> Target {
    Target::object(&c.schema, &c.name, kind)
}

fn desired_kind(c: &Change) -> Option<ObjectKind> {
    match c.desired.kind() {
        "table" => Some(ObjectKind::Table),
        "view" => Some(ObjectKind::View),
        _ => None,
    }
}

/// The journaled plan that applies `changes` (in order). `locations`: (prod,
/// audit) schema pairs, for location-level publish; `audit_database`: the
/// audit location is a whole database (a database swap). `grants`: what prod
/// grants now, carried over to every object the publish (or its undo) makes.
pub fn plan(
    strategy: &Strategy,
    d: Dialect,
    release: &Release,
    changes: &[Change],
    locations: &[(String, String)],
    audit_database: Option<&AuditDatabase>,
    grants: &Grants,
) -> Result<Plan> {
    let backup = release.backup_schema.clone().unwrap_or_else(|| backup_schema(d, release.id));
    if let Some(db) = audit_database {
        return database_swap(strategy, d, release, &backup, changes, locations, db, grants);
    }
    let location_level = match strategy.steps.publish {
        Publish::Swap => strategy.template(d, "swap_location").is_some(),
        Publish::CloneBack => strategy.template(d, "clone_location").is_some() && strategy.template(d, "snapshot_location").is_some(),
        _ => false,
    };
    let mut steps = Vec::new();
    if location_level {
        let mut renames = Vec::new();
        for (prod, audit) in locations {
            let kept = d.quote(&format!("{backup}__{prod}"));
            let (p, a) = (d.quote(prod), d.quote(audit));
            // the first deploy: a location to swap with (or keep) must exist
            steps.push(Step::new(p.clone(), "create-schema", vec![format!("CREATE SCHEMA IF NOT EXISTS {p}")], Some(vec![]), false));
            // what readers hold on prod, granted on its audit twin before it
            // becomes prod: a swap or a schema clone carries the objects'
            // grants but not the schema's own
            let mut pre = Vec::new();
            if strategy.steps.publish == Publish::Swap {
                pre.extend(regrant(d, grants, &Target::schema(prod), &Target::schema(audit)));
            }
            for c in changes.iter().filter(|c| &c.schema == prod) {
                if let (Some(prev), Some(kind)) = (&c.prev, desired_kind(c)) {
                    pre.extend(regrant(d, grants, &object_target(c, prev.kind), &object_target(c, kind).moved_to(audit)));
                }
            }
            if !pre.is_empty() {
                steps.push(Step::new(a.clone(), "grant", pre, Some(vec![]), false));
            }
            let container = regrant(d, grants, &Target::schema(prod), &Target::schema(prod));
            if strategy.steps.publish == Publish::Swap {
                let swap = strategy.render(d, "swap_location", &[("audit", &a), ("prod", &p)])?;
                // a swap undoes itself
                steps.push(Step::new(p.clone(), "swap", vec![swap.clone()], Some(vec![swap]), true));
                let rename = strategy.render(d, "keep_demoted", &[("audit", &a), ("backup", &kept)])?;
                let rename_back = strategy.render(d, "keep_demoted", &[("audit", &kept), ("backup", &a)])?;
                renames.push(Step::new(kept.clone(), "rename", vec![rename], Some(vec![rename_back]), false));
            } else {
                let mut keep = Step::new(
                    kept.clone(),
                    "keep",
                    vec![strategy.render(d, "snapshot_location", &[("source", &p), ("target", &kept)])?],
                    Some(vec![format!("DROP SCHEMA IF EXISTS {kept} CASCADE")]),
                    false,
                );
                keep.creates = Some((format!("{backup}__{prod}"), String::new()));
                steps.push(keep);
                // a schema clone drops the schema's own grants: given back in the same session
                let mut forward = vec![strategy.render(d, "clone_location", &[("source", &a), ("target", &p)])?];
                forward.extend(container.iter().cloned());
                let mut back = vec![strategy.render(d, "clone_location", &[("source", &kept), ("target", &p)])?];
                back.extend(container.iter().cloned());
                let mut clone = Step::new(p.clone(), "replace", forward, Some(back), true);
                clone.needs = vec![(audit.clone(), String::new())];
                steps.push(clone);
            }
        }
        // views built in audit name the audit location; once every location
        // is prod they are re-created against prod's names (a view is
        // checked when created, so not before: its relations may be new),
        // before the demoted locations are renamed away from under them
        let copy = if d == Dialect::Snowflake { " COPY GRANTS" } else { "" };
        let repoint: Vec<String> = changes
            .iter()
            .filter_map(|c| match &c.desired {
                Desired::View { select } => Some(format!("CREATE OR REPLACE VIEW {}{copy} AS\n{select}", d.relation(&c.schema, &c.name))),
                _ => None,
            })
            .collect();
        if !repoint.is_empty() {
            steps.push(Step::new("views".into(), "repoint-views", repoint, Some(vec![]), true));
        }
        steps.extend(renames);
        // few steps, each on a whole location: one after another
        in_order(&mut steps);
        let objects: Vec<ReleaseObject> = changes
            .iter()
            .map(|c| {
                let kept = format!("{backup}__{}", c.schema);
                object(release, c, |_| Some(d.relation(&kept, &c.name)))
            })
            .collect();
        return Ok(Plan { steps, objects: ledger::objects_statement(d, &objects), grant_check: None });
    }

    let schema_step = |s: &str| Step::new(d.quote(s), "create-schema", vec![format!("CREATE SCHEMA IF NOT EXISTS {}", d.quote(s))], Some(vec![]), false);
    steps.push(schema_step(&backup));
    let schemas: BTreeSet<&str> = changes.iter().filter(|c| !matches!(c.desired, Desired::Absent)).map(|c| c.schema.as_str()).collect();
    for s in schemas {
        steps.push(schema_step(s));
    }
    // the schemas are independent of each other (each step waits for nothing)
    let mut objects = Vec::with_capacity(changes.len());
    let mut chains = Vec::with_capacity(changes.len());
    for c in changes {
        let kept_name = format!("{}__{}", c.schema, c.name);
        let kept = d.relation(&backup, &kept_name);
        chains.push((desired_kind(c) == Some(ObjectKind::View), object_steps(strategy, d, c, Some((&kept, (&backup, &kept_name))), grants)?));
        objects.push(object(release, c, |p| (p.kind == ObjectKind::Table).then(|| kept.clone())));
    }
    chain_objects(&mut steps, chains);
    Ok(Plan { steps, objects: ledger::objects_statement(d, &objects), grant_check: None })
}

/// A swap of whole databases (`audit_database`): prod's privileges granted
/// on their twins in the audit database, one atomic `SWAP WITH`, the views
/// re-created against prod's names, the demoted database kept as the
/// release's backup. Every name says its database: a session's current
/// database is prod by name, whatever the swap did under it.
#[allow(clippy::too_many_arguments)]
fn database_swap(
    strategy: &Strategy,
    d: Dialect,
    release: &Release,
    backup: &str,
    changes: &[Change],
    locations: &[(String, String)],
    db: &AuditDatabase,
    grants: &Grants,
) -> Result<Plan> {
    anyhow::ensure!(strategy.steps.publish == Publish::Swap, "strategy '{}' cannot publish a database-level audit location", strategy.name);
    let kept_name = format!("{backup}__{}", db.prod);
    let (p, a, kept) = (d.quote(&db.prod), d.quote(&db.audit), d.quote(&kept_name));
    let mut steps = Vec::new();
    // a swap exchanges the databases with their own privileges: what readers
    // hold on prod is granted on the audit twins first (the database, its
    // schemas, every object the release replaces), so nobody loses access
    let mut pre = regrant(d, grants, &Target::database(&db.prod), &Target::database(&db.audit));
    for (schema, _) in locations {
        pre.extend(regrant(d, grants, &Target::schema(schema), &Target::schema(schema).in_database(&db.audit)));
    }
    for c in changes {
        if let (Some(prev), Some(kind)) = (&c.prev, desired_kind(c)) {
            pre.extend(regrant(d, grants, &object_target(c, prev.kind), &object_target(c, kind).in_database(&db.audit)));
        }
    }
    if !pre.is_empty() {
        steps.push(Step::new(a.clone(), "grant", pre, Some(vec![]), false));
    }
    let swap = strategy.render(d, "swap_database", &[("audit", &a), ("prod", &p)])?;
    // a swap undoes itself
    steps.push(Step::new(p.clone(), "swap", vec![swap.clone()], Some(vec![swap]), true));
    let mut repoint: Vec<String> = changes
        .iter()
        .filter_map(|c| match &c.desired {
            Desired::View { select } => Some(format!("CREATE OR REPLACE VIEW {} COPY GRANTS AS\n{select}", d.qualified(Some(&db.prod), &c.schema, &c.name))),
            _ => None,
        })
        .collect();
    if !repoint.is_empty() {
        // the views' own SELECTs name prod relations by schema.name
        repoint.insert(0, format!("USE DATABASE {p}"));
        steps.push(Step::new("views".into(), "repoint-views", repoint, Some(vec![]), true));
    }
    let rename = strategy.render(d, "keep_demoted_database", &[("audit", &a), ("backup", &kept)])?;
    let rename_back = strategy.render(d, "keep_demoted_database", &[("audit", &kept), ("backup", &a)])?;
    steps.push(Step::new(kept.clone(), "rename", vec![rename], Some(vec![rename_back]), false));
    in_order(&mut steps);
    let objects: Vec<ReleaseObject> = changes.iter().map(|c| object(release, c, |_| Some(d.qualified(Some(&kept_name), &c.schema, &c.name)))).collect();
    Ok(Plan { steps, objects: ledger::objects_statement(d, &objects), grant_check: None })
}

/// Append each object's steps as a chain (keep, drop, create: in order)
/// after the steps already there (the schemas). Table chains depend only on
/// the schemas, so they run at once; a view is checked when it is created,
/// so views come after every table, one after another in the plan's
/// (dependency) order.
fn chain_objects(steps: &mut Vec<Step>, chains: Vec<(bool, Vec<Step>)>) {
    let schemas: Vec<usize> = (0..steps.len()).collect();
    let mut table_ends = Vec::new();
    let mut views = Vec::new();
    for (is_view, chain) in chains {
        if is_view {
            views.push(chain);
            continue;
        }
        let mut prev = schemas.clone();
        for mut step in chain {
            step.after = prev;
            prev = vec![steps.len()];
            steps.push(step);
        }
        table_ends.extend(prev.into_iter().filter(|&p| p >= schemas.len()));
    }
    let mut prev: Vec<usize> = if table_ends.is_empty() { schemas } else { table_ends };
    for chain in views {
        for mut step in chain {
            step.after = std::mem::take(&mut prev);
            prev = vec![steps.len()];
            steps.push(step);
        }
    }
}

/// Statements that put back what prod held before (`prev`), given the
/// backup, with the privileges it had.
fn restore_prev(strategy: &Strategy, d: Dialect, schema: &str, name: &str, prev: &CatalogEntry, kept: Option<&str>, grants: &Grants) -> Result<Vec<String>> {
    let mut out = restore_object(strategy, d, schema, name, prev, kept)?;
    let target = Target::object(schema, name, prev.kind);
    out.extend(regrant(d, grants, &target, &target));
    Ok(out)
}

fn restore_object(strategy: &Strategy, d: Dialect, schema: &str, name: &str, prev: &CatalogEntry, kept: Option<&str>) -> Result<Vec<String>> {
    let prod = d.relation(schema, name);
    // prod holds the same kind as `prev` or nothing here: a different kind
    // was dropped by the undo of the step after this one
    Ok(match prev.kind {
        ObjectKind::Table => match kept {
            Some(kept) => vec![strategy.render(d, "clone_table", &[("source", kept), ("target", &prod)])?],
            None => anyhow::bail!("no backup of {prod} to restore it from"),
        },
        ObjectKind::View => {
            let mut out = vec![format!("DROP VIEW IF EXISTS {prod}")];
            out.extend(view_ddl(d, schema, prev.view_ddl.as_deref().unwrap_or_default()));
            out
        }
    })
}

/// A stored view DDL, with its schema pinned where the warehouse's DDL may
/// leave it implicit.
fn view_ddl(d: Dialect, schema: &str, ddl: &str) -> Vec<String> {
    if d == Dialect::DuckDb {
        vec![format!("SET schema = {}", d.literal(schema)), ddl.to_string(), "RESET schema".into()]
    } else {
        vec![ddl.to_string()]
    }
}

/// The steps that make one prod object what `c` desires; with `kept`, a
/// table prod holds now is first kept there (the rollback point).
fn object_steps(strategy: &Strategy, d: Dialect, c: &Change, kept: Option<(&str, (&str, &str))>, grants: &Grants) -> Result<Vec<Step>> {
    let mut out = Vec::new();
    let prod = d.relation(&c.schema, &c.name);
    let kept_rel = kept.map(|(k, _)| k);
    if let Some((kept, (ks, kn))) = kept {
        if c.prev.as_ref().is_some_and(|p| p.kind == ObjectKind::Table) {
            let mut keep = Step::new(
                prod.clone(),
                "keep",
                vec![strategy.render(d, "snapshot_table", &[("source", &prod), ("target", kept), ("expiration_days", &strategy.snapshot_expiration_days().to_string())])?],
                Some(vec![format!("DROP TABLE IF EXISTS {kept}")]),
                false,
            );
            keep.creates = Some((ks.to_string(), kn.to_string()));
            out.push(keep);
        }
    }
    // a kind change, a removal, or a table the warehouse cannot replace in
    // place drops the old object first
    let mut dropped = false;
    let recreate = matches!(c.desired, Desired::Recreate { .. });
    if let Some(p) = &c.prev {
        if p.kind.as_str() != c.desired.kind() || matches!(c.desired, Desired::ViewDdl { .. }) || recreate {
            let undo = restore_prev(strategy, d, &c.schema, &c.name, p, kept_rel, grants).ok();
            out.push(Step::new(prod.clone(), "drop", vec![format!("DROP {} IF EXISTS {prod}", if p.kind == ObjectKind::Table { "TABLE" } else { "VIEW" })], undo, true));
            dropped = true;
        }
    }
    // undoing the new object: drop it when a drop step (or nothing) came
    // before, else put back what was there
    let new_kind = if c.desired.kind() == "view" { "VIEW" } else { "TABLE" };
    let undo_create = match &c.prev {
        Some(p) if !dropped => restore_prev(strategy, d, &c.schema, &c.name, p, kept_rel, grants).ok(),
        _ => Some(vec![format!("DROP {new_kind} IF EXISTS {prod}")]),
    };
    let mut create = match c.desired.target() {
        Desired::Table { from, source } => {
            let mut s = Step::new(prod.clone(), "replace", vec![strategy.render(d, "clone_table", &[("source", from), ("target", &prod)])?], undo_create, true);
            s.needs = source.iter().cloned().collect();
            s
        }
        Desired::Rebuild { select } => Step::new(prod.clone(), "rebuild", vec![strategy.render(d, "rebuild_table", &[("target", &prod), ("sql", select)])?], undo_create, true),
        Desired::View { select } => {
            // Snowflake keeps the replaced view's privileges with COPY GRANTS
            let copy = if d == Dialect::Snowflake { " COPY GRANTS" } else { "" };
            Step::new(prod.clone(), "replace", vec![format!("CREATE OR REPLACE VIEW {prod}{copy} AS\n{select}")], undo_create, true)
        }
        Desired::ViewDdl { ddl } => {
            let mut s = Step::new(prod.clone(), "restore", view_ddl(d, &c.schema, ddl), undo_create, true);
            s.creates = Some((c.schema.clone(), c.name.clone()));
            s
        }
        Desired::Absent | Desired::Recreate { .. } => return Ok(out),
    };
    if create.creates.is_none() && matches!(c.desired, Desired::ViewDdl { .. }) {
        create.creates = Some((c.schema.clone(), c.name.clone()));
    }
    // the new object gets prod's privileges in the same session
    if let (Some(prev), Some(kind)) = (&c.prev, desired_kind(c)) {
        create.sql.extend(regrant(d, grants, &object_target(c, prev.kind), &object_target(c, kind)));
    }
    out.push(create);
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

/// Undo a publish that committed but must not stand (wap's check failed):
/// the plan's undo statements in reverse order, then the release's backups
/// and ledger rows go, and the release is closed as `failed`.
pub fn restore_statements(d: Dialect, release: &Release, plan: &Plan) -> Result<Vec<String>> {
    let backup = release.backup_schema.clone().unwrap_or_else(|| backup_schema(d, release.id));
    let mut out = Vec::new();
    for step in plan.steps.iter().rev() {
        let undo = step.undo.as_ref().with_context(|| format!("step '{} {}' cannot be undone", step.action, step.object))?;
        out.extend(undo.iter().cloned());
    }
    out.push(format!("DROP SCHEMA IF EXISTS {} CASCADE", d.quote(&backup)));
    out.push(format!("DELETE FROM {} WHERE release_id = {}", ledger::table(d, "release_objects"), release.id));
    let mut failed = release.clone();
    failed.status = "failed".into();
    failed.backup_schema = None;
    failed.published = 0;
    out.push(ledger::finish_statement(d, &failed));
    Ok(out)
}

/// Tables whose prod version is partitioned or clustered differently from
/// the table that replaces it (the audited twin, or a backup on rollback):
/// the warehouse refuses to replace those in place (BigQuery), so their
/// publish drops the prod table first (the journal keeps its snapshot and
/// can undo the drop). Returns the changes, so marked, and a line for each.
/// `twins_built`: whether the replacing tables exist (a deploy after its
/// build, a rollback); otherwise (plan) a laid-out prod table is only reported.
pub async fn recreate_where_layout_differs(
    wh: &dyn crate::warehouse::Warehouse,
    d: Dialect,
    changes: &[Change],
    layout: Option<&crate::compile::Layout>,
    twins_built: bool,
) -> Result<(Vec<Change>, Vec<String>)> {
    let mut out = changes.to_vec();
    let mut notes = Vec::new();
    let mut layouts: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>> = Default::default();
    for c in out.iter_mut() {
        if !c.prev.as_ref().is_some_and(|p| p.kind == ObjectKind::Table) {
            continue;
        }
        // wac, clone-back, mirror, rollback: the table cloned over prod; wap:
        // a rebuild is laid out as its audited twin was built
        let (twin_schema, twin_name) = match &c.desired {
            Desired::Table { source: Some(source), .. } => source.clone(),
            Desired::Rebuild { .. } => match layout {
                Some(l) => (l.audit_schema(&c.schema), c.name.clone()),
                None => continue,
            },
            _ => continue,
        };
        for schema in [&c.schema, &twin_schema] {
            if !layouts.contains_key(schema) {
                let found = wh.table_layouts(schema).await.with_context(|| format!("reading the partitioning and clustering of {}", d.quote(schema)))?;
                layouts.insert(schema.clone(), found);
            }
        }
        let prod_layout = layouts[&c.schema].get(&c.name).cloned().unwrap_or_else(|| "none".into());
        let twin_layout = layouts[&twin_schema].get(&twin_name).cloned().unwrap_or_else(|| "none".into());
        let prod = d.relation(&c.schema, &c.name);
        if !twins_built {
            if prod_layout != "none" {
                notes.push(format!("{prod} is laid out ({prod_layout}): if the table replacing it is not, the publish drops it first, then re-creates it (journaled)"));
            }
            continue;
        }
        if prod_layout != twin_layout {
            let why = format!("now {prod_layout}; {} {twin_layout}", d.relation(&twin_schema, &twin_name));
            notes.push(format!("{prod}: partitioning or clustering changes ({why}): dropped, then re-created (journaled; the snapshot taken first restores it)"));
            let then = Box::new(std::mem::replace(&mut c.desired, Desired::Absent));
            c.desired = Desired::Recreate { then, why };
        }
    }
    Ok((out, notes))
}

/// wap: each table rebuilt in prod against its audited twin (row count and a
/// content checksum). Returns a line per table that differs.
pub async fn compare_rebuilt(
    wh: &dyn crate::warehouse::Warehouse,
    d: Dialect,
    changes: &[Change],
    layout: &crate::compile::Layout,
) -> Result<Vec<String>> {
    let mut differ = Vec::new();
    for c in changes.iter().filter(|c| matches!(c.desired.target(), Desired::Rebuild { .. })) {
        let prod = d.relation(&c.schema, &c.name);
        let audit = layout.audit_twin(&c.schema, &c.name);
        let sql = format!("SELECT ({}) AS prod, ({}) AS audit", d.checksum_sql(&prod), d.checksum_sql(&audit));
        let rows = wh.query(&sql).await.with_context(|| format!("comparing {prod} with its audited twin {audit}"))?;
        let row = rows.rows.first().cloned().unwrap_or_default();
        let (p, a) = (row.first().cloned().flatten(), row.get(1).cloned().flatten());
        if p.is_none() || p != a {
            let show = |v: Option<String>| v.map(|v| v.split(':').next().unwrap_or_default().to_string()).unwrap_or_else(|| "?".into());
            differ.push(format!("{prod} ({} rows) differs from {audit} ({} rows)", show(p), show(a)));
        }
    }
    Ok(differ)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(object: &str, action: &str) -> Step {
        Step::new(object.into(), action, vec![format!("{action} {object}")], Some(vec![]), true)
    }

    #[test]
    fn tables_wait_only_for_the_schemas_and_views_for_every_table_in_order() {
        let mut steps = vec![step("backup", "create-schema"), step("prod", "create-schema")];
        let chains = vec![
            (false, vec![step("t1", "keep"), step("t1", "replace")]),
            (true, vec![step("v1", "replace")]),
            (false, vec![step("t2", "replace")]),
            (true, vec![step("v2", "drop"), step("v2", "replace")]),
        ];
        chain_objects(&mut steps, chains);
        let order: Vec<(&str, &str, Vec<usize>)> = steps.iter().map(|s| (s.object.as_str(), s.action.as_str(), s.after.clone())).collect();
        assert_eq!(
            order,
            vec![
                ("backup", "create-schema", vec![]),
                ("prod", "create-schema", vec![]),
                ("t1", "keep", vec![0, 1]),
                ("t1", "replace", vec![2]),
                ("t2", "replace", vec![0, 1]),
                ("v1", "replace", vec![3, 4]),
                ("v2", "drop", vec![5]),
                ("v2", "replace", vec![6]),
            ]
        );
        assert_eq!(dependencies(&steps)[5], vec![3, 4]);
    }

    #[test]
    fn a_journal_whose_steps_name_no_dependencies_runs_in_order() {
        let steps = vec![step("a", "keep"), step("a", "replace"), step("b", "replace")];
        assert_eq!(dependencies(&steps), vec![vec![], vec![0], vec![1]]);
    }
}
