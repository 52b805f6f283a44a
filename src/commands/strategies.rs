//! `airlock strategies`: the registry, built-in and project strategies, with
//! the warehouses that can carry out each one.

use anyhow::Result;
use serde::Serialize;

use super::ExitStatus;
use crate::cli::GlobalArgs;
use crate::report;
use crate::strategy::{Registry, Support};
use crate::warehouse::Dialect;

#[derive(Serialize)]
struct Row {
    name: String,
    origin: String,
    description: String,
    warehouses: Vec<String>,
    refused: Vec<String>,
}

pub fn run(g: &GlobalArgs) -> Result<ExitStatus> {
    let dir = g.strategies_dir.clone().unwrap_or_else(|| g.project_dir.join("strategies"));
    let registry = Registry::load(Some(&dir))?;
    let rows: Vec<Row> = registry
        .strategies
        .values()
        .map(|s| Row {
            name: s.name.clone(),
            origin: if s.shadows_built_in { format!("{} (replaces the built-in '{}')", s.origin, s.name) } else { s.origin.clone() },
            description: s.description.clone(),
            warehouses: [Dialect::DuckDb, Dialect::Snowflake, Dialect::BigQuery].iter().filter(|d| s.supports(**d)).map(|d| d.name().to_string()).collect(),
            refused: s
                .support
                .iter()
                .filter_map(|(w, sup)| match sup {
                    Support::No(reason) => Some(format!("{w}: {reason}")),
                    Support::Yes(_) => None,
                })
                .collect(),
        })
        .collect();
    let table = rows
        .iter()
        .map(|r| vec![r.name.clone(), r.warehouses.join(", "), r.description.clone(), r.origin.clone()])
        .collect();
    report::print_table(g.format, &["strategy", "warehouses", "what it does", "from"], table, &serde_json::json!({ "status": "ok", "strategies": rows }), "no strategies");
    Ok(ExitStatus::Success)
}
