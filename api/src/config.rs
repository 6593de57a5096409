//! The API's configuration (environment variables, each also a flag) and its subcommands.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand};
use kai_common::config::{CommonConfig, SecretsConfig, parse_seconds};
use kai_common::healthcheck::HealthcheckArgs;

#[derive(Debug, Parser)]
#[command(
    name = "kai-api",
    version,
    about = "KAI-Fusion management API and webhook ingress"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: ApiConfig,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply database migrations and exit (needs only `DATABASE_URL`).
    Migrate,
    /// Ask a running API (by default this one's `KAI_API_ADDR`) whether it is ready; exit 0 if so.
    Healthcheck(HealthcheckArgs),
    /// Re-encrypt every stored credential under `KAI_ENCRYPTION_KEY`, in batches, printing
    /// progress; safe to interrupt and run again. Exit 1 if a credential could not be decrypted
    /// with the current or a previous key.
    RotateCredentials(RotateArgs),
    /// Give every webhook (or every webhook of `--owner`) a new token, the previous one still
    /// accepted for `--grace-seconds`; owners read the new tokens from `GET /api/v1/webhooks`.
    /// Prints how many were rotated, never a token.
    RotateWebhookTokens(RotateWebhookTokensArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct RotateWebhookTokensArgs {
    /// Only this user's webhooks (a user id).
    #[arg(long)]
    pub owner: Option<uuid::Uuid>,
    /// Seconds each previous token stays valid: 0 (the default) refuses it at once, as after a
    /// leak; at most 604800 (a week).
    #[arg(long, default_value = "0",
          value_parser = clap::value_parser!(u64).range(0..=crate::webhooks::token_rotation::MAX_GRACE_SECS))]
    pub grace_seconds: u64,
    /// Webhooks rotated per transaction.
    #[arg(long, default_value = "500", value_parser = clap::value_parser!(i64).range(1..=100_000))]
    pub batch_size: i64,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RotateArgs {
    /// Credentials re-encrypted per transaction.
    #[arg(long, default_value = "500", value_parser = clap::value_parser!(i64).range(1..=100_000))]
    pub batch_size: i64,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ApiConfig {
    #[command(flatten)]
    pub common: CommonConfig,

    #[command(flatten)]
    pub secrets: SecretsConfig,

    /// Address the API listens on.
    #[arg(
        long = "addr",
        env = "KAI_API_ADDR",
        value_name = "KAI_API_ADDR",
        default_value = "0.0.0.0:8001"
    )]
    pub addr: SocketAddr,

    /// Address of the operations port: `/metrics`, `/health` and `/health/detailed` for
    /// Prometheus and probes, apart from the public port. `off` serves none.
    #[arg(long = "ops-addr", env = "KAI_API_OPS_ADDR", value_name = "KAI_API_OPS_ADDR",
          default_value = "0.0.0.0:9100", value_parser = parse_optional_addr)]
    pub ops_addr: OptionalAddr,

    /// Whether the public port serves `/metrics` too (the chart turns it off and scrapes the
    /// operations port).
    #[arg(long = "public-metrics", env = "KAI_API_PUBLIC_METRICS",
          value_name = "KAI_API_PUBLIC_METRICS", default_value = "true",
          action = clap::ArgAction::Set)]
    pub public_metrics: bool,

    /// Public base URL of the API, used to build absolute webhook URLs.
    #[arg(long, env = "KAI_PUBLIC_URL", value_name = "KAI_PUBLIC_URL",
          default_value = "http://127.0.0.1:8001", value_parser = parse_public_url)]
    pub public_url: String,

    /// Lifetime of an access token, in seconds.
    #[arg(long = "jwt-ttl-secs", env = "KAI_JWT_TTL_SECS", value_name = "KAI_JWT_TTL_SECS",
          default_value = "3600", value_parser = parse_seconds)]
    pub jwt_ttl: Duration,

    /// Reverse proxies whose `X-Forwarded-For` header is believed: comma-separated addresses
    /// or CIDR blocks (empty: the socket peer is the caller).
    #[arg(long, env = "KAI_TRUSTED_PROXIES", value_name = "KAI_TRUSTED_PROXIES",
          default_value = "", value_parser = parse_networks)]
    pub trusted_proxies: Networks,

    /// Webhook body bytes this instance holds at once (bodies being read, checked and
    /// published); further calls wait, unread, until there is room. A body without a declared
    /// length counts as its webhook's limit.
    #[arg(long, env = "KAI_API_MAX_INFLIGHT_BODY_BYTES",
          value_name = "KAI_API_MAX_INFLIGHT_BODY_BYTES", default_value = "4194304",
          value_parser = kai_common::config::parse_positive)]
    pub max_inflight_body_bytes: usize,

    /// The SSRF guard's exceptions and the response limit of the HTTP test API.
    #[command(flatten)]
    pub outbound: kai_common::outbound::OutboundConfig,

    /// The embeddings server of vector collections without their own embedder (and the other
    /// model servers, shared with the worker's settings).
    #[command(flatten)]
    pub models: kai_common::llm::servers::ModelServersConfig,

    #[command(flatten)]
    pub vector_index: kai_common::vectors::index::IndexSettings,

    /// Limits on failed logins.
    #[command(flatten)]
    pub login_limits: crate::auth::login_limit::LoginLimits,

    /// Request head and body timeouts, and the cap on open connections.
    #[command(flatten)]
    pub connections: crate::connection_limits::ConnectionLimits,
}

/// A list of networks given as one comma-separated value.
#[derive(Debug, Clone, Default)]
pub struct Networks(pub Vec<ipnet::IpNet>);

fn parse_networks(value: &str) -> Result<Networks, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(crate::webhooks::config::parse_network)
        .collect::<Result<_, _>>()
        .map(Networks)
}

/// An address, or none (`off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionalAddr(pub Option<SocketAddr>);

fn parse_optional_addr(value: &str) -> Result<OptionalAddr, String> {
    match value.trim() {
        "" | "off" => Ok(OptionalAddr(None)),
        addr => addr
            .parse()
            .map(|addr| OptionalAddr(Some(addr)))
            .map_err(|e| format!("not an address (host:port) or `off`: {e}")),
    }
}

fn parse_public_url(value: &str) -> Result<String, String> {
    let url = url::Url::parse(value).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("scheme must be http or https".to_owned());
    }
    Ok(value.trim_end_matches('/').to_owned())
}
