//! Micro-benchmark of the helper `publish::run_bounded` — NOT benchmark B3, and
//! not what `airlock deploy` runs: deploy publishes through the journal
//! (`ledger::journal::publish`), one statement after another, and never calls
//! this helper. B3 times a real deploy (`benches/run.py`, B3). This one only
//! shows what bounded concurrency would buy: N table copies through a
//! warehouse that adds a fixed delay to every statement, sequentially and at
//! most `limit` at once. Run with `cargo bench --bench publish` (env
//! B3_TABLES, B3_DELAY_MS, B3_LIMIT override the defaults 500, 100, 64).

use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock::publish::run_bounded;
use airlock::warehouse::duckdb::DuckDb;
use airlock::warehouse::latency::Latency;
use airlock::warehouse::{Dialect, Warehouse};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    let tables = env_or("B3_TABLES", 500);
    let delay = Duration::from_millis(env_or("B3_DELAY_MS", 100) as u64);
    let limit = env_or("B3_LIMIT", 64);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let duck: Arc<dyn Warehouse> = Arc::new(DuckDb::open(":memory:", &[])?);
        let d = Dialect::DuckDb;
        let mut setup = vec!["CREATE SCHEMA audit".to_string(), "CREATE SCHEMA prod".to_string()];
        for i in 0..tables {
            setup.push(format!("CREATE TABLE {} AS SELECT range AS id FROM range(100)", d.relation("audit", &format!("t{i}"))));
        }
        duck.execute_atomic(&setup).await?;
        let clones: Vec<String> = (0..tables)
            .map(|i| format!("CREATE OR REPLACE TABLE {} AS SELECT * FROM {}", d.relation("prod", &format!("t{i}")), d.relation("audit", &format!("t{i}"))))
            .collect();
        let slow: Arc<dyn Warehouse> = Arc::new(Latency::new(duck.clone(), delay));

        let t = Instant::now();
        run_bounded(slow.clone(), clones.clone(), limit).await?;
        let bounded = t.elapsed();

        let t = Instant::now();
        for sql in &clones {
            slow.execute(sql).await?;
        }
        let sequential = t.elapsed();

        let published = duck.query("SELECT COUNT(*) FROM duckdb_tables() WHERE schema_name = 'prod'").await?;
        println!("micro-benchmark (not B3, not the deploy path): run_bounded, {tables} table copies, {} ms per statement", delay.as_millis());
        println!("  sequential:          {:>8.2} s", sequential.as_secs_f64());
        println!("  bounded ({limit:>3} at once): {:>8.2} s", bounded.as_secs_f64());
        println!("  speed-up:            {:>8.1}x", sequential.as_secs_f64() / bounded.as_secs_f64());
        println!("  tables in prod:      {:>8}", published.rows[0][0].as_deref().unwrap_or("?"));
        anyhow::Ok(())
    })
}
