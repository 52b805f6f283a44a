//! `airlock plan`: what a deploy would build and publish, with `--show-sql`
//! the exact statements, with `--strategy all` every strategy side by side.
//! Opens the warehouse read-only and never creates it; `--offline` does not
//! connect at all and renders another dialect's SQL, assuming prod already
//! holds every model. A plan writes nothing.

use anyhow::Result;
use serde::Serialize;

use super::ExitStatus;
use crate::build::Catalog;
use crate::cli::Format;
use crate::ledger::{self, Release};
use crate::prepare::{build_steps, prepare_head, prepare_tail, BuildPlans, Prepared};
use crate::project::Materialization;
use crate::publish;
use crate::report;
use crate::session::Session;
use crate::strategy::Strategy;
use crate::warehouse::{CatalogEntry, ObjectKind};

#[derive(Serialize)]
struct PlanNode {
    name: String,
    materialization: String,
    action: String,
    target: String,
}

#[derive(Serialize)]
struct StrategyPlan {
    strategy: String,
    /// why the warehouse cannot carry it out, when it cannot
    refused: Option<String>,
    objects_built: usize,
    tests: usize,
    objects_published: usize,
    statements: usize,
    /// rows copied from prod by staging and backups, from the warehouse's statistics
    rows_copied_estimate: Option<u64>,
    atomic_publish: bool,
    incremental_safe: bool,
    rollback: String,
    extra_storage: String,
    nodes: Vec<PlanNode>,
    not_published: Vec<String>,
    /// nodes of the project this run does not build, and why
    left_out: Vec<String>,
    /// tests that cannot give a verdict: a deploy would be blocked by them
    blocking: Vec<String>,
    /// privileges the publish grants to keep prod's as they are (read from
    /// the warehouse; none offline)
    grants: Vec<String>,
    /// how the publish proceeds where it is not one step
    publish_notes: Vec<String>,
    /// bytes the statements would process, from the warehouse's dry runs
    /// (BigQuery); absent where the warehouse has none
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes_estimate: Option<BytesEstimate>,
    sql: Option<Vec<String>>,
    /// every statement, for the dry runs (`sql` holds them with --show-sql)
    #[serde(skip)]
    all_sql: Vec<String>,
}

#[derive(Serialize)]
struct BytesEstimate {
    /// summed over the statements that could be dry-run now
    bytes: u64,
    statements_estimated: usize,
    /// of those, statements that read relations the build makes, estimated
    /// against their prod twins (the audit location does not exist yet)
    statements_estimated_against_prod: usize,
    /// statements whose dry run failed: they read objects the build creates
    statements_not_estimable: usize,
}

/// Dry-run every statement of a plan: what it would process where the
/// warehouse says (BigQuery), None where it has no dry runs. A statement
/// that reads what the build has not made yet (the audit location) is
/// dry-run again against the prod twins (`locations`: prod, audit), the
/// closest estimate there is before the build.
async fn estimate_bytes(wh: &dyn crate::warehouse::Warehouse, d: crate::warehouse::Dialect, sql: &[String], locations: &[(String, String)]) -> Option<BytesEstimate> {
    let mut est = BytesEstimate { bytes: 0, statements_estimated: 0, statements_estimated_against_prod: 0, statements_not_estimable: 0 };
    let against_prod = |s: &str| locations.iter().fold(s.to_string(), |s, (prod, audit)| s.replace(&d.quote(audit), &d.quote(prod)));
    for s in sql.iter().filter(|s| !matches!(s.trim().to_ascii_uppercase().as_str(), "BEGIN TRANSACTION" | "COMMIT" | "COMMIT TRANSACTION" | "")) {
        let first = match wh.dry_run_bytes(s).await {
            Ok(None) => return None,
            Ok(Some(b)) => Ok(b),
            Err(e) => Err(e),
        };
        let second = match first {
            Ok(b) => Ok((b, false)),
            Err(e) if against_prod(s) != *s => match wh.dry_run_bytes(&against_prod(s)).await {
                Ok(b) => Ok((b.unwrap_or(0), true)),
                Err(again) => Err(e.context(format!("against prod too: {again:#}"))),
            },
            Err(e) => Err(e),
        };
        match second {
            Ok((b, prod)) => {
                est.bytes += b;
                est.statements_estimated += 1;
                est.statements_estimated_against_prod += usize::from(prod);
            }
            Err(e) => {
                tracing::debug!("no dry run of `{}`: {e:#}", s.lines().next().unwrap_or_default());
                est.statements_not_estimable += 1;
            }
        }
    }
    Some(est)
}

/// `12.3 GiB`: bytes for people.
fn human_bytes(b: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

fn bytes_text(e: &BytesEstimate) -> String {
    let mut t = format!("{} over {} statement{}", human_bytes(e.bytes), e.statements_estimated, super::run::plural(e.statements_estimated));
    if e.statements_estimated_against_prod > 0 {
        t.push_str(&format!(" ({} against the prod twins of what the build makes)", e.statements_estimated_against_prod));
    }
    if e.statements_not_estimable > 0 {
        t.push_str(&format!(", +{} not estimable before the build", e.statements_not_estimable));
    }
    t
}

#[derive(Serialize)]
struct PlanReport {
    status: &'static str,
    release: i64,
    warehouse: String,
    dialect: &'static str,
    selection: String,
    /// who builds into audit, and why that one
    builder: &'static str,
    builder_reason: String,
    strategies: Vec<StrategyPlan>,
}

/// A plan allocates a few hundred MB once and exits. With transparent huge
/// pages the kernel zeroes 2 MB wherever the allocator first touches a byte:
/// at 15,000 models that made a fifth of the peak and most of the time the
/// kernel spent. Off for this process only (the setting is the process's;
/// a plan starts no other program), before the project loads.
pub fn without_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no memory of ours
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

pub async fn run(session: &Session, show_sql: bool, offline: bool) -> Result<ExitStatus> {
    let d = session.layout.dialect;
    let mut warehouse_handle = None;
    let (prod, release_id, warehouse) = if offline {
        (assumed_prod(session), 1, format!("{} (offline: prod assumed to hold every model)", d.title()))
    } else {
        let wh = session.open_warehouse(true)?;
        warehouse_handle = Some(wh.clone());
        let prod_schemas: Vec<String> = session.all_prod_schemas().into_iter().collect();
        let prod = Catalog::new(wh.dialect(), wh.catalog(&prod_schemas).await?);
        let has_ledger = ledger::exists(&*wh).await?;
        let id = if has_ledger { ledger::next_id(&*wh).await? } else { 1 };
        (prod, id, wh.describe())
    };
    let names: Vec<String> = if session.cfg.strategy == "all" {
        session.registry.strategies.keys().cloned().collect()
    } else {
        vec![session.cfg.strategy.clone()]
    };
    // the statements themselves are kept only where they are shown or dry-run
    let keep_sql = show_sql || (warehouse_handle.is_some() && d == crate::warehouse::Dialect::BigQuery);
    // the node list is shown for one strategy and in JSON; a comparison
    // table shows counts only
    let list_nodes = names.len() == 1 || session.cfg.format == Format::Json;
    let build_plans = BuildPlans::default();
    let strategies: Vec<&Strategy> = names.iter().map(|n| session.registry.get(n)).collect::<Result<_>>()?;
    let shown = Shown { sql: show_sql, keep_sql, nodes: list_nodes };
    // comparing, a strategy that cannot run on this project says why; the
    // only one asked for fails the command
    let cannot = |e: anyhow::Error| if names.len() > 1 { Ready::Refused(format!("{e:#}")) } else { Ready::Failed(e) };
    // prepared side by side, all but the build steps: the selection, what is
    // staged, what the publish makes of prod. An error in the last counts
    // after one in the build, as in a single strategy's prepare
    let heads = crate::par::map_each(&strategies, |strategy| match strategy.check_support(d) {
        Err(e) => (Ready::Refused(e.to_string()), None),
        Ok(()) => match prepare_head(session, strategy, &prod, &build_plans) {
            Err(e) => (cannot(e), None),
            Ok(mut p) => {
                let tail = prepare_tail(session, &mut p, &prod, &build_plans).err();
                (Ready::Prepared(Box::new(p)), tail)
            }
        },
    });
    crate::phase::mark("plan: strategies prepared");
    // what prod grants now, read from the warehouse one strategy at a time
    let mut grants = Vec::with_capacity(heads.len());
    for (ready, tail) in &heads {
        grants.push(match (ready, tail, &warehouse_handle) {
            (Ready::Prepared(p), None, Some(wh)) => {
                let locations: Vec<String> = p.locations.iter().map(|(p, _)| p.clone()).collect();
                Some(crate::grants::before_publish(&**wh, &p.changes, &locations, session.layout.audit_database.as_ref().map(|a| a.prod.as_str())).await?.0)
            }
            (Ready::Prepared(_), None, None) => Some(publish::Grants::default()),
            _ => None,
        });
    }
    // the build steps (planned once for the strategies that build the same)
    // on a thread of their own, beside the publishes, which need none of
    // them; the publishes one strategy at a time: a publish plan holds every
    // statement it renders (about 20 MB at 15,000 models)
    let (steps, publishes) = std::thread::scope(|s| {
        let builder = s.spawn(|| {
            heads
                .iter()
                .map(|(ready, _)| match ready {
                    Ready::Prepared(p) => Some(build_steps(session, p, &prod, &build_plans)),
                    _ => None,
                })
                .collect::<Vec<_>>()
        });
        let publishes: Vec<Option<Result<PublishPart>>> = heads
            .iter()
            .zip(&grants)
            .map(|((ready, _), grants)| match (ready, grants) {
                (Ready::Prepared(p), Some(grants)) => {
                    let r = Some(publish_part(session, p, release_id, shown, grants));
                    crate::phase::mark("publish planned");
                    r
                }
                _ => None,
            })
            .collect();
        (builder.join().unwrap_or_else(|e| std::panic::resume_unwind(e)), publishes)
    });
    crate::phase::mark("plan: build steps and publishes planned");
    let mut plans = Vec::with_capacity(heads.len());
    // what the plans were made from, freed with the process (see the end)
    let mut spent = Vec::with_capacity(heads.len());
    for ((((ready, tail), steps), publish), strategy) in heads.into_iter().zip(steps).zip(publishes).zip(&strategies) {
        // the build's error first, then the publish's
        let ready = match (ready, steps, tail) {
            (Ready::Prepared(_), Some(Err(e)), _) => cannot(e),
            (Ready::Prepared(_), _, Some(e)) => cannot(e),
            (Ready::Prepared(mut p), Some(Ok(steps)), None) => {
                p.steps = steps;
                Ready::Prepared(p)
            }
            (other, _, _) => other,
        };
        let p = match ready {
            Ready::Refused(why) => {
                plans.push(refused(strategy, why));
                continue;
            }
            Ready::Failed(e) => return Err(e),
            Ready::Prepared(p) => p,
        };
        let publish = publish.ok_or_else(|| anyhow::anyhow!("strategy '{}': its publish was not planned", strategy.name))??;
        let build = build_part(session, &p, &prod, shown);
        let mut plan = plan_of(&p, build, publish, shown);
        if let Some(wh) = &warehouse_handle {
            // tables the warehouse cannot replace in place (told now; decided after the build)
            let (_, notes) = publish::recreate_where_layout_differs(&**wh, d, &p.changes, Some(&session.layout), false).await?;
            plan.publish_notes.extend(notes);
            if keep_sql {
                plan.bytes_estimate = estimate_bytes(&**wh, d, &plan.all_sql, &p.locations).await;
            }
        }
        plans.push(plan);
        spent.push(p);
    }
    crate::phase::mark("plan: plans counted");
    let report = PlanReport { status: "planned", release: release_id, warehouse, dialect: d.name(), selection: session.cfg.selection_text(), builder: session.cfg.builder.name(), builder_reason: session.cfg.builder_reason.clone(), strategies: plans };
    if session.cfg.format == Format::Json {
        report::json(&report);
    } else if names.len() == 1 {
        print_one(&report);
    } else {
        print_comparison(&report, show_sql);
    }
    crate::phase::mark("plan: printed");
    // the process ends next: the build steps, the prepared strategies and
    // the report (hundreds of thousands of allocations at 15,000 models)
    // are left to the exit, like the session, instead of freed one by one
    std::mem::forget((report, spent, build_plans, prod));
    Ok(ExitStatus::Success)
}

/// A strategy of the comparison, prepared or not.
enum Ready<'s> {
    Prepared(Box<Prepared<'s>>),
    /// it cannot run here: the comparison says why
    Refused(String),
    /// the only strategy asked for cannot run: the command fails
    Failed(anyhow::Error),
}

fn refused(strategy: &Strategy, reason: String) -> StrategyPlan {
    StrategyPlan {
        strategy: strategy.name.clone(),
        refused: Some(reason),
        objects_built: 0,
        tests: 0,
        objects_published: 0,
        statements: 0,
        rows_copied_estimate: None,
        atomic_publish: false,
        incremental_safe: strategy.facts.incremental_safe,
        rollback: strategy.facts.rollback.clone(),
        extra_storage: strategy.facts.extra_storage.clone(),
        nodes: vec![],
        not_published: vec![],
        left_out: vec![],
        blocking: vec![],
        grants: vec![],
        publish_notes: vec![],
        bytes_estimate: None,
        sql: None,
        all_sql: vec![],
    }
}

/// A plan's statements in order: kept when `keep`, otherwise only counted
/// (a plan of thousands of nodes need not copy every statement to count them).
struct Statements {
    keep: bool,
    sql: Vec<String>,
    count: usize,
}

impl Statements {
    fn push(&mut self, statement: impl FnOnce() -> String) {
        self.count += 1;
        if self.keep {
            self.sql.push(statement());
        }
    }

    fn extend(&mut self, statements: &[String]) {
        self.count += statements.len();
        if self.keep {
            self.sql.extend(statements.iter().cloned());
        }
    }
}

/// What a plan keeps beyond its counts.
#[derive(Clone, Copy)]
struct Shown {
    /// the statements are printed (`--show-sql`)
    sql: bool,
    /// the statements are kept: printed or dry-run
    keep_sql: bool,
    /// each built node is listed
    nodes: bool,
}

/// What a strategy's build adds to its plan: the audit preparation, the
/// hooks, every step and test query, in the order they run.
struct BuildPart {
    sql: Statements,
    nodes: Vec<PlanNode>,
    built: usize,
    tests: usize,
    not_run: Vec<String>,
}

fn build_part(session: &Session, p: &Prepared, prod: &Catalog, shown: Shown) -> BuildPart {
    let project = session.project();
    let layout = &session.layout;
    let mut sql = Statements { keep: shown.keep_sql, sql: Vec::new(), count: 0 };
    sql.extend(&p.prep);
    sql.extend(&p.on_run_start);
    let mut nodes = Vec::new();
    let mut built = 0;
    let mut tests = 0;
    let mut not_run = Vec::new();
    for step in p.steps.iter() {
        let node = project.at(step.at);
        if let Some(why) = &step.refused {
            not_run.push(format!("test {}: {why}", node.name));
            tests += 1;
            continue;
        }
        sql.extend(&step.statements);
        match step.group.as_slice() {
            [] => {}
            [(_, one, _)] => {
                sql.push(|| crate::gate::gate_query(one));
                tests += 1;
                continue;
            }
            group => {
                sql.push(|| crate::build::group_query(group));
                tests += group.len();
                continue;
            }
        }
        built += 1;
        if !shown.nodes {
            continue;
        }
        let action = match (node.materialization, step.incremental) {
            (_, true) => "incremental on a copy of prod",
            (Materialization::Seed, _) => "load",
            _ if prod.get(&layout.prod_schema(node), &layout.ident(node)).is_some() => "rebuild",
            _ => "create",
        };
        nodes.push(PlanNode { name: node.name.clone(), materialization: node.materialization.as_str().into(), action: action.into(), target: layout.prod_relation(node).rendered });
    }
    sql.extend(&p.on_run_end);
    BuildPart { sql, nodes, built, tests, not_run }
}

/// What a strategy's publish adds to its plan (it needs no build steps).
struct PublishPart {
    sql: Statements,
    atomic: bool,
    grants: Vec<String>,
    notes: Vec<String>,
}

fn publish_part(session: &Session, p: &Prepared, release_id: i64, shown: Shown, grants: &publish::Grants) -> Result<PublishPart> {
    let d = session.layout.dialect;
    let project = session.project();
    let release = Release {
        id: release_id,
        project: project.name.clone(),
        target: session.cfg.profile.target_name.clone(),
        strategy: p.strategy.name.clone(),
        selection: session.cfg.selection_text(),
        started_at: String::new(),
        finished_at: Some("<publish time>".into()),
        status: "published".into(),
        built: 0,
        tests: 0,
        failed: 0,
        warned: 0,
        published: p.changes.len() as i64,
        git_commit: None,
        backup_schema: Some(publish::backup_schema(d, release_id)),
        restores: None,
        mixed_ms: None,
    };
    let atomic = p.strategy.atomic(d);
    let publish_plan = publish::plan(p.strategy, d, &release, &p.changes, &p.locations, session.layout.audit_database.as_ref(), grants)?;
    let grant_sql: Vec<String> = publish_plan.steps.iter().flat_map(|s| s.sql.iter()).filter(|s| s.starts_with("GRANT ")).cloned().collect();
    let mut notes = Vec::new();
    let swaps = publish_plan.steps.iter().filter(|s| s.action == "swap").count();
    if let Some(db) = session.layout.audit_database.as_ref().filter(|_| swaps == 1) {
        notes.push(format!(
            "every schema is published at once by one database swap ({} with {}); the views are then re-created against prod ({} journaled steps)",
            db.audit,
            db.prod,
            publish_plan.steps.len() + 1
        ));
    } else if swaps > 1 {
        notes.push(format!(
            "{swaps} schemas are swapped one by one: each swap is atomic, the whole publish is not (journaled; `airlock recover` finishes or undoes it)"
        ));
    } else if !atomic {
        notes.push(format!("{} journaled steps, each committed on its own (`airlock recover` finishes or undoes an interrupted publish)", publish_plan.steps.len() + 1));
    }
    let mut sql = Statements { keep: shown.keep_sql, sql: Vec::new(), count: 0 };
    if atomic {
        sql.push(|| "BEGIN TRANSACTION".into());
    }
    if sql.keep {
        sql.extend(&publish_plan.statements(d, &release));
    } else {
        sql.count += publish_plan.statement_count();
    }
    if atomic {
        sql.push(|| "COMMIT".into());
    }
    Ok(PublishPart { sql, atomic, grants: grant_sql, notes })
}

/// A strategy's plan: its build, then its publish.
fn plan_of(p: &Prepared, build: BuildPart, publish: PublishPart, shown: Shown) -> StrategyPlan {
    let BuildPart { sql: mut all, nodes, built, tests, not_run } = build;
    all.count += publish.sql.count;
    all.sql.extend(publish.sql.sql);
    let Statements { sql, count: statements, .. } = all;
    StrategyPlan {
        strategy: p.strategy.name.clone(),
        refused: None,
        objects_built: built,
        tests,
        objects_published: p.changes.len(),
        statements,
        rows_copied_estimate: p.rows_copied,
        atomic_publish: publish.atomic,
        incremental_safe: p.strategy.facts.incremental_safe,
        rollback: p.strategy.facts.rollback.clone(),
        extra_storage: p.strategy.facts.extra_storage.clone(),
        nodes,
        not_published: p.unbuilt_tagged.clone(),
        left_out: p.left_out.iter().map(|(n, why)| format!("{n}: {why}")).collect(),
        blocking: not_run,
        grants: publish.grants,
        publish_notes: publish.notes,
        bytes_estimate: None,
        sql: shown.sql.then(|| sql.clone()),
        all_sql: sql,
    }
}


/// Offline: prod holds every model as its materialization says.
fn assumed_prod(session: &Session) -> Catalog {
    let layout = &session.layout;
    Catalog::new(
        layout.dialect,
        session
            .project()
            .relations()
            .map(|n| CatalogEntry {
                schema: layout.prod_schema(n),
                name: layout.ident(n),
                kind: if n.materialization == Materialization::View { ObjectKind::View } else { ObjectKind::Table },
                view_ddl: (n.materialization == Materialization::View).then(|| format!("-- DDL of {} as read from the warehouse at publish time", layout.prod_relation(n).rendered)),
                rows: None,
            })
            .collect(),
    )
}

fn yes(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

fn print_one(r: &PlanReport) {
    let p = &r.strategies[0];
    let rows = p.nodes.iter().map(|n| vec![n.name.clone(), n.materialization.clone(), n.action.clone(), n.target.clone()]).collect();
    report::print_table(Format::Table, &["node", "type", "action", "prod relation"], rows, &(), "nothing selected");
    let mut tail = format!(
        "plan for release {} with strategy {}: build {} node{} and run {} test{}; publish {} object{}{} ({} statements); nothing was written\n",
        r.release,
        p.strategy,
        p.objects_built,
        super::run::plural(p.objects_built),
        p.tests,
        super::run::plural(p.tests),
        p.objects_published,
        super::run::plural(p.objects_published),
        if p.atomic_publish { " in one transaction" } else { "" },
        p.statements
    );
    if !p.not_published.is_empty() {
        tail.push_str(&format!("not published (tagged, but not built in this run): {}\n", p.not_published.join(", ")));
    }
    if !p.left_out.is_empty() {
        tail.push_str("left out of this build:\n");
        for l in &p.left_out {
            tail.push_str(&format!("  {l}\n"));
        }
    }
    for b in &p.blocking {
        tail.push_str(&format!("blocks the gate: {b}\n"));
    }
    for n in &p.publish_notes {
        tail.push_str(&format!("publish: {n}\n"));
    }
    if let Some(e) = &p.bytes_estimate {
        tail.push_str(&format!("bytes processed (dry runs): {}\n", bytes_text(e)));
    }
    if !p.grants.is_empty() {
        tail.push_str(&format!("privileges on prod kept by {} GRANT{} (checked after the publish):\n", p.grants.len(), super::run::plural(p.grants.len())));
        for g in &p.grants {
            tail.push_str(&format!("  {g}\n"));
        }
    }
    tail.push_str(&format!("builder: {} ({})\n", r.builder, r.builder_reason));
    if let Some(sql) = &p.sql {
        for s in sql {
            tail.push_str(&format!("\n{s};\n"));
        }
    }
    report::emit(&tail);
}

fn print_comparison(r: &PlanReport, show_sql: bool) {
    // the bytes column only where the warehouse dry-runs (BigQuery)
    let with_bytes = r.strategies.iter().any(|p| p.bytes_estimate.is_some());
    let rows = r
        .strategies
        .iter()
        .map(|p| {
            let mut row = match &p.refused {
                Some(reason) => vec![p.strategy.clone(), format!("refused: {reason}"), String::new(), String::new(), String::new(), String::new(), yes(p.incremental_safe), p.rollback.clone(), p.extra_storage.clone()],
                None => vec![
                    p.strategy.clone(),
                    format!("{} + {} tests", p.objects_built, p.tests),
                    p.objects_published.to_string(),
                    p.statements.to_string(),
                    p.rows_copied_estimate.map(|n| format!("≈{n} rows")).unwrap_or_else(|| "n/a".into()),
                    yes(p.atomic_publish),
                    yes(p.incremental_safe),
                    p.rollback.clone(),
                    p.extra_storage.clone(),
                ],
            };
            if with_bytes {
                row.insert(4, p.bytes_estimate.as_ref().map(bytes_text).unwrap_or_default());
            }
            row
        })
        .collect();
    let mut headers = vec!["strategy", "built", "published", "statements", "prod data copied", "atomic publish", "incremental-safe", "rollback", "extra storage kept"];
    if with_bytes {
        headers.insert(4, "bytes processed (dry runs)");
    }
    report::print_table(Format::Table, &headers, rows, &(), "no strategies");
    let mut tail = format!("dry run on {} ({}), selection {}: nothing was written\n", r.warehouse, r.dialect, r.selection);
    tail.push_str(&format!("builder: {} ({})\n", r.builder, r.builder_reason));
    if show_sql {
        for p in r.strategies.iter() {
            if let Some(sql) = &p.sql {
                tail.push_str(&format!("\n-- strategy {} --\n", p.strategy));
                for s in sql {
                    tail.push_str(&format!("\n{s};\n"));
                }
            }
        }
    }
    report::emit(&tail);
}
