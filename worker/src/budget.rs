//! Bounds what a worker holds by bytes as well as by jobs: each job holds its message's size
//! from delivery until it is settled, and the pull loop asks JetStream only for as many bytes as
//! are free, so a burst of large payloads waits in the stream (where it is safe) instead of in
//! the worker's memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Room NATS may use for a message's subject and headers beyond its payload.
const ENVELOPE: usize = 8 * 1024;

#[derive(Clone)]
pub struct ByteBudget {
    permits: Arc<Semaphore>,
    limit: usize,
    /// The largest message NATS lets through (its `max_payload`, plus envelope): a pull waits
    /// until this much is free, so that whatever is next in the stream fits.
    largest: usize,
    held: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl ByteBudget {
    /// A budget of `limit` bytes for messages of at most `max_payload` bytes. A limit below one
    /// message would let nothing through: it is raised to one message.
    pub fn new(limit: usize, max_payload: usize) -> Self {
        let largest = max_payload.saturating_add(ENVELOPE);
        if limit < largest {
            tracing::warn!(
                limit,
                largest,
                "KAI_WORKER_MAX_INFLIGHT_BYTES is below NATS's largest message; raised to it"
            );
        }
        let limit = limit.max(largest).min(Semaphore::MAX_PERMITS);
        metrics::gauge!("kai_worker_inflight_bytes_limit").set(limit as f64);
        Self {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            largest,
            held: Arc::new(AtomicUsize::new(0)),
            peak: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Waits until the largest possible message would fit, then returns the bytes free: what
    /// one pull may ask for. Only the pull loop takes bytes, so they stay free until it does.
    pub async fn room(&self) -> usize {
        match self.permits.acquire_many(permits(self.largest)).await {
            Ok(reserved) => drop(reserved),
            Err(_) => return 0,
        }
        self.permits.available_permits()
    }

    /// Holds `bytes` for a delivered message until the returned guard is dropped (waiting, if
    /// NATS counted the batch a little differently, until they are free).
    pub async fn hold(&self, bytes: usize) -> Option<HeldBytes> {
        let bytes = bytes.min(self.limit);
        let permit = self
            .permits
            .clone()
            .acquire_many_owned(permits(bytes))
            .await
            .ok()?;
        let now = self.held.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let peak = self.peak.fetch_max(now, Ordering::Relaxed).max(now);
        metrics::gauge!("kai_worker_inflight_bytes").set(now as f64);
        metrics::gauge!("kai_worker_inflight_bytes_max").set(peak as f64);
        Some(HeldBytes {
            _permit: permit,
            bytes,
            held: self.held.clone(),
        })
    }
}

fn permits(bytes: usize) -> u32 {
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

/// A delivered message's bytes, given back when it is dropped (once the job is settled).
pub struct HeldBytes {
    _permit: OwnedSemaphorePermit,
    bytes: usize,
    held: Arc<AtomicUsize>,
}

impl Drop for HeldBytes {
    fn drop(&mut self) {
        let now = self.held.fetch_sub(self.bytes, Ordering::Relaxed) - self.bytes;
        metrics::gauge!("kai_worker_inflight_bytes").set(now as f64);
    }
}

/// The bytes a delivered message occupies: its payload, headers and subject.
pub fn message_bytes(message: &async_nats::jetstream::Message) -> usize {
    let headers = message.headers.as_ref().map_or(0, |headers| {
        headers
            .iter()
            .map(|(name, values)| {
                AsRef::<str>::as_ref(name).len()
                    + values.iter().map(|v| v.as_str().len() + 4).sum::<usize>()
            })
            .sum()
    });
    message.payload.len() + headers + message.subject.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_limit_below_one_message_is_raised_to_one_message() {
        let budget = ByteBudget::new(10, 1000);
        assert_eq!(budget.limit(), 1000 + ENVELOPE);
        assert_eq!(budget.room().await, 1000 + ENVELOPE);
    }

    #[tokio::test]
    async fn held_bytes_leave_less_room_until_released() {
        let budget = ByteBudget::new(100_000, 1000);
        let held = budget.hold(60_000).await.unwrap();
        assert_eq!(budget.room().await, 40_000);
        // Too little for the largest message: the pull waits until the hold ends.
        let second = budget.hold(35_000).await.unwrap();
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.room().await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "room must wait for the largest message"
        );
        drop(held);
        assert_eq!(waiting.await.unwrap(), 65_000);
        drop(second);
        assert_eq!(budget.room().await, 100_000);
        assert_eq!(budget.peak.load(Ordering::Relaxed), 95_000);
    }
}
