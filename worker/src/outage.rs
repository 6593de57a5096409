//! Riding out a PostgreSQL outage: a job that fails because the database is unreachable is
//! held (its JetStream delivery kept alive with progress acks) until the database answers
//! again, instead of being handed back to be redelivered: redeliveries are counted, and an
//! outage longer than a few of them would otherwise send healthy jobs to the dead letters. While
//! the database is down the worker pulls nothing new.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// Longest a write of finished runs (or the durability barrier) may take before the database
/// counts as unreachable. Writes take milliseconds; a link that went silent without closing (a
/// partition: TCP keepalives through a still-acknowledging middlebox see nothing wrong) would
/// otherwise hang them until it heals. The failed write then finds the database down by its
/// probe, and the worker holds its jobs and pulls nothing new until a probe answers.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an unreachable database is probed.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// A probe slower than this counts as unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub struct DatabaseGate {
    db: PgPool,
    down: AtomicBool,
}

impl DatabaseGate {
    pub fn new(db: PgPool) -> Self {
        Self {
            db,
            down: AtomicBool::new(false),
        }
    }

    /// Whether the last probe found the database unreachable.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::SeqCst)
    }

    /// Whether the database answers now; remembered for `is_down`.
    pub async fn probe(&self) -> bool {
        let answered = tokio::time::timeout(
            PROBE_TIMEOUT,
            sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&self.db),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        let was_down = self.down.swap(!answered, Ordering::SeqCst);
        // Changed: it was down and answers now, or was up and does not.
        if was_down == answered {
            metrics::gauge!("kai_worker_database_down").set(if answered { 0.0 } else { 1.0 });
            if answered {
                tracing::info!("PostgreSQL answers again; resuming");
            } else {
                tracing::warn!("PostgreSQL is unreachable; holding jobs until it is back");
            }
        }
        answered
    }

    /// Waits until the database answers; `false` when `stop` came first.
    pub async fn wait_until_up(&self, stop: &CancellationToken) -> bool {
        loop {
            if self.probe().await {
                return true;
            }
            tokio::select! {
                _ = tokio::time::sleep(PROBE_EVERY) => {}
                _ = stop.cancelled() => return false,
            }
        }
    }
}
