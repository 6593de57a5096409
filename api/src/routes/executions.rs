//! Executions: a workflow's runs (newest first, paged, filtered by status) and one run with its
//! node executions.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use kai_common::jobs::ExecutionStatus;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use serde_json::Value;
use uuid::Uuid;

use super::ApiTags;
use super::paging::Page;
use crate::auth::UserAuth;
use crate::error::ApiError;
use crate::state::AppState;

pub struct ExecutionsApi {
    pub state: Arc<AppState>,
}

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 500;

#[derive(Debug, Object, sqlx::FromRow)]
pub struct ExecutionOut {
    pub id: Uuid,
    pub workflow_id: Uuid,
    /// The workflow version this run executed.
    pub workflow_version: i32,
    /// `running`, `completed` or `failed`.
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
}

#[derive(Debug, Object)]
pub struct ExecutionDetail {
    #[oai(flatten)]
    pub execution: ExecutionOut,
    /// In the order they ran.
    pub node_executions: Vec<NodeExecutionOut>,
}

/// Columns of `ExecutionOut`; a macro so that the queries built from it stay string literals.
macro_rules! execution_columns {
    () => {
        "id, workflow_id, workflow_version, status, trigger_type, \
    trigger_id, inputs, CASE WHEN outputs_are_inputs THEN inputs ELSE outputs END AS outputs, \
    error, error_type, enqueued_at, started_at, completed_at, duration_ms, attempt"
    };
}

#[OpenApi(tag = "ApiTags::Executions")]
impl ExecutionsApi {
    /// A workflow's executions, newest first.
    #[oai(
        path = "/api/v1/workflows/:id/executions",
        method = "get",
        operation_id = "list_executions"
    )]
    async fn list(
        &self,
        auth: UserAuth,
        id: Path<Uuid>,
        /// 1 to 500, default 50.
        limit: Query<Option<i64>>,
        /// Executions to skip, default 0.
        offset: Query<Option<i64>>,
        /// Only executions with this status: `running`, `completed` or `failed`.
        status: Query<Option<String>>,
    ) -> Result<Json<Vec<ExecutionOut>>, ApiError> {
        let Page { limit, offset } = Page::new(limit.0, offset.0, DEFAULT_LIMIT, MAX_LIMIT)?;
        if let Some(status) = status.0.as_deref()
            && ExecutionStatus::parse(status).is_none()
        {
            return Err(ApiError::unprocessable(
                "status: must be one of running, completed, failed",
            ));
        }
        let owned: Option<(Uuid,)> =
            sqlx::query_as("SELECT id FROM workflows WHERE id = $1 AND user_id = $2")
                .bind(id.0)
                .bind(auth.0.id)
                .fetch_optional(&self.state.db)
                .await?;
        if owned.is_none() {
            return Err(ApiError::not_found("workflow"));
        }
        let rows: Vec<ExecutionOut> = sqlx::query_as(concat!(
            "SELECT ",
            execution_columns!(),
            " FROM workflow_executions \
             WHERE workflow_id = $1 AND ($2::text IS NULL OR status = $2) \
             ORDER BY started_at DESC, id DESC LIMIT $3 OFFSET $4"
        ))
        .bind(id.0)
        .bind(status.0)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.state.db)
        .await?;
        Ok(Json(rows))
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
        let execution = execution.ok_or_else(|| ApiError::not_found("execution"))?;
        let node_executions: Vec<NodeExecutionOut> = sqlx::query_as(
            "SELECT n.node_id, n.node_type, n.status, \
                CASE WHEN n.inputs_are_trigger THEN e.inputs ELSE n.inputs END AS inputs, \
                CASE WHEN n.outputs_are_trigger THEN e.inputs ELSE n.outputs END AS outputs, \
                n.error, n.started_at, n.completed_at, n.duration_ms, n.attempts \
             FROM node_executions n JOIN workflow_executions e ON e.id = n.execution_id \
             WHERE n.execution_id = $1 ORDER BY n.started_at, n.node_id",
        )
        .bind(id.0)
        .fetch_all(&self.state.db)
        .await?;
        Ok(Json(ExecutionDetail {
            execution,
            node_executions,
        }))
    }
}
