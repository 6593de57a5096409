//! What operators set for outbound calls to addresses workflow authors choose (API and worker).

use clap::Args;

use super::AllowedHosts;
use crate::config::parse_positive;

/// The largest response body read by default (`KAI_HTTP_MAX_RESPONSE_BYTES`).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 10 * 1024 * 1024;

#[derive(Debug, Clone, Args)]
pub struct OutboundConfig {
    /// Hosts, addresses and CIDR networks that workflow HTTP calls (HttpRequest, custom node
    /// types, the HTTP test API) may reach although the SSRF guard refuses internal addresses,
    /// comma-separated: e.g. a model server the operator runs on purpose.
    #[arg(long, env = "KAI_HTTP_ALLOWED_HOSTS", value_name = "KAI_HTTP_ALLOWED_HOSTS",
          default_value = "", value_parser = parse_allowed_hosts)]
    pub http_allowed_hosts: AllowedHosts,

    /// Largest response body an HTTP node reads, in bytes; a larger one fails the call.
    #[arg(long, env = "KAI_HTTP_MAX_RESPONSE_BYTES", value_name = "KAI_HTTP_MAX_RESPONSE_BYTES",
          default_value = "10485760", value_parser = parse_positive)]
    pub http_max_response_bytes: usize,
}

impl OutboundConfig {
    /// The defaults with `allowed` let through the guard (tests allow their loopback servers).
    pub fn allowing(allowed: &str) -> Self {
        Self {
            http_allowed_hosts: allowed.parse().expect("valid allowed hosts"),
            http_max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

impl Default for OutboundConfig {
    fn default() -> Self {
        Self::allowing("")
    }
}

fn parse_allowed_hosts(text: &str) -> Result<AllowedHosts, String> {
    text.parse()
}
