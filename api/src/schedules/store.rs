//! Writing a scheduled job: the one place that turns a timer configuration into a
//! `scheduled_jobs` row, used by the scheduled-jobs API and by workflow saves alike.
//!
//! The row keeps the configuration as given (`timer_config`) and what the scheduler needs
//! derived from it. Interval and delay timers count from `anchor_at`, which moves only when the
//! timing changes, so saving a workflow again does not shift its ticks.

use chrono::{DateTime, SubsecRound, Utc};
use kai_common::nodes::ConfigError;
use kai_common::schedule::timer::{TimerConfig, TimerType};
use serde_json::{Map, Value};
use sqlx::{PgConnection, Postgres, Transaction};
use uuid::Uuid;

/// The node type whose settings are a timer configuration.
pub const TIMER_NODE_TYPE: &str = "TimerStartNode";

/// The keys of a timer configuration; a node's other settings (its name, position, KAI-Fusion's
/// `timeout_seconds`) are not part of the schedule.
pub const TIMER_KEYS: &[&str] = &[
    "timer_type",
    "schedule_type",
    "cron_expression",
    "interval_seconds",
    "delay_seconds",
    "run_at",
    "scheduled_time",
    "timezone",
    "max_executions",
    "enabled",
    "trigger_data",
    "misfire_policy",
    "overlap_policy",
];

/// Why a configuration cannot be stored as a scheduled job.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{0}")]
    Invalid(ConfigError),
    #[error("a manual timer has no schedule; it runs only when triggered")]
    Manual,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// `base` with the timer keys of `patch` set over it; a key whose alias is set by the patch
/// (`schedule_type` for `timer_type`) gives way to it.
pub fn merged(base: &Map<String, Value>, patch: &Map<String, Value>) -> Map<String, Value> {
    let mut config: Map<String, Value> = base
        .iter()
        .filter(|(key, _)| TIMER_KEYS.contains(&key.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (key, value) in patch {
        if !TIMER_KEYS.contains(&key.as_str()) {
            continue;
        }
        if let Some(alias) = alias_of(key) {
            config.remove(alias);
        }
        config.insert(key.clone(), value.clone());
    }
    config
}

fn alias_of(key: &str) -> Option<&'static str> {
    match key {
        "timer_type" => Some("schedule_type"),
        "schedule_type" => Some("timer_type"),
        "run_at" => Some("scheduled_time"),
        "scheduled_time" => Some("run_at"),
        _ => None,
    }
}

/// The configuration keys of a request body that are not timer settings, to refuse them.
pub fn unknown_keys(patch: &Map<String, Value>) -> Vec<&str> {
    patch
        .keys()
        .map(String::as_str)
        .filter(|key| !TIMER_KEYS.contains(key))
        .collect()
}

/// The row as it is before a write.
#[derive(sqlx::FromRow)]
struct Existing {
    id: Uuid,
    timer_config: Value,
    anchor_at: DateTime<Utc>,
    next_run_at: Option<DateTime<Utc>>,
    current_executions: i32,
}

/// Creates or updates the job of `node_id` with `config` and returns its id. The caller holds
/// the transaction; the existing row is locked for the read-modify-write.
pub async fn write(
    tx: &mut Transaction<'_, Postgres>,
    workflow_id: Uuid,
    node_id: &str,
    job_name: &str,
    config: Map<String, Value>,
) -> Result<Uuid, WriteError> {
    let raw = Value::Object(config);
    let timer = TimerConfig::from_json(&raw).map_err(WriteError::Invalid)?;
    if timer.timer_type == TimerType::Manual {
        return Err(WriteError::Manual);
    }
    let existing: Option<Existing> = sqlx::query_as(
        "SELECT id, timer_config, anchor_at, next_run_at, current_executions \
         FROM scheduled_jobs WHERE workflow_id = $1 AND node_id = $2 FOR UPDATE",
    )
    .bind(workflow_id)
    .bind(node_id)
    .fetch_optional(&mut **tx)
    .await?;
    // Microseconds, as PostgreSQL stores them: ticks computed from the stored anchor match.
    let now = Utc::now().trunc_subsecs(6);
    let (anchor, next_run_at) = match &existing {
        Some(old) => {
            let before = TimerConfig::from_json(&old.timer_config).ok();
            let same_timing =
                before.as_ref().map(TimerConfig::timing_key) == Some(timer.timing_key());
            let anchor = if same_timing { old.anchor_at } else { now };
            let unchanged = same_timing
                && before.as_ref().is_some_and(|b| {
                    b.enabled == timer.enabled && b.max_executions == timer.max_executions
                });
            let next = if unchanged {
                old.next_run_at
            } else {
                first_run(&timer, anchor, now, old.current_executions)
            };
            (anchor, next)
        }
        None => (now, first_run(&timer, now, now, 0)),
    };
    if let Some(old) = &existing
        && old.timer_config == raw
        && old.next_run_at == next_run_at
    {
        // Nothing changed (a workflow saved again): no write, so no change notification.
        touch_name(tx, old.id, job_name).await?;
        return Ok(old.id);
    }
    let (id,): (Uuid,) = sqlx::query_as(
        "INSERT INTO scheduled_jobs (workflow_id, node_id, job_name, timer_type, \
            cron_expression, interval_seconds, delay_seconds, run_at, timezone, max_executions, \
            is_enabled, trigger_data, misfire_policy, overlap_policy, timer_config, anchor_at, \
            next_run_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
         ON CONFLICT (workflow_id, node_id) DO UPDATE SET job_name = EXCLUDED.job_name, \
            timer_type = EXCLUDED.timer_type, cron_expression = EXCLUDED.cron_expression, \
            interval_seconds = EXCLUDED.interval_seconds, \
            delay_seconds = EXCLUDED.delay_seconds, run_at = EXCLUDED.run_at, \
            timezone = EXCLUDED.timezone, max_executions = EXCLUDED.max_executions, \
            is_enabled = EXCLUDED.is_enabled, trigger_data = EXCLUDED.trigger_data, \
            misfire_policy = EXCLUDED.misfire_policy, \
            overlap_policy = EXCLUDED.overlap_policy, timer_config = EXCLUDED.timer_config, \
            anchor_at = EXCLUDED.anchor_at, next_run_at = EXCLUDED.next_run_at, \
            updated_at = clock_timestamp() \
         RETURNING id",
    )
    .bind(workflow_id)
    .bind(node_id)
    .bind(job_name)
    .bind(timer.timer_type.as_str())
    .bind(timer.cron.as_ref().map(|c| c.as_str().to_owned()))
    .bind(timer.interval_seconds.and_then(|s| i32::try_from(s).ok()))
    .bind(timer.delay_seconds.and_then(|s| i32::try_from(s).ok()))
    .bind(timer.run_at)
    .bind(timer.timezone.name())
    .bind(timer.max_executions)
    .bind(timer.enabled)
    .bind(&timer.trigger_data)
    .bind(timer.misfire_policy.as_str())
    .bind(timer.overlap_policy.as_str())
    .bind(&raw)
    .bind(anchor)
    .bind(next_run_at)
    .fetch_one(&mut **tx)
    .await?;
    Ok(id)
}

/// A node renamed without other changes keeps its job and ticks.
async fn touch_name(tx: &mut PgConnection, id: Uuid, job_name: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE scheduled_jobs SET job_name = $2, updated_at = clock_timestamp() \
         WHERE id = $1 AND job_name IS DISTINCT FROM $2",
    )
    .bind(id)
    .bind(job_name)
    .execute(tx)
    .await?;
    Ok(())
}

/// The first tick from `now` of a timer, or none when it is disabled or has used up its runs.
fn first_run(
    timer: &TimerConfig,
    anchor: DateTime<Utc>,
    now: DateTime<Utc>,
    executions: i32,
) -> Option<DateTime<Utc>> {
    if !timer.enabled || (timer.max_executions > 0 && executions >= timer.max_executions) {
        return None;
    }
    timer.schedule(anchor).next_after(now)
}

/// The name of a timer node's job: the node's `name`, else one made from its id.
pub fn job_name(node_id: &str, data: &Value) -> String {
    data.get("name")
        .and_then(Value::as_str)
        .filter(|name| !name.trim().is_empty())
        .map(|name| name.chars().take(255).collect())
        .unwrap_or_else(|| format!("Timer {node_id}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_patch_replaces_keys_and_their_aliases_and_drops_other_settings() {
        let base = json!({"name": "Nightly", "schedule_type": "interval", "interval_seconds": 60,
            "timeout_seconds": 300});
        let patch = json!({"timer_type": "cron", "cron_expression": "0 3 * * *"});
        let config = merged(base.as_object().unwrap(), patch.as_object().unwrap());
        assert_eq!(
            Value::Object(config),
            json!({"timer_type": "cron", "cron_expression": "0 3 * * *", "interval_seconds": 60})
        );
    }
}
