//! `/health` (liveness), `/health/detailed` (readiness: database, NATS, Redis) and `/metrics`.

use std::sync::Arc;

use chrono::Utc;
use kai_common::health::Dependencies;
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{ApiResponse, OpenApi};
use serde_json::{Value, json};

use super::ApiTags;
use crate::state::AppState;

pub struct HealthApi {
    pub state: Arc<AppState>,
}

#[derive(ApiResponse)]
pub enum Readiness {
    /// Every dependency answers.
    #[oai(status = 200)]
    Healthy(Json<Value>),
    /// At least one dependency does not answer.
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
        let ((healthy, checks), depth) = tokio::join!(
            deps.check_all(),
            kai_common::nats::queue_depth(&self.state.js, &self.state.names)
        );
        let body = json!({
            "status": if healthy { "healthy" } else { "unhealthy" },
            "checks": checks,
            "queue_depth": depth,
            "timestamp": Utc::now(),
        });
        if healthy {
            Readiness::Healthy(Json(body))
        } else {
            Readiness::Unhealthy(Json(body))
        }
    }

    /// Prometheus metrics.
    #[oai(path = "/metrics", method = "get", operation_id = "metrics")]
    async fn metrics(&self) -> PlainText<String> {
        PlainText(kai_common::metrics::render())
    }
}
