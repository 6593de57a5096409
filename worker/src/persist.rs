//! Writes finished runs: for each, the execution, its node executions and, for a webhook run,
//! its webhook event and its webhook counter delta, keyed by the execution id from the job message, so a
//! redelivered message finds its execution already there and writes nothing. Many runs are
//! written by one statement (see `writer`).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use kai_common::jobs::{ExecutionReply, ExecutionStatus};
use kai_common::json::SharedValue;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::engine::RunRecord;
use crate::request::RunRequest;

/// Job bytes in a batch past which its connection gives back the buffer the statement needed.
const SHRINK_AFTER_BYTES: usize = 256 * 1024;

/// SQLSTATE of a foreign-key violation: the workflow or its owner was deleted meanwhile.
const FOREIGN_KEY_VIOLATION: &str = "23503";

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("the workflow or its owner no longer exists")]
    OwnerGone,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database: no answer within {} s", .0.as_secs())]
    Unanswered(std::time::Duration),
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
    pub job: RunRequest,
    pub record: RunRecord,
    pub attempt: i32,
}

/// The execution recorded for `execution_id`, if any, as a reply to a waiting caller.
pub async fn recorded_reply(
    db: &PgPool,
    execution_id: Uuid,
) -> Result<Option<ExecutionReply>, sqlx::Error> {
    let row: Option<(String, Option<Value>, Option<String>)> = sqlx::query_as(
        "SELECT status, CASE WHEN outputs_are_inputs THEN inputs ELSE outputs END, error \
             FROM workflow_executions WHERE id = $1",
    )
    .bind(execution_id)
    .fetch_optional(db)
    .await?;
    Ok(row.and_then(|(status, outputs, error)| {
        let status = ExecutionStatus::parse(&status)?;
        (status != ExecutionStatus::Running).then(|| ExecutionReply {
            execution_id,
            status,
            result: outputs.unwrap_or(Value::Null).into(),
            error,
            response: None,
        })
    }))
}

/// An execution still running, as its owner may see it meanwhile.
pub struct RunningExecution {
    id: Uuid,
    workflow_id: Uuid,
    workflow_version: i32,
    user_id: Uuid,
    trigger_type: &'static str,
    trigger_id: Option<String>,
    inputs: SharedValue,
    enqueued_at: DateTime<Utc>,
    started_at: DateTime<Utc>,
    attempt: i32,
}

impl RunningExecution {
    pub fn of(job: &RunRequest, attempt: i32) -> Self {
        Self {
            id: job.execution_id,
            workflow_id: job.workflow_id,
            workflow_version: job.workflow_version,
            user_id: job.user_id,
            trigger_type: job.trigger_type,
            trigger_id: job.trigger_id.clone(),
            inputs: job.trigger.clone(),
            enqueued_at: job.enqueued_at,
            started_at: Utc::now(),
            attempt,
        }
    }
}

/// Records a long run as `running`, unless its outcome is already recorded (the outcome's write
/// completes this row; see `WRITE_RUNS`).
pub async fn mark_running(db: &PgPool, run: &RunningExecution) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO workflow_executions (id, workflow_id, workflow_version, user_id, \
            trigger_type, trigger_id, status, inputs, enqueued_at, started_at, attempt) \
         VALUES ($1, $2, $3, $4, $5, $6, 'running', $7, $8, $9, $10) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(run.id)
    .bind(run.workflow_id)
    .bind(run.workflow_version)
    .bind(run.user_id)
    .bind(run.trigger_type)
    .bind(run.trigger_id.as_deref())
    .bind(&*run.inputs)
    .bind(run.enqueued_at)
    .bind(run.started_at)
    .bind(run.attempt)
    .execute(db)
    .await?;
    Ok(())
}

/// Writes `runs` in one statement (atomic by itself: one round trip, no explicit transaction).
/// Returns, in order, whether each was new or already there. Fails as a whole; a foreign-key
/// failure (one run's workflow was deleted) is reported as `OwnerGone` so the caller can retry
/// the runs one by one.
pub async fn write_runs(db: &PgPool, runs: &[FinishedRun]) -> Result<Vec<Written>, PersistError> {
    // Two deliveries of one job can land in the same batch: only the first is written (within
    // one statement, ON CONFLICT cannot tell them apart for the rows that follow).
    let mut seen = HashSet::with_capacity(runs.len());
    let first: Vec<bool> = runs
        .iter()
        .map(|r| seen.insert(r.job.execution_id))
        .collect();
    let unique: Vec<&FinishedRun> = runs
        .iter()
        .zip(&first)
        .filter(|(_, first)| **first)
        .map(|(r, _)| r)
        .collect();
    let mut connection = db.acquire().await?;
    let executions = ExecutionColumns::of(&unique);
    let nodes = NodeColumns::of(&unique);
    let events = EventColumns::of(&unique);
    let inserted: Vec<Uuid> = sqlx::query_scalar(WRITE_RUNS)
        .bind(&executions.ids)
        .bind(&executions.workflows)
        .bind(&executions.versions)
        .bind(&executions.users)
        .bind(&executions.trigger_ids)
        .bind(&executions.statuses)
        .bind(&executions.inputs)
        .bind(&executions.outputs)
        .bind(&executions.errors)
        .bind(&executions.error_types)
        .bind(&executions.enqueued)
        .bind(&executions.started)
        .bind(&executions.completed)
        .bind(&executions.durations)
        .bind(&executions.attempts)
        .bind(&nodes.executions)
        .bind(&nodes.ids)
        .bind(&nodes.types)
        .bind(&nodes.statuses)
        .bind(&nodes.inputs)
        .bind(&nodes.outputs)
        .bind(&nodes.errors)
        .bind(&nodes.starts)
        .bind(&nodes.ends)
        .bind(&nodes.durations)
        .bind(&events.types)
        .bind(&events.payloads)
        .bind(&events.correlations)
        .bind(&events.ips)
        .bind(&events.agents)
        .bind(&events.methods)
        .bind(&events.headers)
        .bind(&events.statuses)
        .bind(&events.received)
        .bind(&events.failed)
        .bind(&nodes.attempts)
        .bind(&executions.trigger_types)
        .bind(&executions.outputs_are_inputs)
        .bind(&nodes.inputs_are_trigger)
        .bind(&nodes.outputs_are_trigger)
        .bind(&nodes.details)
        .fetch_all(&mut *connection)
        .await
        .map_err(PersistError::classify)?;
    // A connection keeps the buffer its largest statement needed; after a batch of large
    // payloads that would be held for good by every writer connection.
    if runs.iter().map(|r| r.job.message_bytes).sum::<usize>() > SHRINK_AFTER_BYTES {
        sqlx::Connection::shrink_buffers(&mut *connection);
    }
    let inserted: HashSet<Uuid> = inserted.into_iter().collect();
    Ok(runs
        .iter()
        .zip(first)
        .map(|(run, first)| {
            if first && inserted.contains(&run.job.execution_id) {
                Written::New
            } else {
                Written::AlreadyRecorded
            }
        })
        .collect())
}

/// Inserts the executions not yet recorded and, for those only, their node executions, webhook
/// events and counter deltas (a delta row rather than an UPDATE of the endpoint, so concurrent
/// executions of one webhook never queue on one row's lock). Returns the ids it inserted.
const WRITE_RUNS: &str = "
WITH runs AS (
    SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::int4[], $4::uuid[], $5::text[], $6::text[],
        $7::jsonb[], $8::jsonb[], $9::text[], $10::text[], $11::timestamptz[],
        $12::timestamptz[], $13::timestamptz[], $14::int4[], $15::int4[],
        $26::text[], $27::jsonb[], $28::uuid[], $29::text[], $30::text[], $31::text[],
        $32::jsonb[], $33::int4[], $34::timestamptz[], $35::bool[], $37::text[], $38::bool[])
    AS r(id, workflow_id, version, user_id, webhook_id, status, inputs, outputs, error,
         error_type, enqueued_at, started_at, completed_at, duration_ms, attempt,
         event_type, payload, correlation_id, ip, agent, method, headers, response_status,
         received_at, failed, trigger_type, outputs_are_inputs)
), inserted AS (
    INSERT INTO workflow_executions (id, workflow_id, workflow_version, user_id, trigger_type,
        trigger_id, status, inputs, outputs, error, error_type, enqueued_at, started_at,
        completed_at, duration_ms, attempt, outputs_are_inputs)
    SELECT id, workflow_id, version, user_id, trigger_type, webhook_id, status, inputs, outputs,
        error, error_type, enqueued_at, started_at, completed_at, duration_ms, attempt,
        outputs_are_inputs
    FROM runs
    -- A long run was recorded `running` while it went on: its outcome completes that row. A
    -- finished row is never overwritten (a redelivered job's second outcome is not recorded).
    ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, outputs = EXCLUDED.outputs,
        error = EXCLUDED.error, error_type = EXCLUDED.error_type,
        started_at = EXCLUDED.started_at, completed_at = EXCLUDED.completed_at,
        duration_ms = EXCLUDED.duration_ms, attempt = EXCLUDED.attempt,
        outputs_are_inputs = EXCLUDED.outputs_are_inputs
    WHERE workflow_executions.status = 'running'
    RETURNING id
), nodes AS (
    INSERT INTO node_executions (execution_id, node_id, node_type, status, inputs, outputs,
        error, started_at, completed_at, duration_ms, attempts, inputs_are_trigger,
        outputs_are_trigger, details)
    SELECT n.* FROM UNNEST($16::uuid[], $17::text[], $18::text[], $19::text[], $20::jsonb[],
        $21::jsonb[], $22::text[], $23::timestamptz[], $24::timestamptz[], $25::int4[],
        $36::int4[], $39::bool[], $40::bool[], $41::jsonb[])
        AS n(execution_id, node_id, node_type, status, inputs, outputs, error, started_at,
             completed_at, duration_ms, attempts, inputs_are_trigger, outputs_are_trigger,
             details)
    WHERE n.execution_id IN (SELECT id FROM inserted)
    ON CONFLICT DO NOTHING
), events AS (
    INSERT INTO webhook_events (webhook_id, execution_id, event_type, payload, correlation_id,
        source_ip, user_agent, request_method, request_headers, request_ip, response_status,
        execution_time_ms, error_message, created_at)
    SELECT webhook_id, id, event_type, payload, correlation_id, ip::inet, agent, method, headers,
        ip::inet, response_status, duration_ms, error, received_at
    FROM runs WHERE trigger_type = 'webhook' AND id IN (SELECT id FROM inserted)
), deltas AS (
    INSERT INTO webhook_trigger_deltas (webhook_id, triggered_at, failed, response_ms)
    SELECT webhook_id, received_at, failed,
        GREATEST(0, round(extract(epoch FROM completed_at - received_at) * 1000))::int
    FROM runs
    WHERE trigger_type = 'webhook' AND id IN (SELECT id FROM inserted)
)
SELECT id FROM inserted";

/// The execution columns of a batch, one array per column.
struct ExecutionColumns<'a> {
    ids: Vec<Uuid>,
    workflows: Vec<Uuid>,
    versions: Vec<i32>,
    users: Vec<Uuid>,
    trigger_types: Vec<&'a str>,
    trigger_ids: Vec<Option<&'a str>>,
    statuses: Vec<&'a str>,
    inputs: Vec<&'a Value>,
    /// NULL where the result is the run's input (`outputs_are_inputs`): stored once.
    outputs: Vec<Option<&'a Value>>,
    outputs_are_inputs: Vec<bool>,
    errors: Vec<Option<&'a str>>,
    error_types: Vec<Option<&'a str>>,
    enqueued: Vec<DateTime<Utc>>,
    started: Vec<DateTime<Utc>>,
    completed: Vec<DateTime<Utc>>,
    durations: Vec<i32>,
    attempts: Vec<i32>,
}

impl<'a> ExecutionColumns<'a> {
    fn of(runs: &[&'a FinishedRun]) -> Self {
        Self {
            ids: runs.iter().map(|r| r.job.execution_id).collect(),
            workflows: runs.iter().map(|r| r.job.workflow_id).collect(),
            versions: runs.iter().map(|r| r.job.workflow_version).collect(),
            users: runs.iter().map(|r| r.job.user_id).collect(),
            trigger_types: runs.iter().map(|r| r.job.trigger_type).collect(),
            trigger_ids: runs.iter().map(|r| r.job.trigger_id.as_deref()).collect(),
            statuses: runs.iter().map(|r| r.record.status.as_str()).collect(),
            inputs: runs.iter().map(|r| &*r.job.trigger).collect(),
            outputs: runs
                .iter()
                .map(|r| unless_trigger(&r.record.result, &r.job.trigger))
                .collect(),
            outputs_are_inputs: runs
                .iter()
                .map(|r| SharedValue::ptr_eq(&r.record.result, &r.job.trigger))
                .collect(),
            errors: runs.iter().map(|r| r.record.error.as_deref()).collect(),
            error_types: runs.iter().map(|r| r.record.error_type).collect(),
            enqueued: runs.iter().map(|r| r.job.enqueued_at).collect(),
            started: runs.iter().map(|r| r.record.started_at).collect(),
            completed: runs.iter().map(|r| r.record.completed_at).collect(),
            durations: runs
                .iter()
                .map(|r| millis_between(r.record.started_at, r.record.completed_at))
                .collect(),
            attempts: runs.iter().map(|r| r.attempt).collect(),
        }
    }
}

/// The node executions of a batch, one array per column.
struct NodeColumns<'a> {
    executions: Vec<Uuid>,
    ids: Vec<&'a str>,
    types: Vec<&'a str>,
    statuses: Vec<&'a str>,
    /// NULL where the value is the run's input (flagged beside): stored once.
    inputs: Vec<Option<&'a Value>>,
    outputs: Vec<Option<&'a Value>>,
    inputs_are_trigger: Vec<bool>,
    outputs_are_trigger: Vec<bool>,
    errors: Vec<Option<&'a str>>,
    starts: Vec<DateTime<Utc>>,
    ends: Vec<DateTime<Utc>>,
    durations: Vec<i32>,
    attempts: Vec<i32>,
    /// What model nodes record beside their output (usage, steps); NULL for most nodes.
    details: Vec<Option<&'a Value>>,
}

impl<'a> NodeColumns<'a> {
    fn of(runs: &[&'a FinishedRun]) -> Self {
        let nodes = || {
            runs.iter()
                .flat_map(|r| r.record.nodes.iter().map(move |n| (r, n)))
        };
        Self {
            executions: nodes().map(|(r, _)| r.job.execution_id).collect(),
            ids: nodes().map(|(_, n)| n.node_id.as_str()).collect(),
            types: nodes().map(|(_, n)| &*n.node_type).collect(),
            statuses: nodes().map(|(_, n)| n.status).collect(),
            inputs: nodes()
                .map(|(r, n)| unless_trigger(&n.inputs, &r.job.trigger))
                .collect(),
            outputs: nodes()
                .map(|(r, n)| unless_trigger(&n.outputs, &r.job.trigger))
                .collect(),
            inputs_are_trigger: nodes()
                .map(|(r, n)| SharedValue::ptr_eq(&n.inputs, &r.job.trigger))
                .collect(),
            outputs_are_trigger: nodes()
                .map(|(r, n)| SharedValue::ptr_eq(&n.outputs, &r.job.trigger))
                .collect(),
            errors: nodes().map(|(_, n)| n.error.as_deref()).collect(),
            starts: nodes().map(|(_, n)| n.started_at).collect(),
            ends: nodes().map(|(_, n)| n.completed_at).collect(),
            durations: nodes()
                .map(|(_, n)| millis_between(n.started_at, n.completed_at))
                .collect(),
            attempts: nodes()
                .map(|(_, n)| n.attempts.min(i32::MAX as u32) as i32)
                .collect(),
            details: nodes().map(|(_, n)| n.details.as_ref()).collect(),
        }
    }
}

/// The webhook-event columns of a batch (aligned with the executions), one array per column.
/// Runs that are not webhook calls get placeholders, which the statement does not insert.
struct EventColumns<'a> {
    types: Vec<&'a str>,
    payloads: Vec<&'a Value>,
    correlations: Vec<Uuid>,
    ips: Vec<Option<&'a str>>,
    agents: Vec<Option<&'a str>>,
    methods: Vec<&'a str>,
    headers: Vec<Value>,
    statuses: Vec<i32>,
    received: Vec<DateTime<Utc>>,
    failed: Vec<bool>,
}

impl<'a> EventColumns<'a> {
    fn of(runs: &[&'a FinishedRun]) -> Self {
        static NULL: Value = Value::Null;
        let events = || runs.iter().map(|r| r.job.event.as_ref());
        Self {
            types: events()
                .map(|e| e.map_or("", |e| e.event_type.as_str()))
                .collect(),
            payloads: runs
                .iter()
                .map(|r| match r.job.event {
                    Some(_) => r.job.webhook_payload(),
                    None => &NULL,
                })
                .collect(),
            correlations: events()
                .map(|e| e.map_or(Uuid::nil(), |e| e.correlation_id))
                .collect(),
            ips: events()
                .map(|e| e.and_then(|e| e.client_ip.as_deref()))
                .collect(),
            agents: events()
                .map(|e| e.and_then(|e| e.user_agent.as_deref()))
                .collect(),
            methods: events()
                .map(|e| e.map_or("", |e| e.http_method.as_str()))
                .collect(),
            headers: events()
                .map(|e| e.map_or(Value::Null, |e| Value::Object(e.headers.clone())))
                .collect(),
            // What the caller was told: 200 when it waited for the result, 202 when it did not.
            statuses: runs
                .iter()
                .map(|r| if r.job.reply_to.is_some() { 200 } else { 202 })
                .collect(),
            received: runs
                .iter()
                .map(|r| {
                    r.job
                        .event
                        .as_ref()
                        .map_or(r.job.enqueued_at, |e| e.received_at)
                })
                .collect(),
            failed: runs
                .iter()
                .map(|r| r.record.status == ExecutionStatus::Failed)
                .collect(),
        }
    }
}

/// `value`, or `None` when it is the run's trigger itself (stored once, as the execution's
/// inputs).
fn unless_trigger<'a>(value: &'a SharedValue, trigger: &SharedValue) -> Option<&'a Value> {
    (!SharedValue::ptr_eq(value, trigger)).then_some(&**value)
}

fn millis_between(start: DateTime<Utc>, end: DateTime<Utc>) -> i32 {
    (end - start)
        .num_milliseconds()
        .clamp(0, i64::from(i32::MAX)) as i32
}
