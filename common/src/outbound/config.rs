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

    /// A PEM file of further certificate authorities that workflow HTTP calls trust (an
    /// internal CA), besides the built-in roots; empty: none.
    #[arg(long, env = "KAI_HTTP_CA_FILE", value_name = "KAI_HTTP_CA_FILE",
          default_value = "", value_parser = parse_ca_file)]
    pub http_ca_file: CaBundle,

    /// Host names answered with fixed addresses instead of DNS (tests only: their servers stand
    /// in for the hosts exports name); the guard still checks those addresses.
    #[arg(skip)]
    pub resolve_overrides: Vec<(String, std::net::SocketAddr)>,
}

/// Certificates read from `KAI_HTTP_CA_FILE`.
#[derive(Debug, Clone, Default)]
pub struct CaBundle(pub Vec<reqwest::Certificate>);

fn parse_ca_file(path: &str) -> Result<CaBundle, String> {
    let path = path.trim();
    if path.is_empty() {
        return Ok(CaBundle::default());
    }
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("{path} is not a PEM certificate bundle: {e}"))?;
    if certificates.is_empty() {
        return Err(format!("{path} holds no certificate"));
    }
    Ok(CaBundle(certificates))
}

impl OutboundConfig {
    /// These settings also trusting the certificate authorities in the PEM file at `path`.
    pub fn trusting(mut self, path: &str) -> Result<Self, String> {
        self.http_ca_file = parse_ca_file(path)?;
        Ok(self)
    }
}

impl OutboundConfig {
    /// The defaults with `allowed` let through the guard (tests allow their loopback servers).
    pub fn allowing(allowed: &str) -> Self {
        Self {
            http_allowed_hosts: allowed.parse().expect("valid allowed hosts"),
            http_max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            http_ca_file: CaBundle::default(),
            resolve_overrides: Vec::new(),
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
