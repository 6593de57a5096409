//! Request metrics by operation and status, and the management API's body limit.

use std::time::Instant;

use poem::{Endpoint, IntoResponse, Request, Response};
use poem_openapi::OperationId;

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
