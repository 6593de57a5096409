//! Errors as the API answers them: one JSON shape `{error, message, node_id?}` for every
//! status, mapped in one place. Internal errors are logged with an id and stay opaque.

use poem::http::StatusCode;
use poem::{IntoResponse, Response};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};
use uuid::Uuid;

/// The body of every error response.
#[derive(Debug, Clone, Object, serde::Serialize)]
#[oai(skip_serializing_if_is_none)]
pub struct ErrorBody {
    /// A stable machine-readable code, e.g. `not_found`.
    pub error: String,
    /// What is wrong, for a person.
    pub message: String,
    /// The workflow node the error is about, when there is one.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
}

#[derive(Debug, ApiResponse)]
pub enum ApiError {
    /// Malformed request.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Missing, invalid or expired credentials.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// The caller may not do this (e.g. its address is not allowed).
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// Unknown, or not the caller's.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The method is not accepted here; `Allow` lists those that are.
    #[oai(status = 405)]
    MethodNotAllowed(Json<ErrorBody>, #[oai(header = "Allow")] String),
    /// The body did not arrive in time.
    #[oai(status = 408)]
    RequestTimeout(Json<ErrorBody>),
    /// Conflicts with an existing resource.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// Existed, but is no longer active.
    #[oai(status = 410)]
    Gone(Json<ErrorBody>),
    /// The body is larger than allowed.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// The body's content type is not accepted.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    /// Well-formed but invalid.
    #[oai(status = 422)]
    Unprocessable(Json<ErrorBody>),
    /// Over the rate limit; retry after `Retry-After` seconds.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>, #[oai(header = "Retry-After")] u32),
    /// Unexpected failure; the message carries an id to find it in the logs.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// A dependency is unavailable; retry later.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>, #[oai(header = "Retry-After")] u32),
}

fn body(error: &str, message: impl Into<String>) -> Json<ErrorBody> {
    Json(ErrorBody {
        error: error.to_owned(),
        message: message.into(),
        node_id: None,
    })
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest(body("bad_request", message))
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::Unauthorized(body("unauthorized", message))
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::Forbidden(body("forbidden", message))
    }

    pub fn method_not_allowed(message: impl Into<String>, allow: String) -> Self {
        Self::MethodNotAllowed(body("method_not_allowed", message), allow)
    }

    pub fn too_many_requests(message: impl Into<String>, retry_after_secs: u32) -> Self {
        Self::TooManyRequests(body("rate_limited", message), retry_after_secs)
    }

    pub fn not_found(what: &str) -> Self {
        Self::NotFound(body("not_found", format!("{what} not found")))
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict(body("conflict", message))
    }

    pub fn request_timeout(message: impl Into<String>) -> Self {
        Self::RequestTimeout(body("request_timeout", message))
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::Gone(body("gone", message))
    }

    pub fn payload_too_large(message: impl Into<String>) -> Self {
        Self::PayloadTooLarge(body("payload_too_large", message))
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::UnsupportedMediaType(body("unsupported_media_type", message))
    }

    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::Unprocessable(body("validation_error", message))
    }

    /// A validation error about one node of a workflow.
    pub fn invalid_node(message: impl Into<String>, node_id: Option<&str>) -> Self {
        let mut json = body("validation_error", message);
        json.0.node_id = node_id.map(str::to_owned);
        Self::Unprocessable(json)
    }

    pub fn unavailable(message: impl Into<String>, retry_after_secs: u32) -> Self {
        Self::Unavailable(body("unavailable", message), retry_after_secs)
    }

    /// Logs `cause` with a fresh id and answers 500 with only that id.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        let id = Uuid::new_v4();
        tracing::error!(error_id = %id, error = %cause, "internal error");
        Self::Internal(body("internal_error", format!("internal error (id {id})")))
    }
}

/// A credential opened for its owner: another user's or a missing one is a 404, never a hint
/// that it exists; an unreadable one is the operator's problem (a key missing), not the caller's.
impl From<kai_common::credentials::CredentialError> for ApiError {
    fn from(err: kai_common::credentials::CredentialError) -> Self {
        use kai_common::credentials::CredentialError;
        match err {
            CredentialError::NotFound(_) => ApiError::not_found("credential"),
            CredentialError::Database(_, e) => e.into(),
            other => ApiError::internal(other),
        }
    }
}

impl From<kai_common::vectors::VectorError> for ApiError {
    fn from(err: kai_common::vectors::VectorError) -> Self {
        use kai_common::vectors::VectorError;
        match err {
            VectorError::NotFound(what) => ApiError::not_found(&what),
            VectorError::Conflict(message) => ApiError::conflict(message),
            VectorError::Database(e) => e.into(),
            invalid => ApiError::unprocessable(invalid.to_string()),
        }
    }
}

impl From<kai_common::nodes::NodeError> for ApiError {
    /// A model server's failure while serving a request (embedding a query): the caller's
    /// configuration is a 422, the server's trouble a 503.
    fn from(err: kai_common::nodes::NodeError) -> Self {
        use kai_common::nodes::NodeError;
        match err {
            NodeError::Configuration(_) | NodeError::Credential(_) | NodeError::VectorStore(_) => {
                ApiError::unprocessable(err.to_string())
            }
            NodeError::RateLimited(_, after) => ApiError::unavailable(
                err.to_string(),
                after.map_or(5, |a| a.as_secs().clamp(1, 3600) as u32),
            ),
            NodeError::Network(_) | NodeError::Timeout(_) => {
                ApiError::unavailable(err.to_string(), 5)
            }
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) => {
                tracing::warn!(error = %err, "database unavailable");
                ApiError::unavailable("the database is unavailable", 5)
            }
            other => ApiError::internal(other),
        }
    }
}

/// Stable codes for statuses produced outside our handlers (extractors, routing).
fn code_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "validation_error",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        s if s.is_server_error() => "internal_error",
        _ => "error",
    }
}

/// Turns any error that escaped a handler into the JSON error shape. Errors we built from a
/// response (our `ApiError`s) pass through unchanged.
pub async fn render_error(err: poem::Error) -> Response {
    if err.is_from_response() {
        return err.into_response();
    }
    let status = err.status();
    let message = if status.is_server_error() {
        let id = Uuid::new_v4();
        tracing::error!(error_id = %id, error = %err, "internal error");
        format!("internal error (id {id})")
    } else if status == StatusCode::UNAUTHORIZED {
        // poem-openapi's own wording ("authorization error") does not say what to send.
        "an `Authorization: Bearer <access token>` header is required".to_owned()
    } else {
        err.to_string()
    };
    let json = ErrorBody {
        error: code_for(status).to_owned(),
        message,
        node_id: None,
    };
    poem::web::Json(json).with_status(status).into_response()
}
