//! Writes an execution, its node executions, its webhook event and its webhook counter delta in one
//! transaction, keyed by the execution id from the job message: a redelivered message finds its
//! execution already there and writes nothing.

use chrono::{DateTime, Utc};
use kai_common::jobs::{ExecutionReply, ExecutionStatus, WebhookJobV1};
use serde_json::Value;
use sqlx::PgPool;
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

/// Whether this call wrote the execution or found it written by an earlier delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    New,
    AlreadyRecorded,
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

/// Records a webhook-triggered run.
pub async fn record_webhook_run(
    db: &PgPool,
    job: &WebhookJobV1,
    record: &RunRecord,
    attempt: i32,
) -> Result<Written, PersistError> {
    let mut tx = db.begin().await?;
    let duration_ms = millis_between(record.started_at, record.completed_at);
    let inserted = sqlx::query(
        "INSERT INTO workflow_executions (id, workflow_id, workflow_version, user_id, trigger_type, \
            trigger_id, status, inputs, outputs, error, error_type, enqueued_at, started_at, \
            completed_at, duration_ms, attempt) \
         VALUES ($1, $2, $3, $4, 'webhook', $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(job.execution_id)
    .bind(job.workflow_id)
    .bind(job.workflow_version)
    .bind(job.user_id)
    .bind(&job.event.webhook_id)
    .bind(record.status.as_str())
    .bind(serde_json::to_value(&job.event).unwrap_or(Value::Null))
    .bind(&record.result)
    .bind(&record.error)
    .bind(record.error_type)
    .bind(job.enqueued_at)
    .bind(record.started_at)
    .bind(record.completed_at)
    .bind(duration_ms)
    .bind(attempt)
    .execute(&mut *tx)
    .await
    .map_err(classify)?;
    if inserted.rows_affected() == 0 {
        return Ok(Written::AlreadyRecorded);
    }

    if !record.nodes.is_empty() {
        insert_node_runs(&mut tx, job.execution_id, record).await?;
    }

    let event = &job.event;
    sqlx::query(
        "INSERT INTO webhook_events (webhook_id, execution_id, event_type, payload, correlation_id, \
            source_ip, user_agent, request_method, request_headers, request_ip, response_status, \
            execution_time_ms, error_message, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6::inet, $7, $8, $9, $6::inet, $10, $11, $12, $13)",
    )
    .bind(&event.webhook_id)
    .bind(job.execution_id)
    .bind(&event.event_type)
    .bind(&event.data)
    .bind(event.correlation_id)
    .bind(event.client_ip.as_deref())
    .bind(event.user_agent.as_deref())
    .bind(&event.http_method)
    .bind(Value::Object(event.headers.clone()))
    .bind(if job.reply_to.is_some() { 200 } else { 202 })
    .bind(duration_ms)
    .bind(&record.error)
    .bind(event.received_at)
    .execute(&mut *tx)
    .await?;

    // A delta row, not an UPDATE of the endpoint: concurrent executions of one webhook must not
    // queue on one row's lock (see the migration that adds webhook_trigger_deltas).
    sqlx::query(
        "INSERT INTO webhook_trigger_deltas (webhook_id, triggered_at, failed) VALUES ($1, $2, $3)",
    )
    .bind(&event.webhook_id)
    .bind(event.received_at)
    .bind(record.status == ExecutionStatus::Failed)
    .execute(&mut *tx)
    .await?;

    tx.commit().await?;
    Ok(Written::New)
}

async fn insert_node_runs(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    execution_id: Uuid,
    record: &RunRecord,
) -> Result<(), PersistError> {
    let n = record.nodes.len();
    let (mut ids, mut types, mut statuses) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut inputs, mut outputs, mut errors) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut starts, mut ends, mut durations) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for node in &record.nodes {
        ids.push(node.node_id.as_str());
        types.push(node.node_type);
        statuses.push(node.status);
        inputs.push(node.inputs.clone());
        outputs.push(node.outputs.clone());
        errors.push(node.error.clone());
        starts.push(node.started_at);
        ends.push(node.completed_at);
        durations.push(millis_between(node.started_at, node.completed_at));
    }
    // One statement for every node, however many there are.
    sqlx::query(
        "INSERT INTO node_executions (execution_id, node_id, node_type, status, inputs, outputs, \
            error, started_at, completed_at, duration_ms) \
         SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::text[], $5::jsonb[], $6::jsonb[], \
            $7::text[], $8::timestamptz[], $9::timestamptz[], $10::int4[]) \
         ON CONFLICT DO NOTHING",
    )
    .bind(execution_id)
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

fn classify(err: sqlx::Error) -> PersistError {
    match &err {
        sqlx::Error::Database(e) if e.code().as_deref() == Some(FOREIGN_KEY_VIOLATION) => {
            PersistError::OwnerGone
        }
        _ => PersistError::Database(err),
    }
}

fn millis_between(start: DateTime<Utc>, end: DateTime<Utc>) -> i32 {
    (end - start)
        .num_milliseconds()
        .clamp(0, i64::from(i32::MAX)) as i32
}
