//! What every request handler shares.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use ipnet::IpNet;
use kai_common::nats::Names;
use moka::sync::Cache;
use sqlx::PgPool;

use crate::auth::token::TokenKeys;
use crate::rejections::RejectionLog;
use crate::waiters::Waiters;
use crate::webhooks::endpoint::Endpoint;
use crate::webhooks::rate_limit::RateLimiter;

pub struct AppState {
    pub db: PgPool,
    pub nats: async_nats::Client,
    pub js: jetstream::Context,
    pub names: Names,
    pub redis: deadpool_redis::Pool,
    pub tokens: TokenKeys,
    /// Seals and opens stored credentials (`KAI_ENCRYPTION_KEY` and the previous keys).
    pub credential_keys: Arc<kai_common::credentials::KeyRing>,
    /// Opens a credential for its owner (the credential test, the HTTP test API).
    pub credentials: kai_common::credentials::CredentialStore,
    /// Guarded HTTP clients for URLs users give (the HTTP test API, credential tests).
    pub outbound: kai_common::outbound::call::Outbound,
    /// Base URL without a trailing slash.
    pub public_url: String,
    pub waiters: Arc<Waiters>,
    /// Where workers send this instance the results its callers wait for.
    pub reply_subject: String,
    /// Webhook endpoints by webhook id. Short-lived so that an update made through another
    /// replica is seen within seconds; this replica's own changes invalidate it at once.
    pub endpoints: Cache<String, Arc<Endpoint>>,
    pub rejections: RejectionLog,
    pub rate_limiter: RateLimiter,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Webhook body bytes held at once (`KAI_API_MAX_INFLIGHT_BODY_BYTES`).
    pub bodies: crate::webhooks::body::BodyBudget,
    /// What embedding a vector collection's text needs (its owner's credentials, the
    /// deployment's embeddings server, the SSRF guard) and the collection index builder: the
    /// same services the worker's nodes get.
    pub node_services: kai_common::nodes::services::NodeServices,
    /// Prefix of this deployment's Redis keys (the NATS prefix).
    pub redis_prefix: String,
    /// Failed logins counted per account and per address (`KAI_LOGIN_*`).
    pub login_limiter: crate::auth::login_limit::LoginLimiter,
    /// Whether the public port serves `/metrics` (`KAI_API_PUBLIC_METRICS`).
    pub public_metrics: bool,
}

impl AppState {
    /// Drops cached webhook endpoints this instance just changed or removed.
    pub fn forget_endpoints(&self, webhook_ids: &[String]) {
        for id in webhook_ids {
            self.endpoints.invalidate(id);
        }
    }
}

/// How long another replica's change to a webhook may go unseen by this one.
pub const ENDPOINT_CACHE_TTL: Duration = Duration::from_secs(2);
