//! Listing webhook endpoints (`GET /api/v1/webhooks`, served by `webhook_admin` with the path's
//! other method): the caller's endpoints with their absolute URLs, tokens and counters (exact:
//! counter deltas not yet folded in are added).

use chrono::{DateTime, Utc};
use poem_openapi::Object;
use serde_json::Value;
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;
use crate::webhooks::signature;

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct WebhookOut {
    pub webhook_id: String,
    pub workflow_id: Uuid,
    pub node_id: String,
    /// Absolute URL to call.
    pub webhook_url: String,
    /// Send as `Authorization: Bearer <security_token>`.
    pub security_token: String,
    /// The same secret as a Standard Webhooks signing key (`whsec_...`), for `hmac` mode.
    pub signing_secret: String,
    pub config: Value,
    pub is_active: bool,
    pub trigger_count: i64,
    pub last_triggered: Option<DateTime<Utc>>,
    /// Mean time from receiving a call to its execution's end, in milliseconds.
    pub avg_response_time_ms: i64,
    /// Refused calls and failed executions.
    pub error_count: i64,
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct WebhookRow {
    webhook_id: String,
    workflow_id: Uuid,
    node_id: String,
    endpoint_path: String,
    secret_token: String,
    config: Value,
    is_active: bool,
    trigger_count: i64,
    last_triggered: Option<DateTime<Utc>>,
    avg_response_time_ms: i64,
    error_count: i64,
    created_at: DateTime<Utc>,
}

/// Which of a user's webhooks to read.
#[derive(Default)]
pub struct Filter<'a> {
    pub workflow_id: Option<Uuid>,
    pub active: Option<bool>,
    pub webhook_id: Option<&'a str>,
}

/// The user's webhooks matching `filter`, oldest first.
pub async fn fetch(
    state: &AppState,
    user_id: Uuid,
    filter: Filter<'_>,
) -> Result<Vec<WebhookOut>, sqlx::Error> {
    let rows: Vec<WebhookRow> = sqlx::query_as(
        // Counters include the deltas the scheduler has not folded in yet, so they are exact.
        "SELECT e.webhook_id, e.workflow_id, e.node_id, e.endpoint_path, e.secret_token, \
            e.config, e.is_active, \
            e.trigger_count + COALESCE(d.triggers, 0) AS trigger_count, \
            GREATEST(e.last_triggered, d.last_triggered) AS last_triggered, \
            COALESCE(round((e.response_time_total_ms + COALESCE(d.response_ms, 0))::numeric \
                / NULLIF(e.timed_responses + COALESCE(d.timed, 0), 0)), 0)::bigint \
                AS avg_response_time_ms, \
            e.error_count + COALESCE(d.errors, 0) AS error_count, e.created_at \
         FROM webhook_endpoints e JOIN workflows w ON w.id = e.workflow_id \
         LEFT JOIN LATERAL (SELECT count(*) FILTER (WHERE triggered) AS triggers, \
                max(triggered_at) FILTER (WHERE triggered) AS last_triggered, \
                count(*) FILTER (WHERE failed) AS errors, \
                count(response_ms) AS timed, sum(response_ms) AS response_ms \
            FROM webhook_trigger_deltas WHERE webhook_id = e.webhook_id) d ON true \
         WHERE w.user_id = $1 AND ($2::uuid IS NULL OR e.workflow_id = $2) \
            AND ($3::bool IS NULL OR e.is_active = $3) \
            AND ($4::text IS NULL OR e.webhook_id = $4) \
         ORDER BY e.created_at, e.webhook_id",
    )
    .bind(user_id)
    .bind(filter.workflow_id)
    .bind(filter.active)
    .bind(filter.webhook_id)
    .fetch_all(&state.db)
    .await?;
    let base = &state.public_url;
    Ok(rows
        .into_iter()
        .map(|row| WebhookOut {
            webhook_url: format!("{base}{}", row.endpoint_path),
            signing_secret: signature::signing_secret(&row.secret_token).unwrap_or_default(),
            webhook_id: row.webhook_id,
            workflow_id: row.workflow_id,
            node_id: row.node_id,
            security_token: row.secret_token,
            config: row.config,
            is_active: row.is_active,
            trigger_count: row.trigger_count,
            last_triggered: row.last_triggered,
            avg_response_time_ms: row.avg_response_time_ms,
            error_count: row.error_count,
            created_at: row.created_at,
        })
        .collect())
}

/// The owner's webhook endpoints, optionally of one workflow (another owner's is a 404) and by
/// state.
pub async fn list(
    state: &AppState,
    owner: Uuid,
    workflow_id: Option<Uuid>,
    active: Option<bool>,
) -> Result<Vec<WebhookOut>, ApiError> {
    // Naming another user's workflow is answered like naming no workflow at all.
    if let Some(workflow_id) = workflow_id {
        let owned: Option<(Uuid,)> =
            sqlx::query_as("SELECT id FROM workflows WHERE id = $1 AND user_id = $2")
                .bind(workflow_id)
                .bind(owner)
                .fetch_optional(&state.db)
                .await?;
        if owned.is_none() {
            return Err(ApiError::not_found("workflow"));
        }
    }
    let filter = Filter {
        workflow_id,
        active,
        webhook_id: None,
    };
    Ok(fetch(state, owner, filter).await?)
}
