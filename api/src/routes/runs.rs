//! Manual runs, `POST /api/v1/workflows/{id}/execute`: the run goes through the queue like any
//! other (202 with its execution id), or with `?wait=true` the caller waits for its result as a
//! synchronous webhook caller does (202 if it takes longer than `timeout` seconds).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use kai_common::events::{EventKind, ExecutionEvent};
use kai_common::jobs::{ExecutionStatus, JobMessage, ManualJobV1};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::Value;
use uuid::Uuid;

use super::ApiTags;
use super::ingress_answer::{ExecutionQueued, ExecutionResult};
use crate::auth::UserAuth;
use crate::enqueue;
use crate::error::ApiError;
use crate::state::AppState;

/// Longest a caller may ask to wait for a manual run.
pub(crate) const MAX_WAIT_SECS: u64 = 300;
const DEFAULT_WAIT_SECS: u64 = 30;

pub struct RunsApi {
    pub state: Arc<AppState>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ExecuteIn {
    /// Handed to the entry nodes (a `StartNode` passes it on unless it has `initial_input`).
    pub inputs: Option<Value>,
}

#[derive(ApiResponse)]
pub enum ExecuteResponse {
    /// The run finished (`?wait=true`); its result.
    #[oai(status = 200)]
    Finished(Json<ExecutionResult>),
    /// The run is queued durably and will run; follow it at `/api/v1/executions/{id}/events`.
    #[oai(status = 202)]
    Accepted(Json<ExecutionQueued>),
}

impl RunsApi {
    /// Stores an event in the events stream. Best effort: a run whose events cannot be stored
    /// still runs and is recorded.
    async fn announce(&self, event: &ExecutionEvent) {
        let Ok(payload) = serde_json::to_vec(event) else {
            return;
        };
        let subject = self.state.names.events_subject(event.execution_id);
        let stored = async {
            self.state
                .js
                .publish(subject, payload.into())
                .await?
                .await
                .map_err(async_nats::Error::from)
        };
        match tokio::time::timeout(enqueue::PUBLISH_TIMEOUT, stored).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not store an execution event"),
            Err(_) => tracing::warn!("storing an execution event timed out"),
        }
    }
}

#[OpenApi(tag = "ApiTags::Executions")]
impl RunsApi {
    /// Run the workflow's current version now, through the queue.
    #[oai(
        path = "/api/v1/workflows/:id/execute",
        method = "post",
        operation_id = "execute_workflow"
    )]
    async fn execute(
        &self,
        auth: UserAuth,
        id: Path<Uuid>,
        /// Wait for the result instead of answering as soon as the run is queued.
        wait: Query<Option<bool>>,
        /// Seconds to wait with `wait=true` (1 to 300, default 30).
        timeout: Query<Option<u64>>,
        body: Json<ExecuteIn>,
    ) -> Result<ExecuteResponse, ApiError> {
        let wait_for = Duration::from_secs(match timeout.0 {
            None => DEFAULT_WAIT_SECS,
            Some(secs @ 1..=MAX_WAIT_SECS) => secs,
            Some(_) => {
                return Err(ApiError::unprocessable(format!(
                    "timeout: must be between 1 and {MAX_WAIT_SECS} seconds"
                )));
            }
        });
        let inputs = body.0.inputs.unwrap_or(Value::Null);
        if kai_common::json::contains_nul(&inputs) {
            return Err(ApiError::unprocessable(
                "inputs: must not contain a NUL character (\\u0000), which cannot be stored",
            ));
        }
        let workflow: Option<(i32, bool)> = sqlx::query_as(
            "SELECT current_version, is_active FROM workflows WHERE id = $1 AND user_id = $2",
        )
        .bind(id.0)
        .bind(auth.0.id)
        .fetch_optional(&self.state.db)
        .await?;
        let (version, active) = workflow.ok_or_else(|| ApiError::not_found("workflow"))?;
        if !active {
            return Err(ApiError::conflict("the workflow is inactive"));
        }

        let wants_wait = wait.0.unwrap_or(false);
        let execution_id = Uuid::now_v7();
        let job = JobMessage::ManualV1(ManualJobV1 {
            execution_id,
            workflow_id: id.0,
            workflow_version: version,
            user_id: auth.0.id,
            enqueued_at: Utc::now(),
            inputs,
            reply_to: wants_wait.then(|| self.state.reply_subject.clone()),
        });
        // Stored before the job, so a client following the run finds it at once.
        let queued_event =
            ExecutionEvent::new(EventKind::ExecutionQueued, execution_id, id.0, auth.0.id);
        self.announce(&queued_event).await;
        // Registered before publishing: a fast worker may answer before `publish` returns.
        let waiting = wants_wait.then(|| self.state.waiters.register(execution_id));
        enqueue::publish(&self.state, &job).await?;
        metrics::counter!("kai_manual_runs_total").increment(1);

        let queued = || {
            ExecuteResponse::Accepted(Json(ExecutionQueued {
                execution_id,
                status: "queued".to_owned(),
            }))
        };
        let Some(mut waiting) = waiting else {
            return Ok(queued());
        };
        match tokio::time::timeout(wait_for, &mut waiting.receiver).await {
            Ok(Ok(reply)) => Ok(ExecuteResponse::Finished(Json(ExecutionResult {
                execution_id,
                status: match reply.status {
                    ExecutionStatus::Failed => "failed",
                    ExecutionStatus::Cancelled => "cancelled",
                    _ => "completed",
                }
                .to_owned(),
                result: std::sync::Arc::unwrap_or_clone(reply.result),
                error: reply.error,
            }))),
            // Still running (or this instance lost the reply): it is stored and will finish.
            _ => Ok(queued()),
        }
    }
}
