//! Jobs stranded by an older release's consumer: one created with a JetStream delivery limit
//! stops delivering a job that reached it without an ack, and the work-queue stream keeps that
//! job for ever, seen by nobody. Such a consumer is brought up to date at start (no limit), and
//! if jobs are stranded behind it, it is made to deliver them again.

use std::time::Duration;

use async_nats::jetstream::{consumer::PullConsumer, stream};
use kai_common::nats::{self, ConsumerSettings, Names};
use sqlx::PgPool;

/// One worker at a time repairs (a transaction-scoped advisory lock with this key).
const REPAIR_LOCK: i64 = 0x6b61_695f_7374_7261; // "kai_stra"

/// Looks at the jobs stream behind a consumer that had a delivery limit and, when jobs are
/// stranded there, recreates the consumer so that they are delivered (and run or dead-lettered)
/// like any other. Returns the consumer to pull from: the new one after a repair.
pub async fn repair(
    db: &PgPool,
    jobs: &stream::Stream,
    names: &Names,
    settings: ConsumerSettings,
    consumer: PullConsumer,
) -> anyhow::Result<PullConsumer> {
    let mut tx = db.begin().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(REPAIR_LOCK)
        .fetch_one(&mut *tx)
        .await?;
    if !locked {
        // Another worker is repairing right now.
        return Ok(consumer);
    }
    // Jobs being acknowledged meanwhile inflate one reading, not all of them.
    let mut stranded = u64::MAX;
    for _ in 0..3 {
        let reading = nats::stranded_jobs(jobs, names)
            .await
            .map_err(|e| anyhow::anyhow!("could not read the jobs stream: {e}"))?;
        stranded = stranded.min(reading);
        if stranded == 0 {
            return Ok(consumer);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tracing::warn!(
        stranded,
        "jobs stranded by the delivery limit of an older release's consumer; recreating it so they run"
    );
    let consumer = nats::recreate_workers_consumer(jobs, names, settings).await?;
    metrics::counter!("kai_worker_stranded_jobs_recovered_total").increment(stranded);
    tx.commit().await?;
    Ok(consumer)
}
