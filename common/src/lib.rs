//! What the KAI-Fusion API, worker and scheduler share: configuration, telemetry, database and
//! NATS access, job messages, the workflow model and health checks.

pub mod compute;
pub mod config;
pub mod credentials;
pub mod db;
mod db_nodelay;
pub mod documents;
pub mod events;
pub mod health;
pub mod healthcheck;
pub mod jobs;
pub mod json;
pub mod llm;
pub mod metrics;
pub mod nats;
pub mod nodes;
pub mod outbound;
#[cfg(test)]
mod parser_properties;
pub mod redis;
pub mod sandbox;
pub mod schedule;
pub mod shutdown;
pub mod telemetry;
pub mod tls;
pub mod vectors;
pub mod workflow;

#[cfg(feature = "testing")]
pub mod test_proxy;
#[cfg(feature = "testing")]
pub mod testing;
