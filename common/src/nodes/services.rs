//! What nodes get at run time from the worker process that runs them, built once per process and
//! handed to every node through its `NodeContext`: a node never reaches a global.

use std::time::Duration;

use crate::outbound::{AllowedHosts, GuardedClient};

/// The run-time services of a worker process.
#[derive(Debug, Clone)]
pub struct NodeServices {
    /// The one HTTP client for URLs workflow authors control, behind the SSRF guard.
    pub http: GuardedClient,
}

impl NodeServices {
    /// Services whose guard lets through only `allowed` of the internal addresses.
    pub fn new(allowed: AllowedHosts) -> reqwest::Result<Self> {
        crate::tls::install_crypto_provider();
        let builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("kai-fusion-worker/", env!("CARGO_PKG_VERSION")));
        Ok(Self {
            http: GuardedClient::new(allowed, builder)?,
        })
    }
}

impl Default for NodeServices {
    /// Nothing internal allowed.
    fn default() -> Self {
        Self::new(AllowedHosts::default()).expect("the default HTTP client builds")
    }
}
