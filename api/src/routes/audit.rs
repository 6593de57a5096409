//! `GET /api/v1/audit`: the caller's own audit entries (sign-up, logins and failed logins on the
//! account, API keys, credentials, webhook token rotations, workflow deletions, dead-letter
//! replays), newest first, paged by cursor.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use serde_json::Value;
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use super::ApiTags;
use super::cursor::{Cursor, Listing, next_after};
use super::paging::{PageRequest, TimeRange};
use crate::audit::Action;
use crate::auth::UserAuth;
use crate::error::ApiError;
use crate::state::AppState;

/// `limit`'s default and maximum (also declared in the OpenAPI document).
pub(crate) const PAGE_LIMITS: (i64, i64) = (100, 500);

pub struct AuditApi {
    pub state: Arc<AppState>,
}

#[derive(Debug, Object, sqlx::FromRow)]
#[oai(skip_serializing_if_is_none)]
pub struct AuditEntryOut {
    pub id: Uuid,
    /// e.g. `login_failed`, `api_key_created`, `webhook_token_rotated`.
    pub action: String,
    /// `session` (an access token), `api_key`, `anonymous` (sign-up, login) or `operator`
    /// (the `kai-api` command line).
    pub actor_type: String,
    /// The API key that acted, when one did.
    pub actor_api_key_id: Option<Uuid>,
    /// What was acted on (`user`, `api_key`, `credential`, `webhook`, `workflow`,
    /// `dead_letter`) and its id.
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    /// The caller's address, when known.
    pub client_ip: Option<String>,
    /// Settings and counts of the action; never a secret.
    pub details: Value,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AuditPage {
    pub items: Vec<AuditEntryOut>,
    pub limit: i64,
    /// The cursor of the next page; absent on the last.
    pub next_cursor: Option<String>,
}

#[OpenApi(tag = "ApiTags::Auth")]
impl AuditApi {
    /// Your audit log, newest first. Page with `cursor` (from `next_cursor`).
    #[oai(
        path = "/api/v1/audit",
        method = "get",
        operation_id = "list_audit_entries"
    )]
    async fn list(
        &self,
        auth: UserAuth,
        /// 1 to 500, default 100.
        limit: Query<Option<i64>>,
        /// The `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
        /// Only entries of this action.
        action: Query<Option<String>>,
        /// Only entries at or after this time (RFC 3339).
        start_date: Query<Option<DateTime<Utc>>>,
        /// Only entries before this time (RFC 3339).
        end_date: Query<Option<DateTime<Utc>>>,
    ) -> Result<Json<AuditPage>, ApiError> {
        let scope = auth.0.id.to_string();
        let page = PageRequest::new(
            limit.0,
            None,
            cursor.0.as_deref(),
            PAGE_LIMITS,
            Listing::Audit,
            &scope,
        )?;
        let action = match action.0.as_deref() {
            None => None,
            Some(name) => Some(Action::parse(name).ok_or_else(|| {
                let known: Vec<&str> = Action::ALL.iter().map(|a| a.name()).collect();
                ApiError::unprocessable(format!("action: must be one of {}", known.join(", ")))
            })?),
        };
        let range = TimeRange::new(start_date.0, end_date.0)?;
        let mut query = QueryBuilder::<Postgres>::new(
            "SELECT id, action, actor_type, actor_api_key_id, target_type, target_id, \
                host(client_ip) AS client_ip, details, created_at \
             FROM audit_log WHERE user_id = ",
        );
        query.push_bind(auth.0.id);
        if let Some(action) = action {
            query.push(" AND action = ").push_bind(action.name());
        }
        range.push(&mut query, "created_at");
        page.push_after(&mut query, "created_at", "id");
        page.push_order_and_limit(&mut query, "created_at", "id");
        let items: Vec<AuditEntryOut> = query.build_query_as().fetch_all(&self.state.db).await?;
        let next_cursor = next_after(
            &items,
            page.limit,
            |row| Cursor::new(row.created_at, row.id),
            Listing::Audit,
            &scope,
        );
        Ok(Json(AuditPage {
            items,
            limit: page.limit,
            next_cursor,
        }))
    }
}
