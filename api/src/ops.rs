//! The operations port (`KAI_API_OPS_ADDR`, default `0.0.0.0:9100`): `/metrics`, `/health` and
//! `/health/detailed` for Prometheus and probes, so that the public port need not serve metrics
//! (`KAI_API_PUBLIC_METRICS=false`) and a network policy can open each port to its own clients.

use std::sync::Arc;

use kai_common::health::Dependencies;
use poem::{IntoResponse, Response, handler};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

pub const METRICS_PATH: &str = "/metrics";

/// Prometheus metrics of this process.
#[handler]
pub fn metrics() -> Response {
    kai_common::metrics::render()
        .with_content_type("text/plain; version=0.0.4")
        .into_response()
}

/// Serves the operations routes on `listener` until `shutdown`.
pub async fn serve(state: Arc<AppState>, listener: TcpListener, shutdown: CancellationToken) {
    let deps = Dependencies {
        db: state.db.clone(),
        nats: state.nats.clone(),
        redis: state.redis.clone(),
    };
    kai_common::health::serve(listener, deps, Arc::new(Default::default), shutdown).await;
}
