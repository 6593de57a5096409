//! Executions: a workflow's runs (newest first, paged by cursor, filtered by status and time), the
//! same as summaries for audits, a lookup of many ids at once, and one run with its node
//! executions.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use kai_common::jobs::ExecutionStatus;
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
use crate::error::ApiError;
use crate::state::AppState;

pub struct ExecutionsApi {
    pub state: Arc<AppState>,
}

/// `limit`'s default and maximum (also declared in the OpenAPI document).
pub(crate) const PAGE_LIMITS: (i64, i64) = (50, 500);

#[derive(Debug, Object, sqlx::FromRow)]
#[oai(skip_serializing_if_is_none)]
pub struct ExecutionOut {
    pub id: Uuid,
    pub workflow_id: Uuid,
    /// The workflow version this run executed.
    pub workflow_version: i32,
    /// `running`, `completed`, `failed` or `cancelled`; `queued` for a manual run announced but
    /// not started yet (then, and in a run's first half second, the execution is read from its
    /// events: `inputs` is null until the record is written).
    pub status: String,
    /// `webhook`, `timer` or `manual`.
    pub trigger_type: String,
    pub trigger_id: Option<String>,
    pub inputs: Value,
    pub outputs: Option<Value>,
    pub error: Option<String>,
    pub error_type: Option<String>,
    pub enqueued_at: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i32>,
    /// Which delivery of the job produced this record (1 unless a worker died mid-run).
    pub attempt: i32,
}

#[derive(Debug, Object, sqlx::FromRow)]
#[oai(skip_serializing_if_is_none)]
pub struct NodeExecutionOut {
    pub node_id: String,
    pub node_type: String,
    /// `completed`, `failed` or `skipped`.
    pub status: String,
    pub inputs: Option<Value>,
    pub outputs: Option<Value>,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i32>,
    /// Attempts the node took (retryable failures are retried); 0 when skipped.
    pub attempts: i32,
    /// What the node recorded beside its output: a model's `usage` (tokens), an agent's
    /// `steps` (each model and tool call with its inputs, outputs, tokens and duration).
    pub details: Option<Value>,
}

#[derive(Debug, Object)]
pub struct ExecutionDetail {
    #[oai(flatten)]
    pub execution: ExecutionOut,
    /// In the order they ran.
    pub node_executions: Vec<NodeExecutionOut>,
}

/// An execution not recorded yet, from its events: `queued` (a manual run announced) or
/// `running`, with the nodes settled so far; `None` when it has no events or is not `user`'s.
async fn live_execution(state: &AppState, id: Uuid, user: Uuid) -> Option<ExecutionDetail> {
    use kai_common::events::EventKind;
    let events = crate::live_events::so_far(state, id).await;
    let first = events.first()?;
    if first.user_id != user {
        return None;
    }
    let started = events
        .iter()
        .rev()
        .find(|e| e.event == EventKind::ExecutionStarted);
    let info = started
        .and_then(|e| e.output.clone())
        .unwrap_or(Value::Null);
    let execution = ExecutionOut {
        id,
        workflow_id: first.workflow_id,
        workflow_version: info["workflow_version"].as_i64().map_or(0, |v| v as i32),
        status: if started.is_some() {
            "running"
        } else {
            "queued"
        }
        .to_owned(),
        trigger_type: info["trigger_type"].as_str().unwrap_or("manual").to_owned(),
        trigger_id: info["trigger_id"].as_str().map(str::to_owned),
        inputs: Value::Null,
        outputs: None,
        error: None,
        error_type: None,
        enqueued_at: serde_json::from_value(info["enqueued_at"].clone()).unwrap_or(first.at),
        started_at: started.map_or(first.at, |e| e.at),
        completed_at: None,
        duration_ms: None,
        attempt: started
            .and_then(|e| e.attempts)
            .map_or(1, |a| a.min(i32::MAX as u32) as i32),
    };
    Some(ExecutionDetail {
        execution,
        node_executions: settled_nodes(events),
    })
}

/// The nodes of a running execution that have settled so far, from its events (its record is
/// written when it ends): outputs, errors and timings, not inputs.
fn settled_nodes(events: Vec<kai_common::events::ExecutionEvent>) -> Vec<NodeExecutionOut> {
    events
        .into_iter()
        .filter(crate::live_events::is_settled_node)
        .map(|event| {
            let duration = event.duration_ms.unwrap_or(0);
            NodeExecutionOut {
                node_id: event.node_id.unwrap_or_default(),
                node_type: event.node_type.unwrap_or_default(),
                status: match event.event {
                    kai_common::events::EventKind::NodeCompleted => "completed",
                    kai_common::events::EventKind::NodeSkipped => "skipped",
                    _ => "failed",
                }
                .to_owned(),
                inputs: None,
                outputs: event.output,
                error: event.error,
                started_at: event.at - chrono::Duration::milliseconds(duration),
                completed_at: Some(event.at),
                duration_ms: Some(i32::try_from(duration).unwrap_or(i32::MAX)),
                attempts: event.attempts.map_or(0, |a| a.min(i32::MAX as u32) as i32),
                details: None,
            }
        })
        .collect()
}

/// Columns of `ExecutionSummary`.
macro_rules! summary_columns {
    () => {
        "id, workflow_id, status, enqueued_at, started_at, completed_at"
    };
}

/// Columns of `ExecutionOut`; a macro so that the queries built from it stay string literals.
macro_rules! execution_columns {
    () => {
        "id, workflow_id, workflow_version, status, trigger_type, \
    trigger_id, inputs, CASE WHEN outputs_are_inputs THEN inputs ELSE outputs END AS outputs, \
    error, error_type, enqueued_at, started_at, completed_at, duration_ms, attempt"
    };
}

/// A page of a workflow's executions. The body stays the bare list older clients read; the next
/// page's cursor travels in a header.
#[derive(ApiResponse)]
enum ExecutionsPage {
    /// Newest first. `X-Next-Cursor`, when present, continues the listing (`cursor=`).
    #[oai(status = 200)]
    Ok(
        Json<Vec<ExecutionOut>>,
        #[oai(header = "X-Next-Cursor")] Option<String>,
    ),
}

/// What an audit needs of an execution: no inputs or outputs.
#[derive(Debug, Clone, Object, sqlx::FromRow)]
#[oai(skip_serializing_if_is_none)]
pub struct ExecutionSummary {
    pub id: Uuid,
    pub workflow_id: Uuid,
    /// `running`, `completed`, `failed` or `cancelled`.
    pub status: String,
    /// When the API accepted the trigger (queued it).
    pub enqueued_at: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ExecutionSummariesPage {
    pub items: Vec<ExecutionSummary>,
    /// Continues the listing (`cursor=`); absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Object)]
pub struct ExecutionLookup {
    /// Execution ids, 1 to 5000 (repeats are answered once).
    pub ids: Vec<Uuid>,
}

#[derive(Debug, Object)]
pub struct ExecutionLookupAnswer {
    /// The ids that exist and are yours.
    pub found: Vec<ExecutionSummary>,
    /// The ids that do not (yet) exist, or are not yours, in the order asked.
    pub missing: Vec<Uuid>,
}

/// `limit`'s default and maximum (also declared in the OpenAPI document).
pub(crate) const SUMMARY_PAGE_LIMITS: (i64, i64) = (1000, 10_000);
/// Ids one lookup answers: a few milliseconds of index probes.
pub const MAX_LOOKUP_IDS: usize = 5000;

#[OpenApi(tag = "ApiTags::Executions")]
impl ExecutionsApi {
    /// A workflow's executions, newest first. Page with `cursor` (from the `X-Next-Cursor`
    /// header): every page costs what the first does. `offset` is still accepted but slow at
    /// depth, since each page walks every row before it.
    #[oai(
        path = "/api/v1/workflows/:id/executions",
        method = "get",
        operation_id = "list_executions"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        auth: UserAuth,
        id: Path<Uuid>,
        /// 1 to 500, default 50.
        limit: Query<Option<i64>>,
        /// Executions to skip, default 0 (slow at depth: prefer `cursor`).
        offset: Query<Option<i64>>,
        /// The `X-Next-Cursor` of the previous page.
        cursor: Query<Option<String>>,
        /// Only executions with this status: `running`, `completed`, `failed` or `cancelled`.
        status: Query<Option<String>>,
        /// Only executions started at or after this time (RFC 3339).
        start_date: Query<Option<DateTime<Utc>>>,
        /// Only executions started before this time (RFC 3339).
        end_date: Query<Option<DateTime<Utc>>>,
    ) -> Result<ExecutionsPage, ApiError> {
        let scope = id.0.to_string();
        let page = PageRequest::new(
            limit.0,
            offset.0,
            cursor.0.as_deref(),
            PAGE_LIMITS,
            Listing::Executions,
            &scope,
        )?;
        let filters = Filters::new(status.0, start_date.0, end_date.0)?;
        let (rows, next) = self
            .fetch_page::<ExecutionOut>(auth.0.id, id.0, execution_columns!(), &filters, &page)
            .await?;
        Ok(ExecutionsPage::Ok(Json(rows), next))
    }

    /// A workflow's executions as ids, statuses and times only, newest first, by cursor: what a
    /// load test's audit reads. Takes the same filters and cursors as the full listing.
    #[oai(
        path = "/api/v1/workflows/:id/executions/summaries",
        method = "get",
        operation_id = "list_execution_summaries"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn summaries(
        &self,
        auth: UserAuth,
        id: Path<Uuid>,
        /// 1 to 10000, default 1000.
        limit: Query<Option<i64>>,
        /// The `next_cursor` of the previous page (or the full listing's `X-Next-Cursor`).
        cursor: Query<Option<String>>,
        /// Only executions with this status: `running`, `completed`, `failed` or `cancelled`.
        status: Query<Option<String>>,
        /// Only executions started at or after this time (RFC 3339).
        start_date: Query<Option<DateTime<Utc>>>,
        /// Only executions started before this time (RFC 3339).
        end_date: Query<Option<DateTime<Utc>>>,
    ) -> Result<Json<ExecutionSummariesPage>, ApiError> {
        let scope = id.0.to_string();
        let page = PageRequest::new(
            limit.0,
            None,
            cursor.0.as_deref(),
            SUMMARY_PAGE_LIMITS,
            Listing::Executions,
            &scope,
        )?;
        let filters = Filters::new(status.0, start_date.0, end_date.0)?;
        let (items, next_cursor) = self
            .fetch_page::<ExecutionSummary>(auth.0.id, id.0, summary_columns!(), &filters, &page)
            .await?;
        Ok(Json(ExecutionSummariesPage { items, next_cursor }))
    }

    /// Which of these execution ids exist (and are yours), with their status: an audit asks
    /// about the ids it has not seen yet instead of reading every execution again.
    #[oai(
        path = "/api/v1/executions/lookup",
        method = "post",
        operation_id = "lookup_executions"
    )]
    async fn lookup(
        &self,
        auth: UserAuth,
        body: Json<ExecutionLookup>,
    ) -> Result<Json<ExecutionLookupAnswer>, ApiError> {
        let mut ids = body.0.ids;
        if ids.is_empty() || ids.len() > MAX_LOOKUP_IDS {
            return Err(ApiError::unprocessable(format!(
                "ids: must hold 1 to {MAX_LOOKUP_IDS} execution ids (got {})",
                ids.len()
            )));
        }
        let mut seen = std::collections::HashSet::with_capacity(ids.len());
        ids.retain(|id| seen.insert(*id));
        let found: Vec<ExecutionSummary> = sqlx::query_as(concat!(
            "SELECT ",
            summary_columns!(),
            " FROM workflow_executions WHERE id = ANY($1) AND user_id = $2"
        ))
        .bind(&ids)
        .bind(auth.0.id)
        .fetch_all(&self.state.db)
        .await?;
        let present: std::collections::HashSet<Uuid> = found.iter().map(|e| e.id).collect();
        let missing = ids.into_iter().filter(|id| !present.contains(id)).collect();
        Ok(Json(ExecutionLookupAnswer { found, missing }))
    }

    /// One execution with its node executions.
    #[oai(
        path = "/api/v1/executions/:id",
        method = "get",
        operation_id = "get_execution"
    )]
    async fn get(&self, auth: UserAuth, id: Path<Uuid>) -> Result<Json<ExecutionDetail>, ApiError> {
        let execution: Option<ExecutionOut> = sqlx::query_as(concat!(
            "SELECT ",
            execution_columns!(),
            " FROM workflow_executions WHERE id = $1 AND user_id = $2"
        ))
        .bind(id.0)
        .bind(auth.0.id)
        .fetch_optional(&self.state.db)
        .await?;
        let Some(execution) = execution else {
            // Not recorded yet: a run that just started (or a queued manual run) is known by
            // its events.
            return live_execution(&self.state, id.0, auth.0.id)
                .await
                .map(Json)
                .ok_or_else(|| ApiError::not_found("execution"));
        };
        let node_executions: Vec<NodeExecutionOut> = sqlx::query_as(
            "SELECT n.node_id, n.node_type, n.status, \
                CASE WHEN n.inputs_are_trigger THEN e.inputs ELSE n.inputs END AS inputs, \
                CASE WHEN n.outputs_are_trigger THEN e.inputs ELSE n.outputs END AS outputs, \
                n.error, n.started_at, n.completed_at, n.duration_ms, n.attempts, n.details \
             FROM node_executions n JOIN workflow_executions e ON e.id = n.execution_id \
             WHERE n.execution_id = $1 ORDER BY n.started_at, n.node_id",
        )
        .bind(id.0)
        .fetch_all(&self.state.db)
        .await?;
        let mut node_executions = node_executions;
        if execution.status == "running" {
            let events = crate::live_events::so_far(&self.state, id.0).await;
            node_executions.extend(settled_nodes(events));
        }
        Ok(Json(ExecutionDetail {
            execution,
            node_executions,
        }))
    }

    /// One page of `workflow`'s executions as `T` (selected by `columns`), with the cursor after
    /// it: 404 unless the workflow is `user`'s.
    async fn fetch_page<T>(
        &self,
        user: Uuid,
        workflow: Uuid,
        columns: &str,
        filters: &Filters,
        page: &PageRequest,
    ) -> Result<(Vec<T>, Option<String>), ApiError>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Positioned + Send + Unpin,
    {
        let owned: Option<(Uuid,)> =
            sqlx::query_as("SELECT id FROM workflows WHERE id = $1 AND user_id = $2")
                .bind(workflow)
                .bind(user)
                .fetch_optional(&self.state.db)
                .await?;
        if owned.is_none() {
            return Err(ApiError::not_found("workflow"));
        }
        let mut query = QueryBuilder::new(format!("SELECT {columns}"));
        query
            .push(" FROM workflow_executions WHERE workflow_id = ")
            .push_bind(workflow);
        if let Some(status) = &filters.status {
            query.push(" AND status = ").push_bind(status.clone());
        }
        filters.range.push(&mut query, "started_at");
        page.push_after(&mut query, "started_at", "id");
        page.push_order_and_limit(&mut query, "started_at", "id");
        let rows: Vec<T> = query.build_query_as().fetch_all(&self.state.db).await?;
        let scope = workflow.to_string();
        let next = next_after(&rows, page.limit, T::position, Listing::Executions, &scope);
        Ok((rows, next))
    }
}

/// The filters both execution listings take, checked.
struct Filters {
    status: Option<String>,
    range: TimeRange,
}

impl Filters {
    fn new(
        status: Option<String>,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
    ) -> Result<Self, ApiError> {
        if let Some(status) = status.as_deref()
            && ExecutionStatus::parse(status).is_none()
        {
            return Err(ApiError::unprocessable(
                "status: must be one of running, completed, failed, cancelled",
            ));
        }
        Ok(Self {
            status,
            range: TimeRange::new(start, end)?,
        })
    }
}

/// Where a listed execution sits in the listing's order.
trait Positioned {
    fn position(&self) -> Cursor;
}

impl Positioned for ExecutionOut {
    fn position(&self) -> Cursor {
        Cursor::new(self.started_at, self.id)
    }
}

impl Positioned for ExecutionSummary {
    fn position(&self) -> Cursor {
        Cursor::new(self.started_at, self.id)
    }
}
