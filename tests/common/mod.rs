//! Helpers for integration tests of the real binary: run airlock in a scratch
//! directory, read the resulting DuckDB file, checksum prod.

#![allow(dead_code)]

pub mod bigquery;
pub mod snowflake;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The dbt the tests compare with and wrap (dbt-core 1.11.16 + dbt-duckdb
/// 1.11.1), installed once per test process by tests/dbt/install.sh (the
/// same idempotent installer `.ci/run` and the benchmarks use).
pub fn dbt() -> &'static str {
    static DBT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DBT.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dbt/install.sh");
        let out = Command::new("bash").arg(script).output().expect("run tests/dbt/install.sh");
        assert!(out.status.success(), "tests/dbt/install.sh failed:\n{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    })
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

/// A scratch directory holding the DuckDB file of one test.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn of(cmd: &mut Command) -> Run {
        Run::from(cmd.output().expect("run airlock"))
    }
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "exit code\n--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr);
        assert!(!self.stderr.contains("panicked"), "panic:\n{}", self.stderr);
        self
    }
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch { dir: tempfile::tempdir().expect("tempdir") }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Where the shop fixtures' profile puts the database.
    pub fn db(&self) -> PathBuf {
        self.path().join("shop.duckdb")
    }

    pub fn command(&self, project: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_airlock"));
        cmd.current_dir(self.path())
            .args(args)
            .arg("--project-dir")
            .arg(project)
            .env("AIRLOCK_SHOP_DB", self.db())
            .env("AIRLOCK_BAD_DB", self.path().join("bad.duckdb"))
            .env_remove("DBT_PROFILES_DIR")
            .env_remove("SHOP_CURRENCY")
            .env_remove("AIRLOCK_LOG");
        cmd
    }

    pub fn airlock(&self, project: &Path, args: &[&str]) -> Run {
        Run::from(self.command(project, args).output().expect("run airlock"))
    }

    /// A copy of a fixture that the test may change.
    pub fn copy_fixture(&self, name: &str) -> PathBuf {
        let to = self.path().join(name);
        copy_dir(&fixture(name), &to);
        to
    }

    pub fn query(&self, sql: &str) -> Vec<Vec<String>> {
        query(&self.db(), sql)
    }

    pub fn scalar(&self, sql: &str) -> String {
        self.query(sql).remove(0).remove(0)
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Every value as text, rows in the order the query gives.
pub fn query(db: &Path, sql: &str) -> Vec<Vec<String>> {
    let conn = duckdb::Connection::open_with_flags(db, duckdb::Config::default().access_mode(duckdb::AccessMode::ReadOnly).unwrap()).expect("open db");
    let wrapped = format!("SELECT COLUMNS(*)::VARCHAR FROM ({sql})");
    let mut stmt = conn.prepare(&wrapped).expect("prepare");
    let mut rows = stmt.query([]).expect("query");
    let mut out = Vec::new();
    while let Some(row) = rows.next().unwrap() {
        let n = row.as_ref().column_count();
        out.push((0..n).map(|i| row.get::<_, Option<String>>(i).unwrap().unwrap_or_else(|| "NULL".into())).collect());
    }
    out
}

/// A checksum of every table and view in the prod schemas: name -> (kind, rows, hash of sorted rows).
pub fn prod_checksums(db: &Path, schemas: &[&str]) -> BTreeMap<String, String> {
    let list = schemas.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", ");
    let objects = query(db, &format!("SELECT table_schema, table_name, table_type FROM information_schema.tables WHERE table_schema IN ({list}) ORDER BY 1, 2"));
    let mut out = BTreeMap::new();
    for o in objects {
        let rel = format!("\"{}\".\"{}\"", o[0], o[1]);
        let sum = query(db, &format!("SELECT COUNT(*), COALESCE(md5(string_agg(md5(t::VARCHAR), '' ORDER BY md5(t::VARCHAR))), '') FROM {rel} AS t"));
        out.insert(format!("{}.{}", o[0], o[1]), format!("{} rows={} md5={}", o[2], sum[0][0], sum[0][1]));
    }
    out
}

/// Output with the project and scratch paths replaced, for snapshots.
pub fn filtered(s: &Scratch, text: &str) -> String {
    let project = fixture("shop").canonicalize().unwrap();
    text.replace(&project.display().to_string(), "[PROJECT]").replace(&s.path().display().to_string(), "[TMP]")
}

/// Append a line to a file, adding the newline the file may lack.
pub fn append(path: &Path, line: &str) {
    let mut text = std::fs::read_to_string(path).unwrap();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(line);
    std::fs::write(path, text).unwrap();
}

/// The shop with a raw mirror of the shipments source that the staging view reads.
pub fn mirror_project(s: &Scratch) -> std::path::PathBuf {
    let project = s.copy_fixture("shop");
    std::fs::create_dir_all(project.join("models/raw")).unwrap();
    std::fs::write(
        project.join("models/raw/raw_shipments.sql"),
        "{{ config(materialized='table', tags=['raw']) }}\nselect * from {{ source('landing', 'shipments') }}\n",
    )
    .unwrap();
    std::fs::write(
        project.join("models/raw/schema.yml"),
        "version: 2\nmodels:\n  - name: raw_shipments\n    columns:\n      - name: shipment_id\n        data_tests: [unique, not_null]\n",
    )
    .unwrap();
    let stg = project.join("models/staging/stg_shipments.sql");
    let text = std::fs::read_to_string(&stg).unwrap().replace("source('landing', 'shipments')", "ref('raw_shipments')");
    assert!(text.contains("ref('raw_shipments')"), "{text}");
    std::fs::write(&stg, text).unwrap();
    project
}

/// A port of 127.0.0.1 held by a TCP socket that is bound but not
/// listening: a connection to it is refused, and no other test or process
/// can take the port while it is held. (A port found by binding port 0 and
/// closing the listener can be handed to another test before it is used.)
pub struct HeldPort {
    fd: std::os::fd::OwnedFd,
    pub port: u16,
}

impl HeldPort {
    pub fn new() -> HeldPort {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        // SAFETY: plain socket calls on a descriptor owned here, with
        // sockaddr_in buffers of the size passed
        unsafe {
            let raw = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(raw >= 0, "socket: {}", std::io::Error::last_os_error());
            let fd = OwnedFd::from_raw_fd(raw);
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            addr.sin_family = libc::AF_INET as libc::sa_family_t;
            addr.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
            let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            let rc = libc::bind(fd.as_raw_fd(), &addr as *const libc::sockaddr_in as *const libc::sockaddr, len);
            assert_eq!(rc, 0, "bind 127.0.0.1:0: {}", std::io::Error::last_os_error());
            let rc = libc::getsockname(fd.as_raw_fd(), &mut addr as *mut libc::sockaddr_in as *mut libc::sockaddr, &mut len);
            assert_eq!(rc, 0, "getsockname: {}", std::io::Error::last_os_error());
            HeldPort { fd, port: u16::from_be(addr.sin_port) }
        }
    }

    /// Start listening on the held port.
    pub fn listen(self) -> std::net::TcpListener {
        use std::os::fd::AsRawFd;
        // SAFETY: listen on the bound socket this owns
        let rc = unsafe { libc::listen(self.fd.as_raw_fd(), 128) };
        assert_eq!(rc, 0, "listen on 127.0.0.1:{}: {}", self.port, std::io::Error::last_os_error());
        std::net::TcpListener::from(self.fd)
    }
}
