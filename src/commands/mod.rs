//! One file per subcommand; `dispatch` turns parsed arguments into a checked
//! config and runs the command.

mod doctor;
mod history;
mod init;
mod plan;
mod recover;
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
    /// a node failed to build, or a publish had to be undone (reported already)
    Error,
    /// stopped by a signal: the exit code (130 SIGINT, 143 SIGTERM)
    Interrupted(u8),
}

pub async fn dispatch(cli: Cli) -> Result<ExitStatus> {
    let g = &cli.global;
    match &cli.command {
        Command::Deploy(a) | Command::Build(a) => {
            let publish = matches!(cli.command, Command::Deploy(_));
            let cfg = RunConfig::new(g, &a.select)?;
            // the project's own dbt loads the project: airlock's loader is not asked
            if cfg.builder == crate::config::Builder::Dbt {
                return crate::dbt_builder::run(&cfg, publish, a.statement_log.as_deref()).await;
            }
            run::run(&Session::open(cfg)?, publish, a.statement_log.as_deref()).await
        }
        Command::Plan(a) => {
            let cfg = RunConfig::new(g, &a.select)?;
            if cfg.builder == crate::config::Builder::Dbt {
                return crate::dbt_builder::plan(&cfg);
            }
            plan::without_huge_pages();
            let dialect = a.dialect.as_deref().and_then(crate::warehouse::Dialect::parse).unwrap_or_else(|| cfg.profile.dialect());
            let session = Session::open_as(cfg, dialect)?;
            let status = plan::run(&session, a.show_sql, a.offline).await;
            // a plan holds nothing to close and the process ends next: freeing
            // every node one by one would take longer than some plans
            std::mem::forget(session);
            status
        }
        Command::Strategies => strategies::run(g),
        // history, rollback and unlock need only the profile and the ledger: they
        // work when the project no longer loads (the usual reason to roll back)
        Command::History => history::run(&RunConfig::new(g, &SelectArgs::default())?).await,
        Command::Rollback(a) => rollback::run(&RunConfig::new(g, &SelectArgs::default())?, a.to).await,
        Command::Init(a) => init::run(&g.project_dir, a.force),
        Command::Recover(a) => recover::run(&RunConfig::new(g, &SelectArgs::default())?, a.undo).await,
        Command::Unlock(a) => unlock::run(&RunConfig::new(g, &SelectArgs::default())?, a.force).await,
        Command::Doctor(a) => {
            let select = SelectArgs { builder: a.builder.clone(), dbt: a.dbt.clone(), ..SelectArgs::default() };
            doctor::run(&RunConfig::new(g, &select)?)
        }
    }
}
