//! Outbound HTTP to addresses workflow authors choose, behind the SSRF guard.

pub mod auth;
pub mod call;
pub mod client;
pub mod config;
pub mod guard;
pub mod redact;
pub mod request_log;

pub use client::{GuardError, GuardedClient, MAX_REDIRECTS, refusal_of};
pub use config::OutboundConfig;
pub use guard::{AllowedHosts, Refused};
