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
}
