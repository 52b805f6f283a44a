//! A test wrapper: DuckDB as a warehouse whose DDL is not transactional
//! (Snowflake, BigQuery). Every DDL statement commits on its own, so a
//! publish is journaled step by step and its recovery paths run here, before
//! any remote warehouse. DML-only batches stay one transaction, as the
//! remote warehouses allow. Selected by `AIRLOCK_TEST_DDL=autocommit`.

use std::sync::Arc;

use anyhow::Result;
use async_trait::async_trait;

use super::{Capabilities, CatalogEntry, Dialect, LockError, LockInfo, Rows, SeedLoad, Warehouse};

pub struct AutoCommit {
    inner: Arc<dyn Warehouse>,
}

impl AutoCommit {
    pub fn new(inner: Arc<dyn Warehouse>) -> Self {
        AutoCommit { inner }
    }
}

fn is_dml(sql: &str) -> bool {
    let first = sql.trim_start().split_whitespace().next().unwrap_or("").to_ascii_uppercase();
    matches!(first.as_str(), "INSERT" | "UPDATE" | "DELETE" | "MERGE")
}

#[async_trait]
impl Warehouse for AutoCommit {
    fn dialect(&self) -> Dialect {
        self.inner.dialect()
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities { transactional_ddl: false, ..self.inner.capabilities() }
    }
    fn describe(&self) -> String {
        format!("{} (DDL auto-commit test mode)", self.inner.describe())
    }
    async fn execute(&self, sql: &str) -> Result<()> {
        self.inner.execute(sql).await
    }
    async fn execute_counted(&self, sql: &str) -> Result<Option<u64>> {
        self.inner.execute_counted(sql).await
    }
    async fn query(&self, sql: &str) -> Result<Rows> {
        self.inner.query(sql).await
    }
    async fn execute_atomic(&self, statements: &[String]) -> Result<()> {
        if statements.iter().all(|s| is_dml(s)) {
            self.inner.execute_atomic(statements).await
        } else {
            self.inner.execute_script(statements).await
        }
    }
    async fn execute_script(&self, statements: &[String]) -> Result<()> {
        self.inner.execute_script(statements).await
    }
    async fn load_seed(&self, seed: &SeedLoad) -> Result<Option<u64>> {
        self.inner.load_seed(seed).await
    }
    async fn catalog(&self, schemas: &[String]) -> Result<Vec<CatalogEntry>> {
        self.inner.catalog(schemas).await
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
}
