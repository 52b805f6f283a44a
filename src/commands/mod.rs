//! One file per subcommand; `dispatch` turns parsed arguments into a checked
//! config and runs the command.

mod history;
mod init;
mod plan;
mod rollback;
mod strategies;
pub mod run;
mod unlock;

use anyhow::Result;

use crate::cli::{Cli, Command, SelectArgs};
use crate::config::RunConfig;
use crate::session::Session;

/// How a command ended; errors are `Err` and exit 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// published, or nothing to do
    Success,
    /// the gate blocked: tests failed
    Blocked,
    /// a node failed to build (reported already)
    Error,
}

pub async fn dispatch(cli: Cli) -> Result<ExitStatus> {
    let g = &cli.global;
    match &cli.command {
        Command::Deploy(a) => {
            let s = Session::open(RunConfig::new(g, &a.select)?)?;
            run::run(&s, true, a.statement_log.as_deref()).await
        }
        Command::Build(a) => {
            let s = Session::open(RunConfig::new(g, &a.select)?)?;
            run::run(&s, false, a.statement_log.as_deref()).await
        }
        Command::Plan(a) => {
            let cfg = RunConfig::new(g, &a.select)?;
            let dialect = a.dialect.as_deref().and_then(crate::warehouse::Dialect::parse).unwrap_or(crate::warehouse::Dialect::DuckDb);
            plan::run(&Session::open_as(cfg, dialect)?, a.show_sql, a.offline).await
        }
        Command::Strategies => strategies::run(g),
        Command::History => history::run(&Session::open(RunConfig::new(g, &SelectArgs::default())?)?).await,
        Command::Rollback(a) => rollback::run(&Session::open(RunConfig::new(g, &SelectArgs::default())?)?, a.to).await,
        Command::Init(a) => init::run(&g.project_dir, a.force),
        Command::Unlock => unlock::run(&RunConfig::new(g, &SelectArgs::default())?).await,
    }
}
