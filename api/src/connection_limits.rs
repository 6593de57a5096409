//! What one client may hold of the server: how long it may take to send a request's head, how
//! long a body may stall, and how many connections are open at once. Without these a slow
//! client (a "slowloris") holds a connection and its buffers for as long as it likes.

use std::time::Duration;

use kai_common::config::{parse_positive, parse_seconds};

#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionLimits {
    /// Seconds a client has to send a request's head (line and headers), from its first byte
    /// or, on a kept-alive connection, from the end of the previous response; then the
    /// connection is closed.
    #[arg(long = "header-timeout-secs", env = "KAI_API_HEADER_TIMEOUT_SECS",
          value_name = "KAI_API_HEADER_TIMEOUT_SECS", default_value = "10",
          value_parser = parse_seconds)]
    pub header_timeout: Duration,

    /// Seconds a request body may send nothing while the server waits for it; then the request
    /// fails (408, saying the body stalled) and its connection is closed.
    #[arg(long = "body-idle-timeout-secs", env = "KAI_API_BODY_IDLE_TIMEOUT_SECS",
          value_name = "KAI_API_BODY_IDLE_TIMEOUT_SECS", default_value = "30",
          value_parser = parse_seconds)]
    pub body_idle_timeout: Duration,

    /// Connections served at once; further ones wait in the listen backlog until one closes.
    #[arg(long = "max-connections", env = "KAI_API_MAX_CONNECTIONS",
          value_name = "KAI_API_MAX_CONNECTIONS", default_value = "10000",
          value_parser = parse_positive)]
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(30),
            max_connections: 10_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        limits: ConnectionLimits,
    }

    #[test]
    fn the_default_is_what_the_flags_default_to() {
        let parsed = Flags::try_parse_from(["kai-api"]).unwrap().limits;
        assert_eq!(
            format!("{parsed:?}"),
            format!("{:?}", ConnectionLimits::default())
        );
    }
}
