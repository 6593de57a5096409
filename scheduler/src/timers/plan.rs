//! Which of a job's due ticks to run, by its misfire policy and `max_executions`, and its next
//! tick after them. Pure, so every policy is tested without a clock or a database.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kai_common::schedule::timer::{MAX_CATCH_UP, MisfirePolicy, Schedule};

/// A tick handled later than this after its time was missed (no scheduler ran, or the leader
/// was failing over); later ones go by the misfire policy. The leader normally fires within
/// milliseconds, so only an outage makes a tick this late.
pub const MISFIRE_GRACE: Duration = Duration::from_secs(5);

/// Due ticks are enumerated up to this many; an outage longer than that many ticks drops the
/// oldest (only `fire_all` would have run them, and it runs at most `MAX_CATCH_UP`).
const MAX_ENUMERATED: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Ticks to run, oldest first.
    pub fire: Vec<DateTime<Utc>>,
    /// The job's next tick, after every due one; `None` when it has no more.
    pub next: Option<DateTime<Utc>>,
}

/// Plans the ticks from `due` (the job's `next_run_at`) up to `now`. `remaining` is how many
/// more ticks `max_executions` allows (`None`: unlimited).
pub fn plan(
    schedule: &Schedule,
    due: DateTime<Utc>,
    now: DateTime<Utc>,
    misfire: MisfirePolicy,
    remaining: Option<u32>,
) -> Plan {
    let mut ticks = VecDeque::new();
    let mut cursor = Some(due);
    while let Some(tick) = cursor
        && tick <= now
    {
        if ticks.len() == MAX_ENUMERATED {
            ticks.pop_front();
        }
        ticks.push_back(tick);
        cursor = schedule.next_after(tick);
    }
    let mut next = cursor;
    let ticks = ticks.make_contiguous();

    let grace = chrono::Duration::from_std(MISFIRE_GRACE).expect("a few seconds");
    let split = ticks.partition_point(|tick| now - *tick > grace);
    let (missed, on_time) = ticks.split_at(split);
    let mut fire: Vec<DateTime<Utc>> = match misfire {
        MisfirePolicy::Skip => Vec::new(),
        MisfirePolicy::FireOnce => missed.last().copied().into_iter().collect(),
        MisfirePolicy::FireAll => missed[missed.len().saturating_sub(MAX_CATCH_UP)..].to_vec(),
    };
    fire.extend_from_slice(on_time);

    if let Some(remaining) = remaining {
        let remaining = remaining as usize;
        if fire.len() >= remaining {
            fire.truncate(remaining);
            next = None;
        }
    }
    Plan { fire, next }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration as Span;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn every_second() -> Schedule {
        Schedule::Interval {
            every: Span::seconds(1),
            anchor: at("2026-01-01T00:00:00Z"),
        }
    }

    #[test]
    fn an_on_time_tick_fires_and_the_next_follows_the_grid() {
        let plan = plan(
            &every_second(),
            at("2026-01-01T00:00:10Z"),
            at("2026-01-01T00:00:10.004Z"),
            MisfirePolicy::FireOnce,
            None,
        );
        assert_eq!(plan.fire, vec![at("2026-01-01T00:00:10Z")]);
        assert_eq!(plan.next, Some(at("2026-01-01T00:00:11Z")));
    }

    #[test]
    fn ticks_within_the_grace_all_fire_whatever_the_policy() {
        for policy in [
            MisfirePolicy::FireOnce,
            MisfirePolicy::Skip,
            MisfirePolicy::FireAll,
        ] {
            let plan = plan(
                &every_second(),
                at("2026-01-01T00:00:10Z"),
                at("2026-01-01T00:00:13.5Z"),
                policy,
                None,
            );
            assert_eq!(plan.fire.len(), 4, "{policy:?}");
            assert_eq!(plan.next, Some(at("2026-01-01T00:00:14Z")));
        }
    }

    #[test]
    fn missed_ticks_follow_the_misfire_policy() {
        let due = at("2026-01-01T00:00:10Z");
        let now = at("2026-01-01T00:01:00.5Z"); // 51 ticks due, 46 of them beyond the grace
        let fire_once = plan(&every_second(), due, now, MisfirePolicy::FireOnce, None);
        assert_eq!(fire_once.fire.len(), 1 + 5);
        assert_eq!(fire_once.fire[0], at("2026-01-01T00:00:55Z"));
        let skip = plan(&every_second(), due, now, MisfirePolicy::Skip, None);
        assert_eq!(skip.fire.first(), Some(&at("2026-01-01T00:00:56Z")));
        assert_eq!(skip.fire.len(), 5);
        let fire_all = plan(&every_second(), due, now, MisfirePolicy::FireAll, None);
        assert_eq!(fire_all.fire.len(), 51);
        assert_eq!(fire_all.fire[0], due);
        for p in [fire_once, skip, fire_all] {
            assert_eq!(p.next, Some(at("2026-01-01T00:01:01Z")));
        }
    }

    #[test]
    fn fire_all_is_bounded() {
        let plan = plan(
            &every_second(),
            at("2026-01-01T00:00:10Z"),
            at("2026-01-01T01:00:00Z"),
            MisfirePolicy::FireAll,
            None,
        );
        // The latest MAX_CATCH_UP missed ones, and the six within the grace (00:59:55 to 01:00).
        assert_eq!(plan.fire.len(), MAX_CATCH_UP + 6);
        assert_eq!(plan.fire[0], at("2026-01-01T00:58:15Z"));
    }

    #[test]
    fn max_executions_ends_the_schedule() {
        let plan = plan(
            &every_second(),
            at("2026-01-01T00:00:10Z"),
            at("2026-01-01T00:00:12Z"),
            MisfirePolicy::FireAll,
            Some(2),
        );
        assert_eq!(
            plan.fire,
            vec![at("2026-01-01T00:00:10Z"), at("2026-01-01T00:00:11Z")]
        );
        assert_eq!(plan.next, None);
        let exhausted = super::plan(
            &every_second(),
            at("2026-01-01T00:00:10Z"),
            at("2026-01-01T00:00:10Z"),
            MisfirePolicy::FireAll,
            Some(0),
        );
        assert!(exhausted.fire.is_empty());
        assert_eq!(exhausted.next, None);
    }

    #[test]
    fn a_once_timer_has_no_next_tick() {
        let once = Schedule::Once {
            at: at("2026-01-01T00:00:10Z"),
        };
        let plan = plan(
            &once,
            at("2026-01-01T00:00:10Z"),
            at("2026-01-01T00:00:10.01Z"),
            MisfirePolicy::FireOnce,
            None,
        );
        assert_eq!(plan.fire, vec![at("2026-01-01T00:00:10Z")]);
        assert_eq!(plan.next, None);
    }
}
