//! Webhook endpoints: their configuration, their registration when a workflow is saved, and
//! their lookup on the ingress path.

pub mod config;
pub mod endpoint;
pub mod payload;
pub mod registry;
