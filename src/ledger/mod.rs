//! The ledger: one row per release in the warehouse (schema `airlock`), the
//! objects each release replaced and where their previous versions are kept,
//! so any retained release can be restored; and the events that are not
//! releases (a lock broken by `airlock unlock`). The lock lives in [`lock`].
//!
//! A release's status moves `running → publishing → published | blocked |
//! failed | interrupted`; a row is never left `running` by a process that can
//! still write (a killed one is recorded `interrupted` by the next holder of
//! the lock).

pub mod journal;
pub mod lock;

use std::collections::BTreeSet;

use anyhow::{Context, Result};

use crate::warehouse::{Dialect, Warehouse};

/// The ledger's schema as the warehouse names it (`AIRLOCK` on Snowflake).
pub fn schema(dialect: Dialect) -> String {
    dialect.fold("airlock")
}

/// Where the ledger (and the deploy lock beside it) lives when that is not
/// the prod database: a database swap exchanges whole databases, so a ledger
/// inside prod would be swapped away with the demoted release. Fixed once per
/// process, from the configuration, before any ledger statement is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    /// the ledger's own database
    pub database: String,
    /// the database sessions work in (prod): creating a database makes it
    /// the session's current one, so the session is moved back
    pub prod_database: String,
}

static HOME: std::sync::OnceLock<Home> = std::sync::OnceLock::new();

/// Put the ledger in its own database (see [`Home`]). A second, different
/// home in one process is a bug.
pub fn set_home(home: Home) -> Result<()> {
    let now = HOME.get_or_init(|| home.clone());
    anyhow::ensure!(*now == home, "the ledger already lives in database {}", now.database);
    Ok(())
}

/// The ledger's own database, when it is not the session's.
pub fn home() -> Option<&'static Home> {
    HOME.get()
}

/// The ledger's schema, quoted and qualified by its database where it has one.
pub fn schema_ref(d: Dialect) -> String {
    match home() {
        Some(h) => format!("{}.{}", d.quote(&h.database), d.quote(&schema(d))),
        None => d.quote(&schema(d)),
    }
}

/// Statements that make the ledger's schema (and database), run in one
/// session. Creating a database or a schema makes it the session's current
/// one, so the session is moved back to prod last.
pub fn create_schema_statements(d: Dialect) -> Vec<String> {
    match home() {
        Some(h) => vec![
            format!("CREATE DATABASE IF NOT EXISTS {}", d.quote(&h.database)),
            format!("CREATE SCHEMA IF NOT EXISTS {}", schema_ref(d)),
            format!("USE DATABASE {}", d.quote(&h.prod_database)),
        ],
        None => vec![format!("CREATE SCHEMA IF NOT EXISTS {}", schema_ref(d))],
    }
}

/// Whether the ledger has been created (read-only commands show nothing
/// before the first deploy).
pub async fn exists(wh: &dyn Warehouse) -> Result<bool> {
    let d = wh.dialect();
    let Some(h) = home() else {
        return Ok(!wh.catalog(&[schema(d)]).await?.is_empty());
    };
    let sql = format!("SELECT COUNT(*) FROM {}.INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = {}", d.quote(&h.database), d.literal(&schema(d)));
    match wh.query(&sql).await {
        Ok(rows) => Ok(rows.rows.first().and_then(|r| r.first()).cloned().flatten().is_some_and(|n| n != "0")),
        // no ledger database yet: nothing was ever deployed this way
        Err(e) if format!("{e:#}").contains("does not exist") => {
            tracing::debug!("no ledger in database {}: {e:#}", h.database);
            Ok(false)
        }
        Err(e) => Err(e.context(format!("reading the ledger in database {}", h.database))),
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Release {
    pub id: i64,
    pub project: String,
    pub target: String,
    pub strategy: String,
    pub selection: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub status: String,
    pub built: i64,
    pub tests: i64,
    pub failed: i64,
    pub warned: i64,
    pub published: i64,
    pub git_commit: Option<String>,
    /// where the objects this release replaced are kept; None once cleaned up
    pub backup_schema: Option<String>,
    /// for rollbacks: the release whose state was restored
    pub restores: Option<i64>,
    /// how long prod was mixed (part old, part new) during the publish, in
    /// milliseconds: 0 where the publish is one transaction
    pub mixed_ms: Option<i64>,
}

impl Release {
    /// Whether prod holds (or held) this release: published, or completed by
    /// `airlock recover`.
    pub fn is_published(&self) -> bool {
        is_published(&self.status)
    }
}

/// Statuses of a release whose publish took effect.
pub fn is_published(status: &str) -> bool {
    status == "published" || status == "recovered-forward"
}

/// An object a release changed, and what was there before.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReleaseObject {
    pub release_id: i64,
    pub schema: String,
    pub name: String,
    /// what the release left: table, view, or absent
    pub kind: String,
    /// what was there before: table, view, or None
    pub prev_kind: Option<String>,
    /// the relation (quoted) holding the previous version of a table
    pub backup_name: Option<String>,
    /// DDL of the previous view
    pub prev_view_ddl: Option<String>,
}

/// A ledger table, quoted for the dialect.
pub fn table(dialect: Dialect, table: &str) -> String {
    t(dialect, table)
}

fn t(dialect: Dialect, table: &str) -> String {
    dialect.qualified(home().map(|h| h.database.as_str()), &schema(dialect), &dialect.fold(table))
}

pub fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

pub async fn ensure(wh: &dyn Warehouse) -> Result<()> {
    let d = wh.dialect();
    let (text, key) = match d {
        Dialect::BigQuery => ("STRING", ""),
        _ => ("VARCHAR", " PRIMARY KEY"),
    };
    let mut stmts = create_schema_statements(d);
    stmts.extend([
        format!(
            "CREATE TABLE IF NOT EXISTS {} (id BIGINT{key}, project {text}, target {text}, strategy {text}, selection {text}, \
             started_at TIMESTAMP, finished_at TIMESTAMP, status {text}, built BIGINT, tests BIGINT, failed BIGINT, warned BIGINT, \
             published BIGINT, git_commit {text}, backup_schema {text}, restores BIGINT, mixed_ms BIGINT)",
            t(d, "releases")
        ),
        // ledgers written before the inconsistency window was recorded
        format!("ALTER TABLE {} ADD COLUMN IF NOT EXISTS mixed_ms BIGINT", t(d, "releases")),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (release_id BIGINT, schema_name {text}, name {text}, kind {text}, prev_kind {text}, \
             backup_name {text}, prev_view_ddl {text})",
            t(d, "release_objects")
        ),
        format!("CREATE TABLE IF NOT EXISTS {} (event_at TIMESTAMP, event {text}, release_id BIGINT, detail {text})", t(d, "events")),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (release_id BIGINT, step BIGINT, object {text}, action {text}, step_json {text}, state {text}, done_ms BIGINT)",
            t(d, "journal")
        ),
    ]);
    wh.execute_script(&stmts).await.context("creating the airlock ledger")
}

pub async fn next_id(wh: &dyn Warehouse) -> Result<i64> {
    let rows = wh.query(&format!("SELECT COALESCE(MAX(id), 0) + 1 FROM {}", t(wh.dialect(), "releases"))).await?;
    Ok(rows.rows.first().and_then(|r| r[0].as_deref()).and_then(|v| v.parse().ok()).unwrap_or(1))
}

fn opt(d: Dialect, v: &Option<String>) -> String {
    v.as_deref().map(|s| d.literal(s)).unwrap_or_else(|| "NULL".into())
}

pub fn insert_statement(d: Dialect, r: &Release) -> String {
    format!(
        "INSERT INTO {} (id, project, target, strategy, selection, started_at, finished_at, status, built, tests, failed, warned, published, \
         git_commit, backup_schema, restores, mixed_ms) VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
        t(d, "releases"),
        r.id,
        d.literal(&r.project),
        d.literal(&r.target),
        d.literal(&r.strategy),
        d.literal(&r.selection),
        d.literal(&r.started_at),
        opt(d, &r.finished_at),
        d.literal(&r.status),
        r.built,
        r.tests,
        r.failed,
        r.warned,
        r.published,
        opt(d, &r.git_commit),
        opt(d, &r.backup_schema),
        r.restores.map(|v| v.to_string()).unwrap_or_else(|| "NULL".into()),
        r.mixed_ms.map(|v| v.to_string()).unwrap_or_else(|| "NULL".into()),
    )
}

/// The UPDATE that moves a release to `status` (e.g. `publishing`, before
/// the first publish statement).
pub fn status_statement(d: Dialect, id: i64, status: &str) -> String {
    format!("UPDATE {} SET status = {} WHERE id = {id}", t(d, "releases"), d.literal(status))
}

/// Record an event that is not a release (a broken lock).
pub fn event_statement(d: Dialect, event: &str, release: Option<i64>, detail: &str) -> String {
    format!(
        "INSERT INTO {} VALUES ({}, {}, {}, {})",
        t(d, "events"),
        d.literal(&now()),
        d.literal(event),
        release.map(|r| r.to_string()).unwrap_or_else(|| "NULL".into()),
        d.literal(detail)
    )
}

/// The release interrupted while publishing, if any: prod may be mixed until
/// `airlock recover` completes or undoes it.
pub async fn publishing(wh: &dyn Warehouse) -> Result<Option<i64>> {
    let rows = wh.query(&format!("SELECT MIN(id) FROM {} WHERE status = 'publishing'", t(wh.dialect(), "releases"))).await?;
    Ok(rows.rows.first().and_then(|r| col(r, 0)).and_then(|v| v.parse().ok()))
}

/// Refuse to start while a publish is unfinished.
pub async fn refuse_if_publishing(wh: &dyn Warehouse, command: &str) -> Result<()> {
    if let Some(id) = publishing(wh).await? {
        anyhow::bail!(
            "release {id} was interrupted while publishing, so prod may be part old, part new; run `airlock recover` (it completes or undoes release {id}) before `airlock {command}`"
        );
    }
    Ok(())
}

/// Releases left `running` by a process that is gone become `interrupted`.
/// Only the holder of the lock may call this: nobody else can be running.
pub async fn close_abandoned(wh: &dyn Warehouse) -> Result<Vec<i64>> {
    let d = wh.dialect();
    let rows = wh.query(&format!("SELECT id FROM {} WHERE status = 'running' ORDER BY id", t(d, "releases"))).await?;
    let ids: Vec<i64> = rows.rows.iter().filter_map(|r| col(r, 0)).filter_map(|v| v.parse().ok()).collect();
    if !ids.is_empty() {
        let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
        wh.execute(&format!(
            "UPDATE {} SET status = 'interrupted', finished_at = {} WHERE id IN ({list})",
            t(d, "releases"),
            d.literal(&now())
        ))
        .await?;
    }
    Ok(ids)
}

/// The UPDATE that closes a release (part of the publish transaction when it publishes).
pub fn finish_statement(d: Dialect, r: &Release) -> String {
    format!(
        "UPDATE {} SET finished_at = {}, status = {}, built = {}, tests = {}, failed = {}, warned = {}, published = {}, backup_schema = {}, mixed_ms = {} WHERE id = {}",
        t(d, "releases"),
        opt(d, &r.finished_at),
        d.literal(&r.status),
        r.built,
        r.tests,
        r.failed,
        r.warned,
        r.published,
        opt(d, &r.backup_schema),
        r.mixed_ms.map(|v| v.to_string()).unwrap_or_else(|| "NULL".into()),
        r.id
    )
}

/// One INSERT for all the objects of a release: the publish statement count
/// does not grow with the number of objects beyond what the strategy needs.
pub fn objects_statement(d: Dialect, objects: &[ReleaseObject]) -> Option<String> {
    if objects.is_empty() {
        return None;
    }
    // borrowed: a release of 15,000 objects made a copy of every value
    let ids: Vec<String> = objects.iter().map(|o| o.release_id.to_string()).collect();
    let rows: Vec<Vec<Option<&str>>> = objects
        .iter()
        .zip(&ids)
        .map(|(o, id)| vec![Some(id.as_str()), Some(o.schema.as_str()), Some(o.name.as_str()), Some(o.kind.as_str()), o.prev_kind.as_deref(), o.backup_name.as_deref(), o.prev_view_ddl.as_deref()])
        .collect();
    use Column::{Int, Text};
    Some(insert_rows(d, &t(d, "release_objects"), &[Int, Text, Text, Text, Text, Text, Text], &rows))
}

/// The type of a column [`insert_rows`] fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Column {
    /// BIGINT; the value is its decimal text
    Int,
    Text,
}

/// One INSERT of `rows` (values in the table's column order; `None` is NULL)
/// into `table`. DuckDB's parser spends about 13 µs on every literal, so a
/// VALUES list of a 500-object release (3,500 literals) took 0.05 s to parse
/// alone: DuckDB gets the rows as one string literal instead, which the
/// engine splits and decodes (about 1 ms). Snowflake and BigQuery get a
/// VALUES list.
pub(crate) fn insert_rows<S: AsRef<str>>(d: Dialect, table: &str, columns: &[Column], rows: &[Vec<Option<S>>]) -> String {
    debug_assert!(!rows.is_empty(), "an INSERT of no rows");
    if d != Dialect::DuckDb {
        let value = |(c, v): (&Column, &Option<S>)| match (c, v.as_ref().map(AsRef::as_ref)) {
            (_, None) => "NULL".to_string(),
            (Column::Int, Some(n)) => n.to_string(),
            (Column::Text, Some(text)) => d.literal(text),
        };
        let tuples: Vec<String> = rows.iter().map(|r| format!("({})", columns.iter().zip(r).map(value).collect::<Vec<_>>().join(", "))).collect();
        return format!("INSERT INTO {table} VALUES\n{}", tuples.join(",\n"));
    }
    // rows end with ';', values are split by ','; in a value '%', ',', ';',
    // the quote and control characters are percent-encoded (so it stays
    // readable), and a lone '%' is NULL
    let packed_len: usize = rows.iter().flatten().map(|v| v.as_ref().map_or(1, |v| v.as_ref().len()) + 1).sum();
    let select: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| match c {
            Column::Int => format!("CAST(nullif(f[{}], '%') AS BIGINT)", i + 1),
            Column::Text => format!("url_decode(nullif(f[{}], '%'))", i + 1),
        })
        .collect();
    // written straight into the statement (it can be megabytes)
    let mut sql = format!("INSERT INTO {table} SELECT {} FROM (SELECT string_split(unnest(string_split('", select.join(", "));
    sql.reserve(packed_len + 40);
    for row in rows {
        for (j, value) in row.iter().enumerate() {
            if j > 0 {
                sql.push(',');
            }
            match value.as_ref().map(AsRef::as_ref) {
                None => sql.push('%'),
                Some(v) => {
                    for c in v.chars() {
                        if matches!(c, '%' | ',' | ';' | '\'') || c.is_ascii_control() {
                            sql.push_str(&format!("%{:02X}", c as u32));
                        } else {
                            sql.push(c);
                        }
                    }
                }
            }
        }
        sql.push(';');
    }
    sql.pop(); // the last row's ';'
    sql.push_str("', ';')), ',') AS f)");
    sql
}

fn col(r: &[Option<String>], i: usize) -> Option<String> {
    r.get(i).cloned().flatten()
}

fn num(r: &[Option<String>], i: usize) -> i64 {
    col(r, i).and_then(|v| v.parse().ok()).unwrap_or(0)
}

pub async fn releases(wh: &dyn Warehouse) -> Result<Vec<Release>> {
    let sql = format!(
        "SELECT id, project, target, strategy, selection, {}, {}, status, \
         built, tests, failed, warned, published, git_commit, backup_schema, restores, mixed_ms FROM {} ORDER BY id",
        wh.dialect().timestamp_text("started_at"),
        wh.dialect().timestamp_text("finished_at"),
        t(wh.dialect(), "releases")
    );
    let rows = wh.query(&sql).await?;
    Ok(rows
        .rows
        .iter()
        .map(|r| Release {
            id: num(r, 0),
            project: col(r, 1).unwrap_or_default(),
            target: col(r, 2).unwrap_or_default(),
            strategy: col(r, 3).unwrap_or_default(),
            selection: col(r, 4).unwrap_or_default(),
            started_at: col(r, 5).unwrap_or_default(),
            finished_at: col(r, 6),
            status: col(r, 7).unwrap_or_default(),
            built: num(r, 8),
            tests: num(r, 9),
            failed: num(r, 10),
            warned: num(r, 11),
            published: num(r, 12),
            git_commit: col(r, 13),
            backup_schema: col(r, 14),
            restores: col(r, 15).and_then(|v| v.parse().ok()),
            mixed_ms: col(r, 16).and_then(|v| v.parse().ok()),
        })
        .collect())
}

pub async fn objects(wh: &dyn Warehouse, after: i64) -> Result<Vec<ReleaseObject>> {
    let sql = format!(
        "SELECT release_id, schema_name, name, kind, prev_kind, backup_name, prev_view_ddl FROM {} WHERE release_id > {after} ORDER BY release_id, schema_name, name",
        t(wh.dialect(), "release_objects")
    );
    let rows = wh.query(&sql).await?;
    Ok(rows
        .rows
        .iter()
        .map(|r| ReleaseObject {
            release_id: num(r, 0),
            schema: col(r, 1).unwrap_or_default(),
            name: col(r, 2).unwrap_or_default(),
            kind: col(r, 3).unwrap_or_default(),
            prev_kind: col(r, 4),
            backup_name: col(r, 5),
            prev_view_ddl: col(r, 6),
        })
        .collect())
}

/// Whether the state right after `release` can still be restored: every
/// publish after it must still have its backups.
pub fn restorable(all: &[Release], release: i64) -> bool {
    let target = all.iter().find(|r| r.id == release);
    if target.is_some_and(|r| !r.is_published()) {
        return false;
    }
    all.iter().filter(|r| r.id > release && r.is_published()).all(|r| r.backup_schema.is_some())
}

/// Drop backups beyond the newest `keep` publishes.
pub async fn cleanup(wh: &dyn Warehouse, keep: usize) -> Result<Vec<i64>> {
    let d = wh.dialect();
    let all = releases(wh).await?;
    let with_backup: Vec<&Release> = all.iter().rev().filter(|r| r.is_published() && r.backup_schema.is_some()).collect();
    let mut dropped = Vec::new();
    let expired: Vec<&Release> = with_backup.into_iter().skip(keep).collect();
    let objects = match expired.iter().map(|r| r.id).min() {
        Some(first) => objects(wh, first - 1).await?,
        None => vec![],
    };
    for r in expired {
        let schema = r.backup_schema.as_deref().expect("filtered");
        // where the backups are: the release's schema, and the demoted
        // locations of a location-level publish (`<backup>__<prod schema>`)
        // (or the demoted database of a database swap)
        let mut locations: BTreeSet<String> = BTreeSet::new();
        for b in objects.iter().filter(|o| o.release_id == r.id).filter_map(|o| o.backup_name.as_deref()) {
            match d.split_qualified(b) {
                Some((Some(db), _, _)) => locations.insert(format!("DROP DATABASE IF EXISTS {}", d.quote(&db))),
                Some((None, s, _)) => locations.insert(format!("DROP SCHEMA IF EXISTS {} CASCADE", d.quote(&s))),
                None => false,
            };
        }
        locations.insert(format!("DROP SCHEMA IF EXISTS {} CASCADE", d.quote(schema)));
        // the ledger first: a ledger that still names a dropped backup would
        // promise a rollback it cannot make
        wh.execute(&format!("UPDATE {} SET backup_schema = NULL WHERE id = {}", t(d, "releases"), r.id))
            .await
            .with_context(|| format!("dropping backups of release {}", r.id))?;
        for drop in &locations {
            wh.execute(drop).await.with_context(|| format!("dropping backups of release {}", r.id))?;
        }
        dropped.push(r.id);
    }
    Ok(dropped)
}

/// The git commit of the project, when it is a git checkout.
pub fn git_commit(dir: &std::path::Path) -> Option<String> {
    let out = std::process::Command::new("git").arg("-C").arg(dir).args(["rev-parse", "HEAD"]).stderr(std::process::Stdio::null()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string()).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_inserted_into_duckdb_read_back_exactly() {
        let conn = duckdb::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (n BIGINT, a VARCHAR, b VARCHAR)").unwrap();
        let awkward = "it's ; a, \"quoted\"\nline, é 🚀 \\ n %2C % %%";
        let rows = vec![
            vec![Some("-5".to_string()), Some(awkward.to_string()), None],
            vec![None, Some(String::new()), Some("%".to_string())],
        ];
        conn.execute_batch(&insert_rows(Dialect::DuckDb, "t", &[Column::Int, Column::Text, Column::Text], &rows)).unwrap();
        let mut stmt = conn.prepare("SELECT n, a, b FROM t ORDER BY n NULLS LAST").unwrap();
        let back: Vec<(Option<i64>, Option<String>, Option<String>)> = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(|r| r.unwrap()).collect();
        assert_eq!(back, vec![(Some(-5), Some(awkward.to_string()), None), (None, Some(String::new()), Some("%".to_string()))]);
    }

    #[test]
    fn remote_dialects_get_a_values_list() {
        let rows = vec![vec![Some("1".to_string()), Some("it's".to_string()), None]];
        let sql = insert_rows(Dialect::Snowflake, "t", &[Column::Int, Column::Text, Column::Text], &rows);
        assert_eq!(sql, "INSERT INTO t VALUES\n(1, 'it''s', NULL)");
    }
}
