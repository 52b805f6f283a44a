//! From project nodes to SQL: where each relation lives (prod, audit, backup),
//! how a model renders for a given placement, ephemeral models inlined as
//! CTEs, and the statements that materialize a node.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result};

use crate::project::{Materialization, Node, NodeId, NodeKind, Project};
use crate::render::{Names, Placement, Relation, RenderScope, Renderer};
use crate::warehouse::Dialect;

/// Where things live in the warehouse.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dialect: Dialect,
    /// the profile's schema: prod for nodes without a custom schema
    pub target_schema: String,
    /// audit schema naming, `{schema}` is the prod schema
    pub audit_pattern: String,
    /// relative file reads resolve against these, in order
    pub search_dirs: Vec<PathBuf>,
    /// names that keep their case (dbt's `quoting:`); the rest fold as the
    /// warehouse folds unquoted identifiers
    pub quoting: crate::project::Quoting,
    /// Snowflake: the audit location is a whole database (`audit_database`
    /// in airlock.toml); each audit schema has its prod schema's name there
    pub audit_database: Option<AuditDatabase>,
    /// every node's relations, computed once (a layout belongs to one project)
    pub relations: RelationCache,
}

/// Each relation node's prod relation and, for what is built, its audit
/// twin: computed on first use, then shared by every placement.
#[derive(Clone, Default)]
pub struct RelationCache(Arc<OnceLock<Arc<Relations>>>);

/// By node id: its position in the project, its prod relation, its audit
/// twin. Relation nodes only (tests are most of a project's nodes): an index
/// of ids into a dense list.
struct Relations {
    slot: HashMap<NodeId, u32, foldhash::fast::RandomState>,
    rels: Vec<(usize, Relation, Option<Relation>)>,
}

impl Relations {
    fn get(&self, id: &str) -> Option<&(usize, Relation, Option<Relation>)> {
        self.slot.get(id).map(|&i| &self.rels[i as usize])
    }
}

impl std::fmt::Debug for RelationCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RelationCache({} nodes)", self.0.get().map_or(0, |m| m.rels.len()))
    }
}

/// A database-level audit location: prod's database and its audit twin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditDatabase {
    pub prod: String,
    pub audit: String,
}

impl Layout {
    /// A schema name as the warehouse holds it (Snowflake: upper case,
    /// unless `quoting: schema: true`).
    pub fn schema_name(&self, name: &str) -> String {
        if self.quoting.schema { name.to_string() } else { self.dialect.fold(name) }
    }

    /// An object name as the warehouse holds it.
    pub fn object_name(&self, name: &str) -> String {
        if self.quoting.identifier { name.to_string() } else { self.dialect.fold(name) }
    }

    /// dbt's generate_schema_name: custom schemas are appended to the target's.
    pub fn prod_schema(&self, node: &Node) -> String {
        match node.config.schema.as_deref().map(str::trim) {
            Some(custom) if !custom.is_empty() => self.schema_name(&format!("{}_{custom}", self.target_schema)),
            _ => self.schema_name(&self.target_schema),
        }
    }

    /// The audit twin of a prod schema: by name, or the same name in the
    /// audit database.
    pub fn audit_schema(&self, prod_schema: &str) -> String {
        match self.audit_database {
            Some(_) => prod_schema.to_string(),
            None => self.schema_name(&self.audit_pattern.replace("{schema}", prod_schema)),
        }
    }

    /// The audit database, when the audit location is one.
    pub fn audit_db(&self) -> Option<&str> {
        self.audit_database.as_ref().map(|a| a.audit.as_str())
    }

    /// The audit twin of a prod schema, quoted (qualified by the audit
    /// database where there is one): what DDL on the audit location names.
    pub fn audit_location(&self, prod_schema: &str) -> String {
        let schema = self.dialect.quote(&self.audit_schema(prod_schema));
        match self.audit_db() {
            Some(db) => format!("{}.{schema}", self.dialect.quote(db)),
            None => schema,
        }
    }

    /// A prod object's audit twin, quoted.
    pub fn audit_twin(&self, prod_schema: &str, name: &str) -> String {
        self.dialect.qualified(self.audit_db(), &self.audit_schema(prod_schema), name)
    }

    /// What removes the audit locations of these prod schemas once they are
    /// spent (the whole audit database where it is one).
    pub fn drop_audit(&self, prod_schemas: &[String]) -> Vec<String> {
        match self.audit_db() {
            Some(db) => vec![format!("DROP DATABASE IF EXISTS {}", self.dialect.quote(db))],
            None => prod_schemas.iter().map(|s| format!("DROP SCHEMA IF EXISTS {} CASCADE", self.audit_location(s))).collect(),
        }
    }

    /// A node's object name in the warehouse (its alias or name, folded).
    pub fn ident(&self, node: &Node) -> String {
        self.object_name(node.identifier())
    }

    pub fn relation(&self, schema: &str, node: &Node) -> Relation {
        let ident = self.ident(node);
        Relation { database: None, schema: schema.to_string(), identifier: ident.clone(), rendered: self.dialect.relation(schema, &ident) }
    }

    pub fn prod_relation(&self, node: &Node) -> Relation {
        self.relation(&self.prod_schema(node), node)
    }

    pub fn audit_relation(&self, node: &Node) -> Relation {
        let rel = self.relation(&self.audit_schema(&self.prod_schema(node)), node);
        match self.audit_db() {
            Some(db) => Relation { rendered: self.dialect.qualified(Some(db), &rel.schema, &rel.identifier), database: Some(db.to_string()), ..rel },
            None => rel,
        }
    }

    /// A source: its declared table, or a file read for `external_location`.
    pub fn source_relation(&self, node: &Node) -> Relation {
        let (database, schema, ident) = node.source_relation.clone().unwrap_or_default();
        let (schema, ident) = (self.schema_name(&schema), self.object_name(&ident));
        let database = database.map(|db| if self.quoting.database { db } else { self.dialect.fold(&db) });
        // `external_location` is dbt-duckdb's: elsewhere a source is a table,
        // as dbt-snowflake and dbt-bigquery read it
        let external = node.config.external_location.as_ref().filter(|_| self.dialect == Dialect::DuckDb);
        let rendered = match external {
            Some(loc) if loc.contains('(') => loc.clone(),
            Some(loc) => self.dialect.literal(&self.resolve_file(loc)),
            None => self.dialect.qualified(database.as_deref(), &schema, &ident),
        };
        Relation { database, schema, identifier: ident, rendered }
    }

    /// A relative path becomes absolute (working directory first, then the
    /// project), so published views do not depend on where they are queried from.
    fn resolve_file(&self, loc: &str) -> String {
        let p = Path::new(loc);
        if p.is_absolute() || loc.contains("://") {
            return loc.to_string();
        }
        for dir in &self.search_dirs {
            let candidate = dir.join(p);
            // a glob cannot be checked for existence; its folder can
            let probe = if loc.contains('*') { candidate.parent().map(Path::to_path_buf).unwrap_or_default() } else { candidate.clone() };
            if probe.exists() {
                return candidate.display().to_string();
            }
        }
        loc.to_string()
    }

    /// Placement for one run: nodes in `in_audit` resolve to the audit
    /// location, other relations to prod, ephemeral models to their CTE.
    pub fn placement(&self, project: &Project, in_audit: &BTreeSet<NodeId>) -> Placement {
        let table = self.relations(project);
        // by position: one hash lookup per ref rendered
        let in_audit = project.mask(in_audit.iter());
        Arc::new(move |id: &str| match table.get(id) {
            Some((i, _, Some(audit))) if in_audit[*i] => audit.clone(),
            Some((_, rel, _)) => rel.clone(),
            None => Relation { database: None, schema: String::new(), identifier: id.into(), rendered: id.into() },
        })
    }

    /// Every relation node's prod relation (sources: their table; ephemeral
    /// models: their CTE) and, for models and seeds, the audit one.
    fn relations(&self, project: &Project) -> Arc<Relations> {
        self.relations
            .0
            .get_or_init(|| {
                let n = project.nodes.values().filter(|n| n.kind != NodeKind::Test).count();
                let mut map = Relations { slot: HashMap::with_capacity_and_hasher(n, Default::default()), rels: Vec::with_capacity(n) };
                for (i, node) in project.nodes.values().enumerate() {
                    let rels = match node.kind {
                        NodeKind::Source => (self.source_relation(node), None),
                        NodeKind::Model if node.materialization == Materialization::Ephemeral => {
                            (Relation { database: None, schema: String::new(), identifier: node.name.clone(), rendered: cte_name(self.dialect, &node.name) }, None)
                        }
                        NodeKind::Model | NodeKind::Seed => (self.prod_relation(node), Some(self.audit_relation(node))),
                        NodeKind::Test => continue,
                    };
                    map.slot.insert(node.id.clone(), map.rels.len() as u32);
                    map.rels.push((i, rels.0, rels.1));
                }
                Arc::new(map)
            })
            .clone()
    }
}

fn cte_name(dialect: Dialect, name: &str) -> String {
    dialect.quote(&format!("__dbt__cte__{name}"))
}

/// Renders nodes to SQL for a placement.
pub struct Compiler<'a> {
    pub project: &'a Project,
    pub renderer: &'a Renderer,
    pub names: Arc<Names>,
    pub layout: &'a Layout,
    /// `target` as hooks see it: the audit location is where they run
    pub hook_target: serde_json::Value,
}

impl Compiler<'_> {
    /// The SELECT of a model (or singular test), ephemeral refs inlined as CTEs.
    pub fn select_sql(&self, node: &Node, place: &Placement, this: Option<Relation>, is_incremental: bool) -> Result<String> {
        let (body, refs) = self.render(node, place, this, is_incremental)?;
        let mut ctes: Vec<(String, String)> = Vec::new();
        let mut seen = BTreeSet::new();
        self.collect_ephemerals(&refs, place, &mut ctes, &mut seen)?;
        if ctes.is_empty() {
            return Ok(body);
        }
        let with = ctes.iter().map(|(name, sql)| format!("{} AS (\n{}\n)", cte_name(self.layout.dialect, name), sql)).collect::<Vec<_>>().join(",\n");
        Ok(format!("WITH {with}\nSELECT * FROM (\n{body}\n) AS airlock_model"))
    }

    fn render(&self, node: &Node, place: &Placement, this: Option<Relation>, is_incremental: bool) -> Result<(String, Vec<NodeId>)> {
        let scope = RenderScope::new(self.names.clone(), place.clone(), this, is_incremental);
        let source = match &node.test {
            Some(crate::project::TestKind::Singular { sql }) => sql.as_str(),
            _ => node.raw_sql.as_str(),
        };
        let sql = self.renderer.render(&node.path.display().to_string(), source, &scope)?;
        let refs = scope.take().refs;
        Ok((strip_sql(&sql), refs))
    }

    /// The failing-rows SQL of a custom generic test (`{% test %}` macro),
    /// rendered for this placement; dbt's `where` filters the tested relation.
    pub fn generic_macro_sql(&self, node: &Node, place: &Placement) -> Result<String> {
        let Some(crate::project::TestKind::Generic { name, column, args }) = &node.test else {
            anyhow::bail!("test {} is not a generic test", node.name)
        };
        let owner = node.attached_to.as_ref().ok_or_else(|| anyhow::anyhow!("test {} is attached to nothing", node.name))?;
        let model = crate::gate::where_subquery(&place(owner), node.config.where_.as_deref(), true);
        let call = crate::render::test_macro_call(name, Some(column.as_str()), args)?;
        let scope = RenderScope::new(self.names.clone(), place.clone(), Some(model), false);
        let sql = self.renderer.render(&node.path.display().to_string(), &call, &scope)?;
        Ok(strip_sql(&sql))
    }

    /// A hook (`pre-hook`, `post-hook`, `on-run-start`, `on-run-end`) as it
    /// runs in the audit location: `this` is the audited relation and
    /// `target.schema` the audit schema.
    pub fn hook_sql(&self, origin: &str, hook: &str, place: &Placement, this: Option<Relation>) -> Result<String> {
        let scope = RenderScope::with_target(self.names.clone(), place.clone(), this, self.hook_target.clone());
        let sql = self.renderer.render(origin, hook, &scope)?;
        Ok(strip_sql(&sql))
    }

    /// Ephemeral models referenced (directly or through other ephemerals), upstream first.
    fn collect_ephemerals(&self, refs: &[NodeId], place: &Placement, out: &mut Vec<(String, String)>, seen: &mut BTreeSet<NodeId>) -> Result<()> {
        for id in refs {
            let node = self.project.node(id);
            if node.materialization != Materialization::Ephemeral || !seen.insert(id.clone()) {
                continue;
            }
            // `{{ this }}` in an ephemeral model is the relation it would have
            // if it were built (as in dbt), in the audit location
            let this = Some(self.layout.audit_relation(node));
            let (sql, inner) = self.render(node, place, this, false).with_context(|| format!("rendering ephemeral model {}", node.name))?;
            self.collect_ephemerals(&inner, place, out, seen)?;
            out.push((node.name.clone(), sql));
        }
        Ok(())
    }
}

/// Trailing semicolons and whitespace would break wrapping the SQL.
pub fn strip_sql(sql: &str) -> String {
    let mut s = sql.trim();
    while let Some(stripped) = s.strip_suffix(';') {
        s = stripped.trim_end();
    }
    s.to_string()
}

/// The seed of `node` as it loads into `target`.
pub fn seed_load(node: &Node, target: &Relation) -> crate::warehouse::SeedLoad {
    crate::warehouse::SeedLoad { target: target.rendered.clone(), file: node.seed_file.clone().unwrap_or_default(), column_types: node.config.column_types.clone() }
}

/// What loading a seed runs, for plans: DuckDB's own statement, or a note
/// where the warehouse's client loads it.
pub fn seed_statements(dialect: Dialect, node: &Node, target: &Relation) -> Vec<String> {
    let seed = seed_load(node, target);
    match dialect {
        Dialect::DuckDb => vec![duckdb_seed_sql(&seed)],
        _ => vec![format!("-- load {} into {}", seed.file.display(), seed.target)],
    }
}

/// DuckDB loads a seed with one statement that reads the CSV.
pub fn duckdb_seed_sql(seed: &crate::warehouse::SeedLoad) -> String {
    let d = Dialect::DuckDb;
    let mut opts = String::from("header = true, auto_detect = true");
    if !seed.column_types.is_empty() {
        let types = seed.column_types.iter().map(|(c, t)| format!("{}: {}", d.literal(c), d.literal(t))).collect::<Vec<_>>().join(", ");
        opts.push_str(&format!(", types = {{{types}}}"));
    }
    format!("CREATE OR REPLACE TABLE {} AS SELECT * FROM read_csv({}, {opts})", seed.target, d.literal(&seed.file.display().to_string()))
}

/// Statements that materialize a model whose SELECT is `sql` into `target`.
/// `copy_from`: for incremental models, the prod table the audit copy starts from.
pub fn model_statements(dialect: Dialect, node: &Node, target: &Relation, sql: &str, incremental_base: Option<&Relation>) -> Vec<String> {
    match node.materialization {
        Materialization::View => vec![format!("CREATE OR REPLACE VIEW {} AS\n{sql}", target.rendered)],
        Materialization::Table => vec![format!("CREATE OR REPLACE TABLE {} AS\n{sql}", target.rendered)],
        Materialization::Incremental => match incremental_base {
            None => vec![format!("CREATE OR REPLACE TABLE {} AS\n{sql}", target.rendered)],
            Some(base) => {
                let mut stmts = Vec::new();
                if base.rendered != target.rendered {
                    stmts.push(format!("CREATE OR REPLACE TABLE {} AS SELECT * FROM {}", target.rendered, base.rendered));
                }
                let tmp_name = dialect.fold(&format!("airlock_new_{}", node.identifier()));
                // Snowflake: the temp table lives beside its target, never in
                // whatever schema the session happens to be in (as dbt-snowflake
                // does); DuckDB and BigQuery keep temp tables apart from schemas
                let tmp = if dialect == Dialect::Snowflake { dialect.qualified(target.database.as_deref(), &target.schema, &tmp_name) } else { dialect.quote(&tmp_name) };
                stmts.push(format!("CREATE OR REPLACE TEMP TABLE {tmp} AS\n{sql}"));
                if let Some(keys) = &node.config.unique_key {
                    let cond = keys
                        .iter()
                        .map(|k| {
                            let k = dialect.quote(&dialect.fold(k.trim()));
                            format!("airlock_new.{k} = {}.{k}", dialect.quote(&target.identifier))
                        })
                        .collect::<Vec<_>>()
                        .join(" AND ");
                    stmts.push(format!("DELETE FROM {} WHERE EXISTS (SELECT 1 FROM {tmp} AS airlock_new WHERE {cond})", target.rendered));
                }
                // DuckDB matches columns by name; elsewhere the model keeps its column order
                let by_name = if dialect == Dialect::DuckDb { " BY NAME" } else { "" };
                stmts.push(format!("INSERT INTO {}{by_name} SELECT * FROM {tmp}", target.rendered));
                stmts.push(format!("DROP TABLE {tmp}"));
                stmts
            }
        },
        Materialization::Ephemeral | Materialization::Seed => vec![],
    }
}
