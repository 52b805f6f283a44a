//! The project as plain types: models, seeds, sources and tests of a dbt-style
//! project, after config merging and dependency discovery. Loading lives in
//! `load.rs`; nothing here talks to a warehouse.

mod dbt_project;
mod load;
pub mod profile;
mod properties;
mod refuse;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

pub use load::load_project;
pub use refuse::Refused;

/// A node id as dbt spells it: `model.shop.orders`, `seed.shop.raw_orders`,
/// `source.shop.landing.shipments`, `test.shop.unique_orders_id`.
pub type NodeId = String;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    Model,
    Seed,
    Source,
    Test,
}

impl NodeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Model => "model",
            NodeKind::Seed => "seed",
            NodeKind::Source => "source",
            NodeKind::Test => "test",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Materialization {
    View,
    Table,
    Incremental,
    Ephemeral,
    /// seeds are loaded, not selected from
    Seed,
}

impl Materialization {
    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "view" => Self::View,
            "table" => Self::Table,
            "incremental" => Self::Incremental,
            "ephemeral" => Self::Ephemeral,
            "seed" => Self::Seed,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::View => "view",
            Self::Table => "table",
            Self::Incremental => "incremental",
            Self::Ephemeral => "ephemeral",
            Self::Seed => "seed",
        }
    }
    /// Whether the node leaves an object in the warehouse.
    pub fn is_persisted(self) -> bool {
        self != Self::Ephemeral
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warn,
}

/// Config as merged from dbt_project.yml, YAML properties and `config()`.
#[derive(Debug, Clone, Default)]
pub struct NodeConfig {
    pub materialized: Option<String>,
    pub schema: Option<String>,
    pub alias: Option<String>,
    pub tags: BTreeSet<String>,
    pub enabled: Option<bool>,
    pub unique_key: Option<Vec<String>>,
    pub incremental_strategy: Option<String>,
    pub severity: Option<String>,
    pub column_types: BTreeMap<String, String>,
    pub external_location: Option<String>,
    pub full_refresh: Option<bool>,
    /// SQL run in the audit location before / after the node is built
    pub pre_hook: Vec<String>,
    pub post_hook: Vec<String>,
    /// tests: dbt's `where` (the tested relation is filtered first), `limit`
    /// (failing rows counted at most), `error_if` / `warn_if` thresholds
    pub where_: Option<String>,
    pub limit: Option<u64>,
    pub error_if: Option<String>,
    pub warn_if: Option<String>,
    /// configs the native builder does not implement, with where each was
    /// set; refused at load where they change what dbt builds (see refuse.rs)
    pub refused: BTreeMap<String, (serde_json::Value, String)>,
}

#[derive(Debug, Clone)]
pub enum TestKind {
    /// A built-in generic test on one column.
    Generic {
        name: String,
        column: String,
        args: BTreeMap<String, serde_json::Value>,
    },
    /// `tests/*.sql`: a query returning the failing rows.
    Singular { sql: String },
}

#[derive(Debug, Clone)]
pub struct Node {
    pub id: NodeId,
    pub kind: NodeKind,
    pub name: String,
    /// file the node comes from, relative to the project root
    pub path: PathBuf,
    /// dbt's fully qualified name: project, folders, name
    pub fqn: Vec<String>,
    pub config: NodeConfig,
    /// raw SQL (models, singular tests) before rendering
    pub raw_sql: String,
    /// direct upstream nodes (refs, sources; for tests the tested relations)
    pub depends_on: BTreeSet<NodeId>,
    pub materialization: Materialization,
    /// tests: the node the test is declared on (its failure skips that node's descendants)
    pub attached_to: Option<NodeId>,
    pub test: Option<TestKind>,
    /// sources: database (when another than the target's), schema and table
    /// as declared
    pub source_relation: Option<(Option<String>, String, String)>,
    /// seeds: absolute path of the CSV
    pub seed_file: Option<PathBuf>,
}

impl Node {
    pub fn severity(&self) -> Severity {
        match self.config.severity.as_deref() {
            Some(s) if s.eq_ignore_ascii_case("warn") => Severity::Warn,
            _ => Severity::Error,
        }
    }
    pub fn identifier(&self) -> &str {
        self.config.alias.as_deref().unwrap_or(&self.name)
    }
    /// Whether the node becomes an object in the warehouse.
    pub fn is_relation(&self) -> bool {
        matches!(self.kind, NodeKind::Model | NodeKind::Seed) && self.materialization.is_persisted()
    }
}

/// A macro file: its template name and source, with dbt's `{% test %}` blocks
/// rewritten to `test_`-prefixed macros.
#[derive(Debug, Clone)]
pub struct MacroFile {
    pub name: String,
    pub source: String,
    pub macros: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Project {
    pub name: String,
    pub root: PathBuf,
    pub profile: String,
    pub vars: BTreeMap<String, serde_json::Value>,
    /// every node, in id order (loaded sorted); looked up by hash, as
    /// planning does hundreds of thousands of times on a large project
    /// (foldhash: ids come from the user's own files, not an adversary)
    pub nodes: indexmap::IndexMap<NodeId, Box<Node>, foldhash::fast::RandomState>,
    pub macros: Vec<MacroFile>,
    /// `on-run-start` / `on-run-end` of dbt_project.yml
    pub on_run_start: Vec<String>,
    pub on_run_end: Vec<String>,
    /// `quoting:` of dbt_project.yml
    pub quoting: Quoting,
}

/// dbt's `quoting:` config: which names keep their case as written. Off by
/// default, so names fold as the warehouse folds unquoted identifiers
/// (Snowflake: upper case), exactly as dbt-snowflake creates them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quoting {
    #[serde(default)]
    pub database: bool,
    #[serde(default)]
    pub schema: bool,
    #[serde(default)]
    pub identifier: bool,
}

impl Project {
    pub fn node(&self, id: &str) -> &Node {
        &self.nodes[id]
    }
    /// Where `id` is in `nodes`; nodes are in id order, so comparing
    /// positions compares ids. Planning works on positions: no hashing or
    /// string comparison per edge.
    pub fn position(&self, id: &str) -> Option<usize> {
        self.nodes.get_index_of(id)
    }
    /// The node at `position` in `nodes`.
    pub fn at(&self, position: usize) -> &Node {
        &self.nodes[position]
    }
    /// `ids` as one flag per position in `nodes` (ids the project does not
    /// hold are left out): a membership test without hashing or comparing
    /// strings, for loops over every node.
    pub fn mask<'a>(&self, ids: impl IntoIterator<Item = &'a NodeId>) -> Vec<bool> {
        let mut mask = vec![false; self.nodes.len()];
        for i in ids.into_iter().filter_map(|id| self.position(id)) {
            mask[i] = true;
        }
        mask
    }
    pub fn relations(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values().map(|n| &**n).filter(|n| n.is_relation())
    }
    /// Whether a full refresh rebuilds `node`: its `full_refresh` config wins
    /// over the flag (`full_refresh: false` protects it from --full-refresh).
    pub fn full_refresh(node: &Node, flag: bool) -> bool {
        node.config.full_refresh.unwrap_or(flag)
    }
}

pub use load::{read_header, Loaded, ProjectHeader};

/// Whether `name` is one of dbt's built-in generic tests, which airlock
/// writes itself (others are `{% test %}` macros of the project).
pub fn is_builtin_test(name: &str) -> bool {
    properties::BUILTIN_TESTS.contains(&name)
}
