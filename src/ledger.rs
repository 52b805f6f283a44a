//! The ledger: one row per release in the warehouse (schema `airlock`), the
//! objects each release replaced and where their previous versions are kept,
//! so any retained release can be restored.

use anyhow::{Context, Result};

use crate::warehouse::{Dialect, Warehouse};

pub const SCHEMA: &str = "airlock";

#[derive(Debug, Clone, serde::Serialize)]
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

fn t(dialect: Dialect, table: &str) -> String {
    dialect.relation(SCHEMA, table)
}

pub fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

pub async fn ensure(wh: &dyn Warehouse) -> Result<()> {
    let d = wh.dialect();
    let stmts = vec![
        format!("CREATE SCHEMA IF NOT EXISTS {}", d.quote(SCHEMA)),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (id BIGINT PRIMARY KEY, project VARCHAR, target VARCHAR, strategy VARCHAR, selection VARCHAR, \
             started_at TIMESTAMP, finished_at TIMESTAMP, status VARCHAR, built BIGINT, tests BIGINT, failed BIGINT, warned BIGINT, \
             published BIGINT, git_commit VARCHAR, backup_schema VARCHAR, restores BIGINT)",
            t(d, "releases")
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (release_id BIGINT, schema_name VARCHAR, name VARCHAR, kind VARCHAR, prev_kind VARCHAR, \
             backup_name VARCHAR, prev_view_ddl VARCHAR)",
            t(d, "release_objects")
        ),
    ];
    wh.execute_atomic(&stmts).await.context("creating the airlock ledger")
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
        "INSERT INTO {} VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
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
    )
}

/// The UPDATE that closes a release (part of the publish transaction when it publishes).
pub fn finish_statement(d: Dialect, r: &Release) -> String {
    format!(
        "UPDATE {} SET finished_at = {}, status = {}, built = {}, tests = {}, failed = {}, warned = {}, published = {}, backup_schema = {} WHERE id = {}",
        t(d, "releases"),
        opt(d, &r.finished_at),
        d.literal(&r.status),
        r.built,
        r.tests,
        r.failed,
        r.warned,
        r.published,
        opt(d, &r.backup_schema),
        r.id
    )
}

/// One INSERT for all the objects of a release: the publish statement count
/// does not grow with the number of objects beyond what the strategy needs.
pub fn objects_statement(d: Dialect, objects: &[ReleaseObject]) -> Option<String> {
    if objects.is_empty() {
        return None;
    }
    let rows: Vec<String> = objects
        .iter()
        .map(|o| {
            format!(
                "({}, {}, {}, {}, {}, {}, {})",
                o.release_id,
                d.literal(&o.schema),
                d.literal(&o.name),
                d.literal(&o.kind),
                opt(d, &o.prev_kind),
                opt(d, &o.backup_name),
                opt(d, &o.prev_view_ddl)
            )
        })
        .collect();
    Some(format!("INSERT INTO {} VALUES\n{}", t(d, "release_objects"), rows.join(",\n")))
}

fn col(r: &[Option<String>], i: usize) -> Option<String> {
    r.get(i).cloned().flatten()
}

fn num(r: &[Option<String>], i: usize) -> i64 {
    col(r, i).and_then(|v| v.parse().ok()).unwrap_or(0)
}

pub async fn releases(wh: &dyn Warehouse) -> Result<Vec<Release>> {
    let sql = format!(
        "SELECT id, project, target, strategy, selection, strftime(started_at, '%Y-%m-%d %H:%M:%S'), strftime(finished_at, '%Y-%m-%d %H:%M:%S'), status, \
         built, tests, failed, warned, published, git_commit, backup_schema, restores FROM {} ORDER BY id",
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
    if target.is_some_and(|r| r.status != "published") {
        return false;
    }
    all.iter().filter(|r| r.id > release && r.status == "published").all(|r| r.backup_schema.is_some())
}

/// Drop backups beyond the newest `keep` publishes.
pub async fn cleanup(wh: &dyn Warehouse, keep: usize) -> Result<Vec<i64>> {
    let d = wh.dialect();
    let all = releases(wh).await?;
    let with_backup: Vec<&Release> = all.iter().rev().filter(|r| r.status == "published" && r.backup_schema.is_some()).collect();
    let mut dropped = Vec::new();
    for r in with_backup.into_iter().skip(keep) {
        let schema = r.backup_schema.as_deref().expect("filtered");
        wh.execute_atomic(&[
            format!("DROP SCHEMA IF EXISTS {} CASCADE", d.quote(schema)),
            format!("UPDATE {} SET backup_schema = NULL WHERE id = {}", t(d, "releases"), r.id),
        ])
        .await
        .with_context(|| format!("dropping backups of release {}", r.id))?;
        dropped.push(r.id);
    }
    Ok(dropped)
}

/// The git commit of the project, when it is a git checkout.
pub fn git_commit(dir: &std::path::Path) -> Option<String> {
    let out = std::process::Command::new("git").arg("-C").arg(dir).args(["rev-parse", "HEAD"]).stderr(std::process::Stdio::null()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string()).filter(|s| !s.is_empty())
}
