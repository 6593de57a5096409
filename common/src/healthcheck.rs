//! The `healthcheck` subcommand of every binary: asks a running process whether it is ready, so
//! a container image with no shell or curl can still be health-checked (docker compose, the
//! chart's `helm test`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::config::parse_seconds;

/// Where the readiness endpoint of every KAI process is served.
pub const READINESS_PATH: &str = "/health/detailed";
/// Where the liveness endpoint of every KAI process is served.
pub const LIVENESS_PATH: &str = "/health";

/// `healthcheck [--url URL]... [--timeout SECS]`
#[derive(Debug, Clone, clap::Args)]
pub struct HealthcheckArgs {
    /// Readiness URL to ask; repeat to ask several (all must answer 200). Default: this
    /// process's own `/health/detailed` on the port it is configured to listen on.
    #[arg(long = "url", value_name = "URL")]
    pub urls: Vec<String>,

    /// Seconds to wait for each answer.
    #[arg(long = "timeout", value_name = "SECS", default_value = "3", value_parser = parse_seconds)]
    pub timeout: Duration,
}

/// The readiness URL of a process listening on `addr` (a wildcard address is asked on loopback).
pub fn own_readiness_url(addr: SocketAddr) -> String {
    let ip = if addr.ip().is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        addr.ip()
    };
    format!(
        "http://{}{READINESS_PATH}",
        SocketAddr::new(ip, addr.port())
    )
}

/// Asks every URL (or the process's own readiness URL); fails naming the first that is not ready.
pub async fn run(args: &HealthcheckArgs, own_addr: SocketAddr) -> anyhow::Result<()> {
    let urls = if args.urls.is_empty() {
        vec![own_readiness_url(own_addr)]
    } else {
        args.urls.clone()
    };
    let client = reqwest::Client::builder()
        .timeout(args.timeout)
        .build()
        .context("building the HTTP client")?;
    for url in &urls {
        let response = client
            .get(url)
            .send()
            .await
            .with_context(|| format!("{url}: no answer"))?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            bail!("{url}: not ready ({status})");
        }
        println!("{url}: ready");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_url_asks_loopback_for_a_wildcard_address() {
        assert_eq!(
            own_readiness_url("0.0.0.0:9101".parse().unwrap()),
            "http://127.0.0.1:9101/health/detailed"
        );
        assert_eq!(
            own_readiness_url("10.1.2.3:8001".parse().unwrap()),
            "http://10.1.2.3:8001/health/detailed"
        );
        assert_eq!(
            own_readiness_url("[::]:9102".parse().unwrap()),
            "http://127.0.0.1:9102/health/detailed"
        );
    }
}
