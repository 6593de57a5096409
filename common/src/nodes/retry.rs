//! How long to wait before retrying a node: exponential backoff with jitter, or what the
//! service asked for with `Retry-After` when that is longer.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// No retry waits longer than this, whatever a service asks (the job is held meanwhile).
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(300);

/// The wait before attempt `attempt + 1`: `backoff × 2^(attempt−1)`, jittered to between half
/// and all of it (so many runs failing together do not retry in lockstep), or `retry_after`
/// when the service asked for longer; at most `MAX_RETRY_DELAY`. `jitter` is uniform in [0, 1].
pub fn retry_delay(
    backoff: Duration,
    attempt: u32,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    let exponential = backoff
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
        .min(MAX_RETRY_DELAY);
    let jittered = exponential.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0));
    jittered
        .max(retry_after.unwrap_or_default())
        .min(MAX_RETRY_DELAY)
}

/// A `Retry-After` value: delta-seconds or an HTTP date, as of `now`.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some((at.with_timezone(&Utc) - now).to_std().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_a_cap() {
        let base = Duration::from_secs(1);
        assert_eq!(retry_delay(base, 1, None, 1.0), Duration::from_secs(1));
        assert_eq!(retry_delay(base, 1, None, 0.0), Duration::from_millis(500));
        assert_eq!(retry_delay(base, 3, None, 1.0), Duration::from_secs(4));
        assert_eq!(retry_delay(base, 3, None, 0.5), Duration::from_secs(3));
        assert_eq!(retry_delay(base, 40, None, 1.0), MAX_RETRY_DELAY);
    }

    #[test]
    fn a_longer_retry_after_is_honoured_up_to_the_cap() {
        let base = Duration::from_secs(1);
        let asked = Some(Duration::from_secs(30));
        assert_eq!(retry_delay(base, 1, asked, 0.3), Duration::from_secs(30));
        // A shorter one does not cut the backoff.
        let short = Some(Duration::from_millis(10));
        assert_eq!(retry_delay(base, 2, short, 1.0), Duration::from_secs(2));
        let huge = Some(Duration::from_secs(86_400));
        assert_eq!(retry_delay(base, 1, huge, 0.0), MAX_RETRY_DELAY);
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_a_date() {
        let now: DateTime<Utc> = "2026-11-26T12:00:00Z".parse().unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Thu, 26 Nov 2026 12:01:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_retry_after("Thu, 26 Nov 2026 11:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
