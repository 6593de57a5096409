//! What the leader does besides timers: fold webhook counter deltas every second and keep the
//! monthly log partitions prepared ahead.

use std::time::Duration;

use sqlx::PgPool;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::leader::LeaderWork;

/// Tables partitioned by month, and how many months ahead to keep ready.
const PARTITIONED: &[&str] = &["webhook_events", "job_executions", "http_request_logs"];
const MONTHS_AHEAD: i32 = 3;
const PARTITIONS_EVERY: Duration = Duration::from_secs(3600);
const FOLD_EVERY: Duration = Duration::from_secs(1);

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

    /// Moves pending webhook trigger deltas into the endpoints' counters.
    async fn fold_trigger_counts(&self) {
        let folded: Result<i64, _> = sqlx::query_scalar("SELECT kai_fold_webhook_trigger_deltas()")
            .fetch_one(&self.db)
            .await;
        match folded {
            Ok(n) => {
                metrics::counter!("kai_scheduler_trigger_deltas_folded_total").increment(n as u64)
            }
            Err(e) => tracing::warn!(error = %e, "could not fold webhook trigger counts"),
        }
    }
}

impl LeaderWork for Housekeeping {
    async fn run(&self, stop: CancellationToken) {
        let mut partitions_due = Instant::now();
        loop {
            if Instant::now() >= partitions_due {
                self.ensure_partitions().await;
                partitions_due = Instant::now() + PARTITIONS_EVERY;
            }
            self.fold_trigger_counts().await;
            tokio::select! {
                _ = tokio::time::sleep(FOLD_EVERY) => {}
                _ = stop.cancelled() => return,
            }
        }
    }
}
