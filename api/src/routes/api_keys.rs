//! API keys, `/api/v1/api-keys`: credentials for programs. A key is shown once, at creation;
//! afterwards it is known by its id, name and prefix. Scopes: `read` (GET and the read-only
//! POSTs) and `write` (everything; includes read). Creating and deleting keys needs an access
//! token from login: a key cannot mint keys.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use serde_json::json;
use uuid::Uuid;

use super::ApiTags;
use crate::audit::{self, Action, Entry};
use crate::auth::{UserAuth, api_key};
use crate::error::ApiError;
use crate::state::AppState;

pub struct ApiKeysApi {
    pub state: Arc<AppState>,
}

/// Keys one user may hold; enough for every program, few enough to audit.
const MAX_KEYS_PER_USER: i64 = 100;
/// The furthest a key's expiry may be set.
const MAX_LIFETIME_DAYS: i64 = 3650;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Enum)]
#[oai(rename_all = "lowercase")]
pub enum ApiKeyScope {
    /// Read anything the owner can read.
    Read,
    /// Change anything the owner can change (includes read).
    Write,
}

impl ApiKeyScope {
    fn name(self) -> &'static str {
        match self {
            ApiKeyScope::Read => "read",
            ApiKeyScope::Write => "write",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        match name {
            "read" => Some(ApiKeyScope::Read),
            "write" => Some(ApiKeyScope::Write),
            _ => None,
        }
    }
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct ApiKeyIn {
    /// What the key is for, 1 to 255 characters.
    #[oai(validator(min_length = 1, max_length = 255))]
    pub name: String,
    /// `read`, `write`, or both.
    #[oai(validator(min_items = 1, max_items = 2, unique_items))]
    pub scopes: Vec<ApiKeyScope>,
    /// When the key stops working; in the future and at most ten years away. None: never.
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ApiKeyOut {
    pub id: Uuid,
    pub name: String,
    /// The key's first characters (`kai_` and 8 more), to recognise it.
    pub key_prefix: String,
    pub scopes: Vec<ApiKeyScope>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Object)]
pub struct CreatedApiKey {
    /// The key itself. Shown this once: store it now.
    pub key: String,
    #[oai(flatten)]
    pub api_key: ApiKeyOut,
}

#[derive(Debug, Object)]
pub struct ApiKeyList {
    pub api_keys: Vec<ApiKeyOut>,
}

#[derive(sqlx::FromRow)]
struct ApiKeyRow {
    id: Uuid,
    name: String,
    key_prefix: String,
    scopes: Vec<String>,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
}

impl From<ApiKeyRow> for ApiKeyOut {
    fn from(row: ApiKeyRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            key_prefix: row.key_prefix,
            scopes: row
                .scopes
                .iter()
                .filter_map(|s| ApiKeyScope::parse(s))
                .collect(),
            created_at: row.created_at,
            last_used_at: row.last_used_at,
            expires_at: row.expires_at,
        }
    }
}

#[derive(ApiResponse)]
enum Created {
    /// The key, shown once.
    #[oai(status = 201)]
    Created(Json<CreatedApiKey>),
}

#[derive(ApiResponse)]
enum Deleted {
    /// The key is revoked: every replica refuses it from now on.
    #[oai(status = 204)]
    Deleted,
}

#[OpenApi(tag = "ApiTags::Auth")]
impl ApiKeysApi {
    /// Create an API key. The answer holds the key itself, never shown again. 409 past 100
    /// keys; 422 for an expiry in the past or more than ten years away.
    #[oai(
        path = "/api/v1/api-keys",
        method = "post",
        operation_id = "create_api_key"
    )]
    async fn create(&self, auth: UserAuth, body: Json<ApiKeyIn>) -> Result<Created, ApiError> {
        auth.0.require_session("creating an API key")?;
        let name = body.name.trim();
        if name.is_empty() {
            return Err(ApiError::unprocessable("name: must not be blank"));
        }
        if let Some(at) = body.expires_at {
            let now = Utc::now();
            if at <= now {
                return Err(ApiError::unprocessable("expires_at: must be in the future"));
            }
            if at > now + Duration::days(MAX_LIFETIME_DAYS) {
                return Err(ApiError::unprocessable(
                    "expires_at: must be at most ten years away",
                ));
            }
        }
        let mut scopes: Vec<&str> = body.scopes.iter().map(|s| s.name()).collect();
        scopes.sort_unstable();
        scopes.dedup();
        let new = api_key::generate();
        let mut tx = self.state.db.begin().await?;
        // Serialises one user's creations so the cap holds under concurrent requests.
        sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE")
            .bind(auth.0.id)
            .execute(&mut *tx)
            .await?;
        let (held,): (i64,) = sqlx::query_as("SELECT count(*) FROM api_keys WHERE user_id = $1")
            .bind(auth.0.id)
            .fetch_one(&mut *tx)
            .await?;
        if held >= MAX_KEYS_PER_USER {
            return Err(ApiError::conflict(format!(
                "at most {MAX_KEYS_PER_USER} API keys per account; delete one first"
            )));
        }
        let row: ApiKeyRow = sqlx::query_as(
            "INSERT INTO api_keys (user_id, name, key_prefix, key_hash, scopes, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             RETURNING id, name, key_prefix, scopes, created_at, last_used_at, expires_at",
        )
        .bind(auth.0.id)
        .bind(name)
        .bind(&new.prefix)
        .bind(&new.digest)
        .bind(&scopes)
        .bind(body.expires_at)
        .fetch_one(&mut *tx)
        .await?;
        let entry = Entry::by(&auth.0, Action::ApiKeyCreated)
            .target("api_key", row.id)
            .details(match body.expires_at {
                Some(at) => json!({"name": name, "scopes": scopes, "expires_at": at}),
                None => json!({"name": name, "scopes": scopes}),
            });
        audit::write(&mut *tx, &entry).await?;
        tx.commit().await?;
        Ok(Created::Created(Json(CreatedApiKey {
            key: new.key,
            api_key: row.into(),
        })))
    }

    /// Your API keys, newest first (never the keys themselves).
    #[oai(
        path = "/api/v1/api-keys",
        method = "get",
        operation_id = "list_api_keys"
    )]
    async fn list(&self, auth: UserAuth) -> Result<Json<ApiKeyList>, ApiError> {
        let rows: Vec<ApiKeyRow> = sqlx::query_as(
            "SELECT id, name, key_prefix, scopes, created_at, last_used_at, expires_at \
             FROM api_keys WHERE user_id = $1 ORDER BY created_at DESC, id",
        )
        .bind(auth.0.id)
        .fetch_all(&self.state.db)
        .await?;
        Ok(Json(ApiKeyList {
            api_keys: rows.into_iter().map(Into::into).collect(),
        }))
    }

    /// Revoke an API key: refused by every replica from the next request on.
    #[oai(
        path = "/api/v1/api-keys/:id",
        method = "delete",
        operation_id = "delete_api_key"
    )]
    async fn delete(&self, auth: UserAuth, id: Path<Uuid>) -> Result<Deleted, ApiError> {
        auth.0.require_session("deleting an API key")?;
        let deleted = sqlx::query("DELETE FROM api_keys WHERE id = $1 AND user_id = $2")
            .bind(id.0)
            .bind(auth.0.id)
            .execute(&self.state.db)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(ApiError::not_found("API key"));
        }
        let entry = Entry::by(&auth.0, Action::ApiKeyRevoked).target("api_key", id.0);
        audit::record(&self.state.db, entry).await;
        Ok(Deleted::Deleted)
    }
}
