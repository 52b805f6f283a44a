//! `--builder dbt`: the project's own dbt builds the audit location, airlock
//! gates and publishes. airlock derives an audit target from the user's target
//! (same connection, audit schema) in a temporary profiles dir, asks dbt for
//! the prod names (a manifest compiled with the user's target) and maps every
//! audit object to its prod twin by `unique_id`, never by guessing. The gate
//! reads `run_results.json`; anything it cannot read blocks.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use crate::build::{Catalog, Counts};
use crate::commands::run::{close_release, plural};
use crate::commands::ExitStatus;
use crate::config::RunConfig;
use crate::interrupt::Interrupt;
use crate::ledger::lock::LockGuard;
use crate::ledger::{self, Release};
use crate::publish::{self, Change, Desired};
use crate::report::{self, NodeError, NodeLine, Progress, RunReport, TestFailure};
use crate::strategy::{BuildScope, Publish, Stage, Strategy};
use crate::warehouse::{Dialect, Recording, StatementLog, Warehouse};

/// dbt-core versions the builder is tested with (run_results and manifest
/// fields it reads, `--log-format json` events).
const SUPPORTED: &str = "1.8 to 1.11";

fn supported(version: &str) -> bool {
    let v = version.trim_start_matches('=');
    let mut parts = v.split('.').map(|p| p.chars().take_while(char::is_ascii_digit).collect::<String>().parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    major == 1 && (8..=11).contains(&minor)
}

/// A folder that exists for one run, private to this user, removed on drop:
/// it holds a profiles.yml that may carry credentials.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir> {
        use std::os::unix::fs::DirBuilderExt;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let path = std::env::temp_dir().join(format!("airlock-dbt-{}-{nanos}", std::process::id()));
        std::fs::DirBuilder::new().mode(0o700).create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One dbt relation (model, seed or snapshot) as a manifest names it.
#[derive(Debug, Clone)]
pub struct DbtNode {
    pub unique_id: String,
    pub resource_type: String,
    pub name: String,
    pub database: Option<String>,
    pub schema: String,
    pub identifier: String,
    pub materialized: String,
    pub tags: Vec<String>,
    pub compiled_code: Option<String>,
    pub path: String,
    /// tests: the node it tests, and `name(column)` for generic tests
    pub attached: Option<String>,
    pub describe: String,
    /// the nodes it reads (`depends_on.nodes`)
    pub depends_on: Vec<String>,
}

impl DbtNode {
    pub fn is_relation(&self) -> bool {
        matches!(self.resource_type.as_str(), "model" | "seed" | "snapshot") && self.materialized != "ephemeral"
    }
}

/// The nodes of a manifest.json, by unique_id.
pub fn read_manifest(path: &Path) -> Result<BTreeMap<String, DbtNode>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read dbt's manifest {}", path.display()))?;
    let json: Value = serde_json::from_str(&text).with_context(|| format!("{}: not a dbt manifest", path.display()))?;
    let nodes = json.get("nodes").and_then(Value::as_object).ok_or_else(|| anyhow!("{}: no `nodes` in the manifest", path.display()))?;
    let mut out = BTreeMap::new();
    for (id, n) in nodes {
        let s = |k: &str| n.get(k).and_then(Value::as_str).map(str::to_string);
        let config = n.get("config");
        let materialized = config.and_then(|c| c.get("materialized")).and_then(Value::as_str).unwrap_or_default().to_string();
        let tags = config.and_then(|c| c.get("tags")).and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect()).unwrap_or_default();
        let resource_type = s("resource_type").unwrap_or_default();
        let name = s("name").unwrap_or_default();
        let path_text = s("original_file_path").unwrap_or_default();
        let describe = match n.get("test_metadata") {
            Some(m) if !m.is_null() => {
                let test = m.get("name").and_then(Value::as_str).unwrap_or("test");
                let column = m.get("kwargs").and_then(|k| k.get("column_name")).and_then(Value::as_str).unwrap_or_default();
                format!("{test}({column})")
            }
            _ if resource_type == "test" => path_text.clone(),
            _ => name.clone(),
        };
        out.insert(
            id.clone(),
            DbtNode {
                unique_id: id.clone(),
                identifier: s("alias").or_else(|| s("identifier")).unwrap_or_else(|| name.clone()),
                resource_type,
                name,
                database: s("database"),
                schema: s("schema").unwrap_or_default(),
                materialized,
                tags,
                compiled_code: s("compiled_code"),
                path: path_text,
                attached: s("attached_node"),
                describe,
                depends_on: n
                    .pointer("/depends_on/nodes")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                    .unwrap_or_default(),
            },
        );
    }
    Ok(out)
}

/// One result of `run_results.json`.
#[derive(Debug, Clone)]
pub struct DbtResult {
    pub unique_id: String,
    pub status: String,
    pub message: String,
    pub failures: Option<u64>,
    pub seconds: f64,
    pub rows: Option<u64>,
    pub compiled_code: Option<String>,
}

/// The results of the build this run started; `invocation`: its id (a file
/// left by another run is not this run's verdict).
pub fn read_run_results(path: &Path, invocation: Option<&str>) -> Result<Vec<DbtResult>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read dbt's results {}", path.display()))?;
    let json: Value = serde_json::from_str(&text).with_context(|| format!("{}: not a dbt run_results.json", path.display()))?;
    if let Some(want) = invocation {
        let got = json.pointer("/metadata/invocation_id").and_then(Value::as_str);
        if got != Some(want) {
            bail!("{}: written by dbt invocation {}, not by this run's ({want})", path.display(), got.unwrap_or("?"));
        }
    }
    let results = json.get("results").and_then(Value::as_array).ok_or_else(|| anyhow!("{}: no `results`", path.display()))?;
    results
        .iter()
        .map(|r| {
            let unique_id = r.get("unique_id").and_then(Value::as_str).ok_or_else(|| anyhow!("{}: a result without unique_id", path.display()))?.to_string();
            let status = r.get("status").and_then(Value::as_str).ok_or_else(|| anyhow!("{}: result {unique_id} has no status", path.display()))?.to_string();
            Ok(DbtResult {
                status,
                message: r.get("message").and_then(Value::as_str).unwrap_or_default().to_string(),
                failures: r.get("failures").and_then(Value::as_u64),
                seconds: r.get("execution_time").and_then(Value::as_f64).unwrap_or(0.0),
                rows: r.pointer("/adapter_response/rows_affected").and_then(Value::as_u64),
                compiled_code: r.get("compiled_code").and_then(Value::as_str).map(str::to_string),
                unique_id,
            })
        })
        .collect()
}

/// What the gate makes of one result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Built,
    Pass,
    Warn,
    Fail,
    /// a model, seed or snapshot that did not build
    Error,
    /// a test that gave no verdict
    NoVerdict,
    Skipped,
}

/// dbt's status of a node, as the gate reads it. Anything it does not know
/// is no verdict (fail closed).
pub fn verdict(resource_type: &str, status: &str) -> Verdict {
    let test = matches!(resource_type, "test" | "unit_test");
    match (test, status) {
        (false, "success") => Verdict::Built,
        (false, "error") => Verdict::Error,
        (true, "pass") => Verdict::Pass,
        (true, "warn") => Verdict::Warn,
        (true, "fail") => Verdict::Fail,
        (_, "skipped") => Verdict::Skipped,
        (false, _) => Verdict::Error,
        (true, _) => Verdict::NoVerdict,
    }
}

/// How to run the user's dbt: the executable, the project, the user's own
/// profiles (prod) and the derived audit profiles.
struct Dbt {
    exe: PathBuf,
    project_dir: PathBuf,
    prod_profiles: PathBuf,
    audit_profiles: TempDir,
    target: String,
    vars: Option<String>,
    /// where each target's artifacts go (kept between runs: dbt's partial parsing)
    audit_path: PathBuf,
    prod_path: PathBuf,
    /// the prod target's views compiled while the audit build runs
    views_path: PathBuf,
}

/// What one dbt invocation said.
#[derive(Default)]
struct Invocation {
    code: Option<i32>,
    version: Option<String>,
    invocation_id: Option<String>,
    /// dbt's error messages (and any output that was not a JSON event)
    errors: Vec<String>,
}

impl Invocation {
    /// What one JSON event tells: the invocation id (its first), dbt's
    /// version, an error message.
    fn note(&mut self, event: &Value) {
        let info = event.get("info");
        let name = info.and_then(|i| i.get("name")).and_then(Value::as_str).unwrap_or_default();
        if self.invocation_id.is_none() {
            self.invocation_id = info.and_then(|i| i.get("invocation_id")).and_then(Value::as_str).map(str::to_string);
        }
        if name == "MainReportVersion" {
            self.version = event.pointer("/data/version").and_then(Value::as_str).map(|v| v.trim_start_matches('=').to_string());
        }
        if info.and_then(|i| i.get("level")).and_then(Value::as_str) == Some("error") {
            if let Some(msg) = info.and_then(|i| i.get("msg")).and_then(Value::as_str) {
                if !msg.trim().is_empty() {
                    self.errors.push(msg.trim_end().to_string());
                }
            }
        }
    }

    fn message(&self) -> String {
        let text = self.errors.join("\n");
        if text.trim().is_empty() {
            format!("dbt exited with {}", self.code.map(|c| c.to_string()).unwrap_or_else(|| "a signal".into()))
        } else {
            text
        }
    }
}

impl Dbt {
    fn new(cfg: &RunConfig, audit_schema: &str) -> Result<Dbt> {
        let project_dir = cfg.project_dir.canonicalize().with_context(|| format!("--project-dir {}", cfg.project_dir.display()))?;
        let prod_profiles = cfg.profile.file.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
        let prod_profiles = prod_profiles.canonicalize().unwrap_or(prod_profiles);
        let audit_profiles = TempDir::new()?;
        write_audit_profile(&cfg.profile, audit_schema, &audit_profiles.0.join("profiles.yml"))?;
        let vars = if cfg.vars.is_empty() { None } else { Some(serde_json::to_string(&cfg.vars)?) };
        let artifacts = project_dir.join("target").join("airlock");
        Ok(Dbt {
            exe: cfg.dbt.clone(),
            project_dir,
            prod_profiles,
            audit_profiles,
            target: cfg.profile.target_name.clone(),
            vars,
            audit_path: artifacts.join("audit"),
            prod_path: artifacts.join("prod"),
            views_path: artifacts.join("prod-views"),
        })
    }

    fn command(&self, sub: &str, audit: bool) -> Command {
        let path = if audit { &self.audit_path } else { &self.prod_path };
        self.command_at(sub, audit, path)
    }

    /// dbt's arguments for `sub` on the audit or the prod target, artifacts in `path`.
    fn args(&self, sub: &str, audit: bool, path: &Path) -> Vec<String> {
        let profiles = if audit { &self.audit_profiles.0 } else { &self.prod_profiles };
        let mut args: Vec<String> = vec![sub.into(), "--project-dir".into(), self.project_dir.display().to_string(), "--profiles-dir".into(), profiles.display().to_string()];
        args.extend(["--target".into(), self.target.clone(), "--target-path".into(), path.display().to_string()]);
        args.extend(["--log-format".into(), "json".into(), "--no-use-colors".into()]);
        if let Some(vars) = &self.vars {
            args.extend(["--vars".into(), vars.clone()]);
        }
        args
    }

    fn command_at(&self, sub: &str, audit: bool, path: &Path) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.args(self.args(sub, audit, path));
        self.environment(&mut cmd);
        cmd
    }

    fn environment(&self, cmd: &mut Command) {
        // no network here or there: dbt's usage ping would only wait
        if std::env::var_os("DBT_SEND_ANONYMOUS_USAGE_STATS").is_none() {
            cmd.env("DBT_SEND_ANONYMOUS_USAGE_STATS", "False");
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    }

    /// Run dbt to its end, reading its JSON events; `on_event` sees each.
    /// A dbt that reports a version the builder does not support is an error.
    fn run(&self, cmd: Command, on_event: impl FnMut(&Value)) -> Result<Invocation> {
        let shown = self.exe.display().to_string();
        let inv = invoke(&shown, cmd, on_event)?;
        check_version(&shown, &inv)?;
        Ok(inv)
    }

    /// Run a dbt command that must succeed (parse, compile): dbt's own
    /// message when it does not.
    async fn run_checked(self: &Arc<Self>, sub: &'static str, audit: bool, args: Vec<String>) -> Result<()> {
        let me = self.clone();
        let inv = tokio::task::spawn_blocking(move || {
            let mut cmd = me.command(sub, audit);
            cmd.args(&args);
            me.run(cmd, |_| {})
        })
        .await
        .map_err(|e| anyhow!("dbt {sub} stopped: {e}"))??;
        if inv.code != Some(0) {
            let which = if audit { "the audit target" } else { "the prod target" };
            bail!("dbt {sub} ({which} '{}') failed:\n{}", self.target, inv.message());
        }
        Ok(())
    }

    /// The Python that runs this dbt, from the executable's `#!` line (pip,
    /// pipx and venvs write one); None for anything else.
    fn interpreter(&self) -> Option<Vec<String>> {
        let path = find_executable(&self.exe)?;
        let mut head = [0u8; 512];
        let n = std::fs::File::open(path).and_then(|mut f| f.read(&mut head)).ok()?;
        let first = std::str::from_utf8(&head[..n]).ok()?.lines().next()?.strip_prefix("#!")?;
        let words: Vec<String> = first.split_whitespace().map(str::to_string).collect();
        let program = if words.first()?.ends_with("/env") { words.get(1)? } else { words.first()? };
        program.rsplit('/').next()?.starts_with("python").then_some(words)
    }

    /// Start dbt parsing the audit or the prod target in a process that then
    /// runs `then` on the parsed manifest (dbt's Python API, `dbtRunner`):
    /// one dbt start instead of two, and no second parse. With `wait`, `then`
    /// runs only after [`Driven::go`] (the audit build, after airlock's
    /// checks); else at once (the prod views' compile). Returns when the
    /// parse is done. None when this dbt cannot be driven so (no Python `#!`
    /// line, no `dbtRunner`): the caller runs dbt's commands one by one.
    fn start(&self, audit: bool, then: Option<Vec<String>>, wait: bool) -> Result<Option<Driven>> {
        let Some(python) = self.interpreter() else { return Ok(None) };
        let parse = self.args("parse", audit, if audit { &self.audit_path } else { &self.prod_path });
        let shown = self.exe.display().to_string();
        let plan = serde_json::json!({ "parse": parse, "then": then, "wait": wait });
        let mut cmd = Command::new(&python[0]);
        cmd.args(&python[1..]).arg("-c").arg(DRIVER).arg(plan.to_string());
        self.environment(&mut cmd);
        if wait {
            cmd.stdin(Stdio::piped());
        }
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                tracing::debug!("cannot start {}: {e}; running dbt's commands one by one", python[0]);
                return Ok(None);
            }
        };
        let mut stderr = child.stderr.take().expect("piped");
        let err_thread = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let mut run = Driven { stdin: child.stdin.take(), lines: BufReader::new(child.stdout.take().expect("piped")).lines(), child, err_thread: Some(err_thread), shown };
        let mut inv = Invocation::default();
        let said = run.read_until(&mut inv, |_| {});
        let which = if audit { "the audit target" } else { "the prod target" };
        match said.as_ref().and_then(|v| v.get("airlock")).and_then(Value::as_str) {
            Some("parsed") if said.as_ref().and_then(|v| v.get("ok")).and_then(Value::as_bool) == Some(true) => {
                check_version(&run.shown, &inv)?;
                Ok(Some(run))
            }
            Some("unavailable") => {
                let why = said.as_ref().and_then(|v| v.get("why")).and_then(Value::as_str).unwrap_or("?").to_string();
                tracing::debug!("{} cannot import dbtRunner ({why}); running dbt's commands one by one", python[0]);
                Ok(None)
            }
            _ => {
                run.end(&mut inv);
                check_version(&run.shown, &inv)?;
                bail!("dbt parse ({which} '{}') failed:\n{}", self.target, inv.message())
            }
        }
    }

    /// `compile`'s arguments for the prod target's views: their tests left
    /// out, no cache of the warehouse's relations (so the database is opened
    /// only by a view whose Jinja queries it).
    fn views_args(&self) -> Vec<String> {
        let mut args = self.args("compile", false, &self.views_path);
        args.extend(["--select", "config.materialized:view", "--indirect-selection", "empty", "--no-populate-cache"].map(String::from));
        args
    }
}

/// A dbt process driven through [`Dbt::start`], between its parse and what
/// follows. Dropped without [`Driven::go`], a waiting one ends without
/// running its second command: the audit build needs an explicit go.
struct Driven {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
    err_thread: Option<std::thread::JoinHandle<String>>,
    shown: String,
}

impl Driven {
    /// dbt's events into `inv` and `on_event` up to the driver's next own
    /// line (returned), or to the end of its output (None).
    fn read_until(&mut self, inv: &mut Invocation, mut on_event: impl FnMut(&Value)) -> Option<Value> {
        for line in self.lines.by_ref() {
            let Ok(line) = line else { break };
            match serde_json::from_str::<Value>(&line) {
                Ok(v) if v.get("airlock").is_some() => return Some(v),
                Ok(event) => {
                    inv.note(&event);
                    on_event(&event);
                }
                Err(_) if !line.trim().is_empty() => inv.errors.push(line),
                Err(_) => {}
            }
        }
        None
    }

    /// Close dbt's stdin, wait for it to end; its exit code.
    fn finish(&mut self) -> Option<i32> {
        self.stdin.take();
        self.child.wait().ok().and_then(|s| s.code())
    }

    /// [`Driven::finish`], with the exit code and stderr in `inv`.
    fn end(&mut self, inv: &mut Invocation) {
        inv.code = self.finish();
        if let Some(err) = self.err_thread.take().and_then(|t| t.join().ok()) {
            if !err.trim().is_empty() {
                inv.errors.push(err.trim_end().to_string());
            }
        }
    }

    /// Let the second command run (a waiting one) and read it to its end;
    /// its events go to `on_event`.
    fn go(mut self, on_event: impl FnMut(&Value)) -> Result<Invocation> {
        let mut inv = Invocation::default();
        if let Some(stdin) = self.stdin.as_mut() {
            stdin.write_all(b"go\n").and_then(|_| stdin.flush()).with_context(|| format!("starting dbt ('{}') after its parse", self.shown))?;
        }
        self.read_until(&mut inv, on_event);
        self.end(&mut inv);
        Ok(inv)
    }
}

impl Drop for Driven {
    fn drop(&mut self) {
        self.finish();
    }
}

/// dbt's parse and a second command on the parsed manifest in one Python
/// process (run by [`Dbt::start`]): argv[1] is `{"parse": [...], "then":
/// [...] or null, "wait": bool}`; with `wait`, the second command runs only
/// when airlock writes `go` to stdin. Its own lines on stdout are JSON with
/// an `airlock` key; the rest are events in the shape of dbt's `--log-format
/// json`. The parse's are dbt's own. The second command's come from an
/// event callback that writes only the events airlock reads (progress,
/// version, errors): dbt formatting every event as JSON costs about 15% of
/// a build's wall time, so its stdout log is off (`--log-level none`; the
/// file log in logs/dbt.log is as the user configured it). Exit code as
/// dbt's CLI.
const DRIVER: &str = r#"
import json, sys, threading
try:
    from dbt.cli.main import dbtRunner
except Exception as e:
    print(json.dumps({"airlock": "unavailable", "why": repr(e)}), flush=True)
    sys.exit(3)
READ = {"MainReportVersion", "LogStartLine", "LogModelResult", "LogTestResult",
        "LogSeedResult", "LogSnapshotResult", "SkippingDetails"}
out = threading.Lock()
def forward(ev):
    info = ev.info
    if info.name not in READ and info.level != "error":
        return
    data = {}
    node = getattr(ev.data, "node_info", None)
    if node is not None:
        data["node_info"] = {"node_name": node.node_name, "node_status": node.node_status}
    if info.name == "LogStartLine":
        data["total"] = ev.data.total
    if info.name == "MainReportVersion":
        data["version"] = ev.data.version
    line = json.dumps({"info": {"name": info.name, "level": info.level, "msg": info.msg,
                                "invocation_id": info.invocation_id}, "data": data})
    with out:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
plan = json.loads(sys.argv[1])
res = dbtRunner().invoke(plan["parse"])
ok = bool(res.success) and res.result is not None and not isinstance(res.result, bool)
print(json.dumps({"airlock": "parsed", "ok": ok}), flush=True)
if not ok:
    if res.exception is not None:
        print(str(res.exception), file=sys.stderr)
    sys.exit(2)
if plan["then"] is None:
    sys.exit(0)
if plan["wait"] and sys.stdin.readline().strip() != "go":
    sys.exit(0)
res = dbtRunner(manifest=res.result, callbacks=[forward]).invoke(plan["then"] + ["--log-level", "none"])
print(json.dumps({"airlock": "done"}), flush=True)
if res.exception is not None:
    print(str(res.exception), file=sys.stderr)
sys.exit(0 if res.success else (2 if res.exception is not None else 1))
"#;

/// Run a dbt command to its end, reading its JSON events (`--log-format
/// json`); `on_event` sees each. `shown` names the executable in messages.
fn invoke(shown: &str, mut cmd: Command, mut on_event: impl FnMut(&Value)) -> Result<Invocation> {
    let mut child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow!("dbt not found: cannot run '{shown}' ({e}); install dbt-core with the adapter of your profile, or name it with --dbt PATH")
        } else {
            anyhow!("cannot run dbt '{shown}': {e}")
        }
    })?;
    let mut stderr = child.stderr.take().expect("piped");
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut inv = Invocation { code: None, version: None, invocation_id: None, errors: vec![] };
    let stdout = child.stdout.take().expect("piped");
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        match serde_json::from_str::<Value>(&line) {
            Ok(event) => {
                inv.note(&event);
                on_event(&event);
            }
            Err(_) if !line.trim().is_empty() => inv.errors.push(line),
            Err(_) => {}
        }
    }
    let status = child.wait().with_context(|| format!("waiting for dbt '{shown}'"))?;
    inv.code = status.code();
    let err = err_thread.join().unwrap_or_default();
    if !err.trim().is_empty() {
        inv.errors.push(err.trim_end().to_string());
    }
    Ok(inv)
}

/// A dbt the builder does not support (its version, or not dbt-core at all)
/// is an error naming it.
fn check_version(shown: &str, inv: &Invocation) -> Result<()> {
    if let Some(v) = &inv.version {
        if !supported(v) {
            bail!("dbt {v} ('{shown}') is not a version the dbt builder supports ({SUPPORTED}); install one of those or use --builder native");
        }
    } else if inv.code != Some(0) && inv.errors.iter().any(|e| e.contains("No such command") || e.contains("Usage:")) {
        bail!("'{shown}' does not look like dbt-core ({SUPPORTED}): {}", inv.message());
    }
    Ok(())
}

/// What `airlock doctor` finds out about a dbt executable.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Probe {
    /// as named (`--dbt`, else `dbt`)
    pub executable: String,
    /// where it was found (PATH searched for a bare name)
    pub path: Option<String>,
    /// the dbt-core version it reports
    pub version: Option<String>,
    pub supported: bool,
    /// the dbt-core versions the builder supports
    pub supported_versions: &'static str,
    /// why it cannot be used, when it cannot
    pub problem: Option<String>,
}

/// Find `exe` and ask its version with `dbt debug --config-dir`, which
/// neither reads the project nor connects anywhere (`dbt --version` would
/// ask PyPI for the latest release); its log goes to a temporary folder.
pub fn probe(exe: &Path) -> Probe {
    let shown = exe.display().to_string();
    let mut out = Probe { executable: shown.clone(), path: None, version: None, supported: false, supported_versions: SUPPORTED, problem: None };
    let Some(path) = find_executable(exe) else {
        out.problem = Some(format!("not found: no executable '{shown}'{}; install dbt-core with the adapter of your profile, or name it with --dbt PATH", if exe.components().count() > 1 { "" } else { " on PATH" }));
        return out;
    };
    out.path = Some(path.display().to_string());
    let asked = TempDir::new().and_then(|dir| {
        let mut cmd = Command::new(&path);
        cmd.args(["debug", "--config-dir", "--log-format", "json", "--no-use-colors", "--log-level-file", "none", "--log-path"])
            .arg(&dir.0)
            .current_dir(&dir.0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if std::env::var_os("DBT_SEND_ANONYMOUS_USAGE_STATS").is_none() {
            cmd.env("DBT_SEND_ANONYMOUS_USAGE_STATS", "False");
        }
        invoke(&shown, cmd, |_| {})
    });
    match asked {
        Err(e) => out.problem = Some(format!("{e:#}")),
        Ok(inv) => {
            out.version = inv.version.clone();
            out.supported = inv.version.as_deref().is_some_and(supported);
            if let Err(e) = check_version(&shown, &inv) {
                out.problem = Some(format!("{e:#}"));
            } else if inv.version.is_none() {
                out.problem = Some(format!("'{shown}' reported no dbt version: {}", inv.message()));
            }
        }
    }
    out
}

/// `exe` itself when it names a path, else the first match on PATH.
fn find_executable(exe: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |p: &Path| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if exe.components().count() > 1 {
        return runnable(exe).then(|| exe.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(exe)).find(|p| runnable(p))
}

/// The user's profiles.yml with the chosen target's schema replaced by the
/// audit schema: same connection, same target name (so macros that look at
/// `target.name` behave as in prod), only the place differs.
fn write_audit_profile(profile: &crate::project::profile::Profile, audit_schema: &str, to: &Path) -> Result<()> {
    let shown = profile.file.display();
    let text = std::fs::read_to_string(&profile.file).with_context(|| format!("cannot read {shown}"))?;
    // dbt renders the file itself (env_var): keep it as written when it is
    // plain YAML, else airlock's rendering of it
    let yaml: serde_norway::Value = match serde_norway::from_str(&text) {
        Ok(v) => v,
        Err(_) => serde_norway::from_str(&crate::render::render_config_text(&text, &shown.to_string())?).map_err(|e| anyhow!("{shown}: invalid YAML: {e}"))?,
    };
    let mut root: serde_json::Map<String, Value> = match serde_json::to_value(yaml).map_err(|e| anyhow!("{shown}: {e}"))? {
        Value::Object(m) => m,
        _ => bail!("{shown}: expected a mapping of profiles"),
    };
    let mut prof = root.remove(&profile.profile_name).ok_or_else(|| anyhow!("{shown}: no profile '{}'", profile.profile_name))?;
    let output = prof
        .pointer_mut(&format!("/outputs/{}", profile.target_name.replace('~', "~0").replace('/', "~1")))
        .ok_or_else(|| anyhow!("{shown}: profile '{}' has no target '{}'", profile.profile_name, profile.target_name))?;
    let Value::Object(output) = output else { bail!("{shown}: target '{}' is not a mapping", profile.target_name) };
    output.insert("schema".into(), Value::String(audit_schema.to_string()));
    // dbt-snowflake / dbt-duckdb read `schema`; some adapters call it `dataset`
    if output.contains_key("dataset") {
        output.insert("dataset".into(), Value::String(audit_schema.to_string()));
    }
    let outputs = prof.get_mut("outputs").and_then(Value::as_object_mut).expect("checked above");
    outputs.retain(|k, _| k == &profile.target_name);
    prof["target"] = Value::String(profile.target_name.clone());
    let mut out = serde_json::Map::new();
    if let Some(config) = root.remove("config") {
        out.insert("config".into(), config);
    }
    out.insert(profile.profile_name.clone(), prof);
    let text = serde_norway::to_string(&Value::Object(out)).map_err(|e| anyhow!("writing the audit profile: {e}"))?;
    std::fs::write(to, text).with_context(|| format!("cannot write {}", to.display()))
}

/// A relation dbt builds, in audit and in prod.
#[derive(Debug, Clone)]
struct Twin {
    audit: DbtNode,
    prod: DbtNode,
}

/// Every relation of the project mapped audit -> prod by unique_id.
fn twins(audit: &BTreeMap<String, DbtNode>, prod: &BTreeMap<String, DbtNode>, d: Dialect) -> Result<BTreeMap<String, Twin>> {
    let mut out = BTreeMap::new();
    let prod_schemas: BTreeSet<String> = prod.values().filter(|n| n.is_relation()).map(|n| fold_key(d, &n.schema)).collect();
    for (id, a) in audit.iter().filter(|(_, n)| n.is_relation()) {
        let p = prod.get(id).ok_or_else(|| anyhow!("{id} is in dbt's audit manifest but not in its prod manifest; the project parses differently per target"))?;
        if !matches!(a.materialized.as_str(), "table" | "view" | "incremental" | "seed" | "snapshot") {
            bail!("{} ({}): materialized '{}' is not published by the dbt builder yet (table, view, incremental, seed and snapshot are)", a.name, a.path, a.materialized);
        }
        if prod_schemas.contains(&fold_key(d, &a.schema)) {
            bail!(
                "{} ({}) builds into schema '{}' for the audit target too, which is a prod schema of this project: a generate_schema_name \
                 override or a custom schema ignores target.schema; airlock will not build into prod",
                a.name,
                a.path,
                a.schema
            );
        }
        if a.database.as_deref().map(|s| fold_key(d, s)) != p.database.as_deref().map(|s| fold_key(d, s)) {
            bail!("{} ({}) lands in database '{}' for audit and '{}' for prod; the dbt builder publishes within one database", a.name, a.path, a.database.as_deref().unwrap_or(""), p.database.as_deref().unwrap_or(""));
        }
        out.insert(id.clone(), Twin { audit: a.clone(), prod: p.clone() });
    }
    Ok(out)
}

fn fold_key(d: Dialect, s: &str) -> String {
    if d.case_insensitive_names() {
        s.to_lowercase()
    } else {
        s.to_string()
    }
}

/// `deploy` / `build` with the dbt builder.
pub async fn run(cfg: &RunConfig, publish: bool, statement_log: Option<&Path>) -> Result<ExitStatus> {
    let started = Instant::now();
    let command = if publish { "deploy" } else { "build" };
    let registry = crate::strategy::Registry::load(Some(&cfg.strategies_dir))?;
    let strategy = registry.get(&cfg.strategy)?;
    let d = cfg.profile.dialect();
    check_strategy(strategy, d)?;
    let layout_schema = |s: &str| d.fold(&cfg.settings.deploy.audit_schema.replace("{schema}", s));
    let audit_schema = layout_schema(&cfg.profile.schema);
    let dbt = Arc::new(Dbt::new(cfg, &audit_schema)?);

    let log = statement_log.map(StatementLog::create).transpose()?;
    let wh = Arc::new(Recording::new(cfg.open_warehouse(false)?, log));
    let dyn_wh: Arc<dyn Warehouse> = wh.clone();
    let guard = LockGuard::acquire(dyn_wh.clone(), command).await?;
    let interrupt = Interrupt::install(dyn_wh.clone())?;
    let mut release = None;
    let result = pipeline(cfg, strategy, &dbt, &wh, publish, started, &guard, &interrupt, &mut release).await;
    let result = close_release(&*wh, result, release.as_mut(), &interrupt).await;
    let unlocked = guard.release().await;
    wh.finish_log();
    let status = result?;
    unlocked?;
    Ok(status)
}

#[allow(clippy::too_many_arguments)]
async fn pipeline(
    cfg: &RunConfig,
    strategy: &Strategy,
    dbt: &Arc<Dbt>,
    wh: &Arc<Recording>,
    publish: bool,
    started: Instant,
    guard: &LockGuard,
    interrupt: &Interrupt,
    release: &mut Option<Release>,
) -> Result<ExitStatus> {
    let command = if publish { "deploy" } else { "build" };
    let d = wh.dialect();

    // dbt's names for both targets, parsed side by side (parsing never opens
    // the database). The audit target's process stays up for its build, on
    // the manifest it parsed; the prod target's goes on to compile the views
    // (a compile that needs the database, held by airlock or dbt build, fails
    // and runs again after the build)
    let build_args = build_args(cfg, dbt);
    wh.release_connections();
    let _ = std::fs::remove_file(dbt.views_path.join("manifest.json"));
    let audit = {
        let dbt = dbt.clone();
        let mut build = dbt.args("build", true, &dbt.audit_path);
        build.extend(build_args.iter().cloned());
        tokio::task::spawn_blocking(move || dbt.start(true, Some(build), true))
    };
    let prod = {
        let dbt = dbt.clone();
        // deploy publishes views with dbt's prod SQL: compiled right after the parse
        let views = publish.then(|| dbt.views_args());
        tokio::task::spawn_blocking(move || dbt.start(false, views, false))
    };
    let (a, p) = tokio::join!(audit, prod);
    let audit_run = a.map_err(|e| anyhow!("dbt parse stopped: {e}"))??;
    let prod_run = p.map_err(|e| anyhow!("dbt parse stopped: {e}"))??;
    // the prod views' compile goes on in the prod target's process; read to its end aside
    let driven_views = prod_run.is_some() && publish;
    let views_run = prod_run.map(|run| std::thread::spawn(move || run.go(|_| {})));
    if views_run.is_none() {
        dbt.run_checked("parse", false, vec![]).await?;
    }
    if audit_run.is_none() {
        dbt.run_checked("parse", true, vec![]).await?;
    }
    tracing::debug!("{:.2} s: dbt parsed both targets ({})", started.elapsed().as_secs_f64(), if audit_run.is_some() { "the audit build waits in the same process" } else { "dbt build runs as its own process" });
    let audit_manifest = read_manifest(&dbt.audit_path.join("manifest.json"))?;
    let prod_manifest = read_manifest(&dbt.prod_path.join("manifest.json"))?;
    let mut twins = twins(&audit_manifest, &prod_manifest, d)?;
    let project_name = cfg.header.name.clone();

    ledger::ensure(&**wh).await?;
    ledger::refuse_if_publishing(&**wh, command).await?;
    for id in ledger::close_abandoned(&**wh).await? {
        eprintln!("airlock: release {id} was left running by a process that is gone; recorded as interrupted");
    }
    if publish {
        let id = ledger::next_id(&**wh).await?;
        let r = Release {
            id,
            project: project_name.clone(),
            target: cfg.profile.target_name.clone(),
            strategy: strategy.name.clone(),
            selection: cfg.selection_text(),
            started_at: ledger::now(),
            finished_at: None,
            status: "running".into(),
            built: 0,
            tests: 0,
            failed: 0,
            warned: 0,
            published: 0,
            git_commit: ledger::git_commit(&cfg.project_dir),
            backup_schema: None,
            restores: None,
            mixed_ms: None,
        };
        wh.execute(&ledger::insert_statement(d, &r)).await?;
        *release = Some(r);
        guard.set_release(id).await?;
    }

    // (prod schema, audit schema): one to one, or the publish could not say what replaces what
    let mut locations: BTreeMap<String, String> = BTreeMap::new();
    let mut back: BTreeMap<String, String> = BTreeMap::new();
    for t in twins.values() {
        let (ps, asch) = (t.prod.schema.clone(), t.audit.schema.clone());
        if locations.get(&ps).is_some_and(|x| *x != asch) || back.get(&asch).is_some_and(|x| *x != ps) {
            bail!("dbt puts prod schema '{ps}' and audit schema '{asch}' in more than one pair (a generate_schema_name override?); the dbt builder needs one audit schema per prod schema");
        }
        locations.insert(ps.clone(), asch.clone());
        back.insert(asch, ps);
    }
    if locations.values().any(|a| *a == ledger::schema(d)) {
        bail!("an audit schema of this project is airlock's ledger schema '{}'; choose another audit_schema in airlock.toml", ledger::schema(d));
    }
    let locations: Vec<(String, String)> = locations.into_iter().collect();
    let prod_schemas: Vec<String> = locations.iter().map(|(p, _)| p.clone()).collect();
    let prod = Catalog::new(d, wh.catalog(&prod_schemas).await?);

    // a clean audit location, staged from prod where the strategy says so
    let mut prep = Vec::new();
    let stage = strategy.steps.stage == Stage::CloneProd;
    let location_clone = stage && strategy.template(d, "clone_location").is_some();
    for (p, a) in &locations {
        if location_clone && prod.has_objects_in(p) {
            prep.push(strategy.render(d, "clone_location", &[("source", &d.quote(p)), ("target", &d.quote(a))])?);
        } else if location_clone {
            prep.push(format!("CREATE OR REPLACE SCHEMA {}", d.quote(a)));
        } else {
            prep.push(format!("DROP SCHEMA IF EXISTS {} CASCADE", d.quote(a)));
            prep.push(format!("CREATE SCHEMA {}", d.quote(a)));
        }
    }
    if stage && !location_clone {
        // incremental models and snapshots build on the latest prod; with a
        // selection, every prod table is there for the models that read it
        let everything = cfg.select.is_empty() && cfg.exclude.is_empty();
        for t in twins.values() {
            let rebuilt = everything && matches!(t.prod.materialized.as_str(), "table" | "seed");
            if !rebuilt && t.prod.materialized != "view" && prod.is_table(&t.prod.schema, &t.prod.identifier) {
                let source = d.relation(&t.prod.schema, &t.prod.identifier);
                let target = d.relation(&t.audit.schema, &t.audit.identifier);
                prep.push(strategy.render(d, "clone_table", &[("source", &source), ("target", &target)])?);
            }
        }
    }
    wh.execute_atomic(&prep).await.context("preparing the audit location")?;
    let audit_schemas: Vec<String> = locations.iter().map(|(_, a)| a.clone()).collect();

    tracing::debug!("{:.2} s: audit location prepared", started.elapsed().as_secs_f64());
    // the build: dbt alone holds the database meanwhile
    wh.release_connections();
    let results_file = dbt.audit_path.join("run_results.json");
    let _ = std::fs::remove_file(&results_file);
    let (build, views) = {
        let dbt = dbt.clone();
        let command = command.to_string();
        tokio::task::spawn_blocking(move || {
            let mut progress: Option<Progress> = None;
            // a dbt airlock cannot drive: the prod views compile beside the
            // build once it runs nodes (it holds the database by then: a
            // compile that needs it fails and runs again after the build,
            // never the build)
            let mut compile: Option<std::thread::JoinHandle<Result<Invocation>>> = None;
            let inv = {
                let mut on_event = |event: &Value| {
                    stream_progress(event, &mut progress, &command);
                    if publish && !driven_views && compile.is_none() && event.pointer("/info/name").and_then(Value::as_str) == Some("LogStartLine") {
                        let dbt = dbt.clone();
                        compile = Some(std::thread::spawn(move || dbt.compile_views()));
                    }
                };
                match audit_run {
                    Some(run) => run.go(&mut on_event),
                    None => {
                        let mut cmd = dbt.command("build", true);
                        cmd.args(&build_args);
                        dbt.run(cmd, &mut on_event)
                    }
                }
            };
            if let Some(p) = progress {
                p.finish();
            }
            let views = compile.or(views_run).map(|h| h.join().unwrap_or_else(|_| Err(anyhow!("the prod compile stopped"))));
            (inv, views)
        })
        .await
        .map_err(|e| anyhow!("dbt build stopped: {e}"))?
    };
    let build = build?;
    tracing::debug!("{:.2} s: dbt build done", started.elapsed().as_secs_f64());
    if interrupt.exit_code().is_some() {
        bail!("dbt build was interrupted");
    }
    let results = match read_run_results(&results_file, build.invocation_id.as_deref()) {
        Ok(r) => r,
        // no results: dbt stopped before running anything (bad profile, a
        // compile error): its own message, exit 2
        Err(e) if build.code != Some(0) => bail!("dbt build failed, nothing published, prod untouched:\n{}\n({e:#})", build.message()),
        Err(e) => return Err(e.context("the gate cannot read dbt's results: nothing published")),
    };

    // the gate
    let mut counts = Counts::default();
    let mut nodes = Vec::new();
    let mut failures = Vec::new();
    let mut errors = Vec::new();
    let mut built: BTreeSet<String> = BTreeSet::new();
    for r in &results {
        let n = audit_manifest.get(&r.unique_id);
        let (rtype, name, mat) = match n {
            Some(n) => (n.resource_type.clone(), n.name.clone(), n.materialized.clone()),
            // project hooks (on-run-start / on-run-end) are not manifest nodes
            None if r.unique_id.starts_with("operation.") => ("hook".to_string(), r.unique_id.rsplit('.').next().unwrap_or_default().to_string(), "hook".to_string()),
            None => (r.unique_id.split('.').next().unwrap_or("node").to_string(), r.unique_id.clone(), String::new()),
        };
        let v = verdict(&rtype, &r.status);
        let is_test = matches!(rtype.as_str(), "test" | "unit_test");
        if is_test {
            counts.tests += 1;
        }
        match v {
            Verdict::Built => {
                if rtype != "hook" {
                    counts.built += 1;
                    built.insert(r.unique_id.clone());
                }
            }
            Verdict::Pass => counts.passed += 1,
            Verdict::Warn => counts.warned += 1,
            Verdict::Fail => counts.failed += 1,
            Verdict::Error => counts.errors += 1,
            Verdict::NoVerdict => counts.no_verdict += 1,
            Verdict::Skipped => counts.skipped += 1,
        }
        nodes.push(NodeLine {
            name: name.clone(),
            kind: rtype.clone(),
            materialization: if is_test { "test".into() } else { mat },
            status: match v {
                Verdict::Built => "built".into(),
                Verdict::Pass => "pass".into(),
                Verdict::Warn => "warn".into(),
                Verdict::Fail => "fail".into(),
                Verdict::Error | Verdict::NoVerdict => "error".into(),
                Verdict::Skipped => "skipped".into(),
            },
            seconds: r.seconds,
            rows: if is_test { None } else { r.rows },
        });
        match v {
            Verdict::Fail | Verdict::Warn => {
                // the failing rows, from the test as dbt compiled it
                let sample = match &r.compiled_code {
                    Some(sql) => match wh.query(&crate::gate::gate_query(sql)).await {
                        Ok(rows) => crate::gate::read_result(rows).1,
                        Err(e) => {
                            tracing::warn!("cannot sample the failing rows of {name}: {e:#}");
                            Default::default()
                        }
                    },
                    None => Default::default(),
                };
                let on = n.and_then(|n| n.attached.as_ref()).and_then(|a| audit_manifest.get(a)).map(|a| a.name.clone()).unwrap_or_default();
                failures.push(TestFailure {
                    test: n.map(|n| n.describe.clone()).unwrap_or_else(|| name.clone()),
                    name: name.clone(),
                    on,
                    severity: if v == Verdict::Fail { "error".into() } else { "warn".into() },
                    failures: r.failures.unwrap_or(sample.rows.len() as u64),
                    sample,
                });
            }
            Verdict::Error | Verdict::NoVerdict => errors.push(NodeError {
                node: format!("{name} ({})", n.map(|n| n.path.as_str()).unwrap_or("?")),
                message: if r.message.is_empty() { format!("dbt status '{}'", r.status) } else { r.message.clone() },
            }),
            _ => {}
        }
    }
    let skipped: Vec<String> = results
        .iter()
        .filter(|r| r.status == "skipped")
        .map(|r| audit_manifest.get(&r.unique_id).map(|n| n.name.clone()).unwrap_or_else(|| r.unique_id.clone()))
        .collect();
    failures.sort_by(|a, b| (a.severity != "error", &a.name).cmp(&(b.severity != "error", &b.name)));
    errors.sort_by(|a, b| a.node.cmp(&b.node));
    if let Some(r) = release.as_mut() {
        fill_counts(r, &counts);
    }

    let mut report = RunReport {
        command: command.into(),
        status: String::new(),
        release: release.as_ref().map(|r| r.id),
        project: project_name,
        target: cfg.profile.target_name.clone(),
        warehouse: format!("{} (built by dbt {})", wh.describe(), build.version.as_deref().unwrap_or("?")),
        strategy: Some(strategy.name.clone()),
        selection: cfg.selection_text(),
        counts,
        nodes,
        failures,
        errors,
        published: vec![],
        audit_schemas: audit_schemas.clone(),
        warnings: vec![],
        seconds: 0.0,
        message: String::new(),
    };
    let kept = format!("the audit build is kept in {} for inspection", audit_schemas.join(", "));
    let skipped_note = if skipped.is_empty() { String::new() } else { format!("\nskipped by dbt: {}", skipped.join(", ")) };
    let exit = if let Some(code) = interrupt.exit_code() {
        report.status = "interrupted".into();
        report.message = format!("interrupted: nothing published, prod untouched; {kept}");
        ExitStatus::Interrupted(code)
    } else if counts.errors > 0 {
        report.status = "error".into();
        report.message = format!("{} node{} failed to build: nothing published, prod untouched; {kept}{skipped_note}", counts.errors, plural(counts.errors));
        ExitStatus::Error
    } else if counts.failed > 0 || counts.no_verdict > 0 || counts.skipped > 0 || build.code != Some(0) {
        report.status = "blocked".into();
        let mut why = Vec::new();
        if counts.failed > 0 {
            why.push(format!("{} failing test{}", counts.failed, plural(counts.failed)));
        }
        if counts.no_verdict > 0 {
            why.push(format!("{} test{} that gave no verdict", counts.no_verdict, plural(counts.no_verdict)));
        }
        if counts.skipped > 0 {
            why.push(format!("{} node{} dbt skipped", counts.skipped, plural(counts.skipped)));
        }
        if why.is_empty() {
            why.push(format!("dbt build exiting with {}: {}", build.code.map(|c| c.to_string()).unwrap_or_else(|| "a signal".into()), build.message()));
        }
        report.message = format!("gate blocked by {}: nothing published, prod untouched; {kept}{skipped_note}", why.join(" and "));
        ExitStatus::Blocked
    } else if !publish {
        report.status = "audited".into();
        report.message = format!("gate green; audit build in {} (build never publishes)", audit_schemas.join(", "));
        ExitStatus::Success
    } else if !interrupt.enter_publish() {
        report.status = "interrupted".into();
        report.message = format!("interrupted before publishing: nothing published, prod untouched; {kept}");
        ExitStatus::Interrupted(interrupt.exit_code().unwrap_or(130))
    } else {
        let r = release.as_mut().expect("deploy has a release");
        prod_views(dbt, wh, views, &mut twins).await?;
        tracing::debug!("{:.2} s: prod views compiled; publishing", started.elapsed().as_secs_f64());
        if strategy.steps.publish == Publish::Rebuild {
            publish_wap(cfg, strategy, dbt, wh, r, &twins, &prod_manifest, &built, &prod, &locations, &mut report).await?
        } else {
            let changes = changes(strategy, d, &twins, &prod_manifest, &built, &prod)?;
            publish_release(cfg, strategy, wh, r, &changes, &locations, &mut report).await?
        }
    };
    if let Some(r) = release.as_mut() {
        if r.status == "running" {
            r.status = match exit {
                ExitStatus::Blocked => "blocked",
                ExitStatus::Interrupted(_) => "interrupted",
                _ => "failed",
            }
            .into();
            r.finished_at = Some(ledger::now());
            fill_counts(r, &report.counts);
            wh.execute(&ledger::finish_statement(d, r)).await.with_context(|| format!("recording release {} as {}", r.id, r.status))?;
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    report::print_run(&report, cfg.format);
    Ok(exit)
}

/// `dbt build`'s arguments beyond the target's: the selection (refs to
/// what is not built read prod, `--defer --state` on the prod manifest),
/// `--full-refresh`, `--threads`.
fn build_args(cfg: &RunConfig, dbt: &Dbt) -> Vec<String> {
    let mut args: Vec<String> = Vec::new();
    if !cfg.select.is_empty() {
        args.push("--select".into());
        args.extend(cfg.select.iter().cloned());
    }
    if !cfg.exclude.is_empty() {
        args.push("--exclude".into());
        args.extend(cfg.exclude.iter().cloned());
    }
    if !cfg.select.is_empty() || !cfg.exclude.is_empty() {
        args.push("--defer".into());
        args.push("--state".into());
        args.push(dbt.prod_path.display().to_string());
    }
    if cfg.full_refresh {
        args.push("--full-refresh".into());
    }
    if let Some(n) = cfg.threads_given {
        args.push("--threads".into());
        args.push(n.to_string());
    }
    args
}

impl Dbt {
    /// The prod target's views, compiled as dbt compiles them (their tests
    /// left out; no cache of the warehouse's relations, so the database is
    /// opened only by a view whose Jinja queries it).
    fn compile_views(&self) -> Result<Invocation> {
        let mut cmd = Command::new(&self.exe);
        cmd.args(self.views_args());
        self.environment(&mut cmd);
        self.run(cmd, |_| {})
    }
}

/// The prod SQL of every view to publish, from dbt's compile of the prod
/// target (run beside the build, or now when that one did not start or
/// failed), into `twins`. A view whose prod name differs between dbt's
/// parse and its compile is an error.
async fn prod_views(dbt: &Arc<Dbt>, wh: &Recording, compiled: Option<Result<Invocation>>, twins: &mut BTreeMap<String, Twin>) -> Result<()> {
    if !twins.values().any(|t| t.prod.materialized == "view") {
        return Ok(());
    }
    if !matches!(&compiled, Some(Ok(inv)) if inv.code == Some(0)) {
        let why = match &compiled {
            None => "it did not start (no node ran)".to_string(),
            Some(Ok(inv)) => inv.message(),
            Some(Err(e)) => format!("{e:#}"),
        };
        tracing::debug!("compiling the prod views after the build: beside it, {why}");
        wh.release_connections();
        let _ = std::fs::remove_file(dbt.views_path.join("manifest.json"));
        let me = dbt.clone();
        let inv = tokio::task::spawn_blocking(move || me.compile_views()).await.map_err(|e| anyhow!("dbt compile stopped: {e}"))??;
        if inv.code != Some(0) {
            bail!("dbt compile (the prod target '{}') failed, nothing published:\n{}", dbt.target, inv.message());
        }
    }
    let compiled = read_manifest(&dbt.views_path.join("manifest.json"))?;
    for (id, t) in twins.iter_mut().filter(|(_, t)| t.prod.materialized == "view") {
        let c = compiled.get(id).ok_or_else(|| anyhow!("{id}: dbt's compile of the prod target has no view {}", t.prod.name))?;
        if (&c.schema, &c.identifier, &c.database) != (&t.prod.schema, &t.prod.identifier, &t.prod.database) {
            bail!("{id}: dbt names the prod view {}.{} when compiling but {}.{} when parsing", c.schema, c.identifier, t.prod.schema, t.prod.identifier);
        }
        t.prod.compiled_code = c.compiled_code.clone();
    }
    Ok(())
}

/// dbt's JSON events as airlock's progress bar (created at dbt's first node,
/// when the total is known).
fn stream_progress(event: &Value, progress: &mut Option<Progress>, command: &str) {
    let name = event.pointer("/info/name").and_then(Value::as_str).unwrap_or_default();
    let node = event.pointer("/data/node_info/node_name").and_then(Value::as_str).unwrap_or_default();
    match name {
        "LogStartLine" => {
            if progress.is_none() {
                let total = event.pointer("/data/total").and_then(Value::as_u64).unwrap_or(0) as usize;
                *progress = Some(Progress::new(total, command));
            }
            if let Some(p) = progress {
                p.step_started(node);
            }
        }
        "LogModelResult" | "LogTestResult" | "LogSeedResult" | "LogSnapshotResult" | "SkippingDetails" => {
            let status = event.pointer("/data/node_info/node_status").and_then(Value::as_str).unwrap_or_default();
            let shown = match status {
                "success" | "pass" => "built",
                "skipped" => "skipped",
                other => other,
            };
            if let Some(p) = progress {
                p.step_done(node, shown);
            }
        }
        _ => {}
    }
}

fn fill_counts(r: &mut Release, c: &Counts) {
    r.built = c.built as i64;
    r.tests = c.tests as i64;
    r.failed = c.failed as i64;
    r.warned = c.warned as i64;
}

/// What publish makes of prod: each relation built in this run (swap,
/// clone-back, replace), or the tagged ones (wac), mapped by unique_id.
fn changes(strategy: &Strategy, d: Dialect, twins: &BTreeMap<String, Twin>, manifest: &BTreeMap<String, DbtNode>, built: &BTreeSet<String>, prod: &Catalog) -> Result<Vec<Change>> {
    let tags = strategy.param_list("tags");
    let mut out = Vec::new();
    for (id, t) in twins.iter().filter(|(id, _)| built.contains(*id)) {
        if strategy.steps.publish == Publish::CloneTagged && !t.prod.tags.iter().any(|g| tags.contains(g)) {
            continue;
        }
        let prev = prod.get(&t.prod.schema, &t.prod.identifier).cloned();
        let desired = if t.prod.materialized == "view" {
            let select = t.prod.compiled_code.clone().ok_or_else(|| anyhow!("{id}: dbt compiled no SQL for the prod view {}", t.prod.name))?;
            Desired::View { select: select.into() }
        } else {
            Desired::Table { from: d.relation(&t.audit.schema, &t.audit.identifier), source: Some((t.audit.schema.clone(), t.audit.identifier.clone())) }
        };
        out.push(Change { schema: t.prod.schema.clone(), name: t.prod.identifier.clone(), desired, prev });
    }
    Ok(in_dependency_order(out, twins, manifest))
}

/// Tables first (copies of audited tables), then views in dependency order:
/// a view is checked when created, so what it reads must be there.
/// Depth counts through ephemeral models (in `manifest`, not relations).
fn in_dependency_order(changes: Vec<Change>, twins: &BTreeMap<String, Twin>, manifest: &BTreeMap<String, DbtNode>) -> Vec<Change> {
    fn depth(id: &str, manifest: &BTreeMap<String, DbtNode>, memo: &mut BTreeMap<String, usize>, seen: &mut BTreeSet<String>) -> usize {
        if let Some(d) = memo.get(id) {
            return *d;
        }
        let Some(n) = manifest.get(id) else { return 0 };
        if !seen.insert(id.to_string()) {
            return 0; // dbt refuses cycles; never loop here
        }
        let d = 1 + n.depends_on.iter().map(|dep| depth(dep, manifest, memo, seen)).max().unwrap_or(0);
        memo.insert(id.to_string(), d);
        d
    }
    let by_prod: BTreeMap<(String, String), String> = twins.iter().map(|(id, t)| ((t.prod.schema.clone(), t.prod.identifier.clone()), id.clone())).collect();
    let mut memo = BTreeMap::new();
    let mut keyed: Vec<(bool, usize, Change)> = changes
        .into_iter()
        .map(|c| {
            let view = matches!(c.desired, Desired::View { .. });
            let d = by_prod.get(&(c.schema.clone(), c.name.clone())).map(|id| depth(id, manifest, &mut memo, &mut BTreeSet::new())).unwrap_or(0);
            (view, d, c)
        })
        .collect();
    keyed.sort_by_key(|(view, d, _)| (*view, *d));
    keyed.into_iter().map(|(_, _, c)| c).collect()
}

/// Publish a green release (as the native builder's publish does).
async fn publish_release(cfg: &RunConfig, strategy: &Strategy, wh: &Arc<Recording>, r: &mut Release, changes: &[Change], locations: &[(String, String)], report: &mut RunReport) -> Result<ExitStatus> {
    let d = wh.dialect();
    let audit_schemas: Vec<String> = locations.iter().map(|(_, a)| a.clone()).collect();
    r.finished_at = Some(ledger::now());
    r.backup_schema = Some(publish::backup_schema(d, r.id));
    r.published = changes.len() as i64;
    let prod_locations: Vec<String> = locations.iter().map(|(p, _)| p.clone()).collect();
    let (grants, grant_check) = crate::grants::before_publish(&**wh, changes, &prod_locations, None).await?;
    let mut plan = publish::plan(strategy, d, r, changes, locations, None, &grants)?;
    plan.grant_check = grant_check;
    if let Err(e) = ledger::journal::publish(&**wh, r, &plan, cfg.publish_concurrency).await {
        if r.status != "publishing" {
            r.backup_schema = None;
        }
        return Err(e);
    }
    report.published = changes.iter().map(|c| d.relation(&c.schema, &c.name)).collect();
    let drops: Vec<String> = audit_schemas.iter().map(|s| format!("DROP SCHEMA IF EXISTS {} CASCADE", d.quote(s))).collect();
    let keep = cfg.keep(strategy);
    let cleanup = async {
        wh.execute_atomic(&drops).await.context("dropping the audit schemas")?;
        ledger::cleanup(&**wh, keep).await
    };
    if let Err(e) = cleanup.await {
        report.warnings.push(format!("published, but the cleanup after it failed (nothing to undo; it is retried by the next deploy): {e:#}"));
    }
    report.status = "published".into();
    report.message = format!(
        "release {} published: {} object{} in prod; previous versions kept in {}",
        r.id,
        changes.len(),
        plural(changes.len()),
        r.backup_schema.as_deref().unwrap_or_default()
    );
    Ok(ExitStatus::Success)
}

/// wap: the top-level models (`--publish-select`, else the strategy's
/// `publish_select`: `tag:NAME` and model names) that this run built.
fn wap_selection(cfg: &RunConfig, strategy: &Strategy, twins: &BTreeMap<String, Twin>, built: &BTreeSet<String>) -> Result<BTreeSet<String>> {
    let spec = cfg.publish_select.clone().or_else(|| strategy.param_str("publish_select")).unwrap_or_else(|| "tag:mart".into());
    let mut out = BTreeSet::new();
    for token in spec.split_whitespace() {
        let matches: Vec<&String> = match token.strip_prefix("tag:") {
            Some(tag) => twins.iter().filter(|(_, t)| t.prod.tags.iter().any(|g| g == tag)).map(|(id, _)| id).collect(),
            None if token.contains([':', '+', '@', '*']) => {
                bail!("--publish-select / publish_select '{spec}': with --builder dbt, wap takes `tag:NAME` and model names (not '{token}')")
            }
            None => twins.iter().filter(|(_, t)| t.prod.name == token).map(|(id, _)| id).collect(),
        };
        out.extend(matches.into_iter().filter(|id| built.contains(*id)).cloned());
    }
    Ok(out)
}

/// The journal of wap with the dbt builder: dbt rebuilds the prod tables
/// (`Desired::Rebuild`) in the last step, done outside airlock; the release
/// stays `publishing` until dbt has rebuilt them and they are verified
/// (killed meanwhile, `airlock recover` puts prod back). The CREATE of each
/// rebuild step is dbt's; the GRANTs that give the new table prod's
/// privileges follow dbt's run (a `create or replace` drops them).
fn wap_plan(strategy: &Strategy, d: Dialect, r: &Release, changes: &[Change], locations: &[(String, String)], grants: &publish::Grants) -> Result<publish::Plan> {
    let mut plan = publish::plan(strategy, d, r, changes, locations, None, grants)?;
    let mut tables = Vec::new();
    let mut regrants = Vec::new();
    for step in plan.steps.iter_mut().filter(|s| s.action == "rebuild") {
        let mut sql = std::mem::take(&mut step.sql).into_iter();
        sql.next(); // the CREATE: dbt's
        regrants.extend(sql);
        tables.push(step.object.clone());
    }
    if !tables.is_empty() {
        plan.push_external(tables.join(", "), "dbt-rebuild", regrants);
    }
    Ok(plan)
}

/// wap with the dbt builder: the journal keeps a backup of each prod table
/// to rebuild (and replaces views with dbt's prod SQL), then dbt itself
/// rebuilds the tables in prod with `--defer --state` on the audit manifest
/// (`--favor-state`: refs to models not rebuilt read the audited
/// relations); each rebuilt table is compared with its audited twin. dbt
/// failing, or a difference (unless `verify = "warn"`), restores prod from
/// the backups and fails the release.
#[allow(clippy::too_many_arguments)]
async fn publish_wap(
    cfg: &RunConfig,
    strategy: &Strategy,
    dbt: &Arc<Dbt>,
    wh: &Arc<Recording>,
    r: &mut Release,
    twins: &BTreeMap<String, Twin>,
    manifest: &BTreeMap<String, DbtNode>,
    built: &BTreeSet<String>,
    prod: &Catalog,
    locations: &[(String, String)],
    report: &mut RunReport,
) -> Result<ExitStatus> {
    let d = wh.dialect();
    let chosen = wap_selection(cfg, strategy, twins, built)?;
    let mut changes = Vec::new();
    let mut rebuilt: Vec<&Twin> = Vec::new();
    for id in &chosen {
        let t = &twins[id];
        let prev = prod.get(&t.prod.schema, &t.prod.identifier).cloned();
        let desired = if t.prod.materialized == "view" {
            Desired::View { select: t.prod.compiled_code.clone().ok_or_else(|| anyhow!("{id}: dbt compiled no SQL for the prod view {}", t.prod.name))?.into() }
        } else {
            rebuilt.push(t);
            // dbt writes the table: the journal's step only knows how to undo it
            Desired::Rebuild { select: String::new() }
        };
        changes.push(Change { schema: t.prod.schema.clone(), name: t.prod.identifier.clone(), desired, prev });
    }
    let changes = in_dependency_order(changes, twins, manifest);
    r.finished_at = Some(ledger::now());
    r.backup_schema = Some(publish::backup_schema(d, r.id));
    r.published = changes.len() as i64;
    let prod_locations: Vec<String> = locations.iter().map(|(p, _)| p.clone()).collect();
    let (grants, grant_check) = crate::grants::before_publish(&**wh, &changes, &prod_locations, None).await?;
    let mut plan = wap_plan(strategy, d, r, &changes, locations, &grants)?;
    plan.grant_check = grant_check;
    if let Err(e) = ledger::journal::publish(&**wh, r, &plan, cfg.publish_concurrency).await {
        if r.status != "publishing" {
            r.backup_schema = None;
        }
        return Err(e);
    }
    let mut problem = None;
    let rebuild_started = std::time::Instant::now();
    if !rebuilt.is_empty() {
        crate::failpoint::before_external_step(plan.steps.len())?;
        wh.release_connections();
        let mut args = vec!["--select".to_string()];
        args.extend(rebuilt.iter().map(|t| t.prod.name.clone()));
        args.extend(["--defer".into(), "--favor-state".into(), "--state".into(), dbt.audit_path.display().to_string()]);
        if let Some(n) = cfg.threads_given {
            args.extend(["--threads".into(), n.to_string()]);
        }
        let results_file = dbt.prod_path.join("run_results.json");
        let _ = std::fs::remove_file(&results_file);
        let me = dbt.clone();
        let inv = tokio::task::spawn_blocking(move || {
            let mut cmd = me.command("run", false);
            cmd.args(&args);
            me.run(cmd, |_| {})
        })
        .await
        .map_err(|e| anyhow!("dbt run stopped: {e}"))?;
        match inv {
            Err(e) => problem = Some(format!("{e:#}")),
            Ok(inv) => match read_run_results(&results_file, inv.invocation_id.as_deref()) {
                Ok(results)
                    if inv.code == Some(0)
                        && results.iter().all(|x| x.status == "success")
                        && rebuilt.iter().all(|t| results.iter().any(|x| x.unique_id == t.prod.unique_id)) => {}
                Ok(_) | Err(_) => problem = Some(format!("dbt run in prod did not rebuild every model: {}", inv.message())),
            },
        }
    }
    if problem.is_none() {
        let mut differ = Vec::new();
        for t in &rebuilt {
            let (p, a) = (d.relation(&t.prod.schema, &t.prod.identifier), d.relation(&t.audit.schema, &t.audit.identifier));
            let rows = wh.query(&format!("SELECT ({}) AS prod, ({}) AS audit", d.checksum_sql(&p), d.checksum_sql(&a))).await.with_context(|| format!("comparing {p} with its audited twin {a}"))?;
            let row = rows.rows.first().cloned().unwrap_or_default();
            let (pv, av) = (row.first().cloned().flatten(), row.get(1).cloned().flatten());
            if pv.is_none() || pv != av {
                differ.push(format!("{p} differs from {a}"));
            }
        }
        if !differ.is_empty() {
            let list = differ.join("; ");
            if strategy.param_str("verify").as_deref() == Some("warn") {
                report.warnings.push(format!("rebuilt in prod but different from the audited twin (verify = \"warn\"): {list}"));
            } else {
                problem = Some(format!("rebuilt in prod, different from what the gate passed: {list} (a non-deterministic model? set verify = \"warn\" in the wap strategy's [params] to publish anyway)"));
            }
        }
    }
    if let Some(why) = problem {
        ledger::journal::abandon_external(&**wh, r, &plan).await.with_context(|| format!("restoring prod after the wap rebuild failed ({why})"))?;
        report.status = "failed".into();
        report.message = format!("release {} failed: {why}; prod restored to its state before the publish", r.id);
        return Ok(ExitStatus::Error);
    }
    if !rebuilt.is_empty() {
        let mixed_ms = i64::try_from(rebuild_started.elapsed().as_millis()).unwrap_or(i64::MAX);
        ledger::journal::close_external(&**wh, r, &plan, mixed_ms).await?;
    }
    report.published = changes.iter().map(|c| d.relation(&c.schema, &c.name)).collect();
    let drops: Vec<String> = locations.iter().map(|(_, a)| format!("DROP SCHEMA IF EXISTS {} CASCADE", d.quote(a))).collect();
    let keep = cfg.keep(strategy);
    let cleanup = async {
        wh.execute_atomic(&drops).await.context("dropping the audit schemas")?;
        ledger::cleanup(&**wh, keep).await
    };
    if let Err(e) = cleanup.await {
        report.warnings.push(format!("published, but the cleanup after it failed (nothing to undo; it is retried by the next deploy): {e:#}"));
    }
    report.status = "published".into();
    report.message = format!(
        "release {} published: {} object{} in prod ({} rebuilt there by dbt); previous versions kept in {}",
        r.id,
        changes.len(),
        plural(changes.len()),
        rebuilt.len(),
        r.backup_schema.as_deref().unwrap_or_default()
    );
    Ok(ExitStatus::Success)
}

/// Strategies the dbt builder cannot carry out yet, refused before anything runs.
fn check_strategy(strategy: &Strategy, d: Dialect) -> Result<()> {
    strategy.check_support(d)?;
    if strategy.steps.build == BuildScope::Mirror {
        bail!("strategy '{}' (the raw mirror) is not available with --builder dbt yet; use --builder native for it", strategy.name);
    }
    Ok(())
}

/// `plan` with the dbt builder: which builder runs and why, where dbt builds
/// and how it is published. What is built is dbt's to decide (`dbt ls`); the
/// plan runs nothing and writes nothing.
pub fn plan(cfg: &RunConfig) -> Result<ExitStatus> {
    let registry = crate::strategy::Registry::load(Some(&cfg.strategies_dir))?;
    let strategy = registry.get(&cfg.strategy)?;
    let d = cfg.profile.dialect();
    check_strategy(strategy, d)?;
    let audit = d.fold(&cfg.settings.deploy.audit_schema.replace("{schema}", &cfg.profile.schema));
    let dbt = cfg.dbt.display().to_string();
    let summary = format!(
        "dbt ('{dbt}') builds target '{}' of profile '{}' with schema '{audit}' in place of '{}' (custom schemas follow it as generate_schema_name makes them); \
         prod names come from dbt's manifest of target '{}', matched by unique_id; strategy {} publishes what dbt built when every test passes; nothing was written",
        cfg.profile.target_name, cfg.profile.profile_name, cfg.profile.schema, cfg.profile.target_name, strategy.name
    );
    if cfg.format == crate::cli::Format::Json {
        report::json(&serde_json::json!({
            "status": "planned",
            "builder": cfg.builder.name(),
            "builder_reason": cfg.builder_reason,
            "dbt": dbt,
            "strategy": strategy.name,
            "selection": cfg.selection_text(),
            "audit_schema": audit,
            "message": summary,
        }));
    } else {
        report::emit(&format!("builder: {} ({})\n{summary}\n", cfg.builder.name(), cfg.builder_reason));
    }
    Ok(ExitStatus::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, mat: &str, deps: &[&str]) -> DbtNode {
        DbtNode {
            unique_id: id.into(),
            resource_type: "model".into(),
            name: id.into(),
            database: None,
            schema: "main".into(),
            identifier: id.into(),
            materialized: mat.into(),
            tags: vec![],
            compiled_code: Some("select 1".into()),
            path: String::new(),
            attached: None,
            describe: String::new(),
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn views_are_published_after_the_views_they_read_through_ephemeral_models() {
        // v_top -> eph -> v_mid -> t_base; ids sorted the other way round
        let manifest: BTreeMap<String, DbtNode> =
            [node("a_top", "view", &["b_eph"]), node("b_eph", "ephemeral", &["c_mid"]), node("c_mid", "view", &["d_base"]), node("d_base", "table", &[])]
                .into_iter()
                .map(|n| (n.unique_id.clone(), n))
                .collect();
        let twins: BTreeMap<String, Twin> =
            manifest.values().filter(|n| n.is_relation()).map(|n| (n.unique_id.clone(), Twin { audit: n.clone(), prod: n.clone() })).collect();
        let built: BTreeSet<String> = twins.keys().cloned().collect();
        let strategy = crate::strategy::Registry::load(None).unwrap().get("swap").unwrap().clone();
        let out = changes(&strategy, Dialect::DuckDb, &twins, &manifest, &built, &Catalog::default()).unwrap();
        let names: Vec<&str> = out.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["d_base", "c_mid", "a_top"]);
    }

    #[test]
    fn wap_grants_prods_privileges_again_after_dbt_has_rebuilt_the_table() {
        // dbt's `create or replace` drops what the old table granted: the
        // GRANTs must come after dbt's run, not before it
        let d = Dialect::Snowflake;
        let strategy = crate::strategy::Registry::load(None).unwrap().get("wap").unwrap().clone();
        let release = Release { id: 7, strategy: "wap".into(), status: "running".into(), published: 1, backup_schema: Some(publish::backup_schema(d, 7)), ..Default::default() };
        let prev = crate::warehouse::CatalogEntry { schema: "MARTS".into(), name: "ORDERS".into(), kind: crate::warehouse::ObjectKind::Table, view_ddl: None, rows: None };
        let changes = vec![Change { schema: "MARTS".into(), name: "ORDERS".into(), desired: Desired::Rebuild { select: String::new() }, prev: Some(prev) }];
        let grant = crate::grants::Grant {
            schema: "MARTS".into(),
            name: Some("ORDERS".into()),
            privilege: "SELECT".into(),
            granted_to: "ROLE".into(),
            grantee: "REPORTER".into(),
            grant_option: false,
        };
        let grants: publish::Grants = [grant].into_iter().collect();
        let locations = vec![("MARTS".to_string(), "MARTS__AUDIT".to_string())];
        let plan = wap_plan(&strategy, d, &release, &changes, &locations, &grants).unwrap();
        let last = plan.steps.last().unwrap();
        assert!(last.external, "dbt's rebuild is the last step");
        assert_eq!(last.action, "dbt-rebuild");
        assert!(last.sql.iter().any(|s| s.starts_with("GRANT SELECT ON TABLE") && s.contains("REPORTER")), "{:?}", last.sql);
        let rebuild = plan.steps.iter().find(|s| s.action == "rebuild").unwrap();
        assert!(rebuild.sql.is_empty(), "the rebuild is dbt's; airlock grants nothing before it: {:?}", rebuild.sql);
        let before: Vec<&String> = plan.steps[..plan.steps.len() - 1].iter().flat_map(|s| &s.sql).collect();
        let on_prod = r#"ON TABLE "MARTS"."ORDERS" TO"#;
        assert!(last.sql.iter().any(|s| s.contains(on_prod)), "{:?}", last.sql);
        assert!(!before.iter().any(|s| s.contains(on_prod)), "granted on the table dbt is about to replace: {before:?}");
    }

    #[test]
    fn versions_outside_the_tested_range_are_refused() {
        assert!(supported("1.11.16"));
        assert!(supported("=1.8.0"));
        assert!(!supported("1.7.9"));
        assert!(!supported("1.12.0"));
        assert!(!supported("2.0.0-preview.1"));
    }

    #[test]
    fn unknown_statuses_give_no_verdict() {
        assert_eq!(verdict("test", "fail"), Verdict::Fail);
        assert_eq!(verdict("test", "runtime error"), Verdict::NoVerdict);
        assert_eq!(verdict("model", "partial success"), Verdict::Error);
        assert_eq!(verdict("snapshot", "success"), Verdict::Built);
        assert_eq!(verdict("unit_test", "skipped"), Verdict::Skipped);
    }

    #[test]
    fn results_of_another_invocation_are_refused() {
        let dir = TempDir::new().unwrap();
        let file = dir.0.join("run_results.json");
        std::fs::write(&file, r#"{"metadata": {"invocation_id": "old"}, "results": []}"#).unwrap();
        let e = read_run_results(&file, Some("new")).unwrap_err();
        assert!(e.to_string().contains("not by this run's"), "{e}");
        std::fs::write(&file, "{").unwrap();
        assert!(read_run_results(&file, None).is_err());
    }
}
