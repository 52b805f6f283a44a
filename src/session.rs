//! A loaded run: checked config, project, DAG, selection and layout, shared by
//! every command that reads the project.

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::Result;

use crate::compile::{Compiler, Layout};
use crate::config::RunConfig;
use crate::graph::Dag;
use crate::project::{load_project, Loaded, NodeId};
use crate::warehouse::{Dialect, Warehouse};

pub struct Session {
    pub registry: crate::strategy::Registry,
    pub cfg: RunConfig,
    pub loaded: Loaded,
    pub dag: Dag,
    pub selected: BTreeSet<NodeId>,
    pub layout: Layout,
}

impl Session {
    /// A session for the warehouse the profile names.
    pub fn open(cfg: RunConfig) -> Result<Session> {
        let dialect = cfg.profile.dialect();
        Self::open_as(cfg, dialect)
    }

    /// A session whose SQL is rendered for `dialect` (offline plans).
    pub fn open_as(cfg: RunConfig, dialect: Dialect) -> Result<Session> {
        let registry = crate::strategy::Registry::load(Some(&cfg.strategies_dir))?.apply(&cfg.settings.deploy);
        if cfg.strategy != "all" {
            let strategy = registry.get(&cfg.strategy)?;
            strategy.check_support(dialect)?;
            if cfg.audit_database.is_some() {
                strategy.check_audit_database(dialect)?;
            }
        }
        crate::phase::mark("strategies loaded");
        let header = crate::project::read_header(&cfg.project_dir)?;
        let loaded = load_project(header, cfg.target_value(), cfg.vars.clone())?;
        crate::phase::mark("project loaded");
        let dag = Dag::new(&loaded.project)?;
        let selected = dag.select(&loaded.project, &cfg.select, &cfg.exclude)?;
        crate::phase::mark("DAG and selection");
        let layout = Layout {
            dialect,
            target_schema: cfg.profile.schema.clone(),
            audit_pattern: cfg.settings.deploy.audit_schema.clone(),
            search_dirs: cfg.search_dirs(),
            quoting: loaded.project.quoting,
            audit_database: cfg.audit_database.clone(),
            relations: Default::default(),
        };
        let session = Session { registry, cfg, loaded, dag, selected, layout };
        session.check_schemas()?;
        Ok(session)
    }

    /// The audit location must never be a prod location of this project.
    /// A database-level one must hold everything the project builds and
    /// nothing it reads: a source in prod's database would be swapped away
    /// with the demoted release (and new loads into it with it).
    fn check_schemas(&self) -> Result<()> {
        if let Some(db) = &self.layout.audit_database {
            for node in self.project().nodes.values().filter(|n| n.kind == crate::project::NodeKind::Source) {
                let rel = self.layout.source_relation(node);
                if rel.database.as_deref().is_none_or(|d| d == db.prod) {
                    anyhow::bail!(
                        "{}: source '{}' lives in the prod database {}, which a database swap (audit_database in airlock.toml) replaces with its audited copy; \
                         give the source its own `database:` (sources must live outside prod), or use audit_schema",
                        node.path.display(),
                        node.name,
                        db.prod
                    );
                }
            }
            return Ok(());
        }
        let prod = self.all_prod_schemas();
        for s in &prod {
            let audit = self.layout.audit_schema(s);
            if prod.contains(&audit) || audit == crate::ledger::schema(self.layout.dialect) {
                anyhow::bail!("audit schema '{audit}' (from audit_schema = '{}') is also a production schema; choose another audit_schema in airlock.toml", self.layout.audit_pattern);
            }
        }
        Ok(())
    }

    pub fn project(&self) -> &crate::project::Project {
        &self.loaded.project
    }

    pub fn compiler(&self) -> Compiler<'_> {
        let mut hook_target = self.cfg.target_value();
        hook_target["schema"] = serde_json::Value::String(self.layout.audit_schema(&self.layout.target_schema));
        if let Some(db) = self.layout.audit_db() {
            hook_target["database"] = serde_json::Value::String(db.to_string());
        }
        Compiler { project: &self.loaded.project, renderer: &self.loaded.renderer, names: self.loaded.names.clone(), layout: &self.layout, hook_target }
    }

    /// Prod schemas of every relation of the project.
    pub fn all_prod_schemas(&self) -> BTreeSet<String> {
        self.project().relations().map(|n| self.layout.prod_schema(n)).collect()
    }

    pub fn open_warehouse(&self, read_only: bool) -> Result<Arc<dyn Warehouse>> {
        self.cfg.open_warehouse(read_only)
    }
}
