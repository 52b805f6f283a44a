//! `airlock doctor`: can the chosen builder run this project? Lists what the
//! native builder refuses (the refusals its load raises, read back from that
//! error, not judged a second time), which builder airlock.toml and the
//! flags choose and why, and the dbt executable with its version. Reads
//! files and asks dbt its version; never opens the warehouse.

use anyhow::Result;
use serde::Serialize;

use super::ExitStatus;
use crate::cli::Format;
use crate::config::{Builder, RunConfig};
use crate::dbt_builder::{self, Probe};
use crate::project::Refused;
use crate::report;

#[derive(Serialize)]
struct Refusal {
    file: String,
    construct: String,
}

/// What the native builder makes of the project.
#[derive(Serialize)]
struct Native {
    can_run: bool,
    refusals: Vec<Refusal>,
    /// false when packages or a custom materialization stopped the load
    /// before the models were rendered: more may be refused after them
    complete: bool,
    /// a load error that is not a refusal (a template the native builder
    /// cannot render, a cycle, ...)
    error: Option<String>,
}

#[derive(Serialize)]
struct Doctor {
    status: &'static str,
    builder: &'static str,
    builder_reason: String,
    can_run: bool,
    native: Native,
    dbt: Probe,
    message: String,
}

pub fn run(cfg: &RunConfig) -> Result<ExitStatus> {
    let native = native(cfg);
    let dbt = dbt_builder::probe(&cfg.dbt);
    let dbt_ok = dbt.problem.is_none() && dbt.supported;
    let can_run = match cfg.builder {
        Builder::Native => native.can_run,
        Builder::Dbt => dbt_ok,
    };
    let message = verdict(cfg.builder, &native, &dbt, dbt_ok);
    let doctor = Doctor {
        status: if can_run { "ok" } else { "cannot_run" },
        builder: cfg.builder.name(),
        builder_reason: cfg.builder_reason.clone(),
        can_run,
        native,
        dbt,
        message,
    };
    print(&doctor, cfg.format);
    Ok(if can_run { ExitStatus::Success } else { ExitStatus::Blocked })
}

/// Load the project as `deploy` would with the native builder, keeping what
/// stops it.
fn native(cfg: &RunConfig) -> Native {
    let loaded = crate::project::read_header(&cfg.project_dir)
        .and_then(|header| crate::project::load_project(header, cfg.target_value(), cfg.vars.clone()))
        .and_then(|loaded| crate::graph::Dag::new(&loaded.project).map(|_| ()));
    match loaded {
        Ok(()) => Native { can_run: true, refusals: vec![], complete: true, error: None },
        Err(e) => match e.downcast_ref::<Refused>() {
            Some(r) => Native {
                can_run: false,
                refusals: r.items.iter().map(|(file, construct)| Refusal { file: file.clone(), construct: construct.clone() }).collect(),
                complete: r.complete,
                error: None,
            },
            None => Native { can_run: false, refusals: vec![], complete: false, error: Some(format!("{e:#}")) },
        },
    }
}

/// One sentence: whether the chosen builder can run the project, and what
/// the other one would do.
fn verdict(builder: Builder, native: &Native, dbt: &Probe, dbt_ok: bool) -> String {
    let native_says = if native.can_run {
        "the native builder can run it".to_string()
    } else if let Some(e) = &native.error {
        format!("the native builder cannot load it: {}", e.lines().next().unwrap_or_default())
    } else {
        let n = native.refusals.len();
        let more = if native.complete { "" } else { "; packages or a custom materialization stopped its load before the models rendered, so more may follow" };
        format!("the native builder does not support {} of it yet (listed above{more})", if n == 1 { "1 construct".to_string() } else { format!("{n} constructs") })
    };
    let dbt_says = match (&dbt.version, dbt_ok) {
        (Some(v), true) => format!("dbt {v} can run it with --builder dbt"),
        _ => format!("--builder dbt cannot run it here ({})", dbt.problem.as_deref().unwrap_or("dbt is not usable")),
    };
    match (builder, builder == Builder::Native && native.can_run || builder == Builder::Dbt && dbt_ok) {
        (Builder::Native, true) => "the chosen builder (native) can run this project".to_string(),
        (Builder::Native, false) => format!("the chosen builder (native) cannot run this project: {native_says}; {dbt_says}"),
        (Builder::Dbt, true) => format!("the chosen builder (dbt {}) can run this project; {native_says}", dbt.version.as_deref().unwrap_or("?")),
        (Builder::Dbt, false) => format!("the chosen builder (dbt) cannot run this project: {dbt_says}; {native_says}"),
    }
}

fn print(d: &Doctor, format: Format) {
    if format == Format::Json {
        return report::json(d);
    }
    let dbt = match (&d.dbt.path, &d.dbt.version) {
        (Some(path), Some(v)) if d.dbt.supported => format!("dbt {v} at {path} (supported: {})", d.dbt.supported_versions),
        _ => d.dbt.problem.clone().unwrap_or_default(),
    };
    let native = if d.native.can_run {
        "can run the project".to_string()
    } else if let Some(e) = &d.native.error {
        format!("cannot load the project: {e}")
    } else {
        format!("refuses {} (listed below)", d.native.refusals.len())
    };
    let rows = vec![
        vec!["builder".to_string(), format!("{} ({})", d.builder, d.builder_reason)],
        vec!["native builder".to_string(), native],
        vec!["dbt".to_string(), dbt],
    ];
    report::print_table(Format::Table, &["check", "result"], rows, &(), "");
    if !d.native.refusals.is_empty() {
        let rows = d.native.refusals.iter().map(|r| vec![r.file.clone(), r.construct.clone()]).collect();
        report::print_table(Format::Table, &["file", "what the native builder does not support yet"], rows, &(), "");
    }
    report::emit(&d.message);
}
