//! Firing due jobs' ticks, exactly once each, a batch of jobs per transaction.
//!
//! In one transaction holding the jobs' rows: check that each job's `next_run_at` is still the
//! value the leader expects, decide which ticks run (misfire policy, `max_executions`,
//! `overlap_policy`), record each in `job_executions` (unique per tick), publish each to
//! JetStream with the message id `timer:{job_id}:{tick}` and a run id derived from the tick,
//! then advance every `next_run_at` with a compare-and-set and commit. Publishing comes before
//! the commit, so a crash in between leaves the ticks due: the next leader publishes them again,
//! and JetStream's duplicate window (and the worker's lookup of the derived run id) drop the
//! repeats. Two leaders for a moment both lock the rows (in id order, so they cannot deadlock);
//! the second finds `next_run_at` moved on.
//!
//! Batching matters when many jobs share a tick (every job "at :00"): the round trips of one
//! transaction are shared by the whole batch instead of paid per job.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use kai_common::jobs::{JobMessage, TimerEvent, TimerJobV1, timer_execution_id};
use kai_common::nats::{self, Names};
use kai_common::schedule::timer::{OverlapPolicy, TimerConfig};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::plan::{self, Plan};

/// Longest JetStream may take to store a batch's ticks before the batch is retried.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// What became of an attempt to fire a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fired {
    /// Handled (fired, skipped or found changed); the job's tick is now this.
    Next(Option<DateTime<Utc>>),
    /// Could not be handled now (database or JetStream failed); try again shortly.
    Retry(String),
}

#[derive(sqlx::FromRow)]
struct JobRow {
    id: Uuid,
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

/// A job whose ticks this batch handles.
struct Planned {
    row: JobRow,
    expected: DateTime<Utc>,
    trigger_data: Value,
    plan: Plan,
    /// Ticks to run (`plan.fire` unless the workflow is inactive or the previous run is going).
    run: Vec<DateTime<Utc>>,
    skipped: Vec<DateTime<Utc>>,
}

pub struct Firer {
    pub db: PgPool,
    pub js: async_nats::jetstream::Context,
    pub names: Names,
}

impl Firer {
    /// Fires the ticks due at `now` of each `(job, expected next_run_at)`.
    pub async fn fire(
        &self,
        due: &[(Uuid, DateTime<Utc>)],
        now: DateTime<Utc>,
    ) -> HashMap<Uuid, Fired> {
        match self.try_fire(due, now).await {
            Ok(fired) => fired,
            Err(e) => {
                let reason = format!("{e:#}");
                due.iter()
                    .map(|(id, _)| (*id, Fired::Retry(reason.clone())))
                    .collect()
            }
        }
    }

    async fn try_fire(
        &self,
        due: &[(Uuid, DateTime<Utc>)],
        now: DateTime<Utc>,
    ) -> anyhow::Result<HashMap<Uuid, Fired>> {
        let expected: HashMap<Uuid, DateTime<Utc>> = due.iter().copied().collect();
        let ids: Vec<Uuid> = expected.keys().copied().collect();
        let mut tx = self.db.begin().await?;
        let rows: Vec<JobRow> = sqlx::query_as(
            "SELECT j.id, j.workflow_id, j.node_id, j.timer_config, j.anchor_at, j.next_run_at, \
                j.current_executions, j.is_enabled, w.user_id, w.current_version, w.is_active \
             FROM scheduled_jobs j JOIN workflows w ON w.id = j.workflow_id \
             WHERE j.id = ANY($1) ORDER BY j.id FOR UPDATE OF j",
        )
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;

        // Deleted jobs have no row: forgotten.
        let mut outcome: HashMap<Uuid, Fired> =
            ids.iter().map(|id| (*id, Fired::Next(None))).collect();
        let mut planned = Vec::with_capacity(rows.len());
        for row in rows {
            let expected = expected[&row.id];
            if !row.is_enabled {
                continue;
            }
            if row.next_run_at != Some(expected) {
                // Changed since the leader read it, or fired by another leader.
                outcome.insert(row.id, Fired::Next(row.next_run_at));
                continue;
            }
            let config = match TimerConfig::from_json(&row.timer_config) {
                Ok(config) => config,
                Err(e) => {
                    tracing::error!(job_id = %row.id, error = %e, "scheduled job has an invalid configuration");
                    continue;
                }
            };
            let remaining = (config.max_executions > 0)
                .then(|| (config.max_executions - row.current_executions).max(0) as u32);
            let plan = plan::plan(
                &config.schedule(row.anchor_at),
                expected,
                now,
                config.misfire_policy,
                remaining,
            );
            let skip_if_running = config.overlap_policy == OverlapPolicy::Skip;
            planned.push((
                skip_if_running,
                Planned {
                    run: if row.is_active {
                        plan.fire.clone()
                    } else {
                        // An inactive workflow's ticks pass without running.
                        Vec::new()
                    },
                    skipped: Vec::new(),
                    row,
                    expected,
                    trigger_data: config.trigger_data,
                    plan,
                },
            ));
        }

        let watched: Vec<Uuid> = planned
            .iter()
            .filter(|(skip, job)| *skip && !job.run.is_empty())
            .map(|(_, job)| job.row.id)
            .collect();
        let running = unfinished_runs(&mut tx, &watched).await?;
        let mut planned: Vec<Planned> = planned
            .into_iter()
            .map(|(_, mut job)| {
                if running.contains(&job.row.id) {
                    job.skipped = std::mem::take(&mut job.run);
                }
                job
            })
            .collect();

        record_skipped(&mut tx, &planned).await?;
        let recorded = record_ticks(&mut tx, &planned).await?;
        self.publish(&planned, &recorded).await?;

        let mut fired_per_job: HashMap<Uuid, i32> = HashMap::new();
        for (job_id, _) in &recorded {
            *fired_per_job.entry(*job_id).or_default() += 1;
        }
        advance(&mut tx, &mut planned, &fired_per_job).await?;
        tx.commit().await?;

        let emitted_at = Utc::now();
        for (_, tick) in &recorded {
            let lateness = (emitted_at - *tick).to_std().unwrap_or_default();
            metrics::histogram!("kai_scheduler_tick_lateness_seconds")
                .record(lateness.as_secs_f64());
        }
        let skipped: usize = planned.iter().map(|job| job.skipped.len()).sum();
        metrics::counter!("kai_scheduler_ticks_emitted_total").increment(recorded.len() as u64);
        metrics::counter!("kai_scheduler_ticks_skipped_total").increment(skipped as u64);
        for job in planned {
            outcome.insert(job.row.id, Fired::Next(job.plan.next));
        }
        Ok(outcome)
    }

    /// Publishes the recorded ticks, all in flight at once, and waits until JetStream stored
    /// every one.
    async fn publish(
        &self,
        planned: &[Planned],
        recorded: &[(Uuid, DateTime<Utc>)],
    ) -> anyhow::Result<()> {
        let jobs: HashMap<Uuid, &Planned> = planned.iter().map(|j| (j.row.id, j)).collect();
        let enqueued_at = Utc::now();
        let messages: Vec<JobMessage> = recorded
            .iter()
            .map(|(job_id, tick)| {
                let job = jobs[job_id];
                JobMessage::TimerV1(TimerJobV1 {
                    execution_id: timer_execution_id(*job_id, *tick),
                    workflow_id: job.row.workflow_id,
                    workflow_version: job.row.current_version,
                    user_id: job.row.user_id,
                    enqueued_at,
                    event: TimerEvent {
                        job_id: *job_id,
                        node_id: job.row.node_id.clone(),
                        scheduled_for: *tick,
                        source: "timer".into(),
                        trigger_data: job.trigger_data.clone(),
                    },
                })
            })
            .collect();
        let stored = futures::future::join_all(
            messages
                .iter()
                .map(|message| nats::publish_job(&self.js, &self.names, message)),
        );
        for result in tokio::time::timeout(PUBLISH_TIMEOUT, stored)
            .await
            .map_err(|_| anyhow::anyhow!("JetStream did not store the ticks in time"))?
        {
            result?;
        }
        Ok(())
    }
}

/// Of `job_ids`, those whose latest run is still queued or running.
async fn unfinished_runs(tx: &mut PgConnection, job_ids: &[Uuid]) -> sqlx::Result<HashSet<Uuid>> {
    if job_ids.is_empty() {
        return Ok(HashSet::new());
    }
    let latest: Vec<(Uuid, Option<String>)> = sqlx::query_as(
        "SELECT DISTINCT ON (je.job_id) je.job_id, e.status FROM job_executions je \
         LEFT JOIN workflow_executions e ON e.id = je.execution_id \
         WHERE je.job_id = ANY($1) AND je.status = 'queued' \
         ORDER BY je.job_id, je.scheduled_for DESC",
    )
    .bind(job_ids)
    .fetch_all(tx)
    .await?;
    Ok(latest
        .into_iter()
        // No execution yet: still waiting in the queue.
        .filter(|(_, status)| status.as_deref().is_none_or(|s| s == "running"))
        .map(|(id, _)| id)
        .collect())
}

async fn record_skipped(tx: &mut PgConnection, planned: &[Planned]) -> sqlx::Result<()> {
    let (jobs, ticks): (Vec<Uuid>, Vec<DateTime<Utc>>) = planned
        .iter()
        .flat_map(|job| job.skipped.iter().map(|tick| (job.row.id, *tick)))
        .unzip();
    if jobs.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO job_executions (job_id, scheduled_for, status) \
         SELECT * , 'skipped' FROM UNNEST($1::uuid[], $2::timestamptz[]) \
         ON CONFLICT (job_id, scheduled_for) DO NOTHING",
    )
    .bind(&jobs)
    .bind(&ticks)
    .execute(tx)
    .await?;
    Ok(())
}

/// Records the ticks to run and returns those not recorded before (only those are published).
async fn record_ticks(
    tx: &mut PgConnection,
    planned: &[Planned],
) -> sqlx::Result<Vec<(Uuid, DateTime<Utc>)>> {
    let mut jobs = Vec::new();
    let mut executions = Vec::new();
    let mut ticks = Vec::new();
    for job in planned {
        for tick in &job.run {
            jobs.push(job.row.id);
            executions.push(timer_execution_id(job.row.id, *tick));
            ticks.push(*tick);
        }
    }
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query_as(
        "INSERT INTO job_executions (job_id, execution_id, scheduled_for, source, started_at) \
         SELECT t.*, 'timer', clock_timestamp() \
         FROM UNNEST($1::uuid[], $2::uuid[], $3::timestamptz[]) AS t \
         ON CONFLICT (job_id, scheduled_for) DO NOTHING \
         RETURNING job_id, scheduled_for",
    )
    .bind(&jobs)
    .bind(&executions)
    .bind(&ticks)
    .fetch_all(tx)
    .await
}

/// Moves every planned job's `next_run_at` on, compare-and-set against the expected value.
async fn advance(
    tx: &mut PgConnection,
    planned: &mut [Planned],
    fired_per_job: &HashMap<Uuid, i32>,
) -> sqlx::Result<()> {
    if planned.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = planned.iter().map(|job| job.row.id).collect();
    let expected: Vec<DateTime<Utc>> = planned.iter().map(|job| job.expected).collect();
    let next: Vec<Option<DateTime<Utc>>> = planned.iter().map(|job| job.plan.next).collect();
    let fired: Vec<i32> = ids
        .iter()
        .map(|id| fired_per_job.get(id).copied().unwrap_or(0))
        .collect();
    let last: Vec<Option<DateTime<Utc>>> = planned
        .iter()
        .zip(&fired)
        .map(|(job, fired)| (*fired > 0).then(|| job.run.last().copied()).flatten())
        .collect();
    let advanced: Vec<(Uuid,)> = sqlx::query_as(
        "UPDATE scheduled_jobs j SET next_run_at = u.next, \
            last_run_at = COALESCE(u.last, j.last_run_at), \
            current_executions = j.current_executions + u.fired \
         FROM UNNEST($1::uuid[], $2::timestamptz[], $3::timestamptz[], $4::timestamptz[], \
            $5::int[]) AS u(id, expected, next, last, fired) \
         WHERE j.id = u.id AND j.next_run_at = u.expected \
         RETURNING j.id",
    )
    .bind(&ids)
    .bind(&expected)
    .bind(&next)
    .bind(&last)
    .bind(&fired)
    .fetch_all(tx)
    .await?;
    if advanced.len() != ids.len() {
        // Cannot happen while the rows are locked; kept as the documented guard.
        tracing::error!(
            expected = ids.len(),
            advanced = advanced.len(),
            "compare-and-set of next_run_at failed for some jobs"
        );
    }
    Ok(())
}
