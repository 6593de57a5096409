//! Open-loop pacing: request `i` is due at `start + i / rate`, whatever became of the earlier
//! ones. Latency is measured from that intended time, so a stall of the system under test shows
//! up in the latencies of every request it delayed (no coordinated omission).

use std::time::Duration;

/// The send schedule of an open-loop run.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    period: Duration,
    /// Requests due in the whole run.
    pub total: u64,
}

impl Schedule {
    /// `rate` requests per second for `duration`. `rate` must be positive.
    pub fn new(rate: f64, duration: Duration) -> Self {
        let period = Duration::from_secs_f64(1.0 / rate);
        let total = (duration.as_secs_f64() * rate).round() as u64;
        Self { period, total }
    }

    /// When request `i` is due, relative to the start of the run.
    pub fn due(&self, i: u64) -> Duration {
        // Multiplying (not accumulating) keeps rounding errors from drifting the schedule.
        self.period.mul_f64(i as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_due_at_even_intervals_without_drift() {
        let schedule = Schedule::new(1000.0, Duration::from_secs(3));
        assert_eq!(schedule.total, 3000);
        assert_eq!(schedule.due(0), Duration::ZERO);
        assert_eq!(schedule.due(1), Duration::from_millis(1));
        assert_eq!(schedule.due(2999), Duration::from_millis(2999));
        let odd = Schedule::new(3.0, Duration::from_secs(10));
        assert_eq!(odd.total, 30);
        let last = odd.due(29).as_secs_f64();
        assert!((last - 29.0 / 3.0).abs() < 1e-6, "{last}");
    }
}
