//! Health checks of the services a process depends on, and the `/health`, `/health/detailed`
//! and `/metrics` routes of the worker and scheduler (the API serves its own through OpenAPI).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use poem::http::StatusCode;
use poem::web::Json;
use poem::{EndpointExt, IntoResponse, Response, Route, get, handler, web::Data};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::PgPool;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The outcome of one dependency check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub status: &'static str,
    pub latency_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Check {
    pub fn healthy(&self) -> bool {
        self.status == "healthy"
    }

    fn from_result<E: std::fmt::Display>(started: Instant, result: Result<(), E>) -> Self {
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        match result {
            Ok(()) => Check {
                status: "healthy",
                latency_ms,
                error: None,
            },
            Err(e) => Check {
                status: "unhealthy",
                latency_ms,
                error: Some(e.to_string()),
            },
        }
    }
}

/// The dependencies of a process.
#[derive(Clone)]
pub struct Dependencies {
    pub db: PgPool,
    pub nats: async_nats::Client,
    pub redis: deadpool_redis::Pool,
}

impl Dependencies {
    pub async fn check_database(&self) -> Check {
        let started = Instant::now();
        let query = sqlx::query("SELECT 1").execute(&self.db);
        let result = match tokio::time::timeout(CHECK_TIMEOUT, query).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".to_owned()),
        };
        Check::from_result(started, result)
    }

    pub async fn check_nats(&self) -> Check {
        let started = Instant::now();
        let result = match self.nats.connection_state() {
            async_nats::connection::State::Connected => {
                match tokio::time::timeout(CHECK_TIMEOUT, self.nats.flush()).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("timed out".to_owned()),
                }
            }
            state => Err(format!("connection is {state}")),
        };
        Check::from_result(started, result)
    }

    pub async fn check_redis(&self) -> Check {
        let started = Instant::now();
        Check::from_result(
            started,
            crate::redis::ping(&self.redis, CHECK_TIMEOUT).await,
        )
    }

    /// All three checks, concurrently. Returns the overall status and each check's report.
    pub async fn check_all(&self) -> (Status, Value) {
        let (database, nats, redis) =
            tokio::join!(self.check_database(), self.check_nats(), self.check_redis());
        let status = if !(database.healthy() && nats.healthy()) {
            Status::Unhealthy
        } else if !redis.healthy() {
            Status::Degraded
        } else {
            Status::Healthy
        };
        (
            status,
            json!({ "database": database, "nats": nats, "redis": redis }),
        )
    }
}

/// A process's readiness. Redis holds only rate-limit counters and caches (every process
/// carries on without it), so its loss degrades a process but leaves it ready: otherwise one
/// Redis restart would take every API replica out of its load balancer at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Healthy,
    Degraded,
    Unhealthy,
}

impl Status {
    /// Whether the process should receive traffic (`/health/detailed` answers 200).
    pub fn ready(self) -> bool {
        self != Status::Unhealthy
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Healthy => "healthy",
            Status::Degraded => "degraded",
            Status::Unhealthy => "unhealthy",
        }
    }

    /// 200 while ready, 503 otherwise.
    pub fn http_status(self) -> StatusCode {
        if self.ready() {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

/// Extra facts a process adds to its health report (e.g. the scheduler's leadership).
pub type ExtraFacts = Arc<dyn Fn() -> serde_json::Map<String, Value> + Send + Sync>;

#[derive(Clone)]
struct HealthState {
    deps: Dependencies,
    extra: ExtraFacts,
}

/// `/health`, `/health/detailed` and `/metrics` for a process that has no other HTTP API.
pub fn routes(deps: Dependencies, extra: ExtraFacts) -> impl poem::Endpoint {
    Route::new()
        .at(crate::healthcheck::LIVENESS_PATH, get(liveness))
        .at(crate::healthcheck::READINESS_PATH, get(readiness))
        .at("/metrics", get(metrics_text))
        .data(HealthState { deps, extra })
}

/// Serves `routes(deps, extra)` on `listener` until `shutdown`; a failure is logged, not fatal
/// (the process's work goes on without its health port).
pub async fn serve(
    listener: tokio::net::TcpListener,
    deps: Dependencies,
    extra: ExtraFacts,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let acceptor = match poem::listener::TcpAcceptor::from_tokio(listener) {
        Ok(acceptor) => acceptor,
        Err(error) => {
            tracing::error!(%error, "health listener unusable");
            return;
        }
    };
    let result = poem::Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(routes(deps, extra), shutdown.cancelled_owned(), None)
        .await;
    if let Err(error) = result {
        tracing::error!(%error, "health server failed");
    }
}

#[handler]
fn liveness(state: Data<&HealthState>) -> Json<Value> {
    let mut body = (state.extra)();
    body.insert("status".into(), json!("healthy"));
    body.insert("timestamp".into(), json!(Utc::now()));
    Json(Value::Object(body))
}

#[handler]
async fn readiness(state: Data<&HealthState>) -> Response {
    let (status, checks) = state.deps.check_all().await;
    let mut body = (state.extra)();
    body.insert("status".into(), json!(status.as_str()));
    body.insert("checks".into(), checks);
    body.insert("timestamp".into(), json!(Utc::now()));
    Json(Value::Object(body))
        .with_status(status.http_status())
        .into_response()
}

#[handler]
fn metrics_text() -> Response {
    crate::metrics::render()
        .with_content_type("text/plain; version=0.0.4")
        .into_response()
}
