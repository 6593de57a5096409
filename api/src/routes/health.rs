//! `/health` (liveness) and `/health/detailed` (readiness: database and NATS; Redis reported).
//! `/metrics` is not part of the API's document: it is served on the operations port, and on the
//! public one unless `KAI_API_PUBLIC_METRICS=false` (see `ops`).

use std::sync::Arc;

use chrono::Utc;
use kai_common::health::Dependencies;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};
use serde_json::{Value, json};

use super::ApiTags;
use crate::state::AppState;

pub struct HealthApi {
    pub state: Arc<AppState>,
}

#[derive(ApiResponse)]
pub enum Readiness {
    /// PostgreSQL and NATS answer (`status` is `degraded` when only Redis does not: rate limits
    /// then fall back to per-replica limits).
    #[oai(status = 200)]
    Ready(Json<Value>),
    /// PostgreSQL or NATS does not answer.
    #[oai(status = 503)]
    Unhealthy(Json<Value>),
}

#[OpenApi(tag = "ApiTags::Health")]
impl HealthApi {
    /// Liveness: the process answers.
    #[oai(path = "/health", method = "get", operation_id = "health")]
    async fn health(&self) -> Json<Value> {
        Json(json!({ "status": "healthy", "timestamp": Utc::now() }))
    }

    /// Readiness: database, NATS and Redis checks, plus the jobs queue depth.
    #[oai(
        path = "/health/detailed",
        method = "get",
        operation_id = "health_detailed"
    )]
    async fn detailed(&self) -> Readiness {
        let deps = Dependencies {
            db: self.state.db.clone(),
            nats: self.state.nats.clone(),
            redis: self.state.redis.clone(),
        };
        let ((status, checks), depth) = tokio::join!(
            deps.check_all(),
            kai_common::nats::queue_depth(&self.state.js, &self.state.names)
        );
        let body = json!({
            "status": status.as_str(),
            "checks": checks,
            "queue_depth": depth,
            "timestamp": Utc::now(),
        });
        if status.ready() {
            Readiness::Ready(Json(body))
        } else {
            Readiness::Unhealthy(Json(body))
        }
    }
}
