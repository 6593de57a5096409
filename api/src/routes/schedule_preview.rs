//! `POST /api/v1/jobs/scheduled/preview`: the next fire times of a timer configuration, so a
//! user can check an expression and its time zone before saving it.

use chrono::{DateTime, SecondsFormat, Utc};
use kai_common::schedule::timer::TimerConfig;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use serde_json::Value;

use super::ApiTags;
use crate::auth::UserAuth;
use crate::error::ApiError;

pub(crate) const MAX_COUNT: u32 = 100;
const DEFAULT_COUNT: u32 = 10;

/// Needs no state: a preview reads and writes nothing.
pub struct SchedulePreviewApi;

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct PreviewIn {
    /// The settings a scheduled job takes (see `POST /api/v1/jobs/scheduled`).
    pub timer_config: Value,
    /// How many fire times, 1 to 100 (default 10).
    pub count: Option<u32>,
    /// The first fire time is strictly after this instant (default: now). Interval and delay
    /// timers count from it.
    pub after: Option<DateTime<Utc>>,
}

#[derive(Debug, Object)]
pub struct PreviewOut {
    /// RFC 3339 UTC instants (`2026-03-09T13:00:00Z`); fewer than asked when the schedule
    /// ends (a once timer).
    pub next_runs: Vec<String>,
    /// When it fires, in words.
    pub description: String,
}

#[OpenApi(tag = "ApiTags::Schedules")]
impl SchedulePreviewApi {
    /// The next fire times of a timer configuration.
    #[oai(
        path = "/api/v1/jobs/scheduled/preview",
        method = "post",
        operation_id = "preview_schedule"
    )]
    async fn preview(
        &self,
        _auth: UserAuth,
        body: Json<PreviewIn>,
    ) -> Result<Json<PreviewOut>, ApiError> {
        let count = body.0.count.unwrap_or(DEFAULT_COUNT);
        if !(1..=MAX_COUNT).contains(&count) {
            return Err(ApiError::unprocessable(format!(
                "count: must be between 1 and {MAX_COUNT}"
            )));
        }
        let config = TimerConfig::from_json(&body.0.timer_config)
            .map_err(|e| ApiError::unprocessable(format!("timer_config: {e}")))?;
        let after = body.0.after.unwrap_or_else(Utc::now);
        let schedule = config.schedule(after);
        Ok(Json(PreviewOut {
            next_runs: schedule
                .upcoming(after, count as usize)
                .iter()
                .map(|at| at.to_rfc3339_opts(SecondsFormat::AutoSi, true))
                .collect(),
            description: schedule.describe(),
        }))
    }
}
