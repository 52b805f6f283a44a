//! The warehouse boundary. Required primitives (`execute`, `query`,
//! `execute_atomic`, catalog, lock) are per warehouse; everything airlock does
//! is built on them, so DuckDB, Snowflake and BigQuery fit the same trait.
//! [`Recording`] wraps any warehouse and logs every statement with its time:
//! the statement log, and the measure of airlock's own overhead.

pub mod duckdb;
pub mod latency;
mod dialect;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Result;
use async_trait::async_trait;

pub use dialect::Dialect;

/// What a warehouse can do; strategies are refused when they need more.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Capabilities {
    /// DDL inside a transaction (publish is atomic)
    pub transactional_ddl: bool,
    /// `ALTER SCHEMA … SWAP WITH` or an equivalent
    pub schema_swap: bool,
    /// zero-copy table clones
    pub zero_copy_clone: bool,
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

/// Query results as text, the common ground of every warehouse.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

/// Who holds a deploy lock.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct LockInfo {
    pub release: Option<i64>,
    pub command: String,
    pub started_at: String,
    pub pid: u32,
    pub host: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{location} is locked by {holder}; wait for it to finish, or if that process is gone, run `airlock unlock`")]
    Held { location: String, holder: String },
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl LockInfo {
    pub fn describe(&self) -> String {
        let release = self.release.map(|r| format!("release {r} ")).unwrap_or_default();
        format!("{release}({} started {}, pid {} on {})", self.command, self.started_at, self.pid, self.host)
    }
}

#[async_trait]
pub trait Warehouse: Send + Sync {
    fn dialect(&self) -> Dialect;
    fn capabilities(&self) -> Capabilities;
    /// Where this is, for messages; never includes credentials.
    fn describe(&self) -> String;
    /// Run one statement.
    async fn execute(&self, sql: &str) -> Result<()>;
    /// Run a query; every value comes back as text.
    async fn query(&self, sql: &str) -> Result<Rows>;
    /// Run statements as one unit: one transaction where DDL is transactional.
    async fn execute_atomic(&self, statements: &[String]) -> Result<()>;
    /// Tables and views in the given schemas.
    async fn catalog(&self, schemas: &[String]) -> Result<Vec<CatalogEntry>>;
    /// Take the deploy lock of this production location, or say who holds it.
    async fn lock(&self, info: &LockInfo) -> Result<(), LockError>;
    async fn update_lock(&self, info: &LockInfo) -> Result<()>;
    async fn unlock(&self) -> Result<()>;
    /// Who holds the lock now, if anyone.
    async fn lock_holder(&self) -> Result<Option<LockInfo>>;
}

/// One statement as run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatementRecord {
    pub sql: String,
    /// when it started, in microseconds since the warehouse was opened
    pub start_us: u64,
    pub micros: u64,
    pub ok: bool,
}

/// Logs every statement and how long the warehouse took.
pub struct Recording {
    inner: Arc<dyn Warehouse>,
    log: Mutex<Vec<StatementRecord>>,
    opened: Instant,
}

impl Recording {
    pub fn new(inner: Arc<dyn Warehouse>) -> Self {
        Recording { inner, log: Mutex::new(Vec::new()), opened: Instant::now() }
    }
    pub fn statements(&self) -> Vec<StatementRecord> {
        self.log.lock().expect("statement log poisoned").clone()
    }
    fn record(&self, sql: &str, started: Instant, ok: bool) {
        let took = started.elapsed();
        tracing::debug!(target: "airlock::sql", micros = took.as_micros() as u64, ok, "{sql}");
        let start_us = started.duration_since(self.opened).as_micros() as u64;
        self.log.lock().expect("statement log poisoned").push(StatementRecord { sql: sql.to_string(), start_us, micros: took.as_micros() as u64, ok });
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
        self.record(sql, t, r.is_ok());
        r
    }
    async fn query(&self, sql: &str) -> Result<Rows> {
        let t = Instant::now();
        let r = self.inner.query(sql).await;
        self.record(sql, t, r.is_ok());
        r
    }
    async fn execute_atomic(&self, statements: &[String]) -> Result<()> {
        let t = Instant::now();
        let r = self.inner.execute_atomic(statements).await;
        self.record(&statements.join(";\n"), t, r.is_ok());
        r
    }
    async fn catalog(&self, schemas: &[String]) -> Result<Vec<CatalogEntry>> {
        let t = Instant::now();
        let r = self.inner.catalog(schemas).await;
        self.record("-- catalog", t, r.is_ok());
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
}
