//! Test support for the BigQuery emulator (`tests/emulators/bigquery`):
//! start it once per test binary, give each test datasets of its own (a
//! prefix), write a `type: bigquery` profiles.yml pointing at it, and read
//! the emulator through google-cloud-bigquery — a client other than
//! airlock's — to check what airlock left there.
//!
//! The emulator keeps running after the tests (start.sh is idempotent, so the
//! next binary reuses it); `tests/emulators/stop.sh bigquery` stops it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Where the emulator listens, as start.sh prints it.
#[derive(Debug, Clone)]
pub struct Emulator {
    pub endpoint: String,
    pub project: String,
    /// a Python with google-cloud-bigquery, able to query the emulator
    pub python: PathBuf,
    pub pid: u32,
}

/// The emulator, started (or found running) on first use.
pub fn emulator() -> &'static Emulator {
    static EMULATOR: OnceLock<Emulator> = OnceLock::new();
    EMULATOR.get_or_init(start)
}

fn start() -> Emulator {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/emulators/start.sh");
    let out = Command::new("bash").arg(&script).arg("bigquery").output().expect("run tests/emulators/start.sh bigquery");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the BigQuery emulator did not start:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let value = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("start.sh printed no {key}=:\n{stdout}"))
            .trim()
            .to_string()
    };
    Emulator {
        endpoint: value("BIGQUERY_ENDPOINT"),
        project: value("BIGQUERY_PROJECT"),
        python: PathBuf::from(value("PYTHON")),
        pid: value("PID").parse().expect("PID is a number"),
    }
}

/// A dataset prefix no other test (of this or an earlier run) uses; the
/// emulator has one project, so tests keep apart by dataset names.
pub fn unique_prefix(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{}_{}_{}_{nanos}", prefix.to_ascii_lowercase(), std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A `type: bigquery` target reaching the emulator; change fields to taste.
#[derive(Debug, Clone)]
pub struct Profile {
    /// the profile's name (what dbt_project.yml's `profile:` says)
    pub name: String,
    pub project: String,
    pub dataset: String,
    pub method: String,
    pub api_endpoint: String,
    pub threads: u32,
    /// more keys of the target, as YAML values
    pub extra: Vec<(String, String)>,
}

impl Profile {
    /// Profile `shop` (the shop fixtures' name) on dataset `dataset`.
    pub fn new(dataset: &str) -> Profile {
        let e = emulator();
        Profile {
            name: "shop".into(),
            project: e.project.clone(),
            dataset: dataset.into(),
            method: "oauth".into(),
            api_endpoint: e.endpoint.clone(),
            threads: 4,
            extra: Vec::new(),
        }
    }

    pub fn yaml(&self) -> String {
        let q = |s: &str| format!("'{}'", s.replace('\'', "''"));
        let mut out = format!(
            "{}:\n  target: dev\n  outputs:\n    dev:\n      type: bigquery\n      method: {}\n      project: {}\n      dataset: {}\n      api_endpoint: {}\n      threads: {}\n",
            self.name,
            q(&self.method),
            q(&self.project),
            q(&self.dataset),
            q(&self.api_endpoint),
            self.threads
        );
        for (key, value) in &self.extra {
            out.push_str(&format!("      {key}: {value}\n"));
        }
        out
    }

    /// Write `dir/profiles.yml` (pass `dir` as `--profiles-dir`).
    pub fn write(&self, dir: &Path) -> PathBuf {
        let file = dir.join("profiles.yml");
        std::fs::write(&file, self.yaml()).expect("write profiles.yml");
        file
    }

    pub fn load(&self, dir: &Path) -> airlock::project::profile::Profile {
        let file = self.write(dir);
        airlock::project::profile::load_profile(&file, &self.name, None).expect("the test profile loads")
    }

    pub fn open(&self, dir: &Path) -> std::sync::Arc<dyn airlock::warehouse::Warehouse> {
        airlock::warehouse::open(&self.load(dir), &[], false).expect("open the BigQuery warehouse")
    }
}

/// Run statements in the emulator through google-cloud-bigquery; the rows
/// of each, every value as text (`NULL` for null). One Python process serves
/// the whole test binary (importing the client takes seconds).
pub fn sql(statements: &[&str]) -> Vec<Vec<Vec<String>>> {
    call(serde_json::json!({ "statements": statements }).to_string(), &format!("{statements:?}"))
}

/// One test at a time: the emulator has one project, so the ledger, the
/// lock (dataset `airlock`) and the backups (`airlock_r<N>`) are shared.
/// Hold the guard for the whole test; it starts from an empty project.
pub fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let guard = ONE.lock().unwrap_or_else(|e| e.into_inner());
    reset();
    guard
}

/// Drop every dataset of the emulator's project.
pub fn reset() {
    call(serde_json::json!({ "reset": true }).to_string(), "reset");
}

fn call(request: String, what: &str) -> Vec<Vec<Vec<String>>> {
    static WORKER: OnceLock<std::sync::Mutex<Option<Worker>>> = OnceLock::new();
    let mut slot = WORKER.get_or_init(|| std::sync::Mutex::new(None)).lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..2 {
        let worker = slot.get_or_insert_with(Worker::start);
        match worker.call(&request) {
            Some(reply) => {
                let v: serde_json::Value = serde_json::from_str(&reply).unwrap_or_else(|e| panic!("python printed no rows ({e}):\n{reply}"));
                if let Some(err) = v.get("error") {
                    panic!("python failed on {what}:\n{}", err.as_str().unwrap_or_default());
                }
                return serde_json::from_value(v["rows"].clone()).expect("rows");
            }
            None => *slot = None,
        }
    }
    panic!("the emulator's python stopped answering on {what}");
}

/// Every query job the emulator holds, as (job id, query text): what
/// reached BigQuery, whichever client sent it.
pub fn jobs() -> Vec<(String, String)> {
    call(serde_json::json!({ "jobs": true }).to_string(), "jobs.list").remove(0).into_iter().map(|r| (r[0].clone(), r[1].clone())).collect()
}

/// Each table of `dataset` with its expiration (seconds since the epoch), as
/// tables.get reports it; None for a table that never expires.
pub fn expirations(dataset: &str) -> Vec<(String, Option<f64>)> {
    call(serde_json::json!({ "expires": dataset }).to_string(), "tables.get")
        .remove(0)
        .into_iter()
        .map(|r| (r[0].clone(), r[1].parse().ok()))
        .collect()
}

/// The emulator's test hooks: `in_flight` (slow jobs waiting), `cancelled`
/// (job ids jobs.cancel named), `flaked` (markers failed once).
pub fn hooks() -> serde_json::Value {
    let rows = call(serde_json::json!({ "hooks": true }).to_string(), "hooks");
    serde_json::from_str(&rows[0][0][0]).expect("hooks are JSON")
}

/// The rows of one query.
pub fn query(statement: &str) -> Vec<Vec<String>> {
    sql(&[statement]).remove(0)
}

/// The one value of a scalar query.
pub fn scalar(statement: &str) -> String {
    query(statement).remove(0).remove(0)
}

/// A long-lived python that runs statements sent as JSON lines.
struct Worker {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Worker {
    const SCRIPT: &'static str = r#"
import json, sys, traceback
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery
endpoint, project = sys.argv[1:3]
client = bigquery.Client(project=project, credentials=AnonymousCredentials(), client_options=ClientOptions(api_endpoint=endpoint))
for line in sys.stdin:
    req = json.loads(line)
    try:
        if req.get("jobs"):
            out = [[j.job_id, getattr(j, "query", None) or ""] for j in client.list_jobs(all_users=True)]
            print(json.dumps({"rows": [out]}), flush=True)
            continue
        if req.get("hooks"):
            import urllib.request
            with urllib.request.urlopen(endpoint + "/airlock-emulator/hooks", timeout=30) as r:
                print(json.dumps({"rows": [[[r.read().decode()]]]}), flush=True)
            continue
        if req.get("expires"):
            out = []
            for t in client.list_tables(req["expires"]):
                expires = client.get_table(t).expires
                out.append([t.table_id, "NULL" if expires is None else str(expires.timestamp())])
            print(json.dumps({"rows": [out]}), flush=True)
            continue
        if req.get("reset"):
            for ds in client.list_datasets():
                client.delete_dataset(ds.dataset_id, delete_contents=True, not_found_ok=True)
            print(json.dumps({"rows": []}), flush=True)
            continue
        out = []
        for sql in req["statements"]:
            rows = client.query(sql).result()
            out.append([["NULL" if v is None else str(v) for v in row.values()] for row in rows])
        print(json.dumps({"rows": out}), flush=True)
    except Exception:
        print(json.dumps({"error": traceback.format_exc()}), flush=True)
"#;

    fn start() -> Worker {
        let e = emulator();
        let mut child = Command::new(&e.python)
            .args(["-c", Self::SCRIPT, &e.endpoint, &e.project])
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("run the emulator's python");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        Worker { child, stdin, stdout }
    }

    fn call(&mut self, request: &str) -> Option<String> {
        use std::io::{BufRead, Write};
        writeln!(self.stdin, "{request}").ok()?;
        self.stdin.flush().ok()?;
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(n) if n > 0 => Some(line),
            _ => None,
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
