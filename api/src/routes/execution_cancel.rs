//! `POST /api/v1/executions/{id}/cancel`: stops a run of the caller's. Every worker hears the
//! request (core NATS): the one running it stops at once (what is running, a model or HTTP
//! call, is dropped; nothing further starts) and records it `cancelled`; a queued run is
//! recorded `cancelled` without running when a worker that heard the request takes it.

use std::sync::Arc;

use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;

use super::ApiTags;
use crate::auth::UserAuth;
use crate::error::ApiError;
use crate::live_events;
use crate::state::AppState;

pub struct ExecutionCancelApi {
    pub state: Arc<AppState>,
}

#[derive(Debug, Object)]
pub struct CancelRequested {
    pub execution_id: Uuid,
    /// `cancelling`: follow the execution (or its events) to see it `cancelled`.
    pub status: String,
}

#[derive(ApiResponse)]
enum CancelResponse {
    /// The request reached the workers.
    #[oai(status = 202)]
    Accepted(Json<CancelRequested>),
}

#[OpenApi(tag = "ApiTags::Executions")]
impl ExecutionCancelApi {
    /// Cancel a queued or running execution: 202 once the workers are told; 409 when it has
    /// already finished; 404 when it is not the caller's (or not known yet).
    #[oai(
        path = "/api/v1/executions/:id/cancel",
        method = "post",
        operation_id = "cancel_execution"
    )]
    async fn cancel(&self, auth: UserAuth, id: Path<Uuid>) -> Result<CancelResponse, ApiError> {
        let state = &self.state;
        let recorded: Option<(Uuid, String)> =
            sqlx::query_as("SELECT user_id, status FROM workflow_executions WHERE id = $1")
                .bind(id.0)
                .fetch_optional(&state.db)
                .await?;
        match recorded {
            Some((owner, _)) if owner != auth.0.id => {
                return Err(ApiError::not_found("execution"));
            }
            Some((_, status)) if status != "running" => {
                return Err(ApiError::conflict(format!(
                    "the execution has already finished ({status})"
                )));
            }
            Some(_) => {}
            // Not recorded yet: queued or just started, known by its events.
            None => match live_events::latest(state, id.0).await? {
                Some((event, _)) if event.user_id == auth.0.id && !event.event.is_final() => {}
                _ => return Err(ApiError::not_found("execution")),
            },
        }
        state
            .nats
            .publish(state.names.cancel_subject(id.0), bytes::Bytes::new())
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "could not publish a cancellation");
                ApiError::unavailable("the workers cannot be reached; retry", 1)
            })?;
        // Bounded: the request answers even when NATS has just become unreachable.
        kai_common::nats::flush_within(&state.nats, std::time::Duration::from_secs(2)).await;
        Ok(CancelResponse::Accepted(Json(CancelRequested {
            execution_id: id.0,
            status: "cancelling".to_owned(),
        })))
    }
}
