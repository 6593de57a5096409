//! Webhook endpoints: their configuration, their registration when a workflow is saved, their
//! lookup on the ingress path and every check ingress makes.

pub mod body;
pub mod client_ip;
pub mod config;
pub mod cors;
pub mod endpoint;
pub mod idempotency;
pub mod idempotency_store;
pub mod payload;
pub mod rate_limit;
pub mod registry;
pub mod signature;
pub mod token_rotation;
