//! Command-line types (clap derive). Raw arguments stop here: `config.rs`
//! turns them into a checked [`crate::config::RunConfig`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "airlock", version, about = "Build into an audit location, gate on every test, then publish.", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub global: GlobalArgs,
}

#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// The dbt project directory
    #[arg(long, global = true, default_value = ".", value_name = "DIR")]
    pub project_dir: PathBuf,
    /// Where profiles.yml is (default: DBT_PROFILES_DIR, the project dir, then ~/.dbt)
    #[arg(long, global = true, value_name = "DIR")]
    pub profiles_dir: Option<PathBuf>,
    /// The profile target (default: the profile's `target:`)
    #[arg(long, short = 't', global = true)]
    pub target: Option<String>,
    /// Output format on stdout
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Project variables as YAML, e.g. '{min_date: 2024-01-01}'
    #[arg(long, global = true, value_name = "YAML")]
    pub vars: Option<String>,
    /// Extra strategy files (default: the project's strategies/ folder)
    #[arg(long, global = true, value_name = "DIR")]
    pub strategies_dir: Option<PathBuf>,
    /// deploy, rollback, recover: independent publish steps (table clones) in
    /// flight at once where DDL is not transactional (default: airlock.toml, else 8)
    #[arg(long, global = true, value_name = "N", env = "AIRLOCK_PUBLISH_CONCURRENCY")]
    pub publish_concurrency: Option<usize>,
    /// More logging on stderr (-v statements, -vv everything)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build into the audit location, run every test, publish when the gate is green
    Deploy(RunArgs),
    /// Build into the audit location and run every test; never publishes
    Build(RunArgs),
    /// Dry run: what would be built and published (writes nothing)
    Plan(PlanArgs),
    /// The ledger of releases
    History,
    /// Restore the previous release, or the one given with --to
    Rollback(RollbackArgs),
    /// Write a commented airlock.toml into the project
    Init(InitArgs),
    /// List built-in and project strategies and the warehouses each supports
    Strategies,
    /// Break a deploy lock left by a process that is gone (recorded in the ledger)
    Unlock(UnlockArgs),
    /// Finish (or with --undo, undo) a publish that was interrupted midway
    Recover(RecoverArgs),
    /// What the native builder cannot run in this project yet, which builder
    /// is chosen and whether dbt is there; never connects to the warehouse
    Doctor(DoctorArgs),
}

#[derive(Debug, Args, Clone, Default)]
pub struct SelectArgs {
    /// Nodes to build, dbt syntax: name, +name, name+, tag:x, path:dir
    #[arg(short = 's', long, num_args = 1.., value_name = "SELECTOR")]
    pub select: Vec<String>,
    /// Nodes to leave out, same syntax
    #[arg(long, num_args = 1.., value_name = "SELECTOR")]
    pub exclude: Vec<String>,
    /// Nodes built at once (default: airlock.toml, else the number of cores)
    #[arg(long)]
    pub threads: Option<usize>,
    /// Rebuild incremental models from scratch
    #[arg(long)]
    pub full_refresh: bool,
    /// Publish strategy (default: airlock.toml, else swap); plan also takes `all`
    #[arg(long, value_name = "STRATEGY")]
    pub strategy: Option<String>,
    /// wap: the top-level models rebuilt in prod (default: the strategy's tag:mart)
    #[arg(long, value_name = "SELECTOR")]
    pub publish_select: Option<String>,
    /// Who builds into audit: `native` (airlock's own builder) or `dbt` (the
    /// project's own dbt, with its packages, macros, snapshots and hooks);
    /// default: airlock.toml `builder`, else native
    #[arg(long, value_name = "BUILDER", value_parser = ["native", "dbt"])]
    pub builder: Option<String>,
    /// With the dbt builder: the dbt executable (default: `dbt` on PATH)
    #[arg(long, value_name = "PATH")]
    pub dbt: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Write every statement with its duration as JSON lines to FILE
    #[arg(long, value_name = "FILE")]
    pub statement_log: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct PlanArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Print the exact statements
    #[arg(long)]
    pub show_sql: bool,
    /// Render without connecting to anything (prod assumed to hold every model)
    #[arg(long)]
    pub offline: bool,
    /// With --offline: the SQL dialect to render
    #[arg(long, value_name = "DIALECT", value_parser = ["duckdb", "snowflake", "bigquery"], requires = "offline")]
    pub dialect: Option<String>,
}

#[derive(Debug, Args, Clone)]
pub struct DoctorArgs {
    /// The builder to judge the project for (default: airlock.toml `builder`, else native)
    #[arg(long, value_name = "BUILDER", value_parser = ["native", "dbt"])]
    pub builder: Option<String>,
    /// The dbt executable to look at (default: `dbt` on PATH)
    #[arg(long, value_name = "PATH")]
    pub dbt: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct RollbackArgs {
    /// Release id to restore (default: the release before the current one)
    #[arg(long, value_name = "RELEASE")]
    pub to: Option<i64>,
}

#[derive(Debug, Args, Clone)]
pub struct InitArgs {
    /// Overwrite an existing airlock.toml
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args, Clone)]
pub struct UnlockArgs {
    /// Break the lock even though its holder looks alive
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args, Clone)]
pub struct RecoverArgs {
    /// Undo the interrupted publish instead of completing it
    #[arg(long)]
    pub undo: bool,
}
