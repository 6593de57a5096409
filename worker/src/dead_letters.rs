//! Recording a dead-lettered job in `dead_letters`, beside its copy in the KAI_DLQ stream, with
//! the owner and execution id read from the message when it can be decoded.

use kai_common::jobs::JobMessage;
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
