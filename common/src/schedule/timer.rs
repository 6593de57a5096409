//! A timer's configuration, as a `TimerStartNode` holds it and as the scheduled-jobs API takes
//! it (`timer_config`), and the fire times it produces.
//!
//! One reader serves both, so a node and the API accept exactly the same settings, with
//! KAI-Fusion's names (`schedule_type`, `scheduled_time`) accepted beside ours.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value};

use super::cron::CronExpression;
use crate::nodes::ConfigError;

/// How a timer decides when to fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerType {
    Cron,
    Interval,
    Once,
    /// KAI-Fusion's "manual" timer: never fires by itself, only when triggered.
    Manual,
}

impl TimerType {
    pub fn as_str(self) -> &'static str {
        match self {
            TimerType::Cron => "cron",
            TimerType::Interval => "interval",
            TimerType::Once => "once",
            TimerType::Manual => "manual",
        }
    }
}

/// What happens to ticks that fell due while no scheduler was running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MisfirePolicy {
    /// All missed ticks are coalesced into one run.
    FireOnce,
    /// Missed ticks are dropped.
    Skip,
    /// Every missed tick runs (at most `MAX_CATCH_UP` of them, the latest).
    FireAll,
}

impl MisfirePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            MisfirePolicy::FireOnce => "fire_once",
            MisfirePolicy::Skip => "skip",
            MisfirePolicy::FireAll => "fire_all",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "fire_once" => Some(Self::FireOnce),
            "skip" => Some(Self::Skip),
            "fire_all" => Some(Self::FireAll),
            _ => None,
        }
    }
}

/// Whether a tick may start a run while the schedule's previous run is still going.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverlapPolicy {
    Allow,
    Skip,
}

impl OverlapPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            OverlapPolicy::Allow => "allow",
            OverlapPolicy::Skip => "skip",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "allow" => Some(Self::Allow),
            "skip" => Some(Self::Skip),
            _ => None,
        }
    }
}

/// The most missed ticks `fire_all` runs after an outage.
pub const MAX_CATCH_UP: usize = 100;
/// The longest cron expression stored (`scheduled_jobs.cron_expression`).
const MAX_CRON_CHARS: usize = 100;
/// KAI-Fusion's default interval.
const DEFAULT_INTERVAL_SECONDS: i64 = 3600;
/// Longer intervals or delays are surely mistakes (and would overflow time arithmetic).
const MAX_SECONDS: i64 = 10 * 366 * 24 * 3600;

/// A validated timer configuration.
#[derive(Debug, Clone)]
pub struct TimerConfig {
    pub timer_type: TimerType,
    pub cron: Option<CronExpression>,
    pub interval_seconds: Option<i64>,
    pub delay_seconds: Option<i64>,
    pub run_at: Option<DateTime<Utc>>,
    pub timezone: Tz,
    pub max_executions: i32,
    pub enabled: bool,
    pub trigger_data: Value,
    pub misfire_policy: MisfirePolicy,
    pub overlap_policy: OverlapPolicy,
}

impl TimerConfig {
    /// Reads a configuration object; an error names the field that is wrong.
    pub fn from_json(config: &Value) -> Result<Self, ConfigError> {
        let Some(map) = config.as_object() else {
            return Err(ConfigError::new("timer_config", "must be an object"));
        };
        let timer_type = read_timer_type(map)?;
        let timezone = match text(map, "timezone")? {
            None => Tz::UTC,
            Some(name) => name.parse::<Tz>().map_err(|_| {
                ConfigError::new(
                    "timezone",
                    format!("{name:?} is not an IANA time zone name"),
                )
            })?,
        };
        let cron = match text(map, "cron_expression")? {
            Some(expression) if expression.chars().count() > MAX_CRON_CHARS => {
                return Err(ConfigError::new(
                    "cron_expression",
                    format!("must be at most {MAX_CRON_CHARS} characters"),
                ));
            }
            Some(expression) if timer_type == TimerType::Cron => Some(
                CronExpression::parse(expression)
                    .map_err(|e| ConfigError::new("cron_expression", e.to_string()))?,
            ),
            None if timer_type == TimerType::Cron => {
                return Err(ConfigError::new(
                    "cron_expression",
                    "is required when timer_type is cron",
                ));
            }
            _ => None,
        };
        let interval_seconds = match (integer(map, "interval_seconds")?, timer_type) {
            (Some(seconds), _) if !(1..=MAX_SECONDS).contains(&seconds) => {
                return Err(ConfigError::new(
                    "interval_seconds",
                    format!("must be between 1 and {MAX_SECONDS}"),
                ));
            }
            (None, TimerType::Interval) => Some(DEFAULT_INTERVAL_SECONDS),
            (seconds, _) => seconds,
        };
        let delay_seconds = integer(map, "delay_seconds")?;
        if let Some(delay) = delay_seconds
            && !(0..=MAX_SECONDS).contains(&delay)
        {
            return Err(ConfigError::new(
                "delay_seconds",
                format!("must be between 0 and {MAX_SECONDS}"),
            ));
        }
        let run_at = read_run_at(map)?;
        if timer_type == TimerType::Once {
            match (delay_seconds, run_at) {
                (None, None) => {
                    return Err(ConfigError::new(
                        "run_at",
                        "a once timer needs run_at (an RFC 3339 instant) or delay_seconds",
                    ));
                }
                (Some(_), Some(_)) => {
                    return Err(ConfigError::new(
                        "run_at",
                        "give either run_at or delay_seconds, not both",
                    ));
                }
                _ => {}
            }
        }
        let max_executions = match integer(map, "max_executions")? {
            None => 0,
            Some(n) => i32::try_from(n).ok().filter(|n| *n >= 0).ok_or_else(|| {
                ConfigError::new("max_executions", "must be 0 (unlimited) or more")
            })?,
        };
        let enabled = match map.get("enabled") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(enabled)) => *enabled,
            Some(_) => return Err(ConfigError::new("enabled", "must be true or false")),
        };
        let trigger_data = match map.get("trigger_data") {
            None | Some(Value::Null) => Value::Object(Map::new()),
            // PostgreSQL cannot store it: refused here rather than failing the write.
            Some(value) if crate::json::contains_nul(value) => {
                return Err(ConfigError::new(
                    "trigger_data",
                    "must not contain a NUL character (\\u0000)",
                ));
            }
            Some(value) => value.clone(),
        };
        let misfire_policy = match text(map, "misfire_policy")? {
            None => MisfirePolicy::FireOnce,
            Some(name) => MisfirePolicy::parse(name).ok_or_else(|| {
                ConfigError::new("misfire_policy", "must be fire_once, skip or fire_all")
            })?,
        };
        let overlap_policy = match text(map, "overlap_policy")? {
            None => OverlapPolicy::Allow,
            Some(name) => OverlapPolicy::parse(name)
                .ok_or_else(|| ConfigError::new("overlap_policy", "must be allow or skip"))?,
        };
        Ok(Self {
            timer_type,
            cron,
            interval_seconds,
            delay_seconds,
            run_at,
            timezone,
            max_executions,
            enabled,
            trigger_data,
            misfire_policy,
            overlap_policy,
        })
    }

    /// The fire times of this configuration for a schedule whose interval or delay counts
    /// from `anchor` (when it was created or its timing last changed).
    pub fn schedule(&self, anchor: DateTime<Utc>) -> Schedule {
        match self.timer_type {
            TimerType::Cron => Schedule::Cron {
                expression: self
                    .cron
                    .clone()
                    .expect("validated: cron has an expression"),
                zone: self.timezone,
            },
            TimerType::Interval => Schedule::Interval {
                every: Duration::seconds(self.interval_seconds.unwrap_or(DEFAULT_INTERVAL_SECONDS)),
                anchor,
            },
            TimerType::Once => Schedule::Once {
                at: self
                    .run_at
                    .unwrap_or_else(|| anchor + Duration::seconds(self.delay_seconds.unwrap_or(0))),
            },
            TimerType::Manual => Schedule::Never,
        }
    }

    /// The settings that decide fire times: when one changes, interval and delay timers count
    /// again from the change.
    pub fn timing_key(&self) -> String {
        format!(
            "{}|{}|{:?}|{:?}|{:?}|{}",
            self.timer_type.as_str(),
            self.cron.as_ref().map(CronExpression::as_str).unwrap_or(""),
            self.interval_seconds,
            self.delay_seconds,
            self.run_at,
            self.timezone.name()
        )
    }
}

/// When a timer fires.
#[derive(Debug, Clone)]
pub enum Schedule {
    Cron {
        expression: CronExpression,
        zone: Tz,
    },
    /// At `anchor + k × every` for k ≥ 1, however late earlier runs were.
    Interval {
        every: Duration,
        anchor: DateTime<Utc>,
    },
    Once {
        at: DateTime<Utc>,
    },
    Never,
}

impl Schedule {
    /// The first fire time strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Cron { expression, zone } => expression.next_after(after, *zone),
            Schedule::Interval { every, anchor } => {
                let step = every.num_milliseconds().max(1);
                let elapsed = (after - *anchor).num_milliseconds();
                let k = if elapsed < 0 { 1 } else { elapsed / step + 1 };
                anchor.checked_add_signed(Duration::milliseconds(step.checked_mul(k)?))
            }
            Schedule::Once { at } => (*at > after).then_some(*at),
            Schedule::Never => None,
        }
    }

    /// Up to `count` fire times after `after`.
    pub fn upcoming(&self, after: DateTime<Utc>, count: usize) -> Vec<DateTime<Utc>> {
        let mut runs = Vec::with_capacity(count.min(100));
        let mut at = after;
        while runs.len() < count {
            match self.next_after(at) {
                Some(next) => {
                    runs.push(next);
                    at = next;
                }
                None => break,
            }
        }
        runs
    }

    /// When it fires, in words.
    pub fn describe(&self) -> String {
        match self {
            Schedule::Cron { expression, zone } => {
                format!("{} ({})", expression.describe(), zone.name())
            }
            Schedule::Interval { every, .. } => describe_interval(every.num_seconds()),
            Schedule::Once { at } => format!("Once at {}", at.to_rfc3339()),
            Schedule::Never => "Only when triggered by hand".to_string(),
        }
    }
}

fn describe_interval(seconds: i64) -> String {
    let units = [
        (86_400, "day"),
        (3_600, "hour"),
        (60, "minute"),
        (1, "second"),
    ];
    for (size, unit) in units {
        if seconds % size == 0 {
            let n = seconds / size;
            return if n == 1 {
                format!("Every {unit}")
            } else {
                format!("Every {n} {unit}s")
            };
        }
    }
    unreachable!("every whole number of seconds is a multiple of one second")
}

fn read_timer_type(map: &Map<String, Value>) -> Result<TimerType, ConfigError> {
    let (field, value) = match (text(map, "timer_type")?, text(map, "schedule_type")?) {
        (Some(value), _) => ("timer_type", value),
        (None, Some(value)) => ("schedule_type", value),
        (None, None) => return Ok(TimerType::Interval),
    };
    match value {
        "cron" => Ok(TimerType::Cron),
        "interval" => Ok(TimerType::Interval),
        "once" => Ok(TimerType::Once),
        "manual" => Ok(TimerType::Manual),
        other => Err(ConfigError::new(
            field,
            format!("{other:?} is not one of cron, interval, once, manual"),
        )),
    }
}

fn read_run_at(map: &Map<String, Value>) -> Result<Option<DateTime<Utc>>, ConfigError> {
    let (field, value) = match (text(map, "run_at")?, text(map, "scheduled_time")?) {
        (Some(value), _) => ("run_at", value),
        (None, Some(value)) => ("scheduled_time", value),
        (None, None) => return Ok(None),
    };
    DateTime::parse_from_rfc3339(value)
        .map(|at| Some(at.with_timezone(&Utc)))
        .map_err(|_| {
            ConfigError::new(
                field,
                format!("{value:?} is not an RFC 3339 instant such as 2026-12-01T09:00:00Z"),
            )
        })
}

/// A string field; empty strings count as absent (forms send them for untouched inputs).
fn text<'a>(map: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, ConfigError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim())),
        Some(_) => Err(ConfigError::new(field, "must be a string")),
    }
}

/// An integer field, given as a JSON integer or a string of digits (KAI-Fusion's forms).
fn integer(map: &Map<String, Value>, field: &str) -> Result<Option<i64>, ConfigError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| ConfigError::new(field, "must be a whole number")),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| ConfigError::new(field, "must be a whole number")),
        Some(_) => Err(ConfigError::new(field, "must be a whole number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn kai_fusion_names_are_accepted() {
        let config = TimerConfig::from_json(&json!({
            "schedule_type": "once", "scheduled_time": "2026-12-01T09:00:00+01:00"
        }))
        .unwrap();
        assert_eq!(config.timer_type, TimerType::Once);
        assert_eq!(config.run_at, Some(at("2026-12-01T08:00:00Z")));
        let defaults = TimerConfig::from_json(&json!({})).unwrap();
        assert_eq!(defaults.timer_type, TimerType::Interval);
        assert_eq!(defaults.interval_seconds, Some(3600));
        assert_eq!(defaults.misfire_policy, MisfirePolicy::FireOnce);
        assert_eq!(defaults.overlap_policy, OverlapPolicy::Allow);
        assert_eq!(defaults.timezone, Tz::UTC);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (json!({"timer_type": "hourly"}), "timer_type"),
            (json!({"timer_type": "cron"}), "cron_expression"),
            (
                json!({"timer_type": "cron", "cron_expression": "61 * * * *"}),
                "cron_expression",
            ),
            (
                json!({"timer_type": "cron", "cron_expression": "* * *"}),
                "cron_expression",
            ),
            (json!({"interval_seconds": 0}), "interval_seconds"),
            (json!({"interval_seconds": "soon"}), "interval_seconds"),
            (json!({"timer_type": "once"}), "run_at"),
            (
                json!({"timer_type": "once", "run_at": "tomorrow"}),
                "run_at",
            ),
            (json!({"timezone": "Mars/Olympus"}), "timezone"),
            (json!({"max_executions": -1}), "max_executions"),
            (json!({"misfire_policy": "sometimes"}), "misfire_policy"),
            (json!({"overlap_policy": "queue"}), "overlap_policy"),
            (json!({"enabled": "yes"}), "enabled"),
            (
                json!({"timer_type": "cron", "cron_expression": format!("0 0 1 1 {}", "1,".repeat(60) + "2")}),
                "cron_expression",
            ),
            (json!({"trigger_data": {"note": "a\u{0}b"}}), "trigger_data"),
        ];
        for (config, field) in cases {
            let error = TimerConfig::from_json(&config).unwrap_err();
            assert_eq!(error.field, field, "{config}: {error}");
        }
    }

    #[test]
    fn intervals_count_from_the_anchor_without_drift() {
        let anchor = at("2026-01-01T00:00:00Z");
        let schedule = TimerConfig::from_json(&json!({"interval_seconds": 10}))
            .unwrap()
            .schedule(anchor);
        assert_eq!(
            schedule.next_after(anchor),
            Some(at("2026-01-01T00:00:10Z"))
        );
        // However late the previous tick was handled, the next is on the grid.
        assert_eq!(
            schedule.next_after(at("2026-01-01T00:00:17.5Z")),
            Some(at("2026-01-01T00:00:20Z"))
        );
        assert_eq!(
            schedule.next_after(at("2026-01-01T00:00:20Z")),
            Some(at("2026-01-01T00:00:30Z"))
        );
    }

    #[test]
    fn once_fires_once() {
        let anchor = at("2026-01-01T00:00:00Z");
        let schedule = TimerConfig::from_json(&json!({"timer_type": "once", "delay_seconds": 90}))
            .unwrap()
            .schedule(anchor);
        assert_eq!(
            schedule.upcoming(anchor, 5),
            vec![at("2026-01-01T00:01:30Z")]
        );
        assert!(schedule.next_after(at("2026-01-01T00:01:30Z")).is_none());
    }

    #[test]
    fn descriptions() {
        let anchor = at("2026-01-01T00:00:00Z");
        let describe = |config: Value| {
            TimerConfig::from_json(&config)
                .unwrap()
                .schedule(anchor)
                .describe()
        };
        assert_eq!(
            describe(json!({"interval_seconds": 300})),
            "Every 5 minutes"
        );
        assert_eq!(describe(json!({"interval_seconds": 1})), "Every second");
        assert_eq!(
            describe(json!({"interval_seconds": 90})),
            "Every 90 seconds"
        );
        let cron = describe(
            json!({"timer_type": "cron", "cron_expression": "0 9 * * 1-5",
            "timezone": "Europe/Berlin"}),
        );
        assert!(cron.ends_with("(Europe/Berlin)"), "{cron}");
    }
}
