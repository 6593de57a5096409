//! `GET /api/v1/webhooks/{webhook_id}/logs`: every call a webhook received, accepted or refused,
//! newest first, paged by cursor, optionally within a time range or of one answer status, with
//! the total count on the first page.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use serde_json::Value;
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use super::ApiTags;
use super::cursor::{Cursor, Listing, next_after};
use super::paging::{PageRequest, TimeRange};
use crate::auth::UserAuth;
use crate::error::ApiError;
use crate::state::AppState;
use crate::webhooks::endpoint;

pub struct WebhookLogsApi {
    pub state: Arc<AppState>,
}

/// `limit`'s default and maximum (also declared in the OpenAPI document).
pub(crate) const PAGE_LIMITS: (i64, i64) = (100, 1000);

#[derive(Debug, Object, sqlx::FromRow)]
#[oai(skip_serializing_if_is_none)]
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
#[oai(skip_serializing_if_is_none)]
pub struct WebhookLogsPage {
    /// Calls matching the filters: counted on pages by offset (the first page included), absent
    /// on pages after a cursor, so walking a long log by cursor counts it once.
    pub total: Option<i64>,
    pub limit: i64,
    pub offset: i64,
    pub items: Vec<WebhookLogOut>,
    /// Continues the listing (`cursor=`); absent on the last page.
    pub next_cursor: Option<String>,
}

#[OpenApi(tag = "ApiTags::Webhooks")]
impl WebhookLogsApi {
    /// The calls one of your webhooks received, newest first. Page with `cursor` (from
    /// `next_cursor`): every page costs what the first does; `offset` is still accepted but slow
    /// at depth.
    #[oai(
        path = "/api/v1/webhooks/:webhook_id/logs",
        method = "get",
        operation_id = "webhook_logs"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn logs(
        &self,
        auth: UserAuth,
        webhook_id: Path<String>,
        /// 1 to 1000, default 100.
        limit: Query<Option<i64>>,
        /// Calls to skip, default 0 (slow at depth: prefer `cursor`).
        offset: Query<Option<i64>>,
        /// The `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
        /// Only calls at or after this time (RFC 3339).
        start_date: Query<Option<DateTime<Utc>>>,
        /// Only calls before this time (RFC 3339).
        end_date: Query<Option<DateTime<Utc>>>,
        /// Only calls answered with this HTTP status (e.g. 202, 429).
        response_status: Query<Option<i32>>,
    ) -> Result<Json<WebhookLogsPage>, ApiError> {
        let page = PageRequest::new(
            limit.0,
            offset.0,
            cursor.0.as_deref(),
            PAGE_LIMITS,
            Listing::WebhookLogs,
            &webhook_id.0,
        )?;
        let range = TimeRange::new(start_date.0, end_date.0)?;
        if let Some(status) = response_status.0
            && !(100..=599).contains(&status)
        {
            return Err(ApiError::unprocessable(
                "response_status: must be an HTTP status, 100 to 599",
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
        let filtered = |query: &mut QueryBuilder<Postgres>| {
            query
                .push(" FROM webhook_events WHERE webhook_id = ")
                .push_bind(webhook_id.0.clone());
            range.push(query, "created_at");
            if let Some(status) = response_status.0 {
                query.push(" AND response_status = ").push_bind(status);
            }
        };
        let total = page.total(&self.state.db, &filtered).await?;
        let mut query = QueryBuilder::new(
            "SELECT id, execution_id, event_type, payload, correlation_id, \
                host(source_ip) AS source_ip, user_agent, request_method, response_status, \
                execution_time_ms, error_message, created_at",
        );
        filtered(&mut query);
        page.push_after(&mut query, "created_at", "id");
        page.push_order_and_limit(&mut query, "created_at", "id");
        let items: Vec<WebhookLogOut> = query.build_query_as().fetch_all(&self.state.db).await?;
        let next_cursor = next_after(
            &items,
            page.limit,
            |row| Cursor::new(row.created_at, row.id),
            Listing::WebhookLogs,
            &webhook_id.0,
        );
        Ok(Json(WebhookLogsPage {
            total,
            limit: page.limit,
            offset: page.offset(),
            items,
            next_cursor,
        }))
    }
}
