//! The KAI-Fusion worker: pulls jobs from the shared JetStream consumer, runs workflow graphs
//! and records their executions, idempotently.

pub mod budget;
pub mod cancellations;
pub mod config;
pub mod consumer;
pub mod dead_letters;
pub mod document_jobs;
pub mod durability;
pub mod engine;
pub mod events;
pub mod outage;
pub mod persist;
pub mod pulls;
pub mod request;
pub mod stranded;
pub mod versions;
pub mod writer;

use std::sync::Arc;

use anyhow::Context;
use kai_common::health::{self, Dependencies};
use kai_common::nats::{self, ConsumerSettings, Names};
use kai_common::nodes::breaker::BreakerSettings;
use kai_common::nodes::services::NodeServices;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::WorkerConfig;
use crate::consumer::{Consumer, JobHandler};

/// How long a stopping worker waits for NATS to take what it still buffers (the last replies
/// and acknowledgements): unacknowledged jobs are redelivered anyway, and with NATS unreachable
/// an unbounded flush kept a stopped worker alive until the link returned.
const SHUTDOWN_FLUSH: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs the worker until `shutdown` is cancelled, then stops pulling, finishes the jobs it
/// holds, and returns. `listener` serves health and metrics.
pub async fn run(
    config: WorkerConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    kai_common::metrics::handle();
    let common = &config.common;
    // Refuse to start without the credential key in production before touching anything.
    let credential_keys = Arc::new(config.encryption.key_ring(common.environment)?);
    let db = kai_common::db::connect(&common.database_url, common.database_max_connections as u32)
        .await
        .context("DATABASE_URL")?;
    kai_common::db::migrate(&db).await?;
    let nats_client = nats::connect(&common.nats_url, "kai-worker")
        .await
        .context("NATS_URL")?;
    let redis = kai_common::redis::pool(&common.redis_url).context("REDIS_URL")?;
    let js = async_nats::jetstream::new(nats_client.clone());
    let names = Names::new(&common.nats_prefix);
    let stream = nats::ensure_streams(&js, &names, common.into()).await?;
    let settings = ConsumerSettings {
        ack_wait: config.ack_wait,
        max_deliver: config.max_deliver as i64,
    };
    let workers = nats::ensure_workers_consumer(&stream, &names, settings).await?;
    let pull = if workers.had_delivery_limit {
        stranded::repair(&db, &stream, &names, settings, workers.consumer).await?
    } else {
        workers.consumer
    };

    let deps = Dependencies {
        db: db.clone(),
        nats: nats_client.clone(),
        redis,
    };
    let health_shutdown = CancellationToken::new();
    let health_server = tokio::spawn(serve_health(listener, deps, health_shutdown.clone()));

    let breakers = BreakerSettings {
        failures: u32::try_from(config.breaker_failures).unwrap_or(u32::MAX),
        open_for: config.breaker_open,
    };
    let (services, http_logs) = NodeServices::new(&config.outbound, breakers)
        .and_then(|services| services.with_models(&config.models))
        .context("building the HTTP clients for nodes")?
        .with_database(db.clone(), credential_keys);
    let services = services.with_vector_index(config.vector_index.clone());
    let handler = JobHandler::new(
        db.clone(),
        nats_client.clone(),
        js.clone(),
        names.clone(),
        settings.max_deliver,
        Arc::new(services),
    )
    .with_events_mode(config.execution_events);
    let max_payload = nats_client.max_payload();
    let bytes = budget::ByteBudget::new(config.max_inflight_bytes, max_payload);
    let consumer = Consumer::new(
        pull,
        Arc::new(handler),
        config.concurrency,
        bytes,
        config.ack_wait,
        config.drain_grace,
    );
    tracing::info!(
        concurrency = config.concurrency,
        max_inflight_bytes = config.max_inflight_bytes,
        "worker started"
    );
    consumer.run(shutdown).await;
    // The consumer held the last node services: the HTTP log writer drains and stops.
    http_logs.finish(std::time::Duration::from_secs(10)).await;

    health_shutdown.cancel();
    let _ = health_server.await;
    nats::flush_within(&nats_client, SHUTDOWN_FLUSH).await;
    db.close().await;
    tracing::info!("worker stopped");
    Ok(())
}

async fn serve_health(listener: TcpListener, deps: Dependencies, shutdown: CancellationToken) {
    health::serve(listener, deps, Arc::new(Default::default), shutdown).await;
}
