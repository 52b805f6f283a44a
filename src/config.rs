//! One checked configuration per run, from flags, `airlock.toml` and the dbt
//! profile. The core never reads raw arguments.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use serde::Deserialize;

use crate::cli::{Format, GlobalArgs, SelectArgs};
use crate::project::profile::{self, Profile};
use crate::project::{read_header, ProjectHeader};

pub const SETTINGS_FILE: &str = "airlock.toml";

/// `airlock.toml`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub deploy: DeploySettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploySettings {
    /// audit schema naming; `{schema}` is the prod schema
    #[serde(default = "default_audit")]
    pub audit_schema: String,
    /// Snowflake: the audit location is a whole database, `{database}` the
    /// prod database; `swap` then swaps databases (see `compile::Layout`)
    pub audit_database: Option<String>,
    /// releases whose backups are kept for rollback (default: the strategy's `keep`)
    pub keep: Option<usize>,
    /// the publish strategy when --strategy is not given
    #[serde(default = "default_strategy")]
    pub strategy: String,
    pub threads: Option<usize>,
    /// independent publish steps in flight at once (non-transactional DDL)
    pub publish_concurrency: Option<usize>,
    /// the tag of the raw mirror layer (default: the mirror strategy's `tag`)
    pub mirror_tag: Option<String>,
    /// who builds into audit: "native" (default) or "dbt"
    pub builder: Option<String>,
    /// days after which the snapshots a release keeps of replaced tables
    /// expire where the warehouse can say so (BigQuery); 0: never
    pub snapshot_expiration_days: Option<u32>,
}

fn default_audit() -> String {
    "{schema}__audit".into()
}
fn default_strategy() -> String {
    "swap".into()
}

impl Default for DeploySettings {
    fn default() -> Self {
        DeploySettings { audit_schema: default_audit(), audit_database: None, keep: None, strategy: default_strategy(), threads: None, publish_concurrency: None, mirror_tag: None, builder: None, snapshot_expiration_days: None }
    }
}


pub fn read_settings(project_dir: &Path) -> Result<Settings> {
    let path = project_dir.join(SETTINGS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Settings::default()),
        Err(e) => bail!("cannot read {}: {e}", path.display()),
    };
    let settings: Settings = toml::from_str(&text).map_err(|e| anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
    let audit = &settings.deploy.audit_schema;
    if !audit.contains("{schema}") || audit.trim() == "{schema}" {
        bail!("{}: audit_schema = '{audit}' must contain {{schema}} and differ from it (the audit location must not be prod)", path.display());
    }
    if let Some(db) = &settings.deploy.audit_database {
        if !db.contains("{database}") || db.trim() == "{database}" {
            bail!("{}: audit_database = '{db}' must contain {{database}} and differ from it (the audit location must not be prod)", path.display());
        }
    }
    if let Some(b) = &settings.deploy.builder {
        if Builder::parse(b).is_none() {
            bail!("{}: builder = '{b}' is not a builder; use \"native\" or \"dbt\"", path.display());
        }
    }
    if settings.deploy.keep == Some(0) {
        bail!("{}: keep = 0 would leave nothing to roll back to; use 1 or more", path.display());
    }
    Ok(settings)
}

/// Publish steps in flight at once when neither the flag nor airlock.toml
/// says: enough to hide a remote warehouse's round trip without crowding it.
pub const DEFAULT_PUBLISH_CONCURRENCY: usize = 8;

/// Who builds the selection into the audit location.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builder {
    /// airlock's own compiler and runner
    Native,
    /// the project's own dbt (`crate::dbt_builder`)
    Dbt,
}

impl Builder {
    pub fn parse(s: &str) -> Option<Builder> {
        match s {
            "native" => Some(Builder::Native),
            "dbt" => Some(Builder::Dbt),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Builder::Native => "native",
            Builder::Dbt => "dbt",
        }
    }
}

/// Everything a command needs, checked.
pub struct RunConfig {
    pub project_dir: PathBuf,
    pub header: ProjectHeader,
    pub profile: Profile,
    pub settings: Settings,
    pub vars: BTreeMap<String, serde_json::Value>,
    pub format: Format,
    pub select: Vec<String>,
    pub exclude: Vec<String>,
    pub threads: usize,
    /// independent publish steps in flight at once (see `journal::publish`)
    pub publish_concurrency: usize,
    pub full_refresh: bool,
    /// the strategy name asked for (`all` only for plan)
    pub strategy: String,
    pub strategies_dir: PathBuf,
    pub publish_select: Option<String>,
    pub builder: Builder,
    /// why this builder (flag, airlock.toml or the default), for `plan`
    pub builder_reason: String,
    /// the dbt executable (the dbt builder)
    pub dbt: PathBuf,
    /// --threads or airlock.toml `threads`, when given (the dbt builder
    /// passes only these on; else dbt uses the profile's)
    pub threads_given: Option<usize>,
    /// Snowflake's database-level audit location (`audit_database`)
    pub audit_database: Option<crate::compile::AuditDatabase>,
}

/// `audit_database` resolved against the profile's database, as Snowflake
/// names unquoted identifiers. It moves the ledger into its own database
/// (`<database>__AIRLOCK`): a swap of prod's database must not carry it away.
fn audit_database(settings: &Settings, profile: &Profile, project_dir: &Path) -> Result<Option<crate::compile::AuditDatabase>> {
    let Some(pattern) = &settings.deploy.audit_database else { return Ok(None) };
    let file = project_dir.join(SETTINGS_FILE);
    let crate::project::profile::WarehouseSettings::Snowflake(sf) = &profile.warehouse else {
        bail!("{}: audit_database is for Snowflake (a whole database as the audit location); on {} use audit_schema", file.display(), profile.dialect().title());
    };
    let d = crate::warehouse::Dialect::Snowflake;
    let prod = d.fold(&sf.database);
    let audit = d.fold(&pattern.replace("{database}", &sf.database));
    let ledger = d.fold(&format!("{}__airlock", sf.database));
    if audit == prod || audit == ledger {
        bail!("{}: audit_database = '{pattern}' names database {audit}, which is {}; choose another", file.display(), if audit == prod { "prod" } else { "the ledger's" });
    }
    crate::ledger::set_home(crate::ledger::Home { database: ledger, prod_database: prod.clone() })?;
    Ok(Some(crate::compile::AuditDatabase { prod, audit }))
}

impl RunConfig {
    pub fn new(global: &GlobalArgs, select: &SelectArgs) -> Result<RunConfig> {
        let project_dir = global.project_dir.clone();
        if !project_dir.is_dir() {
            bail!("--project-dir {}: no such directory", project_dir.display());
        }
        let header = read_header(&project_dir)?;
        let settings = read_settings(&project_dir)?;
        let file = profile::find_profiles_file(global.profiles_dir.as_deref(), &project_dir)?;
        let profile = profile::load_profile(&file, &header.profile, global.target.as_deref())?;
        let vars = match &global.vars {
            None => BTreeMap::new(),
            Some(text) => {
                let yaml: serde_norway::Value = serde_norway::from_str(text).map_err(|e| anyhow!("--vars: invalid YAML: {e}"))?;
                let json = serde_json::to_value(yaml).map_err(|e| anyhow!("--vars: {e}"))?;
                match json {
                    serde_json::Value::Object(map) => map.into_iter().collect(),
                    serde_json::Value::Null => BTreeMap::new(),
                    other => bail!("--vars: expected a mapping like '{{key: value}}', got {other}"),
                }
            }
        };
        if select.threads == Some(0) {
            bail!("--threads 0: need at least 1");
        }
        let threads = select
            .threads
            .or(settings.deploy.threads)
            .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
        let publish_concurrency = global.publish_concurrency.or(settings.deploy.publish_concurrency).unwrap_or(DEFAULT_PUBLISH_CONCURRENCY);
        if publish_concurrency == 0 {
            bail!("publish concurrency 0 (--publish-concurrency or airlock.toml publish_concurrency): need at least 1");
        }

        let audit_database = audit_database(&settings, &profile, &project_dir)?;
        let (builder, builder_reason) = match (&select.builder, &settings.deploy.builder) {
            (Some(b), _) => (b.as_str(), "--builder".to_string()),
            (None, Some(b)) => (b.as_str(), format!("builder = \"{b}\" in {SETTINGS_FILE}")),
            (None, None) => ("native", "the default; --builder dbt or builder = \"dbt\" in airlock.toml runs the project's own dbt".to_string()),
        };
        let builder = Builder::parse(builder).ok_or_else(|| anyhow!("--builder {builder}: use native or dbt"))?;
        if let Some(dir) = &global.strategies_dir {
            if !dir.is_dir() {
                bail!("--strategies-dir {}: no such directory", dir.display());
            }
        }
        if audit_database.is_some() && builder == Builder::Dbt {
            bail!("{}: audit_database (a database-level audit location) is built by the native builder only; the dbt builder writes audit into schemas of the prod database", project_dir.join(SETTINGS_FILE).display());
        }
        Ok(RunConfig {
            audit_database,
            project_dir: project_dir.clone(),
            header,
            profile,
            vars,
            format: global.format,
            select: select.select.clone(),
            exclude: select.exclude.clone(),
            threads,
            publish_concurrency,
            full_refresh: select.full_refresh,
            strategy: select.strategy.clone().unwrap_or_else(|| settings.deploy.strategy.clone()),
            strategies_dir: global.strategies_dir.clone().unwrap_or_else(|| project_dir.join("strategies")),
            publish_select: select.publish_select.clone(),
            builder,
            builder_reason,
            dbt: select.dbt.clone().unwrap_or_else(|| PathBuf::from("dbt")),
            threads_given: select.threads.or(settings.deploy.threads),
            settings,
        })
    }

    /// `target` as templates see it; no credentials in it.
    pub fn target_value(&self) -> serde_json::Value {
        let mut t = serde_json::json!({
            "name": self.profile.target_name,
            "profile_name": self.profile.profile_name,
            "schema": self.profile.schema,
            "type": self.profile.warehouse_type(),
            "threads": self.threads,
        });
        match &self.profile.warehouse {
            crate::project::profile::WarehouseSettings::DuckDb { path, .. } => {
                let db = Path::new(path).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "memory".into());
                t["database"] = serde_json::Value::String(db);
                t["path"] = serde_json::Value::String(path.clone());
            }
            // as dbt-snowflake's `target`: where and as whom, never the credential
            crate::project::profile::WarehouseSettings::Snowflake(sf) => {
                t["database"] = serde_json::json!(sf.database);
                t["account"] = serde_json::json!(sf.account);
                t["user"] = serde_json::json!(sf.user);
                t["role"] = serde_json::json!(sf.role);
                t["warehouse"] = serde_json::json!(sf.warehouse);
            }
            // as dbt-bigquery's `target`: the project is the database, the dataset the schema
            crate::project::profile::WarehouseSettings::BigQuery(bq) => {
                t["database"] = serde_json::json!(bq.project);
                t["project"] = serde_json::json!(bq.project);
                t["dataset"] = serde_json::json!(self.profile.schema);
                t["location"] = serde_json::json!(bq.location);
            }
        }
        t
    }

    /// The warehouse the profile names (see [`crate::warehouse::open_for`]).
    pub fn open_warehouse(&self, read_only: bool) -> Result<std::sync::Arc<dyn crate::warehouse::Warehouse>> {
        crate::warehouse::open_for(&self.profile, &self.search_dirs(), read_only, self.threads)
    }

    /// Relative file reads resolve against the working directory, then the project.
    pub fn search_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        if let Ok(cwd) = std::env::current_dir() {
            dirs.push(cwd);
        }
        if let Ok(p) = self.project_dir.canonicalize() {
            if !dirs.contains(&p) {
                dirs.push(p);
            }
        }
        dirs
    }

    /// Releases whose backups are kept: airlock.toml, else the strategy's `keep`.
    pub fn keep(&self, strategy: &crate::strategy::Strategy) -> usize {
        self.settings.deploy.keep.or(strategy.keep()).unwrap_or(3)
    }

    pub fn selection_text(&self) -> String {
        let mut s = if self.select.is_empty() { "*".to_string() } else { self.select.join(" ") };
        if !self.exclude.is_empty() {
            s.push_str(&format!(" --exclude {}", self.exclude.join(" ")));
        }
        s
    }
}

pub const INIT_TEMPLATE: &str = r#"# airlock settings for this project. Every key is optional; flags override.

[deploy]
# Where the audit build goes: {schema} is the production schema of each node.
# The audit location must differ from prod.
audit_schema = "{schema}__audit"

# Snowflake only: make the audit location a whole database ({database} is the
# profile's database) and let `swap` exchange databases (ALTER DATABASE ... SWAP
# WITH) instead of schemas. Sources must then live in another database, and
# the ledger moves to the database "<database>__AIRLOCK".
# audit_database = "{database}__audit"

# How many published releases keep their backups for `airlock rollback`
# (default: the strategy's own `keep`, 3 for the built-ins).
# keep = 5

# BigQuery: the table snapshots a release keeps expire after this many days
# (OPTIONS(expiration_timestamp)), so backups that `keep` no longer cleans
# up cost nothing; a rollback to a release older than this cannot restore
# its tables. 0: never expire. Default 30.
# snapshot_expiration_days = 30

# The publish strategy when --strategy is not given: swap, clone-back, wap,
# wac, mirror, or one of the project's own (strategies/*.toml).
strategy = "swap"

# Nodes built at once (default: the number of cores). --threads overrides.
# threads = 4

# Publish steps (table clones, one per object) in flight at once on a
# warehouse whose DDL is not transactional, e.g. Snowflake (default: 8).
# Views follow the tables, one after another. --publish-concurrency overrides.
# publish_concurrency = 8

# The tag of the raw mirror layer: models with it copy sources 1:1, are built
# and published only by `--strategy mirror`, and every other deploy reads the
# published mirror (default: the mirror strategy's `tag`, "raw").
# mirror_tag = "raw"
"#;
