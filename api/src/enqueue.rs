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
/// Pauses between publishes while the stream has no leader: short at first (an election often
/// ends within a second or two), doubling up to the most.
const LEADERLESS_FIRST_PAUSE: Duration = Duration::from_millis(50);
const LEADERLESS_MAX_PAUSE: Duration = Duration::from_millis(500);
/// Longest one attempt waits for its acknowledgement before the job is offered again. Acks take
/// milliseconds; one lost with its connection never comes, and neither does one for a message
/// that reached the stream's servers while they were electing a leader (a follower takes it
/// without answering), so a short wait lets an attempt made after the election succeed.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

/// What a stored answer means for the caller: a "duplicate" after an attempt that may have
/// stored the job is that attempt's own job, new to the caller.
fn counted_as_new(stored: Stored, maybe_stored_before: bool) -> Stored {
    Stored {
        duplicate: stored.duplicate && !maybe_stored_before,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("the job queue is unavailable; retry later")]
    Refused,
    /// The job may still have been stored (its acknowledgement was lost, not its refusal).
    #[error(
        "the job queue did not confirm the job in time, so it may still run; retry later \
         (with the same Idempotency-Key to have it run once)"
    )]
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
///
/// Within that bound, a publish whose fate is known to be "not stored" or unknown is made again
/// with the same `Nats-Msg-Id` (JetStream stores a message id once within its duplicate window):
/// - no server leads the jobs stream (an election after a NATS server was lost takes a few
///   seconds): nothing was stored; tried again after a short pause;
/// - the acknowledgement did not come within `ATTEMPT_TIMEOUT` or its connection broke (the NATS
///   server this process was connected to was lost, or the stream was electing a leader): the
///   job may be stored; tried again, and a "duplicate" answer then means the earlier attempt
///   stored it, so the job counts as new.
///
/// The caller is better served by a 2xx a little later than by a 503 to retry on its own.
pub async fn publish_encoded(
    state: &AppState,
    kind: &str,
    message_id: &str,
    payload: Vec<u8>,
) -> Result<Stored, EnqueueError> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::from_std(started + PUBLISH_TIMEOUT);
    let payload = bytes::Bytes::from(payload);
    let mut pause = LEADERLESS_FIRST_PAUSE;
    // Whether an earlier attempt may have stored the job.
    let mut maybe_stored = false;
    let published = loop {
        let attempt_deadline = deadline.min(tokio::time::Instant::now() + ATTEMPT_TIMEOUT);
        let attempt = tokio::time::timeout_at(
            attempt_deadline,
            kai_common::nats::publish_encoded(
                &state.js,
                &state.names,
                kind,
                message_id,
                payload.clone(),
            ),
        )
        .await;
        let now = tokio::time::Instant::now();
        match attempt {
            Ok(Ok(stored)) => break Ok(Ok(counted_as_new(stored, maybe_stored))),
            Ok(Err(e)) if e.is_leaderless() && now + pause < deadline => {
                metrics::counter!("kai_jetstream_publish_retries_total", "reason" => "leaderless")
                    .increment(1);
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(LEADERLESS_MAX_PAUSE);
            }
            Ok(Err(e)) if e.outcome_unknown() && now < deadline => {
                maybe_stored = true;
                metrics::counter!("kai_jetstream_publish_retries_total", "reason" => "ack_lost")
                    .increment(1);
                // A broken connection answers at once: give the client a moment to reconnect.
                tokio::time::sleep(LEADERLESS_FIRST_PAUSE).await;
            }
            Err(_) if now < deadline => {
                maybe_stored = true;
                metrics::counter!("kai_jetstream_publish_retries_total", "reason" => "ack_late")
                    .increment(1);
            }
            attempt => break attempt,
        }
    };
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
        Err(_) => {
            tracing::warn!(kind, "JetStream did not acknowledge a job in time");
            Err(EnqueueError::TimedOut)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duplicate_is_new_only_after_an_attempt_that_may_have_stored_it() {
        let duplicate = Stored { duplicate: true };
        let fresh = Stored { duplicate: false };
        assert!(counted_as_new(duplicate, false).duplicate);
        assert!(!counted_as_new(duplicate, true).duplicate);
        assert!(!counted_as_new(fresh, true).duplicate);
        // Every attempt fits in the caller's bound.
        assert!(ATTEMPT_TIMEOUT < PUBLISH_TIMEOUT);
    }
}
