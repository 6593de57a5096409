//! What a webhook remembers of its idempotency keys (draft-ietf-httpapi-idempotency-key-header):
//! the first call with a key claims it with its payload's fingerprint; a retry learns whether it
//! carries the same payload, and what the first call was answered or how its run ended.
//!
//! The claim is one insert on the primary key, so of two concurrent calls with one key exactly
//! one is first. When the database cannot be reached the call goes on unclaimed: JetStream's
//! duplicate window and the execution id still keep it from running twice.

use kai_common::jobs::WebhookResponse;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

/// The answer a synchronous caller got, kept to give a retry the same.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StoredAnswer {
    Finished {
        status: String,
        result: Value,
        error: Option<String>,
    },
    Workflow(WebhookResponse),
}

/// A run as recorded, for a retry after the answer itself was lost (the wait timed out).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RecordedRun {
    pub status: String,
    pub outputs: Option<Value>,
    pub error: Option<String>,
}

#[derive(Debug)]
pub enum Claim {
    /// This call is the first with its key.
    First,
    /// An earlier call had the key.
    Retry {
        same_payload: bool,
        answer: Option<StoredAnswer>,
        /// The run, once it has finished.
        finished: Option<RecordedRun>,
    },
    /// The database could not be asked; go on as without the store.
    Unknown,
}

/// SHA-256 of the method and payload: what makes two calls "the same request".
pub fn fingerprint(method: &str, payload: &[u8]) -> Vec<u8> {
    Sha256::new()
        .chain_update(method.as_bytes())
        .chain_update(b"\n")
        .chain_update(payload)
        .finalize()
        .to_vec()
}

pub async fn claim(db: &PgPool, execution_id: Uuid, webhook_id: &str, fingerprint: &[u8]) -> Claim {
    match try_claim(db, execution_id, webhook_id, fingerprint).await {
        Ok(claim) => claim,
        Err(e) => {
            tracing::warn!(error = %e, "idempotency key store unavailable; relying on deduplication");
            Claim::Unknown
        }
    }
}

async fn try_claim(
    db: &PgPool,
    execution_id: Uuid,
    webhook_id: &str,
    fingerprint: &[u8],
) -> Result<Claim, sqlx::Error> {
    let inserted: Option<(bool,)> = sqlx::query_as(
        "INSERT INTO webhook_idempotency_keys (execution_id, webhook_id, fingerprint) \
         VALUES ($1, $2, $3) ON CONFLICT (execution_id) DO NOTHING RETURNING true",
    )
    .bind(execution_id)
    .bind(webhook_id)
    .bind(fingerprint)
    .fetch_optional(db)
    .await?;
    if inserted.is_some() {
        return Ok(Claim::First);
    }
    let (stored_fingerprint, answer): (Vec<u8>, Option<Value>) = sqlx::query_as(
        "SELECT fingerprint, answer FROM webhook_idempotency_keys WHERE execution_id = $1",
    )
    .bind(execution_id)
    .fetch_one(db)
    .await?;
    let finished: Option<RecordedRun> = sqlx::query_as(
        "SELECT status, CASE WHEN outputs_are_inputs THEN inputs ELSE outputs END AS outputs, \
            error FROM workflow_executions WHERE id = $1 AND status <> 'running'",
    )
    .bind(execution_id)
    .fetch_optional(db)
    .await?;
    Ok(Claim::Retry {
        same_payload: stored_fingerprint == fingerprint,
        answer: answer.and_then(|a| serde_json::from_value(a).ok()),
        finished,
    })
}

/// Keeps the answer a synchronous caller was given for its retries.
pub async fn remember(db: &PgPool, execution_id: Uuid, answer: &StoredAnswer) {
    let Ok(json) = serde_json::to_value(answer) else {
        return;
    };
    let stored =
        sqlx::query("UPDATE webhook_idempotency_keys SET answer = $2 WHERE execution_id = $1")
            .bind(execution_id)
            .bind(json)
            .execute(db)
            .await;
    if let Err(e) = stored {
        tracing::warn!(error = %e, %execution_id, "could not keep an idempotent call's answer");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_tells_payloads_and_methods_apart() {
        assert_eq!(fingerprint("POST", b"{}"), fingerprint("POST", b"{}"));
        assert_ne!(fingerprint("POST", b"{}"), fingerprint("PUT", b"{}"));
        assert_ne!(
            fingerprint("POST", b"{\"a\":1}"),
            fingerprint("POST", b"{\"a\":2}")
        );
        // The separator keeps method and payload from running into each other.
        assert_ne!(fingerprint("POS", b"T{}"), fingerprint("POST", b"{}"));
    }

    #[test]
    fn stored_answers_read_back() {
        let answer = StoredAnswer::Finished {
            status: "completed".into(),
            result: serde_json::json!({"n": 1}),
            error: None,
        };
        let json = serde_json::to_value(&answer).unwrap();
        assert_eq!(json["kind"], "finished");
        assert_eq!(
            serde_json::from_value::<StoredAnswer>(json).unwrap(),
            answer
        );
    }
}
