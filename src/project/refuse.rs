//! What the native builder does not implement yet, found at load and refused
//! together (exit 2): each item names its file and the dbt construct, and the
//! message names `--builder dbt` as the way to run the project today. The
//! native builder never skips a construct silently: a skipped snapshot, unit
//! test or `on_schema_change` would publish something dbt would not.

use std::collections::BTreeMap;

use anyhow::Result;
use serde_json::Value;

use super::{Materialization, Node, NodeKind};

/// Config keys the native builder does not implement; a node keeps their
/// value and where it was set, and [`check_node`] decides whether it matters
/// for that node.
pub(super) const REFUSED_KEYS: &[&str] = &[
    "on_schema_change",
    "incremental_predicates",
    "merge_exclude_columns",
    "merge_update_columns",
    "contract",
    "store_failures",
    "store_failures_as",
    "quote_columns",
    "delimiter",
    "database",
    "sql_header",
    "fail_calc",
    "grants",
];

/// Incremental strategies built as dbt-duckdb builds them: `append` without a
/// unique key, `delete+insert` with one.
const STRATEGIES: &[&str] = &["default", "append", "delete+insert"];

/// Constructs found so far: (file, what).
#[derive(Debug, Default)]
pub(super) struct Refusals {
    items: Vec<(String, String)>,
    /// a construct without which the project's templates cannot render
    /// (packages, custom materializations): refused before rendering
    pub blocking: bool,
}

impl Refusals {
    pub fn add(&mut self, file: impl Into<String>, construct: impl Into<String>) {
        let item = (file.into(), construct.into());
        if !self.items.contains(&item) {
            self.items.push(item);
        }
    }

    /// An error listing every refused construct, when there is one: a
    /// [`Refused`], which `airlock doctor` reads back instead of judging the
    /// project a second time.
    pub fn check(&self) -> Result<()> {
        if self.items.is_empty() {
            return Ok(());
        }
        Err(Refused { items: self.items.clone(), complete: !self.blocking }.into())
    }
}

/// What the native builder refused in a project: (file, construct) in the
/// order found. `complete` is false when a construct stopped the load before
/// the models were rendered (packages, custom materializations): what
/// rendering would find is not in the list yet.
#[derive(Debug, Clone)]
pub struct Refused {
    pub items: Vec<(String, String)>,
    pub complete: bool,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.items.len();
        let count = if n == 1 { "1 construct".to_string() } else { format!("{n} constructs") };
        write!(f, "the native builder does not support {count} of this project yet (nothing was built); run it with --builder dbt, which runs your dbt inside airlock's gate:")?;
        for (file, what) in &self.items {
            write!(f, "\n  {file}: {what}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Refused {}

fn set(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Array(items) => !items.is_empty(),
        Value::Object(map) => !map.is_empty(),
        Value::String(s) => !s.trim().is_empty(),
        _ => true,
    }
}

fn truthy(value: &Value) -> bool {
    match value {
        Value::Bool(b) => *b,
        Value::String(s) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

fn show(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The refused configs of one node that change what dbt would build for it.
/// `target` is the profile's target (`type`, `database`).
pub(super) fn check_node(node: &Node, target: &Value, out: &mut Refusals) {
    let cfg: &BTreeMap<String, (Value, String)> = &node.config.refused;
    let what = format!("{} '{}'", node.kind.as_str(), node.name);
    let mut refuse = |key: &str, detail: String| {
        let origin = cfg.get(key).map(|(_, o)| o.clone()).unwrap_or_else(|| node.path.display().to_string());
        out.add(origin, format!("{detail} on {what}"));
    };
    let get = |key: &str| cfg.get(key).map(|(v, _)| v).filter(|v| !v.is_null());
    let incremental = node.kind == NodeKind::Model && node.materialization == Materialization::Incremental;
    if incremental {
        if let Some(v) = get("on_schema_change").filter(|v| !show(v).eq_ignore_ascii_case("ignore")) {
            refuse("on_schema_change", format!("on_schema_change: {} (only 'ignore' is built natively)", show(v)));
        }
        for key in ["incremental_predicates", "merge_exclude_columns", "merge_update_columns"] {
            if get(key).is_some_and(set) {
                refuse(key, format!("{key} (incremental config)"));
            }
        }
        if let Some(s) = node.config.incremental_strategy.as_deref().filter(|s| !STRATEGIES.contains(&s.to_ascii_lowercase().as_str())) {
            let detail = format!("incremental_strategy '{s}' (append and delete+insert are built natively)");
            refuse("incremental_strategy", detail);
        }
    }
    if matches!(node.kind, NodeKind::Model) {
        if let Some(v) = get("contract") {
            if v.get("enforced").is_some_and(truthy) {
                refuse("contract", "model contract (contract: {enforced: true})".to_string());
            }
        }
        if get("sql_header").is_some_and(set) {
            refuse("sql_header", "sql_header".to_string());
        }
    }
    if matches!(node.kind, NodeKind::Model | NodeKind::Seed) {
        if let Some(db) = get("database").filter(|v| set(v)) {
            let target_db = target.get("database").and_then(Value::as_str).unwrap_or_default();
            if !show(db).eq_ignore_ascii_case(target_db) {
                refuse("database", format!("custom database '{}'", show(db)));
            }
        }
        let warehouse = target.get("type").and_then(Value::as_str).unwrap_or("duckdb");
        if get("grants").is_some_and(set) && !warehouse.eq_ignore_ascii_case("duckdb") {
            refuse("grants", "grants config (dbt applies it; airlock's publish copies prod's grants instead)".to_string());
        }
    }
    if node.kind == NodeKind::Seed {
        if get("quote_columns").is_some_and(truthy) {
            refuse("quote_columns", "quote_columns: true (seed)".to_string());
        }
        if let Some(d) = get("delimiter").filter(|d| show(d) != ",") {
            refuse("delimiter", format!("seed delimiter '{}'", show(d)));
        }
    }
    if node.kind == NodeKind::Test {
        if get("store_failures").is_some_and(truthy) {
            refuse("store_failures", "store_failures: true".to_string());
        }
        if let Some(v) = get("store_failures_as").filter(|v| set(v)) {
            refuse("store_failures_as", format!("store_failures_as: {}", show(v)));
        }
        if let Some(v) = get("fail_calc").filter(|v| !show(v).trim().eq_ignore_ascii_case("count(*)")) {
            refuse("fail_calc", format!("fail_calc: {}", show(v)));
        }
    }
}

/// Macros that change how dbt names or builds things, which the native
/// builder does its own way: overriding them would be ignored.
pub(super) fn check_macros(file: &str, source: &str, names: &[String], out: &mut Refusals) {
    for name in names {
        let overridden = match name.as_str() {
            "generate_schema_name" | "generate_alias_name" | "generate_database_name" => Some(format!("macro override {name}()")),
            n if n.starts_with("test_") && super::properties::BUILTIN_TESTS.contains(&&n[5..]) => {
                Some(format!("override of the built-in test '{}'", &n[5..]))
            }
            n if n.starts_with("default__test_") || n.starts_with("duckdb__test_") => Some(format!("override of dbt's test macro {n}()")),
            _ => None,
        };
        if let Some(what) = overridden {
            out.add(file, what);
        }
    }
    if source.contains("{% materialization") || source.contains("{%- materialization") {
        out.add(file, "custom materialization");
        out.blocking = true;
    }
}
