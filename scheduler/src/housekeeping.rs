//! What the leader does besides timers (the seed's Celery cleanup task): fold webhook counter
//! deltas every second, keep monthly log partitions prepared ahead, drop whole months past the
//! log retention (the audit log past its own), prune finished executions past theirs, and
//! forget webhook idempotency keys after a day.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Logs partitioned by month and kept `log_retention_days`, with their partition key.
const PARTITIONED: &[(&str, &str)] = &[
    ("webhook_events", "created_at"),
    ("job_executions", "scheduled_for"),
    ("http_request_logs", "created_at"),
];
/// The audit log, partitioned by month and kept `audit_retention_days`.
const AUDIT_LOG: (&str, &str) = ("audit_log", "created_at");
const MONTHS_AHEAD: i32 = 3;
const UPKEEP_EVERY: Duration = Duration::from_secs(3600);
const FOLD_EVERY: Duration = Duration::from_secs(1);
/// How long a webhook's idempotency key is remembered (documented with `Idempotency-Key`).
const IDEMPOTENCY_KEY_TTL_HOURS: i64 = 24;
/// Executions deleted per statement, so pruning a large backlog never holds long locks.
const PRUNE_BATCH: i64 = 1000;

pub struct Housekeeping {
    pub db: PgPool,
    pub log_retention_days: u32,
    /// 0: executions are kept forever.
    pub execution_retention_days: u32,
    pub audit_retention_days: u32,
}

impl Housekeeping {
    pub async fn run(&self, stop: CancellationToken) {
        let mut upkeep_due = Instant::now();
        loop {
            if Instant::now() >= upkeep_due {
                self.upkeep(Utc::now()).await;
                upkeep_due = Instant::now() + UPKEEP_EVERY;
            }
            self.fold_trigger_counts().await;
            tokio::select! {
                _ = tokio::time::sleep(FOLD_EVERY) => {}
                _ = stop.cancelled() => return,
            }
        }
    }

    /// The hourly work, as of `now`: partitions ahead, retention, pruning.
    pub async fn upkeep(&self, now: DateTime<Utc>) {
        self.ensure_partitions().await;
        let log_cutoff = now - chrono::Duration::days(i64::from(self.log_retention_days));
        self.drop_expired_logs(PARTITIONED, log_cutoff).await;
        let audit_cutoff = now - chrono::Duration::days(i64::from(self.audit_retention_days));
        self.drop_expired_logs(&[AUDIT_LOG], audit_cutoff).await;
        if self.execution_retention_days > 0 {
            let cutoff = now - chrono::Duration::days(i64::from(self.execution_retention_days));
            self.prune_executions(cutoff).await;
        }
        self.forget_idempotency_keys(now - chrono::Duration::hours(IDEMPOTENCY_KEY_TTL_HOURS))
            .await;
    }

    async fn ensure_partitions(&self) {
        for (table, _) in PARTITIONED.iter().chain([&AUDIT_LOG]) {
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

    async fn drop_expired_logs(&self, tables: &[(&str, &str)], cutoff: DateTime<Utc>) {
        for (table, key) in tables {
            let dropped: Result<i32, _> =
                sqlx::query_scalar("SELECT kai_drop_expired_partitions($1, $2, $3)")
                    .bind(table)
                    .bind(key)
                    .bind(cutoff)
                    .fetch_one(&self.db)
                    .await;
            match dropped {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(table, dropped = n, %cutoff, "dropped expired partitions");
                    metrics::counter!("kai_scheduler_partitions_dropped_total").increment(n as u64);
                }
                Err(e) => tracing::warn!(table, error = %e, "could not drop expired partitions"),
            }
        }
    }

    async fn prune_executions(&self, cutoff: DateTime<Utc>) {
        let pruned = self
            .delete_in_batches(
                "DELETE FROM workflow_executions WHERE id IN (\
                    SELECT id FROM workflow_executions \
                    WHERE started_at < $1 AND status <> 'running' LIMIT $2)",
                cutoff,
                "old executions",
            )
            .await;
        if pruned > 0 {
            tracing::info!(pruned, %cutoff, "pruned finished executions");
            metrics::counter!("kai_scheduler_executions_pruned_total").increment(pruned);
        }
    }

    async fn forget_idempotency_keys(&self, cutoff: DateTime<Utc>) {
        let forgotten = self
            .delete_in_batches(
                "DELETE FROM webhook_idempotency_keys WHERE execution_id IN (\
                    SELECT execution_id FROM webhook_idempotency_keys \
                    WHERE created_at < $1 LIMIT $2)",
                cutoff,
                "old idempotency keys",
            )
            .await;
        if forgotten > 0 {
            tracing::info!(forgotten, %cutoff, "forgot webhook idempotency keys");
        }
    }

    /// Runs `delete` (binding `cutoff` as $1 and the batch size as $2) until a batch deletes
    /// fewer rows than it could, so a large backlog never holds long locks; answers how many
    /// rows went. A failure stops the round (the next hour's continues) and is logged.
    async fn delete_in_batches(
        &self,
        delete: &'static str,
        cutoff: DateTime<Utc>,
        what: &str,
    ) -> u64 {
        let mut deleted = 0u64;
        loop {
            let batch = sqlx::query(delete)
                .bind(cutoff)
                .bind(PRUNE_BATCH)
                .execute(&self.db)
                .await;
            match batch {
                Ok(done) => {
                    deleted += done.rows_affected();
                    if done.rows_affected() < PRUNE_BATCH as u64 {
                        return deleted;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not delete {what}");
                    return deleted;
                }
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
