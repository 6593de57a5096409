//! Reading webhook bodies within bounds: each body at most its webhook's limit, allocated once
//! at its declared size (not grown by doubling), and all bodies an API instance holds at once
//! within `KAI_API_MAX_INFLIGHT_BODY_BYTES`, so a burst of large calls waits at the socket
//! (TCP pushes back on the callers) instead of in memory. Bodies of at most `SMALL_BODY` bytes
//! do not count (ordinary traffic never waits on large calls), and both the wait for room and
//! the read are bounded in time, so callers that declare a large body and never send it cannot
//! keep the room from others.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What reading a body can end in.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the body is larger than allowed")]
    TooLarge,
    #[error("the body did not arrive within {} s", READ_TIMEOUT.as_secs())]
    TimedOut,
    /// The server's idle timer on every body (`KAI_API_BODY_IDLE_TIMEOUT_SECS`) ran out.
    #[error("{}", crate::idle_body::Stalled)]
    Stalled,
    #[error("could not read the body: {0}")]
    Read(std::io::Error),
}

impl From<std::io::Error> for BodyError {
    fn from(error: std::io::Error) -> Self {
        if crate::idle_body::is_stalled(&error) {
            BodyError::Stalled
        } else {
            BodyError::Read(error)
        }
    }
}

/// Bodies up to this size (declared) are read without taking room in the budget.
pub const SMALL_BODY: usize = 64 * 1024;
/// Longest a call waits for room in the budget before it is told to retry (503).
pub const ROOM_WAIT: Duration = Duration::from_secs(10);
/// Longest a body may take to arrive (408).
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads `body`, refusing it as soon as it passes `limit` bytes or takes longer than
/// `READ_TIMEOUT`. `declared` (the `Content-Length`, already checked against `limit`) sizes
/// the buffer once.
pub async fn read_limited(
    body: poem::Body,
    limit: usize,
    declared: Option<usize>,
) -> Result<Bytes, BodyError> {
    read_within(body, limit, declared, READ_TIMEOUT).await
}

async fn read_within(
    body: poem::Body,
    limit: usize,
    declared: Option<usize>,
    timeout: Duration,
) -> Result<Bytes, BodyError> {
    tokio::time::timeout(timeout, read(body, limit, declared))
        .await
        .map_err(|_| BodyError::TimedOut)?
}

async fn read(body: poem::Body, limit: usize, declared: Option<usize>) -> Result<Bytes, BodyError> {
    const UNDECLARED_START: usize = 16 * 1024;
    let mut reader = body.into_async_read();
    let mut data = BytesMut::with_capacity(declared.unwrap_or(UNDECLARED_START).min(limit));
    loop {
        if data.len() == data.capacity() {
            // Past the declared length or the first chunk: grow, never beyond one byte more
            // than the limit (which is then refused).
            let more = data
                .capacity()
                .max(UNDECLARED_START)
                .min(limit + 1 - data.len());
            if more == 0 {
                return Err(BodyError::TooLarge);
            }
            data.reserve(more);
        }
        if reader.read_buf(&mut data).await? == 0 {
            return Ok(data.freeze());
        }
        if data.len() > limit {
            return Err(BodyError::TooLarge);
        }
    }
}

/// The body bytes one API instance holds at once.
#[derive(Clone)]
pub struct BodyBudget {
    permits: Arc<Semaphore>,
    limit: usize,
}

impl BodyBudget {
    pub fn new(limit: usize) -> Self {
        let limit = limit.clamp(1, Semaphore::MAX_PERMITS);
        metrics::gauge!("kai_api_inflight_body_bytes_limit").set(limit as f64);
        Self {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    /// Waits, at most `ROOM_WAIT`, until `bytes` (a body's declared length, or its webhook's
    /// limit when it declares none) fit, and holds them until the returned guard is dropped;
    /// `None` when there was no room in time. A small body holds nothing; one larger than the
    /// whole budget holds all of it.
    pub async fn hold(&self, bytes: usize) -> Option<HeldBody> {
        self.hold_within(bytes, ROOM_WAIT).await
    }

    async fn hold_within(&self, bytes: usize, wait: Duration) -> Option<HeldBody> {
        if bytes <= SMALL_BODY {
            return Some(HeldBody(None));
        }
        let bytes = bytes.min(self.limit);
        let acquire = self
            .permits
            .clone()
            .acquire_many_owned(u32::try_from(bytes).unwrap_or(u32::MAX));
        let permit = tokio::time::timeout(wait, acquire).await.ok()?.ok()?;
        metrics::gauge!("kai_api_inflight_body_bytes").increment(bytes as f64);
        Some(HeldBody(Some((permit, bytes))))
    }
}

/// Body bytes held until dropped (once the job is published); nothing for a small body.
pub struct HeldBody(Option<(OwnedSemaphorePermit, usize)>);

impl Drop for HeldBody {
    fn drop(&mut self) {
        if let Some((_, bytes)) = &self.0 {
            metrics::gauge!("kai_api_inflight_body_bytes").decrement(*bytes as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bodies_are_read_whole_within_their_limit_declared_or_not() {
        let text = "x".repeat(100_000);
        let read = read_limited(poem::Body::from(text.clone()), 100_000, Some(100_000))
            .await
            .unwrap();
        assert_eq!(read.len(), 100_000);
        let read = read_limited(poem::Body::from(text.clone()), 100_000, None)
            .await
            .unwrap();
        assert_eq!(read, text.as_bytes());
        // A lying Content-Length does not get past the limit.
        let over = read_limited(poem::Body::from(text.clone()), 99_999, Some(10)).await;
        assert!(matches!(over, Err(BodyError::TooLarge)));
        let over = read_limited(poem::Body::from(text), 50_000, None).await;
        assert!(matches!(over, Err(BodyError::TooLarge)));
        assert!(
            read_limited(poem::Body::empty(), 10, None)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_body_that_never_arrives_times_out() {
        let never = futures::stream::pending::<Result<Bytes, std::io::Error>>();
        let body = poem::Body::from_bytes_stream(never);
        let read = read_within(body, 1000, Some(1000), Duration::from_millis(50)).await;
        assert!(matches!(read, Err(BodyError::TimedOut)));
    }

    const MIB: usize = 1 << 20;

    #[tokio::test]
    async fn held_bodies_wait_for_room_but_not_for_ever() {
        let budget = BodyBudget::new(MIB);
        let first = budget.hold(700 * 1024).await.unwrap();
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.hold(700 * 1024).await.is_some() }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "700 + 700 KiB do not fit in 1 MiB");
        drop(first);
        assert!(waiting.await.unwrap());
        // Small bodies never wait, even with the budget taken.
        let all = budget.hold(5 * MIB).await.unwrap();
        assert!(budget.hold(SMALL_BODY).await.is_some());
        // A large one waits only so long (a caller that never sends its body holds the room).
        let short = Duration::from_millis(50);
        assert!(budget.hold_within(100 * 1024, short).await.is_none());
        drop(all);
        assert!(budget.hold_within(100 * 1024, short).await.is_some());
    }
}
