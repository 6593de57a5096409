//! `GET /api/v1/webhooks/{webhook_id}/logs`: every call a webhook received, accepted or refused,
//! newest first, paged, optionally within a time range, with the total count.

use std::sync::Arc;

use chrono::{DateTime, Utc};
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
use crate::webhooks::endpoint;

pub struct WebhookLogsApi {
    pub state: Arc<AppState>,
}

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

#[derive(Debug, Object, sqlx::FromRow)]
pub struct WebhookLogOut {
    pub id: Uuid,
    /// The execution the call started (none for a refused call).
    pub execution_id: Option<Uuid>,
    pub event_type: String,
    pub payload: Value,
    pub correlation_id: Uuid,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_method: String,
    /// What the caller was answered.
    pub response_status: Option<i32>,
    pub execution_time_ms: Option<i32>,
    /// Why the call was refused, or why its execution failed.
    pub error_message: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Object)]
pub struct WebhookLogsPage {
    /// Calls matching the filters, on every page.
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
    pub items: Vec<WebhookLogOut>,
}

#[OpenApi(tag = "ApiTags::Webhooks")]
impl WebhookLogsApi {
    /// The calls one of your webhooks received, newest first.
    #[oai(
        path = "/api/v1/webhooks/:webhook_id/logs",
        method = "get",
        operation_id = "webhook_logs"
    )]
    async fn logs(
        &self,
        auth: UserAuth,
        webhook_id: Path<String>,
        /// 1 to 1000, default 100.
        limit: Query<Option<i64>>,
        /// Calls to skip, default 0.
        offset: Query<Option<i64>>,
        /// Only calls at or after this time (RFC 3339).
        start_date: Query<Option<DateTime<Utc>>>,
        /// Only calls before this time (RFC 3339).
        end_date: Query<Option<DateTime<Utc>>>,
    ) -> Result<Json<WebhookLogsPage>, ApiError> {
        let Page { limit, offset } = Page::new(limit.0, offset.0, DEFAULT_LIMIT, MAX_LIMIT)?;
        if let (Some(start), Some(end)) = (start_date.0, end_date.0)
            && start > end
        {
            return Err(ApiError::unprocessable(
                "start_date: must not be after end_date",
            ));
        }
        if !endpoint::is_well_formed(&webhook_id.0) {
            return Err(ApiError::not_found("webhook"));
        }
        let owned: Option<(String,)> = sqlx::query_as(
            "SELECT e.webhook_id FROM webhook_endpoints e JOIN workflows w ON w.id = e.workflow_id \
             WHERE e.webhook_id = $1 AND w.user_id = $2",
        )
        .bind(&webhook_id.0)
        .bind(auth.0.id)
        .fetch_optional(&self.state.db)
        .await?;
        if owned.is_none() {
            return Err(ApiError::not_found("webhook"));
        }
        // The time bounds also let PostgreSQL skip the monthly partitions outside them.
        let (total,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM webhook_events WHERE webhook_id = $1 \
             AND ($2::timestamptz IS NULL OR created_at >= $2) \
             AND ($3::timestamptz IS NULL OR created_at < $3)",
        )
        .bind(&webhook_id.0)
        .bind(start_date.0)
        .bind(end_date.0)
        .fetch_one(&self.state.db)
        .await?;
        let items: Vec<WebhookLogOut> = sqlx::query_as(
            "SELECT id, execution_id, event_type, payload, correlation_id, \
                host(source_ip) AS source_ip, user_agent, request_method, response_status, \
                execution_time_ms, error_message, created_at \
             FROM webhook_events WHERE webhook_id = $1 \
             AND ($2::timestamptz IS NULL OR created_at >= $2) \
             AND ($3::timestamptz IS NULL OR created_at < $3) \
             ORDER BY created_at DESC, id DESC LIMIT $4 OFFSET $5",
        )
        .bind(&webhook_id.0)
        .bind(start_date.0)
        .bind(end_date.0)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.state.db)
        .await?;
        Ok(Json(WebhookLogsPage {
            total,
            limit,
            offset,
            items,
        }))
    }
}
