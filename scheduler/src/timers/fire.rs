//! Firing one job's due ticks, exactly once each.
//!
//! In one transaction holding the job's row: check that `next_run_at` is still the value the
//! leader expects, decide which ticks run (misfire policy, `max_executions`, `overlap_policy`),
//! record each in `job_executions` (unique per tick), publish each to JetStream with the
//! message id `timer:{job_id}:{tick}` and a run id derived from the tick, then advance
//! `next_run_at` with a compare-and-set and commit. Publishing comes before the commit, so a
//! crash in between leaves the tick due: the next leader publishes it again, and JetStream's
//! duplicate window (and the worker's lookup of the derived run id) drop the repeat. Two
//! leaders for a moment both take the row lock; the second finds `next_run_at` moved on.

use std::time::Duration;

use chrono::{DateTime, Utc};
use kai_common::jobs::{JobMessage, TimerEvent, TimerJobV1, timer_execution_id};
use kai_common::nats::{self, Names};
use kai_common::schedule::timer::{OverlapPolicy, TimerConfig};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::plan::{self, Plan};

/// Longest JetStream may take to store one tick before the attempt is abandoned and retried.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// What became of an attempt to fire a job; in each case the job's next `next_run_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fired {
    /// Handled (fired, skipped or found changed); the job's tick is now this.
    Next(Option<DateTime<Utc>>),
    /// Could not be handled now (database or JetStream failed); try again shortly.
    Retry(String),
}

#[derive(sqlx::FromRow)]
struct JobRow {
    workflow_id: Uuid,
    node_id: String,
    timer_config: Value,
    anchor_at: DateTime<Utc>,
    next_run_at: Option<DateTime<Utc>>,
    current_executions: i32,
    is_enabled: bool,
    user_id: Uuid,
    current_version: i32,
    is_active: bool,
}

pub struct Firer {
    pub db: PgPool,
    pub js: async_nats::jetstream::Context,
    pub names: Names,
}

impl Firer {
    /// Fires the ticks of `job_id` that are due at `now`, expecting its `next_run_at` to be
    /// `expected`.
    pub async fn fire(&self, job_id: Uuid, expected: DateTime<Utc>, now: DateTime<Utc>) -> Fired {
        match self.try_fire(job_id, expected, now).await {
            Ok(fired) => fired,
            Err(e) => Fired::Retry(e.to_string()),
        }
    }

    async fn try_fire(
        &self,
        job_id: Uuid,
        expected: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Fired> {
        let mut tx = self.db.begin().await?;
        let row: Option<JobRow> = sqlx::query_as(
            "SELECT j.workflow_id, j.node_id, j.timer_config, j.anchor_at, j.next_run_at, \
                j.current_executions, j.is_enabled, w.user_id, w.current_version, w.is_active \
             FROM scheduled_jobs j JOIN workflows w ON w.id = j.workflow_id \
             WHERE j.id = $1 FOR UPDATE OF j",
        )
        .bind(job_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(job) = row else {
            return Ok(Fired::Next(None)); // deleted
        };
        if !job.is_enabled {
            return Ok(Fired::Next(None));
        }
        if job.next_run_at != Some(expected) {
            // Changed since the leader read it, or fired by another leader.
            return Ok(Fired::Next(job.next_run_at));
        }
        let config = match TimerConfig::from_json(&job.timer_config) {
            Ok(config) => config,
            Err(e) => {
                tracing::error!(%job_id, error = %e, "scheduled job has an invalid configuration");
                return Ok(Fired::Next(None));
            }
        };
        let remaining = (config.max_executions > 0)
            .then(|| (config.max_executions - job.current_executions).max(0) as u32);
        let Plan { fire, next } = plan::plan(
            &config.schedule(job.anchor_at),
            expected,
            now,
            config.misfire_policy,
            remaining,
        );

        let mut fired = 0;
        if !job.is_active {
            // An inactive workflow's ticks pass without running.
        } else if config.overlap_policy == OverlapPolicy::Skip
            && previous_run_unfinished(&mut tx, job_id).await?
        {
            record_skipped(&mut tx, job_id, &fire).await?;
            metrics::counter!("kai_scheduler_ticks_skipped_total").increment(fire.len() as u64);
        } else {
            for tick in &fire {
                if self.emit(&mut tx, job_id, &job, &config, *tick).await? {
                    fired += 1;
                    let lateness = (Utc::now() - *tick).to_std().unwrap_or_default();
                    metrics::histogram!("kai_scheduler_tick_lateness_seconds")
                        .record(lateness.as_secs_f64());
                }
            }
        }
        let advanced = sqlx::query(
            "UPDATE scheduled_jobs SET next_run_at = $3, \
                last_run_at = COALESCE($4, last_run_at), \
                current_executions = current_executions + $5 \
             WHERE id = $1 AND next_run_at = $2",
        )
        .bind(job_id)
        .bind(expected)
        .bind(next)
        .bind(fire.last().filter(|_| fired > 0))
        .bind(fired)
        .execute(&mut *tx)
        .await?;
        if advanced.rows_affected() == 0 {
            // Cannot happen while the row is locked; kept as the documented guard.
            return Ok(Fired::Next(None));
        }
        tx.commit().await?;
        metrics::counter!("kai_scheduler_ticks_emitted_total").increment(fired as u64);
        Ok(Fired::Next(next))
    }

    /// Records and publishes one tick; `false` when it was already recorded.
    async fn emit(
        &self,
        tx: &mut PgConnection,
        job_id: Uuid,
        job: &JobRow,
        config: &TimerConfig,
        tick: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        let execution_id = timer_execution_id(job_id, tick);
        let recorded = sqlx::query(
            "INSERT INTO job_executions (job_id, execution_id, scheduled_for, source, started_at) \
             VALUES ($1, $2, $3, 'timer', clock_timestamp()) \
             ON CONFLICT (job_id, scheduled_for) DO NOTHING",
        )
        .bind(job_id)
        .bind(execution_id)
        .bind(tick)
        .execute(&mut *tx)
        .await?;
        if recorded.rows_affected() == 0 {
            return Ok(false);
        }
        let message = JobMessage::TimerV1(TimerJobV1 {
            execution_id,
            workflow_id: job.workflow_id,
            workflow_version: job.current_version,
            user_id: job.user_id,
            enqueued_at: Utc::now(),
            event: TimerEvent {
                job_id,
                node_id: job.node_id.clone(),
                scheduled_for: tick,
                source: "timer".into(),
                trigger_data: config.trigger_data.clone(),
            },
        });
        tokio::time::timeout(
            PUBLISH_TIMEOUT,
            nats::publish_job(&self.js, &self.names, &message),
        )
        .await
        .map_err(|_| anyhow::anyhow!("JetStream did not store the tick in time"))??;
        Ok(true)
    }
}

/// Whether the latest run this job started is still queued or running.
async fn previous_run_unfinished(tx: &mut PgConnection, job_id: Uuid) -> sqlx::Result<bool> {
    let latest: Option<(Option<String>,)> = sqlx::query_as(
        "SELECT e.status FROM job_executions je \
         LEFT JOIN workflow_executions e ON e.id = je.execution_id \
         WHERE je.job_id = $1 AND je.status = 'queued' \
         ORDER BY je.scheduled_for DESC LIMIT 1",
    )
    .bind(job_id)
    .fetch_optional(tx)
    .await?;
    Ok(match latest {
        None => false,
        Some((None,)) => true, // still waiting in the queue
        Some((Some(status),)) => status == "running",
    })
}

async fn record_skipped(
    tx: &mut PgConnection,
    job_id: Uuid,
    ticks: &[DateTime<Utc>],
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO job_executions (job_id, scheduled_for, status) \
         SELECT $1, t, 'skipped' FROM UNNEST($2::timestamptz[]) AS t \
         ON CONFLICT (job_id, scheduled_for) DO NOTHING",
    )
    .bind(job_id)
    .bind(ticks)
    .execute(tx)
    .await?;
    Ok(())
}
