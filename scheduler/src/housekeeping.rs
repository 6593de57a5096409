//! What the leader does besides timers: keep the monthly log partitions prepared ahead.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::leader::LeaderWork;

/// Tables partitioned by month, and how many months ahead to keep ready.
const PARTITIONED: &[&str] = &["webhook_events", "job_executions", "http_request_logs"];
const MONTHS_AHEAD: i32 = 3;
const EVERY: Duration = Duration::from_secs(3600);

pub struct Housekeeping {
    pub db: PgPool,
}

impl Housekeeping {
    async fn ensure_partitions(&self) {
        for table in PARTITIONED {
            let created: Result<i32, _> =
                sqlx::query_scalar("SELECT kai_ensure_monthly_partitions($1, $2)")
                    .bind(table)
                    .bind(MONTHS_AHEAD)
                    .fetch_one(&self.db)
                    .await;
            match created {
                Ok(0) => {}
                Ok(n) => tracing::info!(table, created = n, "created monthly partitions"),
                Err(e) => tracing::warn!(table, error = %e, "could not prepare partitions"),
            }
        }
    }
}

impl LeaderWork for Housekeeping {
    async fn run(&self, stop: CancellationToken) {
        loop {
            self.ensure_partitions().await;
            tokio::select! {
                _ = tokio::time::sleep(EVERY) => {}
                _ = stop.cancelled() => return,
            }
        }
    }
}
