//! One batch of calls decided by one Redis script call, or locally while Redis is unreachable.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deadpool_redis::redis::Script;
use tokio::sync::oneshot;

use super::Decision;
use super::local::LocalLimiter;

static GCRA: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("gcra.lua")));

/// Longest a batch waits for Redis before it is decided locally.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);
/// How often, while degraded, Redis is tried again (by a probe, never by a caller).
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// A call waiting for its decision.
pub struct Ask {
    pub key: String,
    pub per_minute: u32,
    pub reply: oneshot::Sender<Decision>,
}

pub struct SharedLimiter {
    redis: deadpool_redis::Pool,
    prefix: String,
    local: LocalLimiter,
    degraded: AtomicBool,
    probing: AtomicBool,
}

impl SharedLimiter {
    pub fn new(redis: deadpool_redis::Pool, prefix: String, local: LocalLimiter) -> Self {
        metrics::gauge!("kai_rate_limiter_fallback").set(0.0);
        Self {
            redis,
            prefix,
            local,
            degraded: AtomicBool::new(false),
            probing: AtomicBool::new(false),
        }
    }

    pub fn local(&self) -> &LocalLimiter {
        &self.local
    }

    pub fn degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    /// Decides every call of `asks` and answers each.
    pub async fn decide(self: std::sync::Arc<Self>, asks: Vec<Ask>) {
        if self.degraded() {
            self.probe();
            return self.decide_locally(asks);
        }
        // Each webhook once, with how many of its calls ask now; `group_of[i]` is ask i's
        // webhook (a batch may hold calls to thousands of webhooks).
        let mut groups: Vec<(&str, u32, usize)> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        let group_of: Vec<usize> = asks
            .iter()
            .map(|ask| {
                let group = *index.entry(ask.key.as_str()).or_insert_with(|| {
                    groups.push((&ask.key, ask.per_minute, 0));
                    groups.len() - 1
                });
                groups[group].2 += 1;
                group
            })
            .collect();
        let mut invocation = GCRA.prepare_invoke();
        for (key, per_minute, wanted) in &groups {
            // The limit may differ between calls of one batch only across a config change;
            // the first call's limit is used for all.
            let interval_us = 60_000_000 / u64::from((*per_minute).max(1));
            invocation
                .key(format!("{}{key}", self.prefix))
                .arg(interval_us.max(1))
                .arg(*per_minute)
                .arg(*wanted);
        }
        let answered: Result<Vec<i64>, String> = tokio::time::timeout(REDIS_TIMEOUT, async {
            let mut connection = self.redis.get().await.map_err(|e| e.to_string())?;
            invocation
                .invoke_async::<Vec<i64>>(&mut connection)
                .await
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|_| Err("timed out".to_owned()));
        metrics::counter!("kai_rate_limit_redis_round_trips_total").increment(1);

        let grants = match answered {
            Ok(grants) if grants.len() == groups.len() * 2 => grants,
            Ok(other) => {
                tracing::error!(len = other.len(), "rate-limit script answered oddly");
                return self.decide_locally(asks);
            }
            Err(error) => {
                self.enter_degraded(&error);
                return self.decide_locally(asks);
            }
        };
        // Per group: calls still to be granted, and when the next would fit.
        let mut remaining: Vec<(i64, Duration)> = grants
            .chunks(2)
            .map(|grant| {
                let retry = Duration::from_micros(u64::try_from(grant[1]).unwrap_or(0));
                (grant[0], retry)
            })
            .collect();
        metrics::counter!("kai_rate_limit_decisions_total", "source" => "redis")
            .increment(asks.len() as u64);
        // Calls are granted in arrival order within their webhook.
        for (ask, group) in asks.into_iter().zip(group_of) {
            let (granted, retry_after) = &mut remaining[group];
            let decision = if *granted > 0 {
                *granted -= 1;
                Decision::Allowed
            } else {
                Decision::Limited {
                    retry_after: *retry_after,
                }
            };
            // The caller may have gone (client disconnected); nothing to do then.
            let _ = ask.reply.send(decision);
        }
    }

    fn decide_locally(&self, asks: Vec<Ask>) {
        for ask in asks {
            let _ = ask.reply.send(self.local.check(&ask.key, ask.per_minute));
        }
    }

    fn enter_degraded(&self, error: &str) {
        if !self.degraded.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                error,
                "Redis unreachable: rate limits are now counted per API replica"
            );
            metrics::gauge!("kai_rate_limiter_fallback").set(1.0);
        }
    }

    /// While degraded, one task at a time pings Redis every `PROBE_EVERY` and ends the
    /// degraded mode once it answers, so callers never wait on a dead Redis.
    fn probe(self: &std::sync::Arc<Self>) {
        if self.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROBE_EVERY).await;
                if kai_common::redis::ping(&this.redis, REDIS_TIMEOUT)
                    .await
                    .is_ok()
                {
                    this.degraded.store(false, Ordering::Relaxed);
                    metrics::gauge!("kai_rate_limiter_fallback").set(0.0);
                    tracing::info!("Redis reachable again: rate limits are shared again");
                    break;
                }
            }
            this.probing.store(false, Ordering::Release);
        });
    }
}
