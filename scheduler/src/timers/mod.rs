//! Timer emission, the leader's main duty: keep every enabled job's next tick in memory, learn
//! of changes at once through PostgreSQL notifications (`kai_scheduled_jobs`, sent by a trigger
//! on `scheduled_jobs`), sleep until the earliest tick and fire what is due.
//!
//! A full read of the table happens when leadership starts, when the notification connection
//! was lost (notifications may have been missed) and every `RESYNC_EVERY` as a safety net.

pub mod due;
pub mod fire;
pub mod plan;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use self::due::{DueQueue, Entry};
use self::fire::{Fired, Firer};

const CHANNEL: &str = "kai_scheduled_jobs";
const RESYNC_EVERY: Duration = Duration::from_secs(60);
/// Jobs fired in one transaction (their round trips shared), and such transactions at once
/// (each holds a database connection while it publishes).
const FIRE_BATCH: usize = 256;
const FIRE_CONCURRENCY: usize = 4;
/// Wait before retrying a job whose firing failed.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Longest sleep without a look at the clock (guards against clock jumps).
const MAX_SLEEP: Duration = Duration::from_secs(1);

pub struct Timers {
    pub db: PgPool,
    pub firer: Arc<Firer>,
}

impl Timers {
    /// Runs until `stop`, reconnecting after failures.
    pub async fn run(&self, stop: CancellationToken) {
        while !stop.is_cancelled() {
            if let Err(e) = self.serve(&stop).await {
                tracing::warn!(error = %e, "timer loop failed; restarting");
                tokio::select! {
                    _ = tokio::time::sleep(RETRY_AFTER) => {}
                    _ = stop.cancelled() => {}
                }
            }
        }
        metrics::gauge!("kai_scheduler_schedules_loaded").set(0.0);
    }

    async fn serve(&self, stop: &CancellationToken) -> anyhow::Result<()> {
        // Listening starts before the full read, so no change falls between the two.
        let mut listener = PgListener::connect_with(&self.db).await?;
        listener.listen(CHANNEL).await?;
        let mut queue = DueQueue::default();
        self.resync(&mut queue).await?;
        let mut resync = tokio::time::interval(RESYNC_EVERY);
        resync.reset();
        loop {
            let sleep = match queue.next_wake() {
                Some(at) => (at - Utc::now())
                    .to_std()
                    .unwrap_or_default()
                    .min(MAX_SLEEP),
                None => MAX_SLEEP,
            };
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                notification = listener.try_recv() => match notification? {
                    Some(n) => match n.payload().parse::<Uuid>() {
                        Ok(job_id) => self.reload(&mut queue, job_id).await?,
                        Err(_) => tracing::warn!(payload = n.payload(), "odd notification"),
                    },
                    // The connection dropped and was re-established: changes may be missed.
                    None => self.resync(&mut queue).await?,
                },
                _ = tokio::time::sleep(sleep) => self.fire_due(&mut queue).await,
                _ = resync.tick() => self.resync(&mut queue).await?,
            }
        }
    }

    /// Reads every enabled job's next tick.
    async fn resync(&self, queue: &mut DueQueue) -> sqlx::Result<()> {
        let rows: Vec<(Uuid, DateTime<Utc>)> = sqlx::query_as(
            "SELECT id, next_run_at FROM scheduled_jobs \
             WHERE is_enabled AND next_run_at IS NOT NULL",
        )
        .fetch_all(&self.db)
        .await?;
        *queue = DueQueue::default();
        for (id, next_run_at) in rows {
            queue.set(id, Some(entry(next_run_at)));
        }
        metrics::gauge!("kai_scheduler_schedules_loaded").set(queue.len() as f64);
        Ok(())
    }

    /// Brings one job's entry in line with its row (created, changed or deleted).
    async fn reload(&self, queue: &mut DueQueue, job_id: Uuid) -> sqlx::Result<()> {
        let row: Option<(Option<DateTime<Utc>>,)> =
            sqlx::query_as("SELECT next_run_at FROM scheduled_jobs WHERE id = $1 AND is_enabled")
                .bind(job_id)
                .fetch_optional(&self.db)
                .await?;
        queue.set(job_id, row.and_then(|(next,)| next).map(entry));
        metrics::gauge!("kai_scheduler_schedules_loaded").set(queue.len() as f64);
        Ok(())
    }

    async fn fire_due(&self, queue: &mut DueQueue) {
        let now = Utc::now();
        let due = queue.take_due(now);
        if due.is_empty() {
            return;
        }
        let entries: HashMap<Uuid, Entry> = due.iter().copied().collect();
        let batches: Vec<Vec<(Uuid, DateTime<Utc>)>> = due
            .chunks(FIRE_BATCH)
            .map(|batch| batch.iter().map(|(id, e)| (*id, e.next_run_at)).collect())
            .collect();
        let results: Vec<HashMap<Uuid, Fired>> = futures::stream::iter(batches)
            .map(|batch| {
                let firer = self.firer.clone();
                async move { firer.fire(&batch, Utc::now()).await }
            })
            .buffer_unordered(FIRE_CONCURRENCY)
            .collect()
            .await;
        let retry_at = Utc::now() + chrono::Duration::from_std(RETRY_AFTER).expect("a second");
        let mut failure: Option<(usize, String)> = None;
        for (id, fired) in results.into_iter().flatten() {
            match fired {
                Fired::Next(next) => queue.set(id, next.map(self::entry)),
                Fired::Retry(reason) => {
                    let (count, _) = failure.get_or_insert((0, reason));
                    *count += 1;
                    queue.set(
                        id,
                        Some(Entry {
                            wake_at: retry_at,
                            next_run_at: entries[&id].next_run_at,
                        }),
                    );
                }
            }
        }
        if let Some((jobs, reason)) = failure {
            tracing::warn!(jobs, %reason, "could not fire due ticks; retrying in a second");
            metrics::counter!("kai_scheduler_fire_failures_total").increment(jobs as u64);
        }
        metrics::gauge!("kai_scheduler_schedules_loaded").set(queue.len() as f64);
    }
}

fn entry(next_run_at: DateTime<Utc>) -> Entry {
    Entry {
        wake_at: next_run_at,
        next_run_at,
    }
}
