//! The worker's configuration (environment variables, each also a flag).

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand};
use kai_common::config::{CommonConfig, EncryptionKeysConfig, parse_positive, parse_seconds};
use kai_common::healthcheck::HealthcheckArgs;
use kai_common::llm::servers::ModelServersConfig;
use kai_common::outbound::OutboundConfig;

/// The command line: a subcommand, or none to run.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "kai-worker",
    version,
    about = "Runs KAI-Fusion workflow jobs from JetStream"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: WorkerConfig,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Ask a running kai-worker (by default this one's address) whether it is ready; exit 0 if so.
    Healthcheck(HealthcheckArgs),
}

/// Everything the process reads from its environment (each also a flag).
#[derive(Debug, Clone, Parser)]
pub struct WorkerConfig {
    #[command(flatten)]
    pub common: CommonConfig,

    /// Address of the worker's /health, /health/detailed and /metrics.
    #[arg(
        long = "addr",
        env = "KAI_WORKER_ADDR",
        value_name = "KAI_WORKER_ADDR",
        default_value = "0.0.0.0:9101"
    )]
    pub addr: SocketAddr,

    /// Jobs this worker runs at once. Jobs mostly wait on I/O (HTTP, LLMs, the database), so
    /// this is well above the core count; it also bounds how many finished runs can share one
    /// database write (docs/BENCHMARKS.md: 64 drains ~1,400 executions/s here, 256 ~3,150).
    #[arg(long, env = "KAI_WORKER_CONCURRENCY", value_name = "KAI_WORKER_CONCURRENCY",
          default_value = "256", value_parser = parse_positive)]
    pub concurrency: usize,

    #[command(flatten)]
    pub outbound: OutboundConfig,

    #[command(flatten)]
    pub encryption: EncryptionKeysConfig,

    #[command(flatten)]
    pub models: ModelServersConfig,

    #[command(flatten)]
    pub vector_index: kai_common::vectors::index::IndexSettings,

    /// Bytes of job messages this worker holds at once (payloads of the jobs it runs); further
    /// jobs wait in the queue until there is room. A run holds a few times its payload in
    /// memory (docs/DEPLOYMENT.md sizes the pod from it). Raised to NATS's largest message
    /// when set below it.
    #[arg(long, env = "KAI_WORKER_MAX_INFLIGHT_BYTES", value_name = "KAI_WORKER_MAX_INFLIGHT_BYTES",
          default_value = "67108864", value_parser = parse_positive)]
    pub max_inflight_bytes: usize,

    /// Seconds before an unacknowledged job is redelivered to another worker (long jobs send
    /// progress acks, so this bounds how long a dead worker's jobs wait).
    #[arg(long, env = "KAI_JOB_ACK_WAIT_SECS", value_name = "KAI_JOB_ACK_WAIT_SECS",
          default_value = "30", value_parser = parse_seconds)]
    pub ack_wait: Duration,

    /// Seconds a stopping worker (SIGTERM) lets its running jobs finish before handing the rest
    /// back to the queue and exiting; keep it under Kubernetes' `terminationGracePeriodSeconds`.
    #[arg(long = "drain-secs", env = "KAI_WORKER_DRAIN_SECS", value_name = "KAI_WORKER_DRAIN_SECS",
          default_value = "25", value_parser = parse_seconds)]
    pub drain_grace: Duration,

    /// Failures in a row (connection errors, timeouts, 5xx) after which calls to an external
    /// host fail fast for a while (its circuit breaker opens).
    #[arg(long, env = "KAI_BREAKER_FAILURES", value_name = "KAI_BREAKER_FAILURES",
          default_value = "5", value_parser = parse_positive)]
    pub breaker_failures: usize,

    /// Seconds an open circuit breaker fails calls fast before letting one trial call through.
    #[arg(long, env = "KAI_BREAKER_OPEN_SECS", value_name = "KAI_BREAKER_OPEN_SECS",
          default_value = "30", value_parser = parse_seconds)]
    pub breaker_open: Duration,

    /// Deliveries of a job before it is dead-lettered.
    #[arg(long, env = "KAI_JOB_MAX_DELIVER", value_name = "KAI_JOB_MAX_DELIVER",
          default_value = "5", value_parser = parse_positive)]
    pub max_deliver: usize,

    /// Which runs publish progress events for `GET /api/v1/executions/{id}/events`: `all`,
    /// `manual` (manual runs only, for very high webhook volumes) or `off`.
    #[arg(
        long,
        env = "KAI_EXECUTION_EVENTS",
        value_name = "KAI_EXECUTION_EVENTS",
        value_enum,
        default_value = "all"
    )]
    pub execution_events: EventsMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EventsMode {
    All,
    Manual,
    Off,
}

impl EventsMode {
    /// Whether a run started by `trigger_type` publishes events.
    pub fn covers(self, trigger_type: &str) -> bool {
        match self {
            EventsMode::All => true,
            EventsMode::Manual => trigger_type == "manual",
            EventsMode::Off => false,
        }
    }
}
