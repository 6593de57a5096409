//! The KAI-Fusion API: management REST API under `/api/v1`, webhook ingress under
//! `/api/webhooks/{id}`, health, metrics and the OpenAPI document. It never runs workflow nodes:
//! it publishes jobs to JetStream for the workers.

pub mod audit;
pub mod auth;
pub mod config;
pub mod connection_limits;
pub mod contract;
pub mod credential_probe;
pub mod enqueue;
pub mod error;
pub mod idle_body;
pub mod live_events;
pub mod method_guard;
pub mod middleware;
pub mod node_lookup;
pub mod ops;
#[cfg(test)]
mod parser_properties;
pub mod rejections;
pub mod rotate;
pub mod routes;
pub mod saving;
pub mod schedules;
pub mod security_headers;
pub mod server;
pub mod state;
#[cfg(feature = "testing")]
pub mod testing;
pub mod typed_json;
pub mod waiters;
pub mod webhooks;

use std::sync::Arc;

use anyhow::Context;
use kai_common::nats::{self, Names};
use moka::sync::Cache;
use poem::http::{HeaderValue, Method};
use poem::{EndpointExt, Route};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::auth::token::TokenKeys;
use crate::config::ApiConfig;
use crate::method_guard::AllowedMethods;
use crate::rejections::RejectionLog;
use crate::state::{AppState, ENDPOINT_CACHE_TTL};
use crate::waiters::Waiters;
use crate::webhooks::rate_limit::RateLimiter;

/// Connects to every dependency, applies migrations and builds the shared state.
pub async fn build_state(config: &ApiConfig) -> anyhow::Result<Arc<AppState>> {
    kai_common::metrics::handle();
    let common = &config.common;
    let secrets = config.secrets.resolve(common.environment)?;
    let db = kai_common::db::connect(&common.database_url, common.database_max_connections as u32)
        .await
        .context("DATABASE_URL")?;
    kai_common::db::migrate(&db).await?;
    routes::nodes::register_builtins(&db)
        .await
        .context("registering node types")?;
    let nats_client = nats::connect(&common.nats_url, "kai-api")
        .await
        .context("NATS_URL")?;
    let js = async_nats::jetstream::new(nats_client.clone());
    let names = Names::new(&common.nats_prefix);
    nats::ensure_streams(&js, &names, common.into()).await?;
    let redis = kai_common::redis::pool(&common.redis_url).context("REDIS_URL")?;

    let waiters = Arc::new(Waiters::default());
    let reply_subject = names.reply_subject(&Uuid::new_v4().simple().to_string());
    tokio::spawn(
        waiters
            .clone()
            .listen(nats_client.clone(), reply_subject.clone()),
    );
    // The subscription must be in place before any job naming it is published.
    nats_client.flush().await.context("NATS_URL")?;

    let credential_keys = Arc::new(secrets.key_ring());
    let outbound = kai_common::outbound::call::Outbound::new(
        &config.outbound,
        concat!("kai-fusion-api/", env!("CARGO_PKG_VERSION")),
    )
    .context("building the outbound HTTP client")?;
    let credentials =
        kai_common::credentials::CredentialStore::new(db.clone(), credential_keys.clone());
    let mut node_services =
        kai_common::nodes::services::NodeServices::new(&config.outbound, Default::default())
            .and_then(|services| services.with_models(&config.models))
            .context("building the model server clients")?;
    node_services.credentials = Some(credentials.clone());
    node_services.db = Some(db.clone());
    let node_services = node_services.with_vector_index(config.vector_index.clone());
    if let Some(builder) = &node_services.vector_index
        && let Err(error) = builder.resume().await
    {
        tracing::warn!(%error, "could not look for collections waiting for their index");
    }
    Ok(Arc::new(AppState {
        node_services,
        redis_prefix: format!("{}:", common.nats_prefix),
        public_metrics: config.public_metrics,
        login_limiter: crate::auth::login_limit::LoginLimiter::new(
            redis.clone(),
            &format!("{}:", common.nats_prefix),
            config.login_limits.clone(),
        ),
        credentials,
        credential_keys,
        outbound,
        rejections: RejectionLog::start(db.clone()),
        rate_limiter: RateLimiter::start(redis.clone(), &common.nats_prefix),
        trusted_proxies: config.trusted_proxies.0.clone(),
        bodies: crate::webhooks::body::BodyBudget::new(config.max_inflight_body_bytes),
        db,
        nats: nats_client,
        js,
        names,
        redis,
        tokens: TokenKeys::new(
            &secrets.jwt_secret,
            &secrets.jwt_secrets_previous,
            config.jwt_ttl,
        ),
        public_url: config.public_url.clone(),
        waiters,
        reply_subject,
        endpoints: Cache::builder()
            .max_capacity(100_000)
            .time_to_live(ENDPOINT_CACHE_TTL)
            .build(),
    }))
}

/// Every route of the API, with JSON errors, request metrics, 405 for undeclared methods and
/// security headers.
pub fn app(state: Arc<AppState>) -> impl poem::Endpoint {
    let service = routes::service(state.clone());
    // The docs page embeds the document, so it is rendered once here.
    let docs_html = service.swagger_ui_html();
    let docs_policy = HeaderValue::from_str(&security_headers::docs_policy(&docs_html))
        .expect("a policy of ASCII hashes is a valid header value");
    let mut allowed = AllowedMethods::from_spec(&service.spec());
    allowed.add(OPENAPI_PATH, [Method::GET]);
    allowed.add(security_headers::DOCS_PATH, [Method::GET]);
    let document = contract::finish(&service.spec());
    let spec = poem::endpoint::make_sync(move |_| {
        poem::Response::builder()
            .content_type("application/json; charset=utf-8")
            .body(document.clone())
    });
    let mut routes = Route::new().at(OPENAPI_PATH, spec).at(
        security_headers::DOCS_PATH,
        poem::endpoint::make_sync(move |_| poem::web::Html(docs_html.clone())),
    );
    if state.public_metrics {
        allowed.add(ops::METRICS_PATH, [Method::GET]);
        routes = routes.at(ops::METRICS_PATH, poem::get(ops::metrics));
    }
    let allowed = Arc::new(allowed);
    routes
        .nest("/", service)
        .data(state)
        .around(move |next, request| {
            method_guard::refuse_undeclared_methods(next, request, allowed.clone())
        })
        .around(middleware::limit_management_body)
        .around(middleware::record_request)
        .catch_all_error(error::render_error)
        .around(move |next, request| {
            security_headers::add_security_headers(next, request, docs_policy.clone())
        })
}

/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// Serves the API on `listener` (and the operations port when configured) until `shutdown` is
/// cancelled.
pub async fn run(
    config: ApiConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let ops = match config.ops_addr.0 {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("KAI_API_OPS_ADDR {addr}"))?,
        ),
        None => None,
    };
    let state = build_state(&config).await?;
    tracing::info!(addr = %listener.local_addr()?, "API listening");
    serve(state, listener, ops, shutdown, &config.connections).await
}

/// Serves an already built state (tests build it to reach the internals), and the operations
/// port on `ops` when given.
pub async fn serve(
    state: Arc<AppState>,
    listener: TcpListener,
    ops: Option<TcpListener>,
    shutdown: CancellationToken,
    limits: &connection_limits::ConnectionLimits,
) -> anyhow::Result<()> {
    let ops_server =
        ops.map(|listener| tokio::spawn(ops::serve(state.clone(), listener, shutdown.clone())));
    server::serve(
        app(state.clone()),
        listener,
        shutdown,
        std::time::Duration::from_secs(30),
        limits,
    )
    .await?;
    if let Some(ops_server) = ops_server {
        ops_server.await.ok();
    }
    kai_common::nats::flush_within(&state.nats, std::time::Duration::from_secs(5)).await;
    Ok(())
}
