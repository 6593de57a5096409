//! Scheduled jobs, `/api/v1/jobs/scheduled`: list, create (for a timer node that has no job,
//! e.g. after `DELETE`), read, change and delete. Saving a workflow also creates, changes and
//! deletes the jobs of its timer nodes. Every change reaches the scheduler's leader at once.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use kai_common::schedule::timer::TimerConfig;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::ApiTags;
use crate::auth::UserAuth;
use crate::error::ApiError;
use crate::node_lookup;
use crate::schedules::store::{self, TIMER_NODE_TYPE, WriteError};
use crate::state::AppState;

pub struct ScheduledJobsApi {
    pub state: Arc<AppState>,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct CreateScheduledJob {
    pub workflow_id: Uuid,
    /// A `TimerStartNode` of the workflow's current version.
    pub node_id: String,
    /// Timer settings over the node's own: `timer_type` (or `schedule_type`) cron | interval |
    /// once, `cron_expression`, `interval_seconds`, `delay_seconds` or `run_at`, `timezone`,
    /// `max_executions`, `enabled`, `trigger_data`, `misfire_policy`, `overlap_policy`.
    pub timer_config: Option<Value>,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct UpdateScheduledJob {
    /// Timer settings to change; those left out keep their value.
    pub timer_config: Option<Value>,
    /// Shorthand for `timer_config.enabled`.
    pub enabled: Option<bool>,
}

/// A scheduled job.
#[derive(Debug, Object, sqlx::FromRow)]
#[oai(skip_serializing_if_is_none)]
pub struct ScheduledJobOut {
    pub id: Uuid,
    pub workflow_id: Uuid,
    pub node_id: String,
    pub job_name: String,
    pub timer_type: String,
    pub cron_expression: Option<String>,
    pub interval_seconds: Option<i32>,
    pub delay_seconds: Option<i32>,
    pub run_at: Option<DateTime<Utc>>,
    /// IANA name; cron fire times are computed in it.
    pub timezone: String,
    /// 0 = unlimited.
    pub max_executions: i32,
    /// Ticks fired so far (manual triggers not counted).
    pub current_executions: i32,
    pub enabled: bool,
    pub trigger_data: Value,
    pub misfire_policy: String,
    pub overlap_policy: String,
    /// The next tick; null when disabled, used up, or a once timer that has fired.
    pub next_run_at: Option<DateTime<Utc>>,
    pub last_run_at: Option<DateTime<Utc>>,
    /// When it fires, in words.
    #[sqlx(skip)]
    pub description: String,
    #[oai(skip)]
    pub timer_config: Value,
    #[oai(skip)]
    pub anchor_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(ApiResponse)]
enum Created {
    /// The job, with its first tick.
    #[oai(status = 201)]
    Created(Json<ScheduledJobOut>),
}

#[derive(ApiResponse)]
enum Deleted {
    /// The job is gone and will not fire again.
    #[oai(status = 204)]
    Deleted,
}

/// The columns of `ScheduledJobOut`, as a literal for `concat!` (queries stay static strings).
macro_rules! job_columns {
    () => {
        "j.id, j.workflow_id, j.node_id, j.job_name, j.timer_type, j.cron_expression, \
         j.interval_seconds, j.delay_seconds, j.run_at, j.timezone, j.max_executions, \
         j.current_executions, j.is_enabled AS enabled, j.trigger_data, j.misfire_policy, \
         j.overlap_policy, j.next_run_at, j.last_run_at, j.timer_config, j.anchor_at, \
         j.created_at, j.updated_at"
    };
}

fn with_description(mut job: ScheduledJobOut) -> ScheduledJobOut {
    job.description = match TimerConfig::from_json(&job.timer_config) {
        Ok(config) => config.schedule(job.anchor_at).describe(),
        Err(e) => format!("invalid timer configuration: {e}"),
    };
    job
}

/// A configuration patch from a request body, or 422.
fn patch_of(config: Option<&Value>) -> Result<Map<String, Value>, ApiError> {
    let patch = match config {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(keys)) => keys.clone(),
        Some(other) => {
            return Err(ApiError::unprocessable(format!(
                "timer_config must be an object of timer settings, not {other}"
            )));
        }
    };
    let unknown = store::unknown_keys(&patch);
    if !unknown.is_empty() {
        return Err(ApiError::unprocessable(format!(
            "timer_config: unknown setting(s) {}; known: {}",
            unknown.join(", "),
            store::TIMER_KEYS.join(", ")
        )));
    }
    Ok(patch)
}

fn write_error(error: WriteError) -> ApiError {
    match error {
        WriteError::Invalid(e) => ApiError::unprocessable(format!("timer_config: {e}")),
        WriteError::Manual => ApiError::unprocessable(
            "timer_config: a manual timer has no schedule; run the workflow with \
             POST /api/v1/workflows/{id}/execute instead",
        ),
        WriteError::Database(e) => e.into(),
    }
}

impl ScheduledJobsApi {
    /// One of the caller's jobs, or 404.
    pub async fn one(&self, auth: &UserAuth, job_id: Uuid) -> Result<ScheduledJobOut, ApiError> {
        let job: Option<ScheduledJobOut> = sqlx::query_as(concat!(
            "SELECT ",
            job_columns!(),
            " FROM scheduled_jobs j JOIN workflows w ON w.id = j.workflow_id \
             WHERE j.id = $1 AND w.user_id = $2"
        ))
        .bind(job_id)
        .bind(auth.0.id)
        .fetch_optional(&self.state.db)
        .await?;
        job.map(with_description)
            .ok_or_else(|| ApiError::not_found("scheduled job"))
    }
}

#[OpenApi(tag = "ApiTags::Schedules")]
impl ScheduledJobsApi {
    /// The caller's scheduled jobs, soonest first.
    #[oai(
        path = "/api/v1/jobs/scheduled",
        method = "get",
        operation_id = "list_scheduled_jobs"
    )]
    async fn list(
        &self,
        auth: UserAuth,
        workflow_id: Query<Option<Uuid>>,
        enabled: Query<Option<bool>>,
    ) -> Result<Json<Vec<ScheduledJobOut>>, ApiError> {
        let jobs: Vec<ScheduledJobOut> = sqlx::query_as(concat!(
            "SELECT ",
            job_columns!(),
            " FROM scheduled_jobs j JOIN workflows w ON w.id = j.workflow_id \
             WHERE w.user_id = $1 AND ($2::uuid IS NULL OR j.workflow_id = $2) \
                AND ($3::bool IS NULL OR j.is_enabled = $3) \
             ORDER BY j.next_run_at NULLS LAST, j.created_at"
        ))
        .bind(auth.0.id)
        .bind(workflow_id.0)
        .bind(enabled.0)
        .fetch_all(&self.state.db)
        .await?;
        Ok(Json(jobs.into_iter().map(with_description).collect()))
    }

    /// Create the job of a timer node that has none: 409 when it has one, 422 when the node is
    /// not a `TimerStartNode` of the workflow or the configuration is invalid.
    #[oai(
        path = "/api/v1/jobs/scheduled",
        method = "post",
        operation_id = "create_scheduled_job"
    )]
    async fn create(
        &self,
        auth: UserAuth,
        body: Json<CreateScheduledJob>,
    ) -> Result<Created, ApiError> {
        let body = body.0;
        let patch = patch_of(body.timer_config.as_ref())?;
        let data = node_lookup::node_of_type(
            &self.state.db,
            auth.0.id,
            body.workflow_id,
            &body.node_id,
            TIMER_NODE_TYPE,
            "a TimerStartNode",
        )
        .await?;
        let empty = Map::new();
        let config = store::merged(data.as_object().unwrap_or(&empty), &patch);
        let mut tx = self.state.db.begin().await?;
        let exists: Option<(Uuid,)> = sqlx::query_as(
            "SELECT id FROM scheduled_jobs WHERE workflow_id = $1 AND node_id = $2 FOR UPDATE",
        )
        .bind(body.workflow_id)
        .bind(&body.node_id)
        .fetch_optional(&mut *tx)
        .await?;
        if exists.is_some() {
            return Err(ApiError::conflict(format!(
                "node `{}` already has a scheduled job; change it with PUT",
                body.node_id
            )));
        }
        let name = store::job_name(&body.node_id, &data);
        let id = store::write(&mut tx, body.workflow_id, &body.node_id, &name, config)
            .await
            .map_err(write_error)?;
        tx.commit().await?;
        Ok(Created::Created(Json(self.one(&auth, id).await?)))
    }

    /// One scheduled job.
    #[oai(
        path = "/api/v1/jobs/scheduled/:job_id",
        method = "get",
        operation_id = "get_scheduled_job"
    )]
    async fn get(
        &self,
        auth: UserAuth,
        job_id: Path<Uuid>,
    ) -> Result<Json<ScheduledJobOut>, ApiError> {
        Ok(Json(self.one(&auth, job_id.0).await?))
    }

    /// Change a job's timer settings; settings left out keep their value. Changing its timing
    /// restarts interval and delay counting from now.
    #[oai(
        path = "/api/v1/jobs/scheduled/:job_id",
        method = "put",
        operation_id = "update_scheduled_job"
    )]
    async fn update(
        &self,
        auth: UserAuth,
        job_id: Path<Uuid>,
        body: Json<UpdateScheduledJob>,
    ) -> Result<Json<ScheduledJobOut>, ApiError> {
        let mut patch = patch_of(body.0.timer_config.as_ref())?;
        if let Some(enabled) = body.0.enabled {
            patch.insert("enabled".into(), Value::Bool(enabled));
        }
        let mut tx = self.state.db.begin().await?;
        let row: Option<(Uuid, String, String, Value)> = sqlx::query_as(
            "SELECT j.workflow_id, j.node_id, j.job_name, j.timer_config FROM scheduled_jobs j \
             JOIN workflows w ON w.id = j.workflow_id \
             WHERE j.id = $1 AND w.user_id = $2 FOR UPDATE OF j",
        )
        .bind(job_id.0)
        .bind(auth.0.id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((workflow_id, node_id, name, stored)) = row else {
            return Err(ApiError::not_found("scheduled job"));
        };
        let empty = Map::new();
        let config = store::merged(stored.as_object().unwrap_or(&empty), &patch);
        store::write(&mut tx, workflow_id, &node_id, &name, config)
            .await
            .map_err(write_error)?;
        tx.commit().await?;
        Ok(Json(self.one(&auth, job_id.0).await?))
    }

    /// Delete a job: it stops at once. Saving its workflow again creates it again while the
    /// timer node is there; to pause a job, set `enabled` to false instead.
    #[oai(
        path = "/api/v1/jobs/scheduled/:job_id",
        method = "delete",
        operation_id = "delete_scheduled_job"
    )]
    async fn delete(&self, auth: UserAuth, job_id: Path<Uuid>) -> Result<Deleted, ApiError> {
        let deleted = sqlx::query(
            "DELETE FROM scheduled_jobs j USING workflows w \
             WHERE j.id = $1 AND w.id = j.workflow_id AND w.user_id = $2",
        )
        .bind(job_id.0)
        .bind(auth.0.id)
        .execute(&self.state.db)
        .await?;
        if deleted.rows_affected() == 0 {
            return Err(ApiError::not_found("scheduled job"));
        }
        Ok(Deleted::Deleted)
    }
}
