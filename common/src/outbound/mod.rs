//! Outbound HTTP to addresses workflow authors choose, behind the SSRF guard.

pub mod client;
pub mod guard;

pub use client::{GuardError, GuardedClient, MAX_REDIRECTS, refusal_of};
pub use guard::{AllowedHosts, Refused};
