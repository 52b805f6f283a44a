//! airlock: build a dbt-style project into an audit location, gate on every
//! test, and publish to production only when the gate is green.
//!
//! Data flows one way: cli/config -> project -> graph -> compile -> build ->
//! gate -> publish/ledger -> report.

pub mod build;
pub mod cli;
pub mod commands;
pub mod compile;
pub mod config;
pub mod dbt_builder;
pub mod failpoint;
pub mod gate;
pub mod grants;
pub mod graph;
pub mod interrupt;
pub mod par;
pub mod phase;
pub mod ledger;
pub mod project;
pub mod prepare;
pub mod publish;
pub mod render;
pub mod report;
pub mod session;
pub mod sqltext;
pub mod strategy;
pub mod suggest;
pub mod warehouse;
