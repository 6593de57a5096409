//! The HTTP tools API: `POST /api/v1/tools/http/test` makes one request through the same code
//! and SSRF guard as HttpRequest nodes (nothing stored; limited per user), and
//! `GET /api/v1/tools/http/logs` lists the calls your workflows made, redacted, newest first.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kai_common::outbound::auth::Auth;
use kai_common::outbound::call::{self, CallError, HttpCall, Method, Oversize};
use kai_common::outbound::redact::Redactor;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use secrecy::SecretString;
use serde_json::{Map, Value};
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use super::ApiTags;
use super::cursor::{Cursor, Listing, next_after};
use super::paging::PageRequest;
use crate::auth::UserAuth;
use crate::error::ApiError;
use crate::state::AppState;
use crate::webhooks::rate_limit::Decision;

/// Test requests a user may make per minute.
pub const TESTS_PER_MINUTE: u32 = 30;
/// Bytes of an answer shown; the rest is cut and `body_truncated` set.
pub const SHOWN_BODY_BYTES: usize = 256 * 1024;
const DEFAULT_TIMEOUT_SECS: f64 = 30.0;
pub(crate) const MAX_TIMEOUT_SECS: f64 = 60.0;
/// The `type`s of inline authentication.
pub(crate) const INLINE_AUTH_TYPES: &[&str] = &["none", "bearer", "basic", "api_key", "header"];
pub(crate) const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
/// `limit`'s default and maximum (also declared in the OpenAPI document).
pub(crate) const PAGE_LIMITS: (i64, i64) = (100, 1000);

pub struct HttpToolsApi {
    pub state: Arc<AppState>,
}

/// Authentication given inline (nothing is stored).
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct InlineAuth {
    /// `bearer`, `basic`, `api_key` (header `X-API-Key` unless `header_name`) or `header`.
    #[oai(rename = "type")]
    pub kind: String,
    pub token: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub header_name: Option<String>,
    pub api_key: Option<String>,
    pub header_value: Option<String>,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct HttpTestIn {
    /// `http` or `https` URL; internal addresses are refused by the SSRF guard.
    pub url: String,
    /// GET (default), POST, PUT, PATCH, DELETE, HEAD or OPTIONS.
    pub method: Option<String>,
    /// Header names to values.
    pub headers: Option<Value>,
    /// Text sent as is, or a JSON value sent as JSON.
    pub body: Option<Value>,
    /// Authentication given inline; or use `credential_id`.
    pub auth: Option<InlineAuth>,
    /// One of your credentials (its natural authentication: bearer, basic, API key, header).
    pub credential_id: Option<Uuid>,
    /// Seconds, at most 60 (default 30).
    pub timeout: Option<f64>,
    /// TLS certificates are checked unless false.
    pub verify_ssl: Option<bool>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct HttpTestOut {
    /// The answer's status; absent when there was no answer (see `error`).
    pub status_code: Option<u16>,
    pub headers: Value,
    /// JSON when the answer is JSON, else text; secrets you sent are redacted from it.
    pub body: Value,
    pub is_json: bool,
    /// The body was longer than 256 KiB and was cut.
    pub body_truncated: bool,
    /// Why no answer came (connection refused, timed out...).
    pub error: Option<String>,
    pub duration_ms: u64,
    /// The URL that answered, after redirects.
    pub url: String,
}

#[derive(Debug, Object, sqlx::FromRow)]
#[oai(skip_serializing_if_is_none)]
pub struct HttpLogOut {
    pub id: Uuid,
    pub workflow_id: Option<Uuid>,
    pub execution_id: Option<Uuid>,
    pub node_id: String,
    pub method: String,
    /// Without user information or secret query values.
    pub url: String,
    pub request_headers: Option<Value>,
    pub request_body: Option<Value>,
    pub response_status: Option<i32>,
    pub response_headers: Option<Value>,
    /// The start of the answer, redacted.
    pub response_body: Option<Value>,
    pub duration_ms: Option<i32>,
    pub request_bytes: Option<i64>,
    pub response_bytes: Option<i64>,
    pub error: Option<String>,
    /// Attempts before this one.
    pub retry_count: i32,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct HttpLogsPage {
    /// Calls matching the filters: counted on pages by offset, absent on pages after a cursor.
    pub total: Option<i64>,
    pub limit: i64,
    pub offset: i64,
    pub items: Vec<HttpLogOut>,
    /// Continues the listing (`cursor=`); absent on the last page.
    pub next_cursor: Option<String>,
}

fn inline_auth(auth: &InlineAuth) -> Result<Auth, ApiError> {
    let needed = |value: &Option<String>, field: &str| {
        value
            .as_deref()
            .filter(|v| !v.is_empty())
            .map(|v| SecretString::from(v.to_owned()))
            .ok_or_else(|| {
                ApiError::unprocessable(format!(
                    "auth.{field}: required for auth type `{}`",
                    auth.kind
                ))
            })
    };
    match auth.kind.as_str() {
        "none" => Ok(Auth::None),
        "bearer" => Ok(Auth::Bearer(needed(&auth.token, "token")?)),
        "basic" => Ok(Auth::Basic {
            username: auth
                .username
                .clone()
                .ok_or_else(|| ApiError::unprocessable("auth.username: required for basic"))?,
            password: needed(&auth.password, "password")?,
        }),
        "api_key" => Ok(Auth::Header {
            name: auth
                .header_name
                .clone()
                .unwrap_or_else(|| "X-API-Key".to_owned()),
            value: needed(&auth.api_key, "api_key")?,
        }),
        "header" => Ok(Auth::Header {
            name: auth
                .header_name
                .clone()
                .ok_or_else(|| ApiError::unprocessable("auth.header_name: required for header"))?,
            value: needed(&auth.header_value, "header_value")?,
        }),
        other => Err(ApiError::unprocessable(format!(
            "auth.type: `{other}` is not one of {}",
            INLINE_AUTH_TYPES.join(", ")
        ))),
    }
}

fn headers_of(headers: Option<&Value>) -> Result<Vec<(String, String)>, ApiError> {
    let Some(headers) = headers else {
        return Ok(Vec::new());
    };
    let Some(object) = headers.as_object() else {
        return Err(ApiError::unprocessable(
            "headers: must be an object of header names to values",
        ));
    };
    object
        .iter()
        .map(|(name, value)| match value {
            Value::String(text) => Ok((name.clone(), text.clone())),
            _ => Err(ApiError::unprocessable(format!(
                "headers.{name}: must be a string"
            ))),
        })
        .collect()
}

#[OpenApi(tag = "ApiTags::Tools")]
impl HttpToolsApi {
    /// Make one HTTP request as an HttpRequest node would (same client, SSRF guard, limits) and
    /// see the answer; nothing is stored. 30 requests a minute per user (429 beyond).
    #[oai(
        path = "/api/v1/tools/http/test",
        method = "post",
        operation_id = "test_http_request"
    )]
    async fn test(
        &self,
        auth: UserAuth,
        body: Json<HttpTestIn>,
    ) -> Result<Json<HttpTestOut>, ApiError> {
        let request = body.0;
        let url = url::Url::parse(request.url.trim())
            .map_err(|e| ApiError::unprocessable(format!("url: not a valid URL: {e}")))?;
        let method = request
            .method
            .as_deref()
            .unwrap_or("GET")
            .to_ascii_uppercase();
        if !METHODS.contains(&method.as_str()) {
            return Err(ApiError::unprocessable(format!(
                "method: must be one of {}",
                METHODS.join(", ")
            )));
        }
        let timeout = request.timeout.unwrap_or(DEFAULT_TIMEOUT_SECS);
        if !(timeout > 0.0 && timeout <= MAX_TIMEOUT_SECS) {
            return Err(ApiError::unprocessable(format!(
                "timeout: must be more than 0 and at most {MAX_TIMEOUT_SECS} seconds"
            )));
        }
        let headers = headers_of(request.headers.as_ref())?;
        let mut secrets: Vec<String> = Vec::new();
        let call_auth = match (&request.auth, request.credential_id) {
            (Some(_), Some(_)) => {
                return Err(ApiError::unprocessable(
                    "auth: give either auth or credential_id, not both",
                ));
            }
            (Some(inline), None) => inline_auth(inline)?,
            (None, Some(id)) => {
                let credential = self
                    .state
                    .credentials
                    .open(auth.0.id, &id.to_string())
                    .await?;
                secrets.extend(credential.secret_values().map(str::to_owned));
                Auth::from_credential("", &credential).map_err(ApiError::unprocessable)?
            }
            (None, None) => Auth::None,
        };
        if let Decision::Limited { retry_after } = self
            .state
            .rate_limiter
            .check(&format!("http-test:{}", auth.0.id), TESTS_PER_MINUTE)
            .await
        {
            return Err(ApiError::too_many_requests(
                format!("at most {TESTS_PER_MINUTE} HTTP test requests a minute"),
                Decision::retry_after_secs(retry_after),
            ));
        }
        let (body, content_type) = match request.body {
            None | Some(Value::Null) => (None, None),
            Some(Value::String(text)) => (Some(text.into_bytes()), Some("text/plain")),
            Some(json) => (
                Some(json.to_string().into_bytes()),
                Some("application/json"),
            ),
        };
        let call = HttpCall {
            method: Method::from_bytes(method.as_bytes()).expect("a known method"),
            url,
            headers,
            query: Vec::new(),
            body,
            content_type: content_type.map(str::to_owned),
            auth: call_auth,
            timeout: Duration::from_secs_f64(timeout),
            verify_tls: request.verify_ssl.unwrap_or(true),
        };
        secrets.extend(call.auth.secrets());
        let redactor = Redactor::new(secrets.iter().map(String::as_str));
        let limit = SHOWN_BODY_BYTES.min(self.state.outbound.max_response_bytes);
        let started = std::time::Instant::now();
        let sent = call::send(&self.state.outbound, &call, limit, Oversize::Truncate).await;
        let duration_ms = started.elapsed().as_millis() as u64;
        match sent {
            Ok(answer) => {
                let (body, is_json) = match serde_json::from_slice::<Value>(&answer.body) {
                    Ok(json) if !answer.body.is_empty() && !answer.truncated => {
                        (redactor.json(&json), true)
                    }
                    _ => (
                        Value::String(redactor.text(&String::from_utf8_lossy(&answer.body))),
                        false,
                    ),
                };
                let headers: Map<String, Value> = answer
                    .headers
                    .iter()
                    .map(|(n, v)| (n.clone(), Value::String(redactor.text(v))))
                    .collect();
                Ok(Json(HttpTestOut {
                    status_code: Some(answer.status),
                    headers: Value::Object(headers),
                    body,
                    is_json,
                    body_truncated: answer.truncated,
                    error: None,
                    duration_ms,
                    url: redactor.url(&answer.url),
                }))
            }
            Err(error @ (CallError::Guard(_) | CallError::Refused(_))) => Err(
                ApiError::unprocessable(format!("url: {}", redactor.text(&error.to_string()))),
            ),
            // It names the header or value at fault.
            Err(CallError::Invalid(why)) => Err(ApiError::unprocessable(redactor.text(&why))),
            Err(error) => Ok(Json(HttpTestOut {
                status_code: None,
                headers: Value::Object(Map::new()),
                body: Value::Null,
                is_json: false,
                body_truncated: false,
                error: Some(redactor.text(&error.to_string())),
                duration_ms,
                url: redactor.url(&call.url),
            })),
        }
    }

    /// The HTTP calls your workflows made, newest first, redacted; filter by workflow,
    /// execution or node. Page with `cursor` (from `next_cursor`) or `offset`.
    #[oai(
        path = "/api/v1/tools/http/logs",
        method = "get",
        operation_id = "http_request_logs"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn logs(
        &self,
        auth: UserAuth,
        workflow_id: Query<Option<Uuid>>,
        execution_id: Query<Option<Uuid>>,
        node_id: Query<Option<String>>,
        /// 1 to 1000, default 100.
        limit: Query<Option<i64>>,
        /// Calls to skip, default 0 (slow at depth: prefer `cursor`).
        offset: Query<Option<i64>>,
        /// The `next_cursor` of the previous page.
        cursor: Query<Option<String>>,
    ) -> Result<Json<HttpLogsPage>, ApiError> {
        let owner = auth.0.id;
        let page = PageRequest::new(
            limit.0,
            offset.0,
            cursor.0.as_deref(),
            PAGE_LIMITS,
            Listing::HttpLogs,
            &owner.to_string(),
        )?;
        let filtered = |query: &mut QueryBuilder<Postgres>| {
            query
                .push(" FROM http_request_logs WHERE user_id = ")
                .push_bind(owner);
            if let Some(workflow) = workflow_id.0 {
                query.push(" AND workflow_id = ").push_bind(workflow);
            }
            if let Some(execution) = execution_id.0 {
                query
                    .push(" AND workflow_execution_id = ")
                    .push_bind(execution);
            }
            if let Some(node) = &node_id.0 {
                query.push(" AND node_id = ").push_bind(node.clone());
            }
        };
        let total = page.total(&self.state.db, &filtered).await?;
        let mut query = QueryBuilder::new(
            "SELECT id, workflow_id, workflow_execution_id AS execution_id, node_id, \
                request_method AS method, request_url AS url, request_headers, request_body, \
                response_status, response_headers, response_body, \
                execution_time_ms AS duration_ms, request_bytes, response_bytes, \
                error_message AS error, retry_count, created_at",
        );
        filtered(&mut query);
        page.push_after(&mut query, "created_at", "id");
        page.push_order_and_limit(&mut query, "created_at", "id");
        let items: Vec<HttpLogOut> = query.build_query_as().fetch_all(&self.state.db).await?;
        let next_cursor = next_after(
            &items,
            page.limit,
            |row| Cursor::new(row.created_at, row.id),
            Listing::HttpLogs,
            &owner.to_string(),
        );
        Ok(Json(HttpLogsPage {
            total,
            limit: page.limit,
            offset: page.offset(),
            items,
            next_cursor,
        }))
    }
}
