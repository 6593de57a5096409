//! What a run observed: every request's latency in an HDR histogram (microseconds, 3
//! significant digits), per-second windows for the live line and the report, and outcomes by
//! status.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies up to an hour are recorded exactly to 3 significant digits.
const MAX_LATENCY_US: u64 = 3_600_000_000;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// One request's outcome.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Seconds since the start of the run at which it was due.
    pub second: u64,
    /// From the intended send time to the end of the answer.
    pub latency: Duration,
    /// HTTP status, or `None` when no answer came (connection error, timeout).
    pub status: Option<u16>,
    /// Whether the answer carried `Retry-After`.
    pub retry_after: bool,
    /// When the answer (or the failure) came, by the wall clock, so a fault's injector can
    /// line refusals up with what it did.
    pub answered_at: SystemTime,
}

/// The requests that were not accepted (any answer but 2xx, or none): how many, how many of
/// them did not say when to retry, and when the first and the last came (Unix seconds).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Refusals {
    pub count: u64,
    pub without_retry_after: u64,
    pub first_at_unix_s: Option<f64>,
    pub last_at_unix_s: Option<f64>,
}

impl Refusals {
    fn record(&mut self, sample: &Sample) {
        self.count += 1;
        if !sample.retry_after {
            self.without_retry_after += 1;
        }
        let at = sample
            .answered_at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        self.first_at_unix_s = Some(self.first_at_unix_s.map_or(at, |first| first.min(at)));
        self.last_at_unix_s = Some(self.last_at_unix_s.map_or(at, |last| last.max(at)));
    }
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    pub fn of(histogram: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        if histogram.is_empty() {
            return Self::default();
        }
        Self {
            count: histogram.len(),
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p90_ms: ms(histogram.value_at_quantile(0.90)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            p999_ms: ms(histogram.value_at_quantile(0.999)),
            max_ms: ms(histogram.max()),
        }
    }
}

/// One second of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    pub second: u64,
    pub requests: u64,
    pub errors: u64,
    pub latency: Percentiles,
}

#[derive(Debug)]
pub struct Recorder {
    all: Histogram<u64>,
    windows: BTreeMap<u64, (Histogram<u64>, u64)>,
    /// Answers by status (`0` for no answer).
    pub statuses: BTreeMap<u16, u64>,
    pub refusals: Refusals,
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            all: new_histogram(),
            windows: BTreeMap::new(),
            statuses: BTreeMap::new(),
            refusals: Refusals::default(),
        }
    }
}

impl Recorder {
    pub fn record(&mut self, sample: &Sample) {
        let micros = (sample.latency.as_micros() as u64).clamp(1, MAX_LATENCY_US);
        self.all.saturating_record(micros);
        let (window, errors) = self
            .windows
            .entry(sample.second)
            .or_insert_with(|| (new_histogram(), 0));
        window.saturating_record(micros);
        let ok = sample.status.is_some_and(|s| (200..300).contains(&s));
        if !ok {
            *errors += 1;
            self.refusals.record(sample);
        }
        *self.statuses.entry(sample.status.unwrap_or(0)).or_default() += 1;
    }

    pub fn latency(&self) -> Percentiles {
        Percentiles::of(&self.all)
    }

    pub fn histogram(&self) -> &Histogram<u64> {
        &self.all
    }

    pub fn window(&self, second: u64) -> Option<Window> {
        self.windows.get(&second).map(|(h, errors)| Window {
            second,
            requests: h.len(),
            errors: *errors,
            latency: Percentiles::of(h),
        })
    }

    pub fn windows(&self) -> Vec<Window> {
        self.windows
            .keys()
            .filter_map(|&second| self.window(second))
            .collect()
    }

    pub fn sent(&self) -> u64 {
        self.statuses.values().sum()
    }

    pub fn accepted(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(status, _)| (200..300).contains(*status))
            .map(|(_, n)| n)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(second: u64, ms: u64, status: Option<u16>) -> Sample {
        Sample {
            second,
            latency: Duration::from_millis(ms),
            status,
            retry_after: status == Some(503),
            answered_at: UNIX_EPOCH + Duration::from_secs(1_000 + second),
        }
    }

    #[test]
    fn percentiles_windows_and_statuses_are_kept() {
        let mut recorder = Recorder::default();
        for ms in 1..=100 {
            recorder.record(&sample(0, ms, Some(202)));
        }
        recorder.record(&sample(1, 5000, Some(503)));
        recorder.record(&sample(1, 7, None));
        let latency = recorder.latency();
        assert_eq!(latency.count, 102);
        assert!((latency.p50_ms - 50.0).abs() < 0.1, "{latency:?}");
        assert!((latency.max_ms - 5000.0).abs() < 5.0, "{latency:?}");
        assert_eq!(recorder.sent(), 102);
        assert_eq!(recorder.accepted(), 100);
        assert_eq!(recorder.statuses[&503], 1);
        assert_eq!(recorder.statuses[&0], 1, "no answer counts under 0");
        let windows = recorder.windows();
        assert_eq!(windows.len(), 2);
        assert_eq!((windows[0].requests, windows[0].errors), (100, 0));
        assert_eq!((windows[1].requests, windows[1].errors), (2, 2));
        let refusals = &recorder.refusals;
        assert_eq!((refusals.count, refusals.without_retry_after), (2, 1));
        assert_eq!(refusals.first_at_unix_s, Some(1_001.0));
        assert_eq!(refusals.last_at_unix_s, Some(1_001.0));
    }
}
