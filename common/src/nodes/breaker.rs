//! Circuit breakers per external host for nodes' HTTP calls: after `failures` failures in a row
//! (connection errors, timeouts, 5xx) a host's breaker opens and calls to it fail at once with a
//! retryable error for `open_for`; then one trial call is let through (half-open), and its
//! outcome closes the breaker or opens it again. A service that is down for an hour then costs
//! each run a fast failure, not a timeout per attempt, and gets room to recover.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::NodeError;

/// When a breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    pub failures: u32,
    pub open_for: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            failures: 5,
            open_for: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One trial call is out; others fail fast until it reports.
    HalfOpen,
}

impl State {
    fn gauge(self) -> f64 {
        match self {
            State::Closed { .. } => 0.0,
            State::Open { .. } => 1.0,
            State::HalfOpen => 2.0,
        }
    }
}

/// The breakers of one process (see `NodeServices`), one per host.
#[derive(Debug)]
pub struct Breakers {
    settings: Mutex<BreakerSettings>,
    hosts: Mutex<HashMap<String, State>>,
}

impl Breakers {
    pub fn new(settings: BreakerSettings) -> Self {
        Self {
            settings: Mutex::new(settings),
            hosts: Mutex::new(HashMap::new()),
        }
    }

    /// Sets the thresholds (the worker does, from its configuration, at start-up).
    pub fn configure(&self, settings: BreakerSettings) {
        *self.settings.lock().expect("breaker settings") = settings;
    }

    /// May a call to `host` go out now? An error is the fast failure of an open breaker.
    pub fn admit(&self, host: &str, now: Instant) -> Result<(), NodeError> {
        let mut hosts = self.hosts.lock().expect("breakers");
        let state = hosts
            .entry(host.to_owned())
            .or_insert(State::Closed { failures: 0 });
        match *state {
            State::Closed { .. } => Ok(()),
            State::Open { until } if now >= until => {
                set(host, state, State::HalfOpen);
                Ok(())
            }
            State::Open { .. } | State::HalfOpen => {
                metrics::counter!("kai_node_circuit_rejections_total", "host" => host.to_owned())
                    .increment(1);
                Err(NodeError::Network(format!(
                    "circuit open for {host}: it failed repeatedly; calls resume after a pause"
                )))
            }
        }
    }

    /// Reports how a call to `host` went: `true` unless it failed in a way that says the host
    /// is in trouble.
    pub fn record(&self, host: &str, healthy: bool, now: Instant) {
        let settings = *self.settings.lock().expect("breaker settings");
        let mut hosts = self.hosts.lock().expect("breakers");
        let state = hosts
            .entry(host.to_owned())
            .or_insert(State::Closed { failures: 0 });
        let next = match (*state, healthy) {
            (_, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) if failures + 1 < settings.failures => {
                State::Closed {
                    failures: failures + 1,
                }
            }
            // The threshold reached, or the half-open trial failed: open (again).
            (State::Closed { .. } | State::HalfOpen, false) => State::Open {
                until: now + settings.open_for,
            },
            // A call admitted before the breaker opened reports late: still open.
            (open @ State::Open { .. }, false) => open,
        };
        set(host, state, next);
    }
}

/// A call admitted by a host's breaker. `finish` reports how it went; a call dropped unfinished
/// (its node timed out and was cancelled) counts as a failure.
pub struct Call<'a> {
    breakers: &'a Breakers,
    host: String,
    finished: bool,
}

impl Breakers {
    /// Admits a call to `host` now, or fails fast when its breaker is open.
    pub fn call(&self, host: &str) -> Result<Call<'_>, NodeError> {
        self.admit(host, Instant::now())?;
        Ok(Call {
            breakers: self,
            host: host.to_owned(),
            finished: false,
        })
    }
}

impl Call<'_> {
    pub fn finish(mut self, healthy: bool) {
        self.finished = true;
        self.breakers.record(&self.host, healthy, Instant::now());
    }
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.breakers.record(&self.host, false, Instant::now());
        }
    }
}

fn set(host: &str, state: &mut State, next: State) {
    if std::mem::discriminant(state) != std::mem::discriminant(&next) {
        match next {
            State::Open { .. } => tracing::warn!(host, "circuit opened"),
            State::HalfOpen => tracing::info!(host, "circuit half-open: one trial call"),
            State::Closed { .. } => tracing::info!(host, "circuit closed"),
        }
    }
    *state = next;
    metrics::gauge!("kai_node_circuit_state", "host" => host.to_owned()).set(next.gauge());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breakers() -> Breakers {
        Breakers::new(BreakerSettings {
            failures: 3,
            open_for: Duration::from_secs(10),
        })
    }

    #[test]
    fn opens_after_the_threshold_fails_fast_then_lets_one_trial_through() {
        let b = breakers();
        let t0 = Instant::now();
        for _ in 0..2 {
            b.admit("api.example", t0).unwrap();
            b.record("api.example", false, t0);
        }
        b.admit("api.example", t0).unwrap();
        b.record("api.example", false, t0);
        let refused = b.admit("api.example", t0).unwrap_err();
        assert!(refused.is_retryable() && refused.to_string().contains("circuit open"));
        // Other hosts are not affected.
        b.admit("other.example", t0).unwrap();

        let later = t0 + Duration::from_secs(10);
        b.admit("api.example", later).unwrap(); // the trial
        assert!(
            b.admit("api.example", later).is_err(),
            "one trial at a time"
        );
        b.record("api.example", true, later);
        b.admit("api.example", later).unwrap();
    }

    #[test]
    fn a_call_dropped_unfinished_counts_as_a_failure() {
        let b = breakers();
        for _ in 0..3 {
            let call = b.call("slow.example").unwrap();
            drop(call); // cancelled by its node's timeout
        }
        assert!(b.call("slow.example").is_err());
        let d = breakers();
        for _ in 0..5 {
            d.call("fine.example").unwrap().finish(true);
        }
        assert!(d.call("fine.example").is_ok());
    }

    #[test]
    fn a_failed_trial_opens_it_again_and_a_success_resets_the_count() {
        let b = breakers();
        let t0 = Instant::now();
        for _ in 0..3 {
            b.record("h", false, t0);
        }
        let later = t0 + Duration::from_secs(10);
        b.admit("h", later).unwrap();
        b.record("h", false, later);
        assert!(b.admit("h", later + Duration::from_secs(9)).is_err());
        assert!(b.admit("h", later + Duration::from_secs(10)).is_ok());

        let c = breakers();
        c.record("h", false, t0);
        c.record("h", false, t0);
        c.record("h", true, t0);
        c.record("h", false, t0);
        c.record("h", false, t0);
        assert!(c.admit("h", t0).is_ok(), "failures must be in a row");
    }
}
