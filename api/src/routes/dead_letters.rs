//! Dead letters, `/api/v1/dlq`: the caller's jobs the worker gave up on (after its last
//! delivery, or because the workflow or version was gone), newest first; replaying one runs the
//! same trigger again as a new execution; deleting one forgets it.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use kai_common::jobs::JobMessage;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;

use super::ApiTags;
use super::paging::Page;
use crate::auth::UserAuth;
use crate::enqueue;
use crate::error::ApiError;
use crate::state::AppState;

pub struct DeadLettersApi {
    pub state: Arc<AppState>,
}

#[derive(Debug, Object, sqlx::FromRow)]
pub struct DeadLetterOut {
    pub id: Uuid,
    /// The execution the job was for.
    pub execution_id: Option<Uuid>,
    pub workflow_id: Option<Uuid>,
    /// `webhook`, `manual` or `timer`.
    pub kind: String,
    /// Why the worker gave up.
    pub reason: String,
    /// Deliveries made before it did.
    pub deliveries: i32,
    /// The execution a replay started, once replayed.
    pub replayed_execution_id: Option<Uuid>,
    pub replayed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Object)]
pub struct DeadLettersPage {
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
    pub items: Vec<DeadLetterOut>,
}

#[derive(Debug, Object)]
pub struct Replayed {
    /// The new execution.
    pub execution_id: Uuid,
    /// The execution it replays.
    pub replay_of: Option<Uuid>,
    pub status: String,
}

#[derive(ApiResponse)]
enum ReplayResponse {
    /// Queued durably as a new execution.
    #[oai(status = 202)]
    Accepted(Json<Replayed>),
}

#[derive(ApiResponse)]
enum Deleted {
    #[oai(status = 204)]
    Deleted,
}

#[OpenApi(tag = "ApiTags::Executions")]
impl DeadLettersApi {
    /// The caller's dead letters, newest first.
    #[oai(
        path = "/api/v1/dlq",
        method = "get",
        operation_id = "list_dead_letters"
    )]
    async fn list(
        &self,
        auth: UserAuth,
        /// 1 to 500, default 50.
        limit: Query<Option<i64>>,
        offset: Query<Option<i64>>,
    ) -> Result<Json<DeadLettersPage>, ApiError> {
        let page = Page::new(limit.0, offset.0, 50, 500)?;
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letters WHERE user_id = $1")
            .bind(auth.0.id)
            .fetch_one(&self.state.db)
            .await?;
        let items: Vec<DeadLetterOut> = sqlx::query_as(
            "SELECT id, execution_id, workflow_id, split_part(subject, '.', -1) AS kind, \
                reason, deliveries, replayed_execution_id, replayed_at, created_at \
             FROM dead_letters WHERE user_id = $1 \
             ORDER BY created_at DESC, id LIMIT $2 OFFSET $3",
        )
        .bind(auth.0.id)
        .bind(page.limit)
        .bind(page.offset)
        .fetch_all(&self.state.db)
        .await?;
        Ok(Json(DeadLettersPage {
            total,
            limit: page.limit,
            offset: page.offset,
            items,
        }))
    }

    /// Run a dead letter's trigger again, as a new execution of the workflow's current version:
    /// 409 when it was replayed already or its workflow is gone.
    #[oai(
        path = "/api/v1/dlq/:id/replay",
        method = "post",
        operation_id = "replay_dead_letter"
    )]
    async fn replay(&self, auth: UserAuth, id: Path<Uuid>) -> Result<ReplayResponse, ApiError> {
        let mut tx = self.state.db.begin().await?;
        let letter: Option<(Vec<u8>, Option<Uuid>, Option<Uuid>)> = sqlx::query_as(
            "SELECT payload, execution_id, replayed_execution_id FROM dead_letters \
             WHERE id = $1 AND user_id = $2 FOR UPDATE",
        )
        .bind(id.0)
        .bind(auth.0.id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((payload, replay_of, replayed)) = letter else {
            return Err(ApiError::not_found("dead letter"));
        };
        if let Some(replayed) = replayed {
            return Err(ApiError::conflict(format!(
                "already replayed as execution {replayed}"
            )));
        }
        let job = JobMessage::decode(&payload)
            .map_err(|e| ApiError::conflict(format!("the job cannot be decoded: {e}")))?;
        let (_, workflow_id) = job.owner();
        let version: Option<(i32,)> =
            sqlx::query_as("SELECT current_version FROM workflows WHERE id = $1 AND user_id = $2")
                .bind(workflow_id)
                .bind(auth.0.id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some((version,)) = version else {
            return Err(ApiError::conflict("its workflow no longer exists"));
        };
        let execution_id = Uuid::now_v7();
        sqlx::query(
            "UPDATE dead_letters SET replayed_execution_id = $2, replayed_at = now() WHERE id = $1",
        )
        .bind(id.0)
        .bind(execution_id)
        .execute(&mut *tx)
        .await?;
        // Stored before the claim commits: a failed publish leaves the letter unreplayed.
        enqueue::publish(&self.state, &job.replayed(execution_id, version)).await?;
        tx.commit().await?;
        metrics::counter!("kai_dead_letters_replayed_total").increment(1);
        Ok(ReplayResponse::Accepted(Json(Replayed {
            execution_id,
            replay_of,
            status: "queued".into(),
        })))
    }

    /// Forget a dead letter (its copy in the KAI_DLQ stream too).
    #[oai(
        path = "/api/v1/dlq/:id",
        method = "delete",
        operation_id = "delete_dead_letter"
    )]
    async fn delete(&self, auth: UserAuth, id: Path<Uuid>) -> Result<Deleted, ApiError> {
        let deleted: Option<(Option<i64>,)> = sqlx::query_as(
            "DELETE FROM dead_letters WHERE id = $1 AND user_id = $2 RETURNING stream_sequence",
        )
        .bind(id.0)
        .bind(auth.0.id)
        .fetch_optional(&self.state.db)
        .await?;
        let Some((sequence,)) = deleted else {
            return Err(ApiError::not_found("dead letter"));
        };
        if let Some(sequence) = sequence.and_then(|s| u64::try_from(s).ok()) {
            // Best effort: the stream's copy expires after 14 days anyway.
            let removed = async {
                let stream = self
                    .state
                    .js
                    .get_stream(self.state.names.dlq_stream())
                    .await?;
                stream.delete_message(sequence).await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            };
            if let Err(e) = removed.await {
                tracing::warn!(error = %e, sequence, "could not delete a dead letter's stream copy");
            }
        }
        Ok(Deleted::Deleted)
    }
}
