//! Thin main: parse, run on a tokio runtime, map the outcome to an exit code
//! (0 published or nothing to do, 1 gate blocked, 2 error, 3 lock held,
//! 130 / 143 interrupted by SIGINT / SIGTERM).

use std::process::ExitCode;

use airlock::cli::Cli;
use airlock::commands::{dispatch, ExitStatus};
use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    airlock::phase::start();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    init_logging(cli.global.verbose);
    let json = cli.global.format == airlock::cli::Format::Json;
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("airlock: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = runtime.block_on(dispatch(cli));
    // queries cancelled by a signal may still be unwinding on blocking threads
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    airlock::phase::mark("done");
    match outcome {
        Ok(ExitStatus::Success) => ExitCode::SUCCESS,
        Ok(ExitStatus::Blocked) => ExitCode::from(1),
        Ok(ExitStatus::Error) => ExitCode::from(2),
        Ok(ExitStatus::Interrupted(code)) => ExitCode::from(code),
        Err(e) => {
            let locked = e.downcast_ref::<airlock::ledger::lock::LockError>().is_some();
            eprintln!("airlock: {e:#}");
            if json {
                let status = if locked { "locked" } else { "error" };
                airlock::report::json(&serde_json::json!({ "status": status, "message": format!("{e:#}") }));
            }
            ExitCode::from(if locked { 3 } else { 2 })
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "airlock=debug",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("AIRLOCK_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
}
