//! The warehouse boundary. Required primitives (`execute`, `query`,
//! `execute_atomic`, catalog, lock, cancel) are per warehouse; everything
//! airlock does is built on them, so DuckDB, Snowflake and BigQuery fit the
//! same trait. Commands hold an `Arc<dyn Warehouse>` made by [`open`] from the
//! profile; none of them knows a warehouse by type.
//! [`Recording`] wraps any warehouse and logs every statement with its time:
//! the statement log, and the measure of airlock's own overhead.
//!
//! Adding a warehouse: implement [`Warehouse`] in a file of its own (quote
//! with its [`Dialect`], fold names as it folds them, never print
//! credentials), add its settings to `project::profile::WarehouseSettings`,
//! and one arm to [`open`].

pub mod autocommit;
pub mod bigquery;
pub mod duckdb;
mod duckdb_c;
pub mod latency;
pub mod snowflake;
mod dialect;

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use async_trait::async_trait;

pub use dialect::Dialect;

/// What a warehouse can do; support checks and `plan` read these.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Capabilities {
    /// DDL inside a transaction: publish is one atomic step; otherwise it
    /// is journaled step by step and `airlock recover` finishes or undoes it
    pub transactional_ddl: bool,
    /// `ALTER SCHEMA … SWAP WITH` or an equivalent
    pub schema_swap: bool,
    /// `ALTER DATABASE … SWAP WITH` or an equivalent
    pub database_swap: bool,
    /// zero-copy table clones
    pub zero_copy_clone: bool,
    /// DML (INSERT/UPDATE/DELETE) in a transaction: the ledger's own writes
    pub dml_transactions: bool,
    /// several statements in one session (temp tables for incremental merges)
    pub sessions: bool,
    /// seeds load from local CSV files
    pub seed_loading: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    Table,
    View,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Table => "table",
            ObjectKind::View => "view",
        }
    }
}

/// An object found in the warehouse.
#[derive(Debug, Clone)]
pub struct CatalogEntry {
    pub schema: String,
    pub name: String,
    pub kind: ObjectKind,
    /// for views: the DDL that re-creates it
    pub view_ddl: Option<String>,
    /// for tables: the row count the warehouse estimates
    pub rows: Option<u64>,
}

/// A seed to load: a local CSV file, checked at load time, and the column
/// types the project sets for it.
#[derive(Debug, Clone)]
pub struct SeedLoad {
    /// the relation it becomes, quoted for the dialect
    pub target: String,
    pub file: std::path::PathBuf,
    pub column_types: std::collections::BTreeMap<String, String>,
}

/// Query results as text, the common ground of every warehouse.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

pub use crate::ledger::lock::{LockError, LockInfo};

#[async_trait]
pub trait Warehouse: Send + Sync {
    fn dialect(&self) -> Dialect;
    fn capabilities(&self) -> Capabilities;
    /// Where this is, for messages; never includes credentials.
    fn describe(&self) -> String;
    /// Run exactly one statement (never a multi-statement batch).
    async fn execute(&self, sql: &str) -> Result<()>;
    /// Run one statement and report the rows it wrote, where the warehouse
    /// says (None where it does not, e.g. for a view).
    async fn execute_counted(&self, sql: &str) -> Result<Option<u64>> {
        self.execute(sql).await.map(|()| None)
    }
    /// Run a query; every value comes back as text.
    async fn query(&self, sql: &str) -> Result<Rows>;
    /// Run statements as one unit: one transaction where DDL is
    /// transactional; DML alone is always one transaction.
    async fn execute_atomic(&self, statements: &[String]) -> Result<()>;
    /// Run statements in order in one session (temp tables, session
    /// settings), each committed on its own: not atomic.
    async fn execute_script(&self, statements: &[String]) -> Result<()>;
    /// Load a seed CSV into its table (replacing it); the rows written.
    async fn load_seed(&self, seed: &SeedLoad) -> Result<Option<u64>>;
    /// Tables and views in the given schemas.
    async fn catalog(&self, schemas: &[String]) -> Result<Vec<CatalogEntry>>;
    /// Take the deploy lock of this production location, or say who holds it.
    /// The operation is atomic where the lock lives.
    async fn lock(&self, info: &LockInfo) -> Result<(), LockError>;
    /// Refresh the lock this process holds (new heartbeat, release id).
    async fn update_lock(&self, info: &LockInfo) -> Result<()>;
    async fn unlock(&self) -> Result<()>;
    /// Who holds the lock now, if anyone.
    async fn lock_holder(&self) -> Result<Option<LockInfo>>;
    /// Replace the lock held by `expected` (a holder found stale, or broken
    /// with --force) with `ours`, atomically; fails if the lock changed hands.
    async fn take_over_lock(&self, expected: &LockInfo, ours: &LockInfo) -> Result<()>;
    /// Stop running work: cancel queries in flight where the warehouse allows.
    async fn cancel(&self) {}
    /// Let go of every connection this process holds (reopened on next use):
    /// on DuckDB, one process at a time may write the file, and the dbt
    /// builder's dbt is another process.
    fn release_connections(&self) {}
    /// The bytes a statement would process, from a dry run where the
    /// warehouse has them (BigQuery); nothing runs. None elsewhere.
    async fn dry_run_bytes(&self, _sql: &str) -> Result<Option<u64>> {
        Ok(None)
    }
    /// Check, before anything is written, that the relations a run reads
    /// but does not create (sources) can be found: an error names each one
    /// that cannot, and where it was looked for. `reads`: (what, schema,
    /// name), `what` as a person knows it (`source 'landing.shipments'`).
    /// Nothing is checked where the warehouse does not say.
    async fn check_reads(&self, _reads: &[(String, String, String)]) -> Result<()> {
        Ok(())
    }
    /// The partitioning and clustering of each table in `schema` that has
    /// any (`partition by d; cluster by a, b`), where the warehouse has them
    /// and refuses to replace a table by one laid out differently (BigQuery).
    async fn table_layouts(&self, _schema: &str) -> Result<std::collections::BTreeMap<String, String>> {
        Ok(Default::default())
    }
}

/// The warehouse a profile names. `read_only`: plan and history, which never
/// write (a missing DuckDB file is an empty warehouse, not created).
pub fn open(profile: &crate::project::profile::Profile, search_dirs: &[std::path::PathBuf], read_only: bool) -> Result<Arc<dyn Warehouse>> {
    open_for(profile, search_dirs, read_only, 1)
}

/// [`open`] for a command that runs `at_once` statements at the same time
/// (`--threads`): DuckDB sizes its own threads to match.
pub fn open_for(profile: &crate::project::profile::Profile, search_dirs: &[std::path::PathBuf], read_only: bool, at_once: usize) -> Result<Arc<dyn Warehouse>> {
    use crate::project::profile::WarehouseSettings;
    // benchmarks only (B3): AIRLOCK_BENCH_LATENCY_MS adds a delay to every statement
    latency::from_env(match &profile.warehouse {
        WarehouseSettings::DuckDb { path, options } => {
            let in_memory = path.is_empty() || path == ":memory:";
            if in_memory && !read_only {
                anyhow::bail!(
                    "{}: target '{}' has no `path:`, so it is an in-memory DuckDB that keeps nothing after airlock exits; \
                     set `path:` to a database file to deploy to",
                    profile.file.display(),
                    profile.target_name
                );
            }
            let db: Arc<dyn Warehouse> = Arc::new(if read_only { duckdb::DuckDb::open_read_only(path, search_dirs)? } else { duckdb::DuckDb::open(path, search_dirs, at_once)? }.with_options(options.clone()));
            // tests: DuckDB as a warehouse whose DDL commits statement by statement
            if std::env::var("AIRLOCK_TEST_DDL").as_deref() == Ok("autocommit") {
                Arc::new(autocommit::AutoCommit::new(db))
            } else {
                db
            }
        }
        WarehouseSettings::Snowflake(settings) => {
            let origin = format!("{} target '{}'", profile.file.display(), profile.target_name);
            Arc::new(snowflake::Snowflake::open(settings.clone(), &profile.schema, origin, read_only)?)
        }
        WarehouseSettings::BigQuery(settings) => {
            let origin = format!("{} target '{}'", profile.file.display(), profile.target_name);
            Arc::new(bigquery::BigQuery::open(settings.clone(), &profile.schema, origin, read_only)?)
        }
    })
}

/// One statement as run: a line of the statement log.
#[derive(Debug, serde::Serialize)]
struct StatementRecord<'a> {
    sql: &'a str,
    /// when it started, in microseconds since the warehouse was opened
    start_us: u64,
    micros: u64,
    ok: bool,
}

/// `--statement-log FILE`: every statement as a JSON line, written when it
/// finishes. Nothing is held in memory (a 15,000-model deploy runs about
/// 29,000 statements, 30 MB of text), and a run stopped by a signal keeps
/// what it ran.
pub struct StatementLog {
    path: PathBuf,
    out: BufWriter<File>,
    /// the first write that failed: reported by [`Recording::finish_log`]
    error: Option<std::io::Error>,
}

impl StatementLog {
    /// Created before anything runs, so a path that cannot be written fails
    /// the command before it writes anywhere else.
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).with_context(|| format!("cannot write --statement-log {}", path.display()))?;
        Ok(StatementLog { path: path.to_path_buf(), out: BufWriter::new(file), error: None })
    }

    fn write(&mut self, record: &StatementRecord) {
        if self.error.is_some() {
            return;
        }
        let written = serde_json::to_writer(&mut self.out, record).map_err(std::io::Error::from).and_then(|()| self.out.write_all(b"\n"));
        if let Err(e) = written {
            self.error = Some(e);
        }
    }
}

/// Times every statement: logs it with `-v` (`airlock::sql`) and, with
/// `--statement-log`, writes it to the log.
pub struct Recording {
    inner: Arc<dyn Warehouse>,
    log: Option<Mutex<StatementLog>>,
    opened: Instant,
}

impl Recording {
    pub fn new(inner: Arc<dyn Warehouse>, log: Option<StatementLog>) -> Self {
        Recording { inner, log: log.map(Mutex::new), opened: Instant::now() }
    }

    /// Flushes the statement log. The log is a record of the run, not its
    /// outcome: the first write that failed (a full disk) is said as a
    /// warning, and the run's own status stands.
    pub fn finish_log(&self) {
        let Some(log) = &self.log else { return };
        let mut log = log.lock().expect("statement log poisoned");
        let flushed = log.out.flush();
        if let Err(e) = log.error.take().map_or(flushed, Err) {
            eprintln!("airlock: warning: cannot write --statement-log {}: {e}", log.path.display());
        }
    }

    /// `sql` is only made when something reads it: a publish's batch is
    /// joined into one text only for the log.
    fn record<'a>(&self, sql: impl FnOnce() -> Cow<'a, str>, started: Instant, ok: bool) {
        let took = started.elapsed();
        let traced = tracing::enabled!(target: "airlock::sql", tracing::Level::DEBUG);
        if self.log.is_none() && !traced {
            return;
        }
        let sql = sql();
        let micros = took.as_micros() as u64;
        tracing::debug!(target: "airlock::sql", micros, ok, "{sql}");
        if let Some(log) = &self.log {
            let start_us = started.duration_since(self.opened).as_micros() as u64;
            log.lock().expect("statement log poisoned").write(&StatementRecord { sql: &sql, start_us, micros, ok });
        }
    }
}

#[async_trait]
impl Warehouse for Recording {
    fn dialect(&self) -> Dialect {
        self.inner.dialect()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn execute(&self, sql: &str) -> Result<()> {
        let t = Instant::now();
        let r = self.inner.execute(sql).await;
        self.record(|| Cow::Borrowed(sql), t, r.is_ok());
        r
    }
    async fn execute_counted(&self, sql: &str) -> Result<Option<u64>> {
        let t = Instant::now();
        let r = self.inner.execute_counted(sql).await;
        self.record(|| Cow::Borrowed(sql), t, r.is_ok());
        r
    }
    async fn query(&self, sql: &str) -> Result<Rows> {
        let t = Instant::now();
        let r = self.inner.query(sql).await;
        self.record(|| Cow::Borrowed(sql), t, r.is_ok());
        r
    }
    async fn execute_atomic(&self, statements: &[String]) -> Result<()> {
        let t = Instant::now();
        let r = self.inner.execute_atomic(statements).await;
        self.record(|| Cow::Owned(statements.join(";\n")), t, r.is_ok());
        r
    }
    async fn execute_script(&self, statements: &[String]) -> Result<()> {
        let t = Instant::now();
        let r = self.inner.execute_script(statements).await;
        self.record(|| Cow::Owned(statements.join(";\n")), t, r.is_ok());
        r
    }
    async fn load_seed(&self, seed: &SeedLoad) -> Result<Option<u64>> {
        let t = Instant::now();
        let r = self.inner.load_seed(seed).await;
        self.record(|| Cow::Owned(format!("-- load {} into {}", seed.file.display(), seed.target)), t, r.is_ok());
        r
    }
    async fn catalog(&self, schemas: &[String]) -> Result<Vec<CatalogEntry>> {
        let t = Instant::now();
        let r = self.inner.catalog(schemas).await;
        self.record(|| Cow::Borrowed("-- catalog"), t, r.is_ok());
        r
    }
    async fn lock(&self, info: &LockInfo) -> Result<(), LockError> {
        self.inner.lock(info).await
    }
    async fn update_lock(&self, info: &LockInfo) -> Result<()> {
        self.inner.update_lock(info).await
    }
    async fn unlock(&self) -> Result<()> {
        self.inner.unlock().await
    }
    async fn lock_holder(&self) -> Result<Option<LockInfo>> {
        self.inner.lock_holder().await
    }
    async fn take_over_lock(&self, expected: &LockInfo, ours: &LockInfo) -> Result<()> {
        self.inner.take_over_lock(expected, ours).await
    }
    async fn cancel(&self) {
        self.inner.cancel().await
    }
    fn release_connections(&self) {
        self.inner.release_connections()
    }
    async fn dry_run_bytes(&self, sql: &str) -> Result<Option<u64>> {
        self.inner.dry_run_bytes(sql).await
    }
    async fn check_reads(&self, reads: &[(String, String, String)]) -> Result<()> {
        self.inner.check_reads(reads).await
    }
    async fn table_layouts(&self, schema: &str) -> Result<std::collections::BTreeMap<String, String>> {
        self.inner.table_layouts(schema).await
    }
}
