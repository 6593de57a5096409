//! The KAI-Fusion scheduler: one leader among any number of replicas fires the timers of
//! scheduled jobs and does the housekeeping; standbys take over when it dies.

pub mod config;
pub mod housekeeping;
pub mod leader;
pub mod timers;

use std::sync::Arc;

use anyhow::Context;
use kai_common::health::{self, Dependencies};
use kai_common::nats::Names;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::SchedulerConfig;
use crate::housekeeping::Housekeeping;
use crate::leader::{LeaderWork, Leadership};
use crate::timers::Timers;
use crate::timers::fire::Firer;

/// Database connections: the timers' concurrent firings, their notification listener, and
/// housekeeping.
const DB_CONNECTIONS: u32 = 12;

/// Everything the leader does, started together when it gains leadership.
struct Duties {
    housekeeping: Housekeeping,
    timers: Timers,
}

impl LeaderWork for Duties {
    async fn run(&self, stop: CancellationToken) {
        tokio::join!(self.housekeeping.run(stop.clone()), self.timers.run(stop));
    }
}

/// Runs the scheduler until `shutdown`; `listener` serves health and metrics.
pub async fn run(
    config: SchedulerConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    kai_common::metrics::handle();
    let common = &config.common;
    let db = kai_common::db::connect(&common.database_url, DB_CONNECTIONS)
        .await
        .context("DATABASE_URL")?;
    kai_common::db::migrate(&db).await?;
    let nats = kai_common::nats::connect(&common.nats_url, "kai-scheduler")
        .await
        .context("NATS_URL")?;
    let redis = kai_common::redis::pool(&common.redis_url).context("REDIS_URL")?;
    let js = async_nats::jetstream::new(nats.clone());
    let names = Names::new(&common.nats_prefix);
    kai_common::nats::ensure_streams(&js, &names, common.into()).await?;

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
        Arc::new(Duties {
            housekeeping: Housekeeping {
                db: db.clone(),
                log_retention_days: config.log_retention_days,
                execution_retention_days: config.execution_retention_days,
                audit_retention_days: config.audit_retention_days,
            },
            timers: Timers {
                db: db.clone(),
                firer: Arc::new(Firer {
                    db: db.clone(),
                    js,
                    names,
                }),
            },
        }),
        shutdown,
    )
    .await;
    server.await??;
    db.close().await;
    tracing::info!("scheduler stopped");
    Ok(())
}
