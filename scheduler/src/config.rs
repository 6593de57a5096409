//! The scheduler's configuration (environment variables, each also a flag).

use std::net::SocketAddr;

use clap::Parser;
use kai_common::config::CommonConfig;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "kai-scheduler",
    version,
    about = "Leader-elected KAI-Fusion scheduler"
)]
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
}
