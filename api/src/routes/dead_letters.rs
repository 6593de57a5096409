//! Dead letters, `/api/v1/dlq`: the caller's jobs the worker gave up on (after its last
//! delivery, or because the workflow or version was gone), newest first; replaying one runs the
//! same trigger again as a new execution; deleting one forgets it. The listing pages by cursor.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use kai_common::jobs::JobMessage;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use super::ApiTags;
use super::cursor::{Cursor, Listing, next_after};
use super::paging::{PageRequest, TimeRange};
use crate::audit::{self, Action, Entry};
use crate::auth::UserAuth;
use crate::enqueue;
use crate::error::ApiError;
use crate::state::AppState;

/// `limit`'s default and maximum (also declared in the OpenAPI document).
pub(crate) const PAGE_LIMITS: (i64, i64) = (50, 500);

pub struct DeadLettersApi {
    pub state: Arc<AppState>,
}

#[derive(Debug, Object, sqlx::FromRow)]
#[oai(skip_serializing_if_is_none)]
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
#[oai(skip_serializing_if_is_none)]
pub struct DeadLettersPage {
    /// Dead letters matching the filters: counted on pages by offset (the first page included),
    /// absent on pages after a cursor.
    pub total: Option<i64>,
    pub limit: i64,
    pub offset: i64,
    pub items: Vec<DeadLetterOut>,
    /// Continues the listing (`cursor=`); absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
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
    /// The caller's dead letters, newest first. Page with `cursor` (from `next_cursor`);
    /// `offset` is still accepted but slow at depth.
    #[oai(
        path = "/api/v1/dlq",
        method = "get",
        operation_id = "list_dead_letters"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        auth: UserAuth,
        /// 1 to 500, default 50.
        limit: Query<Option<i64>>,
        /// Dead letters to skip, default 0 (slow at depth: prefer `cursor`).
        offset: Query<Option<i64>>,
        /// The `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
        /// Only dead letters stored at or after this time (RFC 3339).
        start_date: Query<Option<DateTime<Utc>>>,
        /// Only dead letters stored before this time (RFC 3339).
        end_date: Query<Option<DateTime<Utc>>>,
        /// `true`: only those replayed already; `false`: only those not replayed.
        replayed: Query<Option<bool>>,
    ) -> Result<Json<DeadLettersPage>, ApiError> {
        let scope = auth.0.id.to_string();
        let page = PageRequest::new(
            limit.0,
            offset.0,
            cursor.0.as_deref(),
            PAGE_LIMITS,
            Listing::DeadLetters,
            &scope,
        )?;
        let range = TimeRange::new(start_date.0, end_date.0)?;
        let filtered = |query: &mut QueryBuilder<Postgres>| {
            query
                .push(" FROM dead_letters WHERE user_id = ")
                .push_bind(auth.0.id);
            range.push(query, "created_at");
            match replayed.0 {
                Some(true) => query.push(" AND replayed_execution_id IS NOT NULL"),
                Some(false) => query.push(" AND replayed_execution_id IS NULL"),
                None => query,
            };
        };
        let total = page.total(&self.state.db, &filtered).await?;
        let mut query = QueryBuilder::new(
            "SELECT id, execution_id, workflow_id, split_part(subject, '.', -1) AS kind, \
                reason, deliveries, replayed_execution_id, replayed_at, created_at",
        );
        filtered(&mut query);
        page.push_after(&mut query, "created_at", "id");
        page.push_order_and_limit(&mut query, "created_at", "id");
        let items: Vec<DeadLetterOut> = query.build_query_as().fetch_all(&self.state.db).await?;
        let next_cursor = next_after(
            &items,
            page.limit,
            |row| Cursor::new(row.created_at, row.id),
            Listing::DeadLetters,
            &scope,
        );
        Ok(Json(DeadLettersPage {
            total,
            limit: page.limit,
            offset: page.offset(),
            items,
            next_cursor,
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
        let entry = Entry::by(&auth.0, Action::DeadLetterReplayed)
            .target("dead_letter", id.0)
            .details(serde_json::json!({"execution_id": execution_id, "workflow_id": workflow_id}));
        audit::write(&mut *tx, &entry).await?;
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
