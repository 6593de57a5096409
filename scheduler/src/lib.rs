//! The KAI-Fusion scheduler: one leader among any number of replicas runs the periodic work
//! (timer emission in a later step; partition upkeep now), standbys take over when it dies.

pub mod config;
pub mod housekeeping;
pub mod leader;

use std::sync::Arc;

use anyhow::Context;
use kai_common::health::{self, Dependencies};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::SchedulerConfig;
use crate::housekeeping::Housekeeping;
use crate::leader::Leadership;

/// Runs the scheduler until `shutdown`; `listener` serves health and metrics.
pub async fn run(
    config: SchedulerConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    kai_common::metrics::handle();
    let common = &config.common;
    let db = kai_common::db::connect(&common.database_url, 4)
        .await
        .context("DATABASE_URL")?;
    kai_common::db::migrate(&db).await?;
    let nats = kai_common::nats::connect(&common.nats_url, "kai-scheduler")
        .await
        .context("NATS_URL")?;
    let redis = kai_common::redis::pool(&common.redis_url).context("REDIS_URL")?;

    let leadership = Leadership::default();
    let instance = Uuid::new_v4().to_string();
    let facts = {
        let leadership = leadership.clone();
        Arc::new(move || {
            let mut map = serde_json::Map::new();
            map.insert("is_leader".into(), json!(leadership.is_leader()));
            map.insert("instance_id".into(), json!(instance));
            map
        })
    };
    let deps = Dependencies {
        db: db.clone(),
        nats,
        redis,
    };
    let app = health::routes(deps, facts);
    let acceptor = poem::listener::TcpAcceptor::from_tokio(listener)?;
    let server_stop = shutdown.clone();
    let server = tokio::spawn(async move {
        poem::Server::new_with_acceptor(acceptor)
            .run_with_graceful_shutdown(app, server_stop.cancelled_owned(), None)
            .await
    });

    tracing::info!("scheduler started");
    leader::campaign(
        common.database_url.clone(),
        common.nats_prefix.clone(),
        leadership,
        Arc::new(Housekeeping { db: db.clone() }),
        shutdown,
    )
    .await;
    server.await??;
    db.close().await;
    tracing::info!("scheduler stopped");
    Ok(())
}
