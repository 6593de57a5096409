//! Cron expressions with the meaning users know from Vixie cron and Python's croniter, read in
//! a schedule's time zone.
//!
//! Parsing and the search for the next match are croner's (see
//! `docs/decisions/0001-cron-library.md` for why not saffron). This module fixes the dialect:
//! five fields, or six with seconds first; day-of-week 0–7 with both 0 and 7 Sunday; a day
//! matching either day field when both are restricted; `@hourly`…`@yearly`; no year field.
//! croner also applies the DST rules the README documents: a fixed time in a spring-forward gap
//! fires once right after the gap, a fixed time in a fall-back overlap fires once (the first
//! pass), while expressions that repeat every second, minute or hour fire in both passes.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// A parsed cron expression.
#[derive(Clone)]
pub struct CronExpression {
    /// Shared: schedules are cloned into every tick's plan, and a parsed pattern is large.
    cron: Arc<Cron>,
    source: String,
    /// Vixie cron's "fixed time" job: neither the minute nor the hour field starts with `*`.
    /// Such a job fires once right after a spring-forward gap that swallowed it and only in
    /// the first pass of a fall-back overlap. croner gives this treatment only to single
    /// values (`30 2`), so lists and ranges (`30 2,14`) are corrected here.
    fixed_time: bool,
}

/// Bounds the skipping of second-pass fall-back times (a repeated hour has at most 3,600).
const MAX_SKIPS: usize = 4_000;
/// Bounds the wall-clock walk looking for a match swallowed by a gap.
const MAX_GAP_WALK: usize = 10_000;

/// What is wrong with an expression, in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronSyntaxError(pub String);

impl fmt::Display for CronSyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CronSyntaxError {}

const NICKNAMES: &[&str] = &[
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];

impl CronExpression {
    pub fn parse(expression: &str) -> Result<Self, CronSyntaxError> {
        let trimmed = expression.trim();
        if trimmed.is_empty() {
            return Err(CronSyntaxError("the expression is empty".into()));
        }
        // croner knows no @midnight; Vixie cron and croniter treat it as @daily.
        let normalized = if trimmed.eq_ignore_ascii_case("@midnight") {
            "@daily".to_string()
        } else {
            trimmed.to_string()
        };
        if normalized.starts_with('@') {
            if !NICKNAMES.contains(&normalized.to_ascii_lowercase().as_str()) {
                return Err(CronSyntaxError(format!(
                    "unknown nickname {normalized:?}; use one of {}",
                    NICKNAMES.join(", ")
                )));
            }
        } else {
            let fields = normalized.split_whitespace().count();
            if !(5..=6).contains(&fields) {
                return Err(CronSyntaxError(format!(
                    "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with \
                     seconds first, found {fields}"
                )));
            }
        }
        let cron = parser()
            .parse(&normalized)
            .map_err(|e| CronSyntaxError(format!("invalid cron expression {trimmed:?}: {e}")))?;
        Ok(Self {
            cron: Arc::new(cron),
            source: trimmed.to_string(),
            fixed_time: is_fixed_time(&normalized),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The first fire time strictly after `after`, the expression read as wall-clock time in
    /// `zone`; `None` when the expression never matches again (such as 30 February).
    pub fn next_after(&self, after: DateTime<Utc>, zone: Tz) -> Option<DateTime<Utc>> {
        let mut cursor = after;
        for _ in 0..MAX_SKIPS {
            let next = self
                .cron
                .find_next_occurrence(&cursor.with_timezone(&zone), false)
                .ok()?
                .with_timezone(&Utc);
            if !self.fixed_time {
                return Some(next);
            }
            if let Some(after_gap) = self.fire_swallowed_by_gap(after, next, zone) {
                return Some(after_gap);
            }
            if !is_second_pass(next, zone) {
                return Some(next);
            }
            cursor = next;
        }
        None
    }

    /// The instant right after a spring-forward gap, when a wall-clock match between `after`
    /// and `next` fell into that gap.
    fn fire_swallowed_by_gap(
        &self,
        after: DateTime<Utc>,
        next: DateTime<Utc>,
        zone: Tz,
    ) -> Option<DateTime<Utc>> {
        let end = next.with_timezone(&zone).naive_local();
        let mut wall = after.with_timezone(&zone).naive_local();
        for _ in 0..MAX_GAP_WALK {
            wall = self.cron.find_next_occurrence(&wall, false).ok()?;
            if wall >= end {
                return None;
            }
            if zone.from_local_datetime(&wall) == LocalResult::None {
                let resumed = first_instant_after_gap(wall, zone)?;
                if resumed > after && resumed <= next {
                    return Some(resumed);
                }
            }
        }
        None
    }

    /// An English description of when it fires.
    pub fn describe(&self) -> String {
        self.cron.describe()
    }
}

impl fmt::Debug for CronExpression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CronExpression").field(&self.source).finish()
    }
}

/// Vixie cron's test: a job is "fixed time" unless its minute or hour field starts with `*`.
fn is_fixed_time(expression: &str) -> bool {
    if let Some(nickname) = expression.strip_prefix('@') {
        return !nickname.eq_ignore_ascii_case("hourly");
    }
    let fields: Vec<&str> = expression.split_whitespace().collect();
    let (minute, hour) = if fields.len() == 6 {
        (fields[1], fields[2])
    } else {
        (fields[0], fields[1])
    };
    !minute.starts_with('*') && !hour.starts_with('*')
}

/// Whether `instant` is the later of two instants sharing its wall-clock time.
fn is_second_pass(instant: DateTime<Utc>, zone: Tz) -> bool {
    let wall = instant.with_timezone(&zone).naive_local();
    matches!(zone.from_local_datetime(&wall), LocalResult::Ambiguous(_, later) if later == instant)
}

/// The first whole minute of wall-clock time after the gap `wall` lies in (gaps start and end
/// on whole minutes in every zone of the tz database).
fn first_instant_after_gap(wall: NaiveDateTime, zone: Tz) -> Option<DateTime<Utc>> {
    let mut probe = wall.with_second(0)?;
    for _ in 0..(24 * 60) {
        probe += chrono::Duration::minutes(1);
        if let Some(resolved) = zone.from_local_datetime(&probe).earliest() {
            return Some(resolved.with_timezone(&Utc));
        }
    }
    None
}

fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        // croniter accepts `5/15` (from 5, every 15) as Vixie cron does.
        .sloppy_ranges(true)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Reference {
        cases: Vec<Case>,
    }

    #[derive(Deserialize)]
    struct Case {
        expression: String,
        timezone: String,
        after: DateTime<Utc>,
        next: Vec<DateTime<Utc>>,
    }

    /// Fire times computed independently by croniter (`scripts/cron-reference.py`).
    #[test]
    fn next_fire_times_match_croniter() {
        let reference: Reference =
            serde_json::from_str(include_str!("../../tests/fixtures/cron_reference.json")).unwrap();
        assert!(reference.cases.len() > 500);
        let mut mismatches = Vec::new();
        for case in &reference.cases {
            let expression = CronExpression::parse(&case.expression).unwrap();
            let zone: Tz = case.timezone.parse().unwrap();
            let mut at = case.after;
            let mut got = Vec::new();
            for _ in 0..case.next.len() {
                at = expression.next_after(at, zone).unwrap();
                got.push(at);
            }
            if got != case.next {
                mismatches.push(format!(
                    "{:?} in {} after {}:\n  croniter {:?}\n  ours     {:?}",
                    case.expression, case.timezone, case.after, case.next, got
                ));
            }
        }
        assert!(
            mismatches.is_empty(),
            "{} of {} cases differ:\n{}",
            mismatches.len(),
            reference.cases.len(),
            mismatches.join("\n")
        );
    }
}
