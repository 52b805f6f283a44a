//! `airlock plan`: what deploy would build and publish, and with
//! `--show-sql` the exact statements. Opens the warehouse read-only and never
//! creates it: a plan writes nothing.

use anyhow::Result;
use serde::Serialize;

use super::ExitStatus;
use crate::build::{self, BuildInput, Catalog};
use crate::cli::Format;
use crate::ledger::{self, Release};
use crate::publish;
use crate::report;
use crate::session::Session;
use crate::warehouse::Warehouse;

#[derive(Serialize)]
struct PlanNode {
    name: String,
    kind: String,
    materialization: String,
    action: String,
    target: String,
}

#[derive(Serialize)]
struct PlanReport {
    status: &'static str,
    release: i64,
    strategy: &'static str,
    warehouse: String,
    selection: String,
    nodes: Vec<PlanNode>,
    tests: usize,
    published: Vec<String>,
    audit_schemas: Vec<String>,
    statements: Option<Vec<String>>,
}

pub async fn run(session: &Session, show_sql: bool) -> Result<ExitStatus> {
    let wh = session.open_warehouse(true)?;
    let layout = &session.layout;
    let dialect = layout.dialect;
    let project = session.project();
    let prod_schemas: Vec<String> = session.all_prod_schemas().into_iter().collect();
    let prod = Catalog::new(wh.catalog(&prod_schemas).await?);
    let has_ledger = !wh.catalog(&[ledger::SCHEMA.to_string()]).await?.is_empty();
    let release_id = if has_ledger { ledger::next_id(&*wh).await? } else { 1 };

    let compiler = session.compiler();
    let input = BuildInput { compiler: &compiler, dag: &session.dag, selected: &session.selected, prod: &prod, full_refresh: session.cfg.full_refresh };
    let steps = build::plan_steps(&input)?;
    let changes = super::run::publish_changes(session, &prod)?;

    let audit_schemas = session.audit_schemas();
    let mut statements = Vec::new();
    for s in &audit_schemas {
        statements.push(format!("DROP SCHEMA IF EXISTS {} CASCADE", dialect.quote(s)));
        statements.push(format!("CREATE SCHEMA {}", dialect.quote(s)));
    }
    let mut nodes = Vec::new();
    let mut tests = 0;
    for step in &steps {
        let node = project.node(&step.id);
        statements.extend(step.statements.iter().cloned());
        if let Some(q) = &step.test {
            statements.push(q.clone());
            tests += 1;
            continue;
        }
        let action = match (node.materialization, step.incremental) {
            (_, true) => "incremental on a copy of prod",
            (crate::project::Materialization::Seed, _) => "load",
            _ => match prod.get(&layout.prod_schema(node), node.identifier()) {
                Some(_) => "rebuild",
                None => "create",
            },
        };
        nodes.push(PlanNode {
            name: node.name.clone(),
            kind: node.kind.as_str().into(),
            materialization: node.materialization.as_str().into(),
            action: action.into(),
            target: layout.prod_relation(node).rendered,
        });
    }
    let release = Release {
        id: release_id,
        project: project.name.clone(),
        target: session.cfg.profile.target_name.clone(),
        strategy: super::run::STRATEGY.into(),
        selection: session.cfg.selection_text(),
        started_at: String::new(),
        finished_at: Some("<publish time>".into()),
        status: "published".into(),
        built: 0,
        tests: 0,
        failed: 0,
        warned: 0,
        published: changes.len() as i64,
        git_commit: None,
        backup_schema: Some(publish::backup_schema(release_id)),
        restores: None,
    };
    statements.push("BEGIN TRANSACTION".into());
    statements.extend(publish::statements(dialect, &release, &changes));
    statements.push("COMMIT".into());

    let published: Vec<String> = changes.iter().map(|c| dialect.relation(&c.schema, &c.name)).collect();
    let report = PlanReport {
        status: "planned",
        release: release_id,
        strategy: super::run::STRATEGY,
        warehouse: wh.describe(),
        selection: session.cfg.selection_text(),
        nodes,
        tests,
        published,
        audit_schemas,
        statements: show_sql.then(|| statements.clone()),
    };
    if session.cfg.format == Format::Json {
        report::json(&report);
        return Ok(ExitStatus::Success);
    }
    let rows = report
        .nodes
        .iter()
        .map(|n| vec![n.name.clone(), n.materialization.clone(), n.action.clone(), n.target.clone()])
        .collect();
    report::print_table(Format::Table, &["node", "type", "action", "prod relation"], rows, &(), "nothing selected");
    let mut tail = format!(
        "plan for release {}: build {} node{} and run {} test{} in {}; publish {} object{} in one transaction ({} statements); nothing was written\n",
        release_id,
        report.nodes.len(),
        super::run::plural(report.nodes.len()),
        tests,
        super::run::plural(tests),
        report.audit_schemas.join(", "),
        report.published.len(),
        super::run::plural(report.published.len()),
        statements.len()
    );
    if show_sql {
        for s in &statements {
            tail.push_str(&format!("\n{s};\n"));
        }
    }
    report::emit(&tail);
    Ok(ExitStatus::Success)
}
