//! The scheduler's configuration (environment variables, each also a flag).

use std::net::SocketAddr;

use clap::{Parser, Subcommand};
use kai_common::config::CommonConfig;
use kai_common::healthcheck::HealthcheckArgs;

/// The command line: a subcommand, or none to run.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "kai-scheduler",
    version,
    about = "Leader-elected KAI-Fusion scheduler"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: SchedulerConfig,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Ask a running kai-scheduler (by default this one's address) whether it is ready; exit 0 if so.
    Healthcheck(HealthcheckArgs),
}

/// Everything the process reads from its environment (each also a flag).
#[derive(Debug, Clone, Parser)]
pub struct SchedulerConfig {
    #[command(flatten)]
    pub common: CommonConfig,

    /// Address of the scheduler's /health, /health/detailed and /metrics.
    #[arg(
        long = "addr",
        env = "KAI_SCHEDULER_ADDR",
        value_name = "KAI_SCHEDULER_ADDR",
        default_value = "0.0.0.0:9102"
    )]
    pub addr: SocketAddr,

    /// Days the partitioned logs (webhook events, job executions, HTTP request logs) are kept;
    /// whole months past it are dropped.
    #[arg(
        long = "log-retention-days",
        env = "KAI_LOG_RETENTION_DAYS",
        value_name = "KAI_LOG_RETENTION_DAYS",
        default_value = "30",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub log_retention_days: u32,

    /// Days finished workflow executions (and their node executions) are kept; 0 keeps them
    /// forever.
    #[arg(
        long = "execution-retention-days",
        env = "KAI_EXECUTION_RETENTION_DAYS",
        value_name = "KAI_EXECUTION_RETENTION_DAYS",
        default_value = "30"
    )]
    pub execution_retention_days: u32,

    /// Days the audit log is kept; whole months past it are dropped. Longer than the other
    /// logs: security reviews look back further.
    #[arg(
        long = "audit-retention-days",
        env = "KAI_AUDIT_RETENTION_DAYS",
        value_name = "KAI_AUDIT_RETENTION_DAYS",
        default_value = "365",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub audit_retention_days: u32,
}
