//! The embedded default warehouse: a DuckDB file. DDL is transactional, so
//! publish is one transaction. DuckDB lets one process at a time open a file
//! for writing, so the deploy lock is a file beside the database that names
//! its holder; the ledger itself lives in the database.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context, Result};
use async_trait::async_trait;
use super::duckdb_c::{Connection, Database};

use crate::project::profile::DuckDbOptions;
use super::{Capabilities, CatalogEntry, Dialect, LockError, LockInfo, ObjectKind, Rows, SeedLoad, Warehouse};

pub struct DuckDb {
    /// the database as named by the profile, resolved against the working directory
    path: PathBuf,
    in_memory: bool,
    read_only: bool,
    search_dirs: Vec<PathBuf>,
    /// opened on first use, so the deploy lock is taken before DuckDB's own file lock
    base: Mutex<Option<Arc<Database>>>,
    pool: Mutex<Vec<Worker>>,
    /// every connection handed out: `cancel` interrupts whatever runs
    interrupts: Mutex<Vec<std::sync::Weak<Connection>>>,
    cancelled: std::sync::atomic::AtomicBool,
    lock_file: PathBuf,
    holds_lock: Mutex<bool>,
    /// DuckDB's own threads, set when the database opens (see [`engine_threads`])
    threads: Option<usize>,
    /// the profile's `config_options` and `settings`
    options: DuckDbOptions,
}

impl DuckDb {
    /// A database file for building and publishing (created on first use).
    /// `at_once`: how many statements airlock runs at the same time (`--threads`).
    pub fn open(path: &str, search_dirs: &[PathBuf], at_once: usize) -> Result<Self> {
        let mut db = Self::new(path, search_dirs, false);
        db.threads = Some(engine_threads(at_once));
        Ok(db)
    }

    /// Read without writing a byte: `plan` and `history`. A missing file is an
    /// empty warehouse, not an error, and is not created.
    pub fn open_read_only(path: &str, search_dirs: &[PathBuf]) -> Result<Self> {
        Ok(Self::new(path, search_dirs, true))
    }

    /// With the profile's `config_options` (given when the database opens)
    /// and `settings` (set on every connection), which win over airlock's
    /// own `threads` and `checkpoint_threshold`.
    pub fn with_options(mut self, options: DuckDbOptions) -> Self {
        self.options = options;
        self
    }

    fn new(path: &str, search_dirs: &[PathBuf], read_only: bool) -> Self {
        let in_memory = path == ":memory:" || path.is_empty();
        let resolved = if in_memory { PathBuf::from(":memory:") } else { absolute(Path::new(path)) };
        let lock_file = lock_path(&resolved);
        DuckDb {
            path: resolved,
            in_memory,
            read_only,
            search_dirs: search_dirs.to_vec(),
            base: Mutex::new(None),
            pool: Mutex::new(Vec::new()),
            interrupts: Mutex::new(Vec::new()),
            cancelled: std::sync::atomic::AtomicBool::new(false),
            lock_file,
            holds_lock: Mutex::new(false),
            threads: None,
            options: DuckDbOptions::default(),
        }
    }

    fn open_database(&self) -> Result<Arc<Database>> {
        if !self.in_memory && !self.read_only {
            if let Some(parent) = self.path.parent() {
                if !parent.as_os_str().is_empty() && !parent.exists() {
                    fs::create_dir_all(parent).with_context(|| format!("cannot create the folder of {}", self.path.display()))?;
                }
            }
        }
        // the profile's wins over airlock's choices, except a read-only open
        let given = |name: &str| self.options.config.iter().chain(&self.options.settings).any(|(n, _)| n == name);
        let mut options = Vec::new();
        if let Some(n) = self.threads.filter(|_| !given("threads")) {
            options.push(("threads", n.to_string()));
        }
        if !self.read_only && !self.in_memory && !given("checkpoint_threshold") {
            options.push(("checkpoint_threshold", CHECKPOINT_THRESHOLD.to_string()));
        }
        options.extend(self.options.config.iter().filter(|(n, _)| !(self.read_only && n == "access_mode")).map(|(n, v)| (n.as_str(), v.expose().to_string())));
        if self.read_only && !self.in_memory {
            options.push(("access_mode", "READ_ONLY".to_string()));
        }
        Database::open((!self.in_memory).then_some(self.path.as_path()), &options).map_err(|e| {
            let holder = self.read_lock().ok().flatten().map(|h| format!(" (airlock lock held by {})", h.describe())).unwrap_or_default();
            let given = if self.options.config.is_empty() {
                String::new()
            } else {
                let names: Vec<&str> = self.options.config.iter().map(|(n, _)| n.as_str()).collect();
                format!(" (with the profile's config_options: {})", names.join(", "))
            };
            anyhow!("cannot open DuckDB file {}: {e}{given}{holder}", self.path.display())
        })
    }

    fn connect(&self, db: &Arc<Database>) -> Result<Connection> {
        let conn = Connection::open(db)?;
        let dirs: Vec<String> = self.search_dirs.iter().map(|d| d.display().to_string()).collect();
        if !dirs.is_empty() {
            // relative file reads (external sources) resolve against the working
            // directory first, then the project
            let setting = dirs.join(",").replace('\'', "''");
            conn.execute(&format!("SET file_search_path = '{setting}'"))?;
        }
        for (name, value) in &self.options.settings {
            // a string literal: DuckDB casts it to the setting's type
            let value = value.expose().replace('\'', "''");
            conn.execute(&format!("SET {name} = '{value}'")).map_err(|e| anyhow!("the profile's setting '{name}': {e:#}"))?;
        }
        Ok(conn)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_in_memory(&self) -> bool {
        self.in_memory
    }

    /// Whether there is a database to read (a read-only open of a missing file has none).
    pub fn exists(&self) -> bool {
        !self.read_only || self.in_memory || self.path.exists()
    }

    fn checkout(&self) -> Result<Worker> {
        if let Some(worker) = self.pool.lock().expect("pool poisoned").pop() {
            return Ok(worker);
        }
        if !self.exists() {
            anyhow::bail!("DuckDB file {} does not exist", self.path.display());
        }
        let db = {
            let mut base = self.base.lock().expect("connection poisoned");
            if base.is_none() {
                *base = Some(self.open_database()?);
            }
            base.as_ref().expect("just opened").clone()
        };
        let conn = Arc::new(self.connect(&db)?);
        self.interrupts.lock().expect("poisoned").push(Arc::downgrade(&conn));
        Worker::start(conn)
    }

    fn checkin(&self, worker: Worker) {
        // a connection that may carry an interrupt is not reused
        if !self.cancelled.load(std::sync::atomic::Ordering::SeqCst) {
            self.pool.lock().expect("pool poisoned").push(worker);
        }
    }

    /// Run blocking DuckDB work on a pooled connection's own thread.
    async fn with_conn<T: Send + 'static>(&self, f: impl FnOnce(&Connection) -> Result<T> + Send + 'static) -> Result<T> {
        let (done, result) = tokio::sync::oneshot::channel();
        let worker = self.checkout()?;
        worker.run(Box::new(move |conn| {
            let _ = done.send(f(conn));
        }))?;
        // dropped before the result arrives (the run was stopped): the
        // statement finishes on its thread, which then ends
        let in_flight = InFlight(Some(worker));
        let result = result.await.map_err(|_| anyhow!("DuckDB worker stopped"))?;
        self.checkin(in_flight.finish());
        result
    }

    fn read_lock(&self) -> Result<Option<LockInfo>> {
        match fs::read_to_string(&self.lock_file) {
            // a lock we cannot read is still a lock: held by someone unknown
            Ok(text) => Ok(Some(serde_json::from_str(&text).unwrap_or(LockInfo {
                release: None,
                command: "unknown".into(),
                started_at: "unknown".into(),
                pid: 0,
                host: "unknown".into(),
                heartbeat: None,
            }))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow!("cannot read lock {}: {e}", self.lock_file.display())),
        }
    }

    fn write_lock_tmp(&self, info: &LockInfo) -> Result<PathBuf> {
        let tmp = PathBuf::from(format!("{}.{}.tmp", self.lock_file.display(), std::process::id()));
        let mut f = fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(serde_json::to_string_pretty(info)?.as_bytes())?;
        f.sync_all()?;
        Ok(tmp)
    }
}

/// How much write-ahead log DuckDB keeps before it checkpoints on its own.
/// At DuckDB's default (16 MB) the commit that crosses it writes the
/// database file's changes while other statements wait, and a deploy, which
/// writes every model twice (audit, then prod), did that dozens of times.
/// With this the log takes a deploy's writes and the one checkpoint is at
/// close. Measured (`benches/run.py --sizes 2000 --only B1 --no-dbt`, 2 runs
/// each): peak memory 1,100 → 755 MiB, the deploy 15.5 → 14.2 s. The cost:
/// a process killed mid-deploy leaves up to this much log, which DuckDB
/// replays (it is durable) the next time the file opens.
const CHECKPOINT_THRESHOLD: &str = "4GB";

/// DuckDB's `threads` for `at_once` statements running together. `threads`
/// is per database: a pool of `threads - 1` workers shared by every
/// connection, each statement also running on the thread that sent it.
/// DuckDB's default (one per core) under `--threads N` puts N - 1 threads
/// more than cores to work; this keeps the total at the cores, so one
/// statement alone (`--threads 1`) still gets them all. A user's
/// `SET threads = …` (an `on-run-start` hook) overrides it.
/// A pooled connection and the one thread that runs its statements, as a
/// hand-written runner keeps one thread per connection: DuckDB's per-thread
/// state (allocator arenas, caches) stays with the connection, where
/// tokio's blocking pool moved statements across as many threads as it had
/// (the 500-model deploy ran its statements on four).
struct Worker {
    jobs: Option<std::sync::mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

type Job = Box<dyn FnOnce(&Connection) + Send>;

impl Worker {
    fn start(conn: Arc<Connection>) -> Result<Worker> {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("airlock-duckdb".into())
            .spawn(move || {
                for job in queue {
                    job(&conn);
                }
            })
            .context("cannot start a DuckDB connection thread")?;
        Ok(Worker { jobs: Some(jobs), thread: Some(thread) })
    }

    fn run(&self, job: Job) -> Result<()> {
        let jobs = self.jobs.as_ref().expect("a worker has its queue until dropped");
        jobs.send(job).map_err(|_| anyhow!("DuckDB worker stopped"))
    }
}

impl Drop for Worker {
    /// An idle worker ends at once and its connection closes before this
    /// returns (closing the database file needs every connection gone).
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A worker running a job for a future that may be dropped first: then it
/// is let go without waiting (its thread ends after the job).
struct InFlight(Option<Worker>);

impl InFlight {
    fn finish(mut self) -> Worker {
        self.0.take().expect("in flight until finished")
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(mut worker) = self.0.take() {
            worker.thread = None; // detached
        }
    }
}

fn engine_threads(at_once: usize) -> usize {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    (cores + 1).saturating_sub(at_once.max(1)).max(1)
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.to_path_buf())
    }
}

fn run_query(conn: &Connection, sql: &str) -> Result<Rows> {
    // every value as text: one code path for samples, counts and the catalog
    let wrapped = format!("SELECT COLUMNS(*)::VARCHAR FROM ({}) AS airlock_q", sql.trim().trim_end_matches(';'));
    let text = conn.query_text(&wrapped)?;
    Ok(Rows { columns: text.columns, rows: text.rows })
}

#[async_trait]
impl Warehouse for DuckDb {
    fn dialect(&self) -> Dialect {
        Dialect::DuckDb
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            transactional_ddl: true,
            schema_swap: false,
            database_swap: false,
            zero_copy_clone: false,
            dml_transactions: true,
            sessions: true,
            seed_loading: true,
        }
    }

    fn describe(&self) -> String {
        format!("DuckDB {}", self.path.display())
    }

    async fn execute(&self, sql: &str) -> Result<()> {
        let sql = sql.to_string();
        self.with_conn(move |c| execute_one(c, &sql)).await
    }

    async fn execute_counted(&self, sql: &str) -> Result<Option<u64>> {
        let sql = sql.to_string();
        // DuckDB counts rows written by CREATE TABLE AS, INSERT, UPDATE, DELETE
        let writes_rows = !sql.trim_start().to_ascii_uppercase().contains(" VIEW ");
        self.with_conn(move |c| c.execute(&sql).map(|n| writes_rows.then_some(n))).await
    }

    async fn query(&self, sql: &str) -> Result<Rows> {
        if !self.exists() {
            return Ok(Rows::default());
        }
        let sql = sql.to_string();
        self.with_conn(move |c| run_query(c, &sql)).await
    }

    async fn execute_atomic(&self, statements: &[String]) -> Result<()> {
        let statements = statements.to_vec();
        self.with_conn(move |c| {
            c.execute("BEGIN TRANSACTION")?;
            for (i, stmt) in statements.iter().enumerate() {
                // tests: a publish killed or failing at its K-th step, mid-transaction
                if let Err(e) = crate::failpoint::in_atomic_batch(i) {
                    let _ = c.execute("ROLLBACK");
                    return Err(e);
                }
                if let Err(e) = execute_one(c, stmt) {
                    let _ = c.execute("ROLLBACK");
                    let first_line = stmt.lines().next().unwrap_or_default();
                    return Err(anyhow!("{e} (statement {} of {}: {first_line}; rolled back)", i + 1, statements.len()));
                }
            }
            if let Err(e) = c.execute("COMMIT") {
                let _ = c.execute("ROLLBACK");
                return Err(anyhow!("commit failed, rolled back: {e}"));
            }
            Ok(())
        })
        .await
    }

    async fn execute_script(&self, statements: &[String]) -> Result<()> {
        let statements = statements.to_vec();
        self.with_conn(move |c| {
            for (i, stmt) in statements.iter().enumerate() {
                execute_one(c, stmt).map_err(|e| anyhow!("{e} (statement {} of {}: {})", i + 1, statements.len(), stmt.lines().next().unwrap_or_default()))?;
            }
            Ok(())
        })
        .await
    }

    async fn load_seed(&self, seed: &SeedLoad) -> Result<Option<u64>> {
        // DuckDB reads the CSV itself
        self.execute_counted(&crate::compile::duckdb_seed_sql(seed)).await
    }

    async fn catalog(&self, schemas: &[String]) -> Result<Vec<CatalogEntry>> {
        if !self.exists() || schemas.is_empty() {
            return Ok(Vec::new());
        }
        let list = schemas.iter().map(|s| Dialect::DuckDb.literal(s)).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "SELECT schema_name, table_name, 'table' AS kind, NULL AS ddl, estimated_size FROM duckdb_tables() \
             WHERE database_name = current_database() AND NOT temporary AND schema_name IN ({list}) \
             UNION ALL \
             SELECT schema_name, view_name, 'view', sql, NULL FROM duckdb_views() \
             WHERE database_name = current_database() AND NOT internal AND NOT temporary AND schema_name IN ({list}) \
             ORDER BY 1, 2"
        );
        let rows = self.query(&sql).await?;
        Ok(rows
            .rows
            .into_iter()
            .map(|r| CatalogEntry {
                schema: r[0].clone().unwrap_or_default(),
                name: r[1].clone().unwrap_or_default(),
                kind: if r[2].as_deref() == Some("view") { ObjectKind::View } else { ObjectKind::Table },
                view_ddl: r[3].clone(),
                rows: r[4].as_deref().and_then(|v| v.parse().ok()),
            })
            .collect())
    }

    async fn lock(&self, info: &LockInfo) -> Result<(), LockError> {
        if self.in_memory {
            *self.holds_lock.lock().expect("poisoned") = true;
            return Ok(());
        }
        let tmp = self.write_lock_tmp(info)?;
        // hard_link fails if the lock exists: creation and content are one step.
        // A lock released between our attempt and our read: try again.
        let mut attempts = 0;
        let result = loop {
            attempts += 1;
            match fs::hard_link(&tmp, &self.lock_file) {
                Ok(()) => break Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match self.read_lock() {
                    Ok(Some(holder)) => break Err(LockError::Held { location: self.describe(), holder }),
                    Ok(None) if attempts < 5 => continue,
                    Ok(None) => break Err(LockError::Other(anyhow!("the lock {} keeps changing hands", self.lock_file.display()))),
                    Err(e) => break Err(LockError::Other(e)),
                },
                Err(e) => break Err(LockError::Other(anyhow!("cannot create lock {}: {e}", self.lock_file.display()))),
            }
        };
        let _ = fs::remove_file(&tmp);
        if result.is_ok() {
            *self.holds_lock.lock().expect("poisoned") = true;
        }
        result
    }

    async fn update_lock(&self, info: &LockInfo) -> Result<()> {
        if self.in_memory || !*self.holds_lock.lock().expect("poisoned") {
            return Ok(());
        }
        let tmp = self.write_lock_tmp(info)?;
        fs::rename(&tmp, &self.lock_file).with_context(|| format!("cannot update lock {}", self.lock_file.display()))
    }

    async fn take_over_lock(&self, expected: &LockInfo, ours: &LockInfo) -> Result<()> {
        if self.in_memory {
            return Ok(());
        }
        let current = self.read_lock()?;
        if current.as_ref() != Some(expected) {
            anyhow::bail!("the lock on {} changed hands while breaking it (now: {}); nothing was broken", self.path.display(), current.map(|c| c.describe()).unwrap_or_else(|| "free".into()));
        }
        // rename replaces the file in one step: there is never a moment without a lock
        let tmp = self.write_lock_tmp(ours)?;
        fs::rename(&tmp, &self.lock_file).with_context(|| format!("cannot replace lock {}", self.lock_file.display()))?;
        *self.holds_lock.lock().expect("poisoned") = true;
        Ok(())
    }

    async fn cancel(&self) {
        self.cancelled.store(true, std::sync::atomic::Ordering::SeqCst);
        for conn in self.interrupts.lock().expect("poisoned").drain(..) {
            if let Some(conn) = conn.upgrade() {
                conn.interrupt();
            }
        }
        self.pool.lock().expect("pool poisoned").clear();
    }

    fn release_connections(&self) {
        // every clone of the base connection must go for DuckDB to close the file
        self.pool.lock().expect("pool poisoned").clear();
        self.interrupts.lock().expect("poisoned").clear();
        *self.base.lock().expect("connection poisoned") = None;
    }

    async fn unlock(&self) -> Result<()> {
        *self.holds_lock.lock().expect("poisoned") = false;
        if self.in_memory {
            return Ok(());
        }
        match fs::remove_file(&self.lock_file) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(anyhow!("cannot remove lock {}: {e}", self.lock_file.display())),
        }
    }

    async fn lock_holder(&self) -> Result<Option<LockInfo>> {
        if self.in_memory {
            return Ok(None);
        }
        self.read_lock()
    }
}

/// One statement. airlock's SQL is one statement each; a user's model, test
/// or hook with a second statement is refused when the project loads
/// (`duckdb_query` would run every statement it is given).
fn execute_one(conn: &Connection, sql: &str) -> Result<()> {
    conn.execute(sql).map(|_| ())
}

/// The lock beside a database, keyed by the file's canonical path so two
/// spellings of one database (relative, symlinked) share one lock.
pub fn lock_path(db: &Path) -> PathBuf {
    let canonical = db.canonicalize().ok().or_else(|| {
        let parent = db.parent()?.canonicalize().ok()?;
        Some(parent.join(db.file_name()?))
    });
    PathBuf::from(format!("{}.airlock-lock", canonical.unwrap_or_else(|| db.to_path_buf()).display()))
}

impl Drop for DuckDb {
    fn drop(&mut self) {
        // never leave a lock behind on an error path
        if *self.holds_lock.lock().expect("poisoned") && !self.in_memory {
            let _ = fs::remove_file(&self.lock_file);
        }
    }
}

pub type SharedDuckDb = Arc<DuckDb>;

#[cfg(test)]
mod tests {
    use super::*;

    /// What releasing the lock relies on to close the file first
    /// (`LockGuard::release`): releasing the connections closes the database,
    /// and DuckDB checkpoints its log into the file then, not at some later
    /// drop that the process may not live to see.
    #[tokio::test]
    async fn releasing_the_connections_closes_the_file_and_checkpoints_its_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("w.duckdb");
        let wal = dir.path().join("w.duckdb.wal");
        let db = DuckDb::open(file.to_str().expect("utf-8"), &[], 1).expect("open");
        db.execute("CREATE TABLE t AS SELECT range AS x FROM range(100000)").await.expect("create");
        assert!(wal.exists(), "the write waits in the log while the file is open");
        db.release_connections();
        assert!(!wal.exists(), "closing checkpointed the log into the file");
        // the file is free: another database opens it for writing and finds the rows
        let again = DuckDb::open(file.to_str().expect("utf-8"), &[], 1).expect("reopen");
        let rows = again.query("SELECT COUNT(*) FROM t").await.expect("count");
        assert_eq!(rows.rows, vec![vec![Some("100000".to_string())]]);
    }
}
