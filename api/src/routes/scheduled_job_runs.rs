//! Runs of a scheduled job: `POST /api/v1/jobs/scheduled/{job_id}/trigger` runs it now through
//! the queue; `GET /api/v1/jobs/scheduled/{job_id}/executions` lists its ticks and their runs,
//! paged by cursor.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use kai_common::jobs::{JobMessage, TimerEvent, TimerJobV1};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::Value;
use sqlx::QueryBuilder;
use uuid::Uuid;

use super::ApiTags;
use super::cursor::{Cursor, Listing, next_after};
use super::paging::{PageRequest, TimeRange};
use crate::auth::UserAuth;
use crate::enqueue;
use crate::error::ApiError;
use crate::state::AppState;

/// `limit`'s default and maximum (also declared in the OpenAPI document).
pub(crate) const PAGE_LIMITS: (i64, i64) = (50, 500);
pub(crate) const STATUSES: &[&str] = &["queued", "running", "completed", "failed", "skipped"];

pub struct ScheduledJobRunsApi {
    pub state: Arc<AppState>,
}

#[derive(Debug, Object)]
pub struct Triggered {
    pub execution_id: Uuid,
    pub status: String,
}

#[derive(ApiResponse)]
enum TriggerResponse {
    /// The run is queued durably; follow it at `/api/v1/executions/{execution_id}/events`.
    #[oai(status = 202)]
    Accepted(Json<Triggered>),
}

/// One tick of a job and the run it started.
#[derive(Debug, Object, sqlx::FromRow)]
#[oai(skip_serializing_if_is_none)]
pub struct JobExecutionOut {
    pub id: Uuid,
    pub job_id: Uuid,
    /// Absent for a tick skipped because the previous run was still going.
    pub execution_id: Option<Uuid>,
    /// The tick (the trigger time for a manual trigger).
    pub scheduled_for: DateTime<Utc>,
    /// `timer` or `manual`.
    pub source: String,
    /// When the scheduler emitted the tick to the queue (how late it was: `emitted_at -
    /// scheduled_for`).
    pub emitted_at: DateTime<Utc>,
    /// When the run started; null while it waits in the queue or when skipped.
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// queued, running, completed, failed or skipped.
    pub status: String,
}

/// A page of a job's ticks: the bare list older clients read, the next page's cursor in a header.
#[derive(ApiResponse)]
enum JobRunsPage {
    /// Latest first. `X-Next-Cursor`, when present, continues the listing (`cursor=`).
    #[oai(status = 200)]
    Ok(
        Json<Vec<JobExecutionOut>>,
        #[oai(header = "X-Next-Cursor")] Option<String>,
    ),
}

#[OpenApi(tag = "ApiTags::Schedules")]
impl ScheduledJobRunsApi {
    /// Run a job now, outside its schedule. Counts toward nothing: `max_executions` limits
    /// ticks only.
    #[oai(
        path = "/api/v1/jobs/scheduled/:job_id/trigger",
        method = "post",
        operation_id = "trigger_scheduled_job"
    )]
    async fn trigger(
        &self,
        auth: UserAuth,
        job_id: Path<Uuid>,
    ) -> Result<TriggerResponse, ApiError> {
        let job: Option<(Uuid, String, Value, i32, bool)> = sqlx::query_as(
            "SELECT j.workflow_id, j.node_id, j.trigger_data, w.current_version, w.is_active \
             FROM scheduled_jobs j JOIN workflows w ON w.id = j.workflow_id \
             WHERE j.id = $1 AND w.user_id = $2",
        )
        .bind(job_id.0)
        .bind(auth.0.id)
        .fetch_optional(&self.state.db)
        .await?;
        let Some((workflow_id, node_id, trigger_data, version, active)) = job else {
            return Err(ApiError::not_found("scheduled job"));
        };
        if !active {
            return Err(ApiError::conflict("the workflow is inactive"));
        }
        let now = Utc::now();
        let execution_id = Uuid::now_v7();
        let message = JobMessage::TimerV1(TimerJobV1 {
            execution_id,
            workflow_id,
            workflow_version: version,
            user_id: auth.0.id,
            enqueued_at: now,
            event: TimerEvent {
                job_id: job_id.0,
                node_id,
                scheduled_for: now,
                source: "manual".into(),
                trigger_data,
            },
        });
        enqueue::publish(&self.state, &message).await?;
        // Recorded after the job is stored: a failed publish leaves no row for a run that
        // never happens. A crash in between leaves a run without its row, never the reverse.
        sqlx::query(
            "INSERT INTO job_executions (job_id, execution_id, scheduled_for, source) \
             VALUES ($1, $2, $3, 'manual') ON CONFLICT (job_id, scheduled_for) DO NOTHING",
        )
        .bind(job_id.0)
        .bind(execution_id)
        .bind(now)
        .execute(&self.state.db)
        .await?;
        metrics::counter!("kai_scheduled_job_triggers_total").increment(1);
        Ok(TriggerResponse::Accepted(Json(Triggered {
            execution_id,
            status: "queued".into(),
        })))
    }

    /// A job's ticks, latest first, with the state of the run each started. Page with
    /// `cursor` (from the `X-Next-Cursor` header).
    #[oai(
        path = "/api/v1/jobs/scheduled/:job_id/executions",
        method = "get",
        operation_id = "list_scheduled_job_executions"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn executions(
        &self,
        auth: UserAuth,
        job_id: Path<Uuid>,
        /// 1 to 500, default 50.
        limit: Query<Option<i64>>,
        /// The `X-Next-Cursor` of the previous page.
        cursor: Query<Option<String>>,
        /// queued, running, completed, failed or skipped.
        status: Query<Option<String>>,
        /// Only ticks scheduled at or after this time (RFC 3339).
        start_date: Query<Option<DateTime<Utc>>>,
        /// Only ticks scheduled before this time (RFC 3339).
        end_date: Query<Option<DateTime<Utc>>>,
    ) -> Result<JobRunsPage, ApiError> {
        let scope = job_id.0.to_string();
        let page = PageRequest::new(
            limit.0,
            None,
            cursor.0.as_deref(),
            PAGE_LIMITS,
            Listing::ScheduledJobRuns,
            &scope,
        )?;
        let range = TimeRange::new(start_date.0, end_date.0)?;
        if let Some(status) = status.0.as_deref()
            && !STATUSES.contains(&status)
        {
            return Err(ApiError::unprocessable(format!(
                "status: must be one of {}",
                STATUSES.join(", ")
            )));
        }
        let owned: Option<(Uuid,)> = sqlx::query_as(
            "SELECT j.id FROM scheduled_jobs j JOIN workflows w ON w.id = j.workflow_id \
             WHERE j.id = $1 AND w.user_id = $2",
        )
        .bind(job_id.0)
        .bind(auth.0.id)
        .fetch_optional(&self.state.db)
        .await?;
        if owned.is_none() {
            return Err(ApiError::not_found("scheduled job"));
        }
        // The ticks are bounded (time, cursor) inside, where the (job_id, scheduled_for) key and
        // the partitions by scheduled_for apply; the status is the join's, so it filters outside.
        let mut query = QueryBuilder::new(
            "SELECT * FROM (SELECT je.id, je.job_id, je.execution_id, je.scheduled_for, \
                je.source, je.started_at AS emitted_at, e.started_at, e.completed_at, \
                CASE WHEN je.status = 'skipped' THEN 'skipped' \
                     ELSE COALESCE(e.status, 'queued') END AS status \
             FROM job_executions je \
             LEFT JOIN workflow_executions e ON e.id = je.execution_id \
             WHERE je.job_id = ",
        );
        query.push_bind(job_id.0);
        range.push(&mut query, "je.scheduled_for");
        page.push_after(&mut query, "je.scheduled_for", "je.id");
        query.push(") runs WHERE true");
        if let Some(status) = status.0 {
            query.push(" AND runs.status = ").push_bind(status);
        }
        page.push_order_and_limit(&mut query, "runs.scheduled_for", "runs.id");
        let rows: Vec<JobExecutionOut> = query.build_query_as().fetch_all(&self.state.db).await?;
        let next = next_after(
            &rows,
            page.limit,
            |row| Cursor::new(row.scheduled_for, row.id),
            Listing::ScheduledJobRuns,
            &scope,
        );
        Ok(JobRunsPage::Ok(Json(rows), next))
    }
}
