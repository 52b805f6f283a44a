//! A warehouse wrapper that adds a fixed delay to every statement, standing in
//! for a remote warehouse's round trip. Used by benchmarks and tests only, to
//! measure what airlock's concurrency buys when each statement is slow:
//! `AIRLOCK_BENCH_LATENCY_MS=N` wraps the warehouse every command opens
//! (benchmark B3 times a real `deploy` this way).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use async_trait::async_trait;

use super::{Capabilities, CatalogEntry, Dialect, LockError, LockInfo, Rows, SeedLoad, Warehouse};

pub struct Latency {
    inner: Arc<dyn Warehouse>,
    delay: Duration,
}

impl Latency {
    pub fn new(inner: Arc<dyn Warehouse>, delay: Duration) -> Self {
        Latency { inner, delay }
    }
}

/// Benchmarks only: the variable that makes every opened warehouse slow.
pub const BENCH_ENV: &str = "AIRLOCK_BENCH_LATENCY_MS";

/// `inner`, or `inner` behind a [`Latency`] of `$AIRLOCK_BENCH_LATENCY_MS`
/// milliseconds when that is set (inert when unset or empty).
pub fn from_env(inner: Arc<dyn Warehouse>) -> Result<Arc<dyn Warehouse>> {
    match std::env::var(BENCH_ENV) {
        Ok(ms) if !ms.trim().is_empty() => {
            let ms: u64 = ms.trim().parse().with_context(|| format!("{BENCH_ENV}={ms}: expected milliseconds"))?;
            Ok(Arc::new(Latency::new(inner, Duration::from_millis(ms))))
        }
        _ => Ok(inner),
    }
}

#[async_trait]
impl Warehouse for Latency {
    fn dialect(&self) -> Dialect {
        self.inner.dialect()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn describe(&self) -> String {
        format!("{} (+{} ms per statement)", self.inner.describe(), self.delay.as_millis())
    }
    async fn execute(&self, sql: &str) -> Result<()> {
        tokio::time::sleep(self.delay).await;
        self.inner.execute(sql).await
    }
    async fn execute_counted(&self, sql: &str) -> Result<Option<u64>> {
        tokio::time::sleep(self.delay).await;
        self.inner.execute_counted(sql).await
    }
    async fn query(&self, sql: &str) -> Result<Rows> {
        tokio::time::sleep(self.delay).await;
        self.inner.query(sql).await
    }
    async fn execute_atomic(&self, statements: &[String]) -> Result<()> {
        tokio::time::sleep(self.delay * statements.len() as u32).await;
        self.inner.execute_atomic(statements).await
    }
    async fn execute_script(&self, statements: &[String]) -> Result<()> {
        tokio::time::sleep(self.delay * statements.len() as u32).await;
        self.inner.execute_script(statements).await
    }
    async fn load_seed(&self, seed: &SeedLoad) -> Result<Option<u64>> {
        tokio::time::sleep(self.delay).await;
        self.inner.load_seed(seed).await
    }
    async fn catalog(&self, schemas: &[String]) -> Result<Vec<CatalogEntry>> {
        tokio::time::sleep(self.delay).await;
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
    async fn check_reads(&self, reads: &[(String, String, String)]) -> Result<()> {
        self.inner.check_reads(reads).await
    }
    async fn table_layouts(&self, schema: &str) -> Result<std::collections::BTreeMap<String, String>> {
        self.inner.table_layouts(schema).await
    }
}
