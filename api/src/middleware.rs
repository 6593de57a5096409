//! Request metrics by operation and status, and the management API's body limit.

use std::time::Instant;

use poem::{Endpoint, IntoResponse, Request, Response};
use poem_openapi::OperationId;

use crate::webhooks::payload;

/// Counts every request by its OpenAPI operation (or `other`) and status, and times it.
pub async fn record_request<E: Endpoint>(next: E, request: Request) -> poem::Result<Response> {
    let started = Instant::now();
    let result = next.call(request).await.map(IntoResponse::into_response);
    let (route, status) = match &result {
        Ok(response) => (operation(response.data::<OperationId>()), response.status()),
        Err(error) => (operation(error.data::<OperationId>()), error.status()),
    };
    let status = status.as_u16().to_string();
    metrics::counter!("kai_api_requests_total", "route" => route, "status" => status.clone())
        .increment(1);
    metrics::histogram!("kai_api_request_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    result
}

fn operation(id: Option<&OperationId>) -> &'static str {
    id.map_or("other", |id| id.0)
}

/// Largest request body the management API reads (workflows with big embedded prompts fit
/// easily; a client cannot make the API buffer without bound). Webhook ingress enforces each
/// webhook's own `max_payload_size` instead.
pub const MAX_MANAGEMENT_BODY: usize = 5 * 1024 * 1024;

/// Refuses a management request whose body is over `MAX_MANAGEMENT_BODY` with 413, whether or
/// not it declares its length.
pub async fn limit_management_body<E: Endpoint>(
    next: E,
    mut request: Request,
) -> poem::Result<Response> {
    if request.uri().path().starts_with("/api/v1/") {
        // PostgreSQL stores no NUL character: refused here, for every endpoint, rather than
        // failing deep in a query. (`%00` has no letters, so no case to fold.)
        let uri_nul = |part: Option<&str>| part.is_some_and(|text| text.contains("%00"));
        if uri_nul(Some(request.uri().path())) || uri_nul(request.uri().query()) {
            return Ok(crate::error::ApiError::bad_request(
                "the URL contains a NUL character (%00), which cannot be stored",
            )
            .into_response());
        }
        let too_large = || {
            poem::Error::from_string(
                format!(
                    "the body is larger than {} MiB",
                    MAX_MANAGEMENT_BODY / (1024 * 1024)
                ),
                poem::http::StatusCode::PAYLOAD_TOO_LARGE,
            )
        };
        let declared = request
            .header("content-length")
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|len| len > MAX_MANAGEMENT_BODY) {
            return Err(too_large());
        }
        let body = request.take_body();
        match body.into_bytes_limit(MAX_MANAGEMENT_BODY).await {
            Ok(bytes) if bytes.contains(&0) || payload::holds_nul_escape(&bytes) => {
                return Ok(nul_in_body(&bytes).into_response());
            }
            Ok(bytes) => request.set_body(bytes),
            Err(poem::error::ReadBodyError::PayloadTooLarge) => return Err(too_large()),
            // The server's idle timer cut the body off (`idle_body`): the client's slowness.
            Err(poem::error::ReadBodyError::Io(io)) if crate::idle_body::is_stalled(&io) => {
                let message = crate::idle_body::Stalled.to_string();
                return Ok(crate::error::ApiError::request_timeout(message).into_response());
            }
            Err(e) => {
                return Err(poem::Error::from_string(
                    e.to_string(),
                    poem::http::StatusCode::BAD_REQUEST,
                ));
            }
        }
    }
    next.call(request).await.map(IntoResponse::into_response)
}

/// The answer to a body holding a NUL character, naming where: 422 with the JSON path of the
/// first string holding one, or 400 when the body is not JSON at all.
fn nul_in_body(bytes: &[u8]) -> crate::error::ApiError {
    fn find(value: &serde_json::Value, path: &mut Vec<String>) -> bool {
        match value {
            serde_json::Value::String(text) => text.contains('\0'),
            serde_json::Value::Array(items) => items.iter().enumerate().any(|(i, item)| {
                path.push(i.to_string());
                find(item, path) || {
                    path.pop();
                    false
                }
            }),
            serde_json::Value::Object(fields) => fields.iter().any(|(name, item)| {
                path.push(name.clone());
                name.contains('\0') || find(item, path) || {
                    path.pop();
                    false
                }
            }),
            _ => false,
        }
    }
    let mut path = Vec::new();
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(value) if find(&value, &mut path) => crate::error::ApiError::unprocessable(format!(
            "{}: contains a NUL character (\\u0000), which cannot be stored",
            if path.is_empty() {
                "body".to_owned()
            } else {
                path.join(".")
            }
        )),
        _ => crate::error::ApiError::bad_request(
            "the body contains a NUL character, which cannot be stored",
        ),
    }
}
