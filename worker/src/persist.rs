//! Writes finished webhook runs: for each, the execution, its node executions, its webhook event
//! and its webhook counter delta, keyed by the execution id from the job message, so a
//! redelivered message finds its execution already there and writes nothing. Many runs are
//! written in one transaction with one statement per table (see `writer`).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use kai_common::jobs::{ExecutionReply, ExecutionStatus, WebhookJobV1};
use serde_json::Value;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::engine::RunRecord;

/// SQLSTATE of a foreign-key violation: the workflow or its owner was deleted meanwhile.
const FOREIGN_KEY_VIOLATION: &str = "23503";

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("the workflow or its owner no longer exists")]
    OwnerGone,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

impl PersistError {
    fn classify(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Database(e) if e.code().as_deref() == Some(FOREIGN_KEY_VIOLATION) => {
                PersistError::OwnerGone
            }
            _ => PersistError::Database(err),
        }
    }
}

/// Whether a run was written now or found written by an earlier delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    New,
    AlreadyRecorded,
}

/// A finished run waiting to be written.
#[derive(Debug)]
pub struct FinishedRun {
    pub job: WebhookJobV1,
    pub record: RunRecord,
    pub attempt: i32,
}

/// The execution recorded for `execution_id`, if any, as a reply to a waiting caller.
pub async fn recorded_reply(
    db: &PgPool,
    execution_id: Uuid,
) -> Result<Option<ExecutionReply>, sqlx::Error> {
    let row: Option<(String, Option<Value>, Option<String>)> =
        sqlx::query_as("SELECT status, outputs, error FROM workflow_executions WHERE id = $1")
            .bind(execution_id)
            .fetch_optional(db)
            .await?;
    Ok(row.and_then(|(status, outputs, error)| {
        let status = ExecutionStatus::parse(&status)?;
        (status != ExecutionStatus::Running).then(|| ExecutionReply {
            execution_id,
            status,
            result: outputs.unwrap_or(Value::Null),
            error,
        })
    }))
}

/// Writes `runs` in one transaction. Returns, in order, whether each was new or already there.
/// Fails as a whole; a foreign-key failure (one run's workflow was deleted) is reported as
/// `OwnerGone` so the caller can retry the runs one by one.
pub async fn write_runs(db: &PgPool, runs: &[FinishedRun]) -> Result<Vec<Written>, PersistError> {
    let mut tx = db.begin().await?;
    let inserted = insert_executions(&mut tx, runs)
        .await
        .map_err(PersistError::classify)?;
    let new: Vec<&FinishedRun> = runs
        .iter()
        .filter(|run| inserted.contains(&run.job.execution_id))
        .collect();
    if !new.is_empty() {
        insert_node_runs(&mut tx, &new).await?;
        insert_webhook_events(&mut tx, &new).await?;
        insert_trigger_deltas(&mut tx, &new).await?;
    }
    tx.commit().await?;
    Ok(runs
        .iter()
        .map(|run| {
            if inserted.contains(&run.job.execution_id) {
                Written::New
            } else {
                Written::AlreadyRecorded
            }
        })
        .collect())
}

/// Inserts the executions not yet recorded; returns the ids it inserted.
async fn insert_executions(
    tx: &mut Transaction<'_, Postgres>,
    runs: &[FinishedRun],
) -> Result<HashSet<Uuid>, sqlx::Error> {
    let column = |f: &dyn Fn(&FinishedRun) -> Value| runs.iter().map(f).collect::<Vec<_>>();
    let ids: Vec<Uuid> = runs.iter().map(|r| r.job.execution_id).collect();
    let workflows: Vec<Uuid> = runs.iter().map(|r| r.job.workflow_id).collect();
    let versions: Vec<i32> = runs.iter().map(|r| r.job.workflow_version).collect();
    let users: Vec<Uuid> = runs.iter().map(|r| r.job.user_id).collect();
    let webhooks: Vec<&str> = runs
        .iter()
        .map(|r| r.job.event.webhook_id.as_str())
        .collect();
    let statuses: Vec<&str> = runs.iter().map(|r| r.record.status.as_str()).collect();
    let inputs = column(&|r| serde_json::to_value(&r.job.event).unwrap_or(Value::Null));
    let outputs = column(&|r| r.record.result.clone());
    let errors: Vec<Option<&str>> = runs.iter().map(|r| r.record.error.as_deref()).collect();
    let error_types: Vec<Option<&str>> = runs.iter().map(|r| r.record.error_type).collect();
    let enqueued: Vec<DateTime<Utc>> = runs.iter().map(|r| r.job.enqueued_at).collect();
    let started: Vec<DateTime<Utc>> = runs.iter().map(|r| r.record.started_at).collect();
    let completed: Vec<DateTime<Utc>> = runs.iter().map(|r| r.record.completed_at).collect();
    let durations: Vec<i32> = runs
        .iter()
        .map(|r| millis_between(r.record.started_at, r.record.completed_at))
        .collect();
    let attempts: Vec<i32> = runs.iter().map(|r| r.attempt).collect();
    let inserted: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO workflow_executions (id, workflow_id, workflow_version, user_id, trigger_type, \
            trigger_id, status, inputs, outputs, error, error_type, enqueued_at, started_at, \
            completed_at, duration_ms, attempt) \
         SELECT id, workflow_id, version, user_id, 'webhook', trigger_id, status, inputs, outputs, \
            error, error_type, enqueued_at, started_at, completed_at, duration_ms, attempt \
         FROM UNNEST($1::uuid[], $2::uuid[], $3::int4[], $4::uuid[], $5::text[], $6::text[], \
            $7::jsonb[], $8::jsonb[], $9::text[], $10::text[], $11::timestamptz[], \
            $12::timestamptz[], $13::timestamptz[], $14::int4[], $15::int4[]) \
            AS r(id, workflow_id, version, user_id, trigger_id, status, inputs, outputs, error, \
                 error_type, enqueued_at, started_at, completed_at, duration_ms, attempt) \
         ON CONFLICT (id) DO NOTHING \
         RETURNING id",
    )
    .bind(&ids)
    .bind(&workflows)
    .bind(&versions)
    .bind(&users)
    .bind(&webhooks)
    .bind(&statuses)
    .bind(&inputs)
    .bind(&outputs)
    .bind(&errors)
    .bind(&error_types)
    .bind(&enqueued)
    .bind(&started)
    .bind(&completed)
    .bind(&durations)
    .bind(&attempts)
    .fetch_all(&mut **tx)
    .await?;
    Ok(inserted.into_iter().collect())
}

async fn insert_node_runs(
    tx: &mut Transaction<'_, Postgres>,
    runs: &[&FinishedRun],
) -> Result<(), sqlx::Error> {
    let nodes = || {
        runs.iter()
            .flat_map(|r| r.record.nodes.iter().map(move |n| (r, n)))
    };
    let executions: Vec<Uuid> = nodes().map(|(r, _)| r.job.execution_id).collect();
    if executions.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = nodes().map(|(_, n)| n.node_id.as_str()).collect();
    let types: Vec<&str> = nodes().map(|(_, n)| n.node_type).collect();
    let statuses: Vec<&str> = nodes().map(|(_, n)| n.status).collect();
    let inputs: Vec<&Value> = nodes().map(|(_, n)| &n.inputs).collect();
    let outputs: Vec<&Value> = nodes().map(|(_, n)| &n.outputs).collect();
    let errors: Vec<Option<&str>> = nodes().map(|(_, n)| n.error.as_deref()).collect();
    let starts: Vec<DateTime<Utc>> = nodes().map(|(_, n)| n.started_at).collect();
    let ends: Vec<DateTime<Utc>> = nodes().map(|(_, n)| n.completed_at).collect();
    let durations: Vec<i32> = nodes()
        .map(|(_, n)| millis_between(n.started_at, n.completed_at))
        .collect();
    sqlx::query(
        "INSERT INTO node_executions (execution_id, node_id, node_type, status, inputs, outputs, \
            error, started_at, completed_at, duration_ms) \
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::jsonb[], \
            $6::jsonb[], $7::text[], $8::timestamptz[], $9::timestamptz[], $10::int4[]) \
         ON CONFLICT DO NOTHING",
    )
    .bind(&executions)
    .bind(&ids)
    .bind(&types)
    .bind(&statuses)
    .bind(&inputs)
    .bind(&outputs)
    .bind(&errors)
    .bind(&starts)
    .bind(&ends)
    .bind(&durations)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_webhook_events(
    tx: &mut Transaction<'_, Postgres>,
    runs: &[&FinishedRun],
) -> Result<(), sqlx::Error> {
    let events = || runs.iter().map(|r| (&r.job, &r.job.event, &r.record));
    let webhooks: Vec<&str> = events().map(|(_, e, _)| e.webhook_id.as_str()).collect();
    let executions: Vec<Uuid> = events().map(|(j, _, _)| j.execution_id).collect();
    let types: Vec<&str> = events().map(|(_, e, _)| e.event_type.as_str()).collect();
    let payloads: Vec<&Value> = events().map(|(_, e, _)| &e.data).collect();
    let correlations: Vec<Uuid> = events().map(|(_, e, _)| e.correlation_id).collect();
    let ips: Vec<Option<&str>> = events().map(|(_, e, _)| e.client_ip.as_deref()).collect();
    let agents: Vec<Option<&str>> = events().map(|(_, e, _)| e.user_agent.as_deref()).collect();
    let methods: Vec<&str> = events().map(|(_, e, _)| e.http_method.as_str()).collect();
    let headers: Vec<Value> = events()
        .map(|(_, e, _)| Value::Object(e.headers.clone()))
        .collect();
    // What the caller was told: 200 when it waited for the result, 202 when it did not.
    let statuses: Vec<i32> = events()
        .map(|(j, _, _)| if j.reply_to.is_some() { 200 } else { 202 })
        .collect();
    let durations: Vec<i32> = events()
        .map(|(_, _, r)| millis_between(r.started_at, r.completed_at))
        .collect();
    let errors: Vec<Option<&str>> = events().map(|(_, _, r)| r.error.as_deref()).collect();
    let received: Vec<DateTime<Utc>> = events().map(|(_, e, _)| e.received_at).collect();
    sqlx::query(
        "INSERT INTO webhook_events (webhook_id, execution_id, event_type, payload, correlation_id, \
            source_ip, user_agent, request_method, request_headers, request_ip, response_status, \
            execution_time_ms, error_message, created_at) \
         SELECT webhook_id, execution_id, event_type, payload, correlation_id, ip::inet, agent, \
            method, headers, ip::inet, status, duration, error, received \
         FROM UNNEST($1::text[], $2::uuid[], $3::text[], $4::jsonb[], $5::uuid[], $6::text[], \
            $7::text[], $8::text[], $9::jsonb[], $10::int4[], $11::int4[], $12::text[], \
            $13::timestamptz[]) \
            AS e(webhook_id, execution_id, event_type, payload, correlation_id, ip, agent, method, \
                 headers, status, duration, error, received)",
    )
    .bind(&webhooks)
    .bind(&executions)
    .bind(&types)
    .bind(&payloads)
    .bind(&correlations)
    .bind(&ips)
    .bind(&agents)
    .bind(&methods)
    .bind(&headers)
    .bind(&statuses)
    .bind(&durations)
    .bind(&errors)
    .bind(&received)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A delta row per run, not an UPDATE of the endpoint: concurrent executions of one webhook must
/// not queue on one row's lock (see the migration that adds `webhook_trigger_deltas`).
async fn insert_trigger_deltas(
    tx: &mut Transaction<'_, Postgres>,
    runs: &[&FinishedRun],
) -> Result<(), sqlx::Error> {
    let webhooks: Vec<&str> = runs
        .iter()
        .map(|r| r.job.event.webhook_id.as_str())
        .collect();
    let times: Vec<DateTime<Utc>> = runs.iter().map(|r| r.job.event.received_at).collect();
    let failed: Vec<bool> = runs
        .iter()
        .map(|r| r.record.status == ExecutionStatus::Failed)
        .collect();
    sqlx::query(
        "INSERT INTO webhook_trigger_deltas (webhook_id, triggered_at, failed) \
         SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::bool[])",
    )
    .bind(&webhooks)
    .bind(&times)
    .bind(&failed)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn millis_between(start: DateTime<Utc>, end: DateTime<Utc>) -> i32 {
    (end - start)
        .num_milliseconds()
        .clamp(0, i64::from(i32::MAX)) as i32
}
