//! Per-webhook rate limits, exact across every API replica: GCRA state lives in Redis and is
//! changed by one script. Calls are batched: whatever arrives while earlier round trips are in
//! flight goes in the next one (all webhooks together, each webhook's calls counted at once),
//! so a call costs at most one round trip and far less than one under load. When Redis cannot
//! answer, each replica limits on its own until it can again.

mod local;
mod shared;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};

use self::local::LocalLimiter;
use self::shared::{Ask, SharedLimiter};

/// What the limiter decided for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Over the limit; the next call fits after this long.
    Limited {
        retry_after: Duration,
    },
}

impl Decision {
    /// Whole seconds for `Retry-After`, at least 1.
    pub fn retry_after_secs(retry_after: Duration) -> u32 {
        u32::try_from(retry_after.as_secs_f64().ceil() as u64)
            .unwrap_or(u32::MAX)
            .max(1)
    }
}

/// Round trips to Redis in flight at once; more calls wait and go in the next batch.
const IN_FLIGHT: usize = 4;
/// Calls in one round trip at most.
const MAX_BATCH: usize = 1024;
/// Calls waiting for a batch at most; beyond it a call is decided locally.
const QUEUE: usize = 16 * 1024;

pub struct RateLimiter {
    asks: mpsc::Sender<Ask>,
    shared: Arc<SharedLimiter>,
}

impl RateLimiter {
    /// Starts the batcher; `namespace` keeps the keys of separate deployments (and tests) apart.
    pub fn start(redis: deadpool_redis::Pool, namespace: &str) -> Self {
        let (asks, receiver) = mpsc::channel(QUEUE);
        let shared = Arc::new(SharedLimiter::new(
            redis,
            format!("{namespace}:ratelimit:"),
            LocalLimiter::default(),
        ));
        tokio::spawn(batch(receiver, shared.clone()));
        Self { asks, shared }
    }

    /// Counts one call to `webhook_id` against `per_minute` (0: unlimited).
    pub async fn check(&self, webhook_id: &str, per_minute: u32) -> Decision {
        if per_minute == 0 {
            return Decision::Allowed;
        }
        let (reply, decided) = oneshot::channel();
        let ask = Ask {
            key: webhook_id.to_owned(),
            per_minute,
            reply,
        };
        match self.asks.try_send(ask) {
            Ok(()) => match decided.await {
                Ok(decision) => decision,
                // The batcher is gone (shutting down): decide here.
                Err(_) => self.shared.local().check(webhook_id, per_minute),
            },
            Err(full) => {
                let ask = full.into_inner();
                self.shared.local().check(&ask.key, ask.per_minute)
            }
        }
    }

    /// Whether decisions are being made locally because Redis cannot be reached.
    pub fn degraded(&self) -> bool {
        self.shared.degraded()
    }
}

async fn batch(mut receiver: mpsc::Receiver<Ask>, shared: Arc<SharedLimiter>) {
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = receiver.recv().await {
        // Wait for a free slot first: what arrives meanwhile joins this batch.
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let mut asks = vec![first];
        while asks.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(ask) => asks.push(ask),
                Err(_) => break,
            }
        }
        let shared = shared.clone();
        tokio::spawn(async move {
            shared.decide(asks).await;
            drop(permit);
        });
    }
}
