//! How a call to a model, rerank or search service is retried: the node's own policy (its
//! `max_retries`, doubling jittered backoff, the service's `Retry-After` when longer), applied
//! per call so that one hiccup never redoes a whole agent run.

use std::future::Future;
use std::time::Duration;

use crate::nodes::NodeError;
use crate::nodes::retry::retry_delay;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallPolicy {
    /// Each attempt's limit.
    pub timeout: Duration,
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// The wait before the first retry (doubling, jittered).
    pub backoff: Duration,
}

impl CallPolicy {
    /// Runs `attempt` until it succeeds, fails for good, or retries run out; `may_retry` can
    /// forbid a retry (streamed text already shown).
    pub async fn run<T, F, Fut>(
        &self,
        mut attempt: F,
        may_retry: impl Fn() -> bool,
    ) -> Result<T, NodeError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, NodeError>>,
    {
        let mut attempts = 0;
        loop {
            attempts += 1;
            match attempt().await {
                Err(error)
                    if error.is_retryable() && attempts <= self.max_retries && may_retry() =>
                {
                    let delay =
                        retry_delay(self.backoff, attempts, error.retry_after(), rand::random());
                    tracing::info!(attempt = attempts, %error, ?delay, "retrying the call");
                    tokio::time::sleep(delay).await;
                }
                outcome => return outcome,
            }
        }
    }
}
