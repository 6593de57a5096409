//! The per-process limiter used while Redis cannot be reached: the same limits, counted by this
//! replica alone (so with N replicas a webhook may get up to N times its limit meanwhile).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};
use moka::sync::Cache;

use super::Decision;

pub struct LocalLimiter {
    /// One GCRA limiter per webhook and limit (a changed limit starts a fresh one).
    limiters: Cache<(String, u32), Arc<DefaultDirectRateLimiter>>,
    clock: DefaultClock,
}

impl Default for LocalLimiter {
    fn default() -> Self {
        Self {
            limiters: Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(120))
                .build(),
            clock: DefaultClock::default(),
        }
    }
}

impl LocalLimiter {
    pub fn check(&self, webhook_id: &str, per_minute: u32) -> Decision {
        let Some(rate) = NonZeroU32::new(per_minute) else {
            return Decision::Allowed;
        };
        let limiter = self
            .limiters
            .get_with((webhook_id.to_owned(), per_minute), || {
                Arc::new(DefaultDirectRateLimiter::direct(Quota::per_minute(rate)))
            });
        metrics::counter!("kai_rate_limit_decisions_total", "source" => "local").increment(1);
        match limiter.check() {
            Ok(()) => Decision::Allowed,
            Err(not_until) => Decision::Limited {
                retry_after: not_until.wait_time_from(self.clock.now()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minute_s_calls_may_come_at_once_and_no_more() {
        let local = LocalLimiter::default();
        for _ in 0..3 {
            assert_eq!(local.check("wh_a", 3), Decision::Allowed);
        }
        let Decision::Limited { retry_after } = local.check("wh_a", 3) else {
            panic!("the fourth call must be limited");
        };
        assert!(retry_after > Duration::from_secs(15) && retry_after <= Duration::from_secs(20));
        // Other webhooks have their own budget.
        assert_eq!(local.check("wh_b", 3), Decision::Allowed);
    }
}
