//! Request metrics by operation and status.

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
