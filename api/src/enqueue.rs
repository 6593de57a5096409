//! Publishing a job to JetStream for a caller: bounded in time, so the caller gets 503 with
//! `Retry-After` rather than a hang when the queue is unreachable or slow, and never a 2xx for a
//! job that is not stored.

use std::time::{Duration, Instant};

use kai_common::jobs::JobMessage;
use kai_common::nats::Stored;

use crate::error::ApiError;
use crate::state::AppState;

/// Longest JetStream may take to acknowledge a job before the caller is told to retry.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("the job queue is unavailable; retry later")]
    Refused,
    #[error("the job queue did not answer; retry later")]
    TimedOut,
    /// The job (the body with the call's details) is larger than NATS carries: retrying
    /// cannot help.
    #[error(
        "the body is too large for the job queue: the job would be {size} bytes, and the queue \
         carries at most {max} bytes (NATS max_payload)"
    )]
    TooLarge { size: usize, max: usize },
}

impl EnqueueError {
    /// A label for refusal logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            EnqueueError::Refused => "queue_unavailable",
            EnqueueError::TimedOut => "queue_timeout",
            EnqueueError::TooLarge { .. } => "too_large",
        }
    }
}

impl From<EnqueueError> for ApiError {
    fn from(error: EnqueueError) -> Self {
        match error {
            EnqueueError::TooLarge { .. } => ApiError::payload_too_large(error.to_string()),
            _ => ApiError::unavailable(error.to_string(), 1),
        }
    }
}

/// Publishes `job` and waits for JetStream to store it, at most `PUBLISH_TIMEOUT`.
pub async fn publish(state: &AppState, job: &JobMessage) -> Result<Stored, EnqueueError> {
    let payload = job.encode().map_err(|e| {
        tracing::error!(error = %e, "could not encode a job");
        EnqueueError::Refused
    })?;
    publish_encoded(state, job.subject_kind(), &job.message_id(), payload).await
}

/// Publishes an encoded job (see `kai_common::nats::publish_encoded`), bounded like `publish`.
pub async fn publish_encoded(
    state: &AppState,
    kind: &str,
    message_id: &str,
    payload: Vec<u8>,
) -> Result<Stored, EnqueueError> {
    let started = Instant::now();
    let published = tokio::time::timeout(
        PUBLISH_TIMEOUT,
        kai_common::nats::publish_encoded(&state.js, &state.names, kind, message_id, payload),
    )
    .await;
    metrics::histogram!("kai_jetstream_publish_seconds").record(started.elapsed().as_secs_f64());
    match published {
        Ok(Ok(stored)) => Ok(stored),
        Ok(Err(kai_common::nats::NatsError::TooLarge { size, max })) => {
            Err(EnqueueError::TooLarge { size, max })
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, kind, "JetStream refused a job");
            Err(EnqueueError::Refused)
        }
        Err(_) => Err(EnqueueError::TimedOut),
    }
}
