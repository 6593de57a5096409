//! Reading webhook bodies within bounds: each body at most its webhook's limit, allocated once
//! at its declared size (not grown by doubling), and all bodies an API instance holds at once
//! within `KAI_API_MAX_INFLIGHT_BODY_BYTES`, so a burst of large calls waits at the socket
//! (TCP pushes back on the callers) instead of in memory.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What reading a body can end in.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the body is larger than allowed")]
    TooLarge,
    #[error("could not read the body: {0}")]
    Read(#[from] std::io::Error),
}

/// Reads `body`, refusing it as soon as it passes `limit` bytes. `declared` (the
/// `Content-Length`, already checked against `limit`) sizes the buffer once.
pub async fn read_limited(
    body: poem::Body,
    limit: usize,
    declared: Option<usize>,
) -> Result<Bytes, BodyError> {
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

    /// Waits until `bytes` (a body's declared length, or its webhook's limit when it declares
    /// none) fit, and holds them until the returned guard is dropped. A body larger than the
    /// whole budget holds all of it.
    pub async fn hold(&self, bytes: usize) -> HeldBody {
        let bytes = bytes.clamp(1, self.limit);
        let permit = self
            .permits
            .clone()
            .acquire_many_owned(u32::try_from(bytes).unwrap_or(u32::MAX))
            .await
            .expect("the semaphore is never closed");
        metrics::gauge!("kai_api_inflight_body_bytes").increment(bytes as f64);
        HeldBody {
            _permit: permit,
            bytes,
        }
    }
}

/// Body bytes held until dropped (once the job is published).
pub struct HeldBody {
    _permit: OwnedSemaphorePermit,
    bytes: usize,
}

impl Drop for HeldBody {
    fn drop(&mut self) {
        metrics::gauge!("kai_api_inflight_body_bytes").decrement(self.bytes as f64);
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
    async fn held_bodies_wait_for_room() {
        let budget = BodyBudget::new(1000);
        let first = budget.hold(700).await;
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move {
                let _second = budget.hold(700).await;
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "700 + 700 does not fit in 1000");
        drop(first);
        waiting.await.unwrap();
        // Larger than the whole budget: takes all of it rather than waiting for ever.
        let _all = budget.hold(5000).await;
    }
}
