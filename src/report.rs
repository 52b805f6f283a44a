//! The only writer to stdout: tables (comfy-table) or JSON. Also owns the
//! progress bar on stderr, which indicatif hides when stderr is not a terminal.

use std::io::Write;
use std::time::Duration;

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, ContentArrangement, Table};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::build::Counts;
use crate::cli::Format;
use crate::warehouse::Rows;

pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    pub fn new(len: usize, what: &str) -> Progress {
        let bar = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr());
        bar.set_style(ProgressStyle::with_template("{spinner} {prefix} [{bar:30}] {pos}/{len} {wide_msg}").expect("valid template").progress_chars("=> "));
        bar.set_prefix(what.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        Progress { bar }
    }
    pub fn step_started(&self, name: &str) {
        self.bar.set_message(name.to_string());
    }
    pub fn step_done(&self, name: &str, status: &str) {
        self.bar.inc(1);
        if status != "built" && status != "pass" {
            self.bar.println(format!("  {status:>7} {name}"));
        }
    }
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

#[derive(Debug, Serialize)]
pub struct NodeLine {
    pub name: String,
    pub kind: String,
    pub materialization: String,
    pub status: String,
    pub seconds: f64,
    /// rows written, where the warehouse reports them
    pub rows: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct TestFailure {
    pub test: String,
    pub name: String,
    pub on: String,
    pub severity: String,
    pub failures: u64,
    pub sample: Rows,
}

#[derive(Debug, Serialize)]
pub struct NodeError {
    pub node: String,
    pub message: String,
}

/// Result of `deploy` and `build`.
#[derive(Debug, Serialize)]
pub struct RunReport {
    pub command: String,
    /// published | blocked | error | audited
    pub status: String,
    pub release: Option<i64>,
    pub project: String,
    pub target: String,
    pub warehouse: String,
    pub strategy: Option<String>,
    pub selection: String,
    pub counts: Counts,
    pub nodes: Vec<NodeLine>,
    pub failures: Vec<TestFailure>,
    pub errors: Vec<NodeError>,
    pub published: Vec<String>,
    pub audit_schemas: Vec<String>,
    /// things that went wrong without changing the outcome (after a publish commit)
    pub warnings: Vec<String>,
    pub seconds: f64,
    pub message: String,
}

fn table() -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Dynamic);
    t
}

fn rows_table(rows: &Rows) -> Table {
    let mut t = table();
    t.set_header(rows.columns.iter().map(Cell::new));
    for r in &rows.rows {
        t.add_row(r.iter().map(|v| Cell::new(v.as_deref().unwrap_or("NULL"))));
    }
    t
}

/// Print to stdout; a closed pipe is not an error.
pub fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    if !text.ends_with('\n') {
        let _ = out.write_all(b"\n");
    }
    let _ = out.flush();
}

pub fn json<T: Serialize>(value: &T) {
    emit(&serde_json::to_string_pretty(value).expect("reports serialize"));
}

pub fn print_run(report: &RunReport, format: Format) {
    if format == Format::Json {
        return json(report);
    }
    let mut out = String::new();
    let mut nodes = table();
    nodes.set_header(vec!["node", "type", "status", "rows"]);
    for n in report.nodes.iter().filter(|n| n.kind != "test") {
        nodes.add_row(vec![Cell::new(&n.name), Cell::new(&n.materialization), Cell::new(&n.status), Cell::new(n.rows.map(|r| r.to_string()).unwrap_or_default())]);
    }
    if !report.nodes.iter().all(|n| n.kind == "test") {
        out.push_str(&format!("{nodes}\n"));
    }
    for f in &report.failures {
        let label = if f.severity == "warn" { "WARN" } else { "FAIL" };
        out.push_str(&format!("{label} {} on {} ({}): {} failing row{}\n", f.test, f.on, f.name, f.failures, if f.failures == 1 { "" } else { "s" }));
        if !f.sample.rows.is_empty() {
            out.push_str(&format!("{}\n", rows_table(&f.sample)));
        }
    }
    for e in &report.errors {
        out.push_str(&format!("ERROR {}: {}\n", e.node, e.message));
    }
    let c = &report.counts;
    out.push_str(&format!(
        "{} built, {} tests: {} passed, {} warned, {} failed, {} without a verdict, {} build errors, {} skipped\n",
        c.built, c.tests, c.passed, c.warned, c.failed, c.no_verdict, c.errors, c.skipped
    ));
    for w in &report.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    out.push_str(&report.message);
    emit(&out);
    for w in &report.warnings {
        eprintln!("airlock: warning: {w}");
    }
}

/// Any list of serializable rows as a table or JSON.
pub fn print_table<T: Serialize>(format: Format, header: &[&str], rows: Vec<Vec<String>>, json_value: &T, empty: &str) {
    if format == Format::Json {
        return json(json_value);
    }
    if rows.is_empty() {
        return emit(empty);
    }
    let mut t = table();
    t.set_header(header.iter().map(Cell::new));
    for r in rows {
        t.add_row(r.into_iter().map(Cell::new));
    }
    emit(&t.to_string());
}
