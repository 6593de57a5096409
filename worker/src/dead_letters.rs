//! Recording a dead-lettered job in `dead_letters`, beside its copy in the KAI_DLQ stream, with
//! the owner and execution id read from the message when it can be decoded; and marking its
//! execution failed, so whoever holds the execution id finds why it never ran.

use kai_common::jobs::JobMessage;

use crate::request::RunRequest;
use sqlx::PgPool;
use uuid::Uuid;

/// A job the worker gave up on.
pub struct DeadLetter<'a> {
    pub subject: &'a str,
    pub payload: &'a [u8],
    pub reason: &'a str,
    pub deliveries: i32,
    pub stream_sequence: Option<u64>,
}

/// (execution id, user id, workflow id) of a job, when its message can be decoded.
fn owner(payload: &[u8]) -> (Option<Uuid>, Option<Uuid>, Option<Uuid>) {
    match JobMessage::decode(payload) {
        Ok(job) => {
            let (user_id, workflow_id) = job.owner();
            (Some(job.execution_id()), Some(user_id), Some(workflow_id))
        }
        Err(_) => (None, None, None),
    }
}

pub async fn record(db: &PgPool, letter: DeadLetter<'_>) -> sqlx::Result<()> {
    let (execution_id, user_id, workflow_id) = owner(letter.payload);
    sqlx::query(
        "INSERT INTO dead_letters (execution_id, user_id, workflow_id, subject, reason, payload, \
            deliveries, stream_sequence) \
         SELECT $1, u.id, $3, $4, $5, $6, $7, $8 \
         FROM (SELECT $2::uuid AS id) requested \
         LEFT JOIN users u ON u.id = requested.id \
         ON CONFLICT (execution_id) WHERE execution_id IS NOT NULL DO NOTHING",
    )
    .bind(execution_id)
    .bind(user_id)
    .bind(workflow_id)
    .bind(letter.subject)
    .bind(letter.reason)
    .bind(letter.payload)
    .bind(letter.deliveries)
    .bind(letter.stream_sequence.and_then(|s| i64::try_from(s).ok()))
    .execute(db)
    .await?;
    Ok(())
}

/// Records the job's execution as failed with `reason` (error type `dead_letter`), when its
/// message can be decoded and its workflow still exists; an execution already recorded is left
/// as it is, unless it was only recorded `running` (a long run whose worker died).
pub async fn mark_failed(
    db: &PgPool,
    payload: &[u8],
    reason: &str,
    deliveries: i32,
) -> sqlx::Result<()> {
    let Ok(job) = JobMessage::decode(payload) else {
        return Ok(());
    };
    let run = RunRequest::from(job);
    let empty = serde_json::json!({});
    let inputs = if kai_common::json::contains_nul(&run.trigger) {
        &empty
    } else {
        &*run.trigger
    };
    sqlx::query(
        "INSERT INTO workflow_executions (id, workflow_id, workflow_version, user_id, \
            trigger_type, trigger_id, status, inputs, error, error_type, enqueued_at, started_at, \
            completed_at, duration_ms, attempt) \
         SELECT $1, w.id, $3, w.user_id, $4, $5, 'failed', $6, $7, 'dead_letter', $8, now(), \
            now(), 0, $9 \
         FROM workflows w WHERE w.id = $2 AND w.user_id = $10 \
         ON CONFLICT (id) DO UPDATE SET status = 'failed', error = EXCLUDED.error, \
            error_type = 'dead_letter', completed_at = now(), attempt = EXCLUDED.attempt, \
            duration_ms = GREATEST(0, round(extract(epoch FROM now() - \
                workflow_executions.started_at) * 1000))::int \
         WHERE workflow_executions.status = 'running'",
    )
    .bind(run.execution_id)
    .bind(run.workflow_id)
    .bind(run.workflow_version)
    .bind(run.trigger_type)
    .bind(run.trigger_id.as_deref())
    .bind(inputs)
    .bind(reason)
    .bind(run.enqueued_at)
    .bind(deliveries)
    .bind(run.user_id)
    .execute(db)
    .await?;
    Ok(())
}
