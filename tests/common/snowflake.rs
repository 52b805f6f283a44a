//! Test support for the Snowflake emulator (`tests/emulators/snowflake`):
//! start it once per test binary, give each test a database of its own,
//! write a `type: snowflake` profiles.yml pointing at it, and read the
//! emulator through snowflake-connector-python — a client other than
//! airlock's — to check what airlock left there.
//!
//! The emulator keeps running after the tests (start.sh is idempotent, so the
//! next binary reuses it); `tests/emulators/stop.sh snowflake` stops it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Where the emulator listens, as start.sh prints it.
#[derive(Debug, Clone)]
pub struct Emulator {
    pub host: String,
    pub port: u16,
    pub protocol: String,
    /// a Python with snowflake-connector-python, able to query the emulator
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
    let out = Command::new("bash").arg(&script).arg("snowflake").output().expect("run tests/emulators/start.sh snowflake");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the Snowflake emulator did not start:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let value = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("start.sh printed no {key}=:\n{stdout}"))
            .trim()
            .to_string()
    };
    Emulator {
        host: value("SNOWFLAKE_HOST"),
        port: value("SNOWFLAKE_PORT").parse().expect("SNOWFLAKE_PORT is a port"),
        protocol: value("SNOWFLAKE_PROTOCOL"),
        python: PathBuf::from(value("PYTHON")),
        pid: value("PID").parse().expect("PID is a number"),
    }
}

/// A database name no other test (of this or an earlier run) uses.
pub fn unique_database(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{}_{}_{}_{nanos}", prefix.to_ascii_uppercase(), std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A `type: snowflake` target reaching the emulator; change fields to taste.
#[derive(Debug, Clone)]
pub struct Profile {
    /// the profile's name (what dbt_project.yml's `profile:` says)
    pub name: String,
    pub user: String,
    pub password: String,
    pub database: String,
    pub schema: String,
    pub role: Option<String>,
    pub warehouse: Option<String>,
    pub host: String,
    pub port: u16,
    pub protocol: String,
    pub threads: u32,
    /// more keys of the target, as YAML values (`("authenticator", "oauth")`)
    pub extra: Vec<(String, String)>,
}

impl Profile {
    /// Profile `shop` (the shop fixtures' name) on `database`, schema `ANALYTICS`.
    pub fn new(database: &str) -> Profile {
        let e = emulator();
        Profile {
            name: "shop".into(),
            user: "tester".into(),
            password: "emulator-password".into(),
            database: database.into(),
            schema: "ANALYTICS".into(),
            role: None,
            warehouse: None,
            host: e.host.clone(),
            port: e.port,
            protocol: e.protocol.clone(),
            threads: 4,
            extra: Vec::new(),
        }
    }

    pub fn yaml(&self) -> String {
        let q = |s: &str| format!("'{}'", s.replace('\'', "''"));
        let mut out = format!(
            "{}:\n  target: dev\n  outputs:\n    dev:\n      type: snowflake\n      account: test\n      user: {}\n      database: {}\n      schema: {}\n      host: {}\n      port: {}\n      protocol: {}\n      threads: {}\n",
            self.name,
            q(&self.user),
            q(&self.database),
            q(&self.schema),
            q(&self.host),
            self.port,
            self.protocol,
            self.threads
        );
        // an empty password is left out (key-pair and OAuth profiles)
        let password = (!self.password.is_empty()).then(|| self.password.clone());
        for (key, value) in [("password", &password), ("role", &self.role), ("warehouse", &self.warehouse)] {
            if let Some(v) = value {
                out.push_str(&format!("      {key}: {}\n", q(v)));
            }
        }
        for (key, value) in &self.extra {
            out.push_str(&format!("      {key}: {}\n", q(value)));
        }
        out
    }

    /// Write `dir/profiles.yml` (pass `dir` as `--profiles-dir`).
    pub fn write(&self, dir: &Path) -> PathBuf {
        let file = dir.join("profiles.yml");
        std::fs::write(&file, self.yaml()).expect("write profiles.yml");
        file
    }

    /// The profile as airlock reads it.
    pub fn load(&self, dir: &Path) -> airlock::project::profile::Profile {
        let file = self.write(dir);
        airlock::project::profile::load_profile(&file, &self.name, None).expect("the test profile loads")
    }

    /// The warehouse airlock opens for it.
    pub fn open(&self, dir: &Path) -> std::sync::Arc<dyn airlock::warehouse::Warehouse> {
        airlock::warehouse::open(&self.load(dir), &[], false).expect("open the Snowflake warehouse")
    }
}

/// Run statements in the emulator through snowflake-connector-python, in one
/// session on `database`; the rows of each, every value as text (`NULL` for
/// null; dates, timestamps and booleans as Python prints them). One Python
/// process serves the whole test binary (importing the connector takes
/// seconds); each call still opens a session of its own.
pub fn sql(database: &str, statements: &[&str]) -> Vec<Vec<Vec<String>>> {
    static WORKER: OnceLock<std::sync::Mutex<Option<Worker>>> = OnceLock::new();
    let mut slot = WORKER.get_or_init(|| std::sync::Mutex::new(None)).lock().unwrap_or_else(|e| e.into_inner());
    let request = serde_json::json!({ "database": database, "statements": statements }).to_string();
    // a worker that died (a test panicked mid-call) is replaced
    for _ in 0..2 {
        let worker = slot.get_or_insert_with(Worker::start);
        match worker.call(&request) {
            Some(reply) => {
                let v: serde_json::Value = serde_json::from_str(&reply).unwrap_or_else(|e| panic!("python printed no rows ({e}):\n{reply}"));
                if let Some(err) = v.get("error") {
                    panic!("python failed on {statements:?}:\n{}", err.as_str().unwrap_or_default());
                }
                return serde_json::from_value(v["rows"].clone()).expect("rows");
            }
            None => *slot = None,
        }
    }
    panic!("the emulator's python stopped answering on {statements:?}");
}

/// A long-lived python that runs statements sent as JSON lines.
struct Worker {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Worker {
    const SCRIPT: &'static str = r#"
import json, sys, traceback, snowflake.connector
host, port, protocol = sys.argv[1:4]
for line in sys.stdin:
    req = json.loads(line)
    try:
        con = snowflake.connector.connect(user="checker", password="x", account="test", host=host, port=int(port), protocol=protocol, database=req["database"])
        try:
            cur = con.cursor()
            out = []
            for sql in req["statements"]:
                cur.execute(sql)
                rows = cur.fetchall() if cur.description else []
                out.append([["NULL" if v is None else str(v) for v in row] for row in rows])
        finally:
            con.close()
        print(json.dumps({"rows": out}), flush=True)
    except Exception:
        print(json.dumps({"error": traceback.format_exc()}), flush=True)
"#;

    fn start() -> Worker {
        let e = emulator();
        let mut child = Command::new(&e.python)
            .args(["-c", Self::SCRIPT, &e.host, &e.port.to_string(), &e.protocol])
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

/// The rows of one query.
pub fn query(database: &str, statement: &str) -> Vec<Vec<String>> {
    sql(database, &[statement]).remove(0)
}
