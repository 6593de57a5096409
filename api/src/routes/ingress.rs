//! Webhook ingress, `POST /api/webhooks/{webhook_id}`: check the caller, publish the job to
//! JetStream, and either answer 202 once JetStream holds it (`Prefer: respond-async`) or wait
//! for the execution's result up to the webhook's timeout (then 202: the job is never dropped).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use kai_common::jobs::{ExecutionStatus, JobMessage, WebhookEvent, WebhookJobV1, WebhookResponse};
use poem::http::StatusCode;
use poem::{Body, Request, RequestBody};
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::payload::{Binary, Response};
use poem_openapi::registry::{MetaMediaType, MetaRequest, MetaSchema, MetaSchemaRef};
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ApiResponse, ExtractParamOptions, Object, OpenApi,
};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::ApiTags;
use crate::enqueue;
use crate::error::ApiError;
use crate::rejections::Rejection;
use crate::state::AppState;
use crate::webhooks::endpoint::{self, Endpoint};
use crate::webhooks::payload;

/// Headers never copied into the webhook event: they carry credentials.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
    "webhook-signature",
];

pub struct IngressApi {
    pub state: Arc<AppState>,
}

/// The request body, left unread until the caller has been identified and authorised, so an
/// unauthorised or oversized request costs nothing to refuse.
pub struct WebhookBody(Body);

impl<'a> ApiExtractor<'a> for WebhookBody {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: Some("Any JSON value; handed to the workflow as the event's `data`."),
            content: vec![MetaMediaType {
                content_type: "application/json",
                schema: MetaSchemaRef::Inline(Box::new(MetaSchema::ANY)),
            }],
            required: false,
        })
    }

    async fn from_request(
        _request: &'a Request,
        body: &mut RequestBody,
        _options: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        Ok(Self(body.take().unwrap_or_else(|_| Body::empty())))
    }
}

#[derive(Debug, Object)]
pub struct ExecutionResult {
    pub execution_id: Uuid,
    /// `completed` or `failed`.
    pub status: String,
    pub result: Value,
    #[oai(skip_serializing_if_is_none)]
    pub error: Option<String>,
}

#[derive(Debug, Object)]
pub struct ExecutionQueued {
    pub execution_id: Uuid,
    /// `queued`.
    pub status: String,
}

#[derive(ApiResponse)]
pub enum IngressResponse {
    /// The workflow ran; its result.
    #[oai(status = 200)]
    Finished(Json<ExecutionResult>),
    /// The job is stored durably and will run (asynchronous call, or the wait timed out).
    #[oai(status = 202)]
    Accepted(Json<ExecutionQueued>),
    /// The answer a `RespondToWebhook` node chose: its status code, headers and body.
    #[oai(status = 200)]
    Responded(Binary<Vec<u8>>),
}

/// What ingress answers: the standard shapes, or the workflow's own response.
enum Answer {
    Standard(IngressResponse),
    Workflow(Uuid, WebhookResponse),
}

impl Answer {
    fn into_response(self) -> Response<IngressResponse> {
        match self {
            Answer::Standard(standard) => Response::new(standard),
            Answer::Workflow(execution_id, chosen) => {
                let status = StatusCode::from_u16(chosen.status).unwrap_or(StatusCode::OK);
                let mut response =
                    Response::new(IngressResponse::Responded(Binary(chosen.body_bytes())))
                        .status(status)
                        .header("content-type", chosen.content_type.as_str())
                        // The caller can still find the run behind the workflow's own answer.
                        .header("x-kai-execution-id", execution_id.to_string());
                for (name, value) in &chosen.headers {
                    response = response.header(name.as_str(), value.as_str());
                }
                response
            }
        }
    }
}

#[OpenApi(tag = "ApiTags::Webhooks")]
impl IngressApi {
    /// Trigger a workflow. Send `Authorization: Bearer <security_token>`; add
    /// `Prefer: respond-async` to get 202 as soon as the job is stored.
    #[oai(
        path = "/api/webhooks/:webhook_id",
        method = "post",
        operation_id = "trigger_webhook"
    )]
    async fn trigger(
        &self,
        request: &Request,
        webhook_id: Path<String>,
        body: WebhookBody,
    ) -> Result<Response<IngressResponse>, ApiError> {
        let started = Instant::now();
        let result = self.accept(request, &webhook_id.0, body.0).await;
        metrics::histogram!("kai_webhook_ingress_seconds").record(started.elapsed().as_secs_f64());
        result.map(Answer::into_response)
    }
}

impl IngressApi {
    async fn accept(
        &self,
        request: &Request,
        webhook_id: &str,
        body: Body,
    ) -> Result<Answer, ApiError> {
        let endpoint = self
            .endpoint(webhook_id)
            .await
            .inspect_err(|_| reject("not_found"))?;
        if !endpoint.active {
            reject("inactive");
            return Err(ApiError::gone("this webhook is no longer active"));
        }
        let received_at = Utc::now();
        let refuse = |status: u16, reason: &'static str, error: ApiError, message: &str| {
            reject(reason);
            self.state.rejections.record(Rejection {
                webhook_id: endpoint.webhook_id.clone(),
                status,
                error: message.to_owned(),
                method: request.method().to_string(),
                client_ip: client_ip(request),
                user_agent: header(request, "user-agent"),
                received_at,
            });
            error
        };

        if endpoint.config.authentication_required && !authorised(request, &endpoint) {
            let message = "missing or wrong bearer token";
            return Err(refuse(
                401,
                "unauthorized",
                ApiError::unauthorized(message),
                message,
            ));
        }
        if let Some(content_type) = request.content_type()
            && !is_json(content_type)
        {
            let message =
                format!("content type `{content_type}` is not accepted; send application/json");
            return Err(refuse(
                415,
                "content_type",
                ApiError::unsupported_media_type(&message),
                &message,
            ));
        }
        let limit = endpoint.config.max_payload_bytes();
        let bytes = match body.into_bytes_limit(limit).await {
            Ok(bytes) => bytes,
            Err(poem::error::ReadBodyError::PayloadTooLarge) => {
                let message = format!(
                    "the body is larger than {} KiB",
                    endpoint.config.max_payload_size
                );
                return Err(refuse(
                    413,
                    "too_large",
                    ApiError::payload_too_large(&message),
                    &message,
                ));
            }
            Err(e) => {
                return Err(ApiError::bad_request(format!(
                    "could not read the body: {e}"
                )));
            }
        };
        let data = match payload::parse(&bytes) {
            Ok(data) => data,
            Err(e) => {
                let message = e.to_string();
                return Err(refuse(
                    400,
                    "malformed",
                    ApiError::bad_request(&message),
                    &message,
                ));
            }
        };

        let execution_id = Uuid::now_v7();
        let wants_async = header(request, "prefer").is_some_and(|p| {
            p.split(',')
                .any(|v| v.trim().eq_ignore_ascii_case("respond-async"))
        });
        let event = WebhookEvent {
            webhook_id: endpoint.webhook_id.clone(),
            node_id: endpoint.node_id.clone(),
            correlation_id: Uuid::new_v4(),
            http_method: request.method().to_string(),
            event_type: event_type(request, &data),
            data,
            received_at,
            client_ip: client_ip(request),
            user_agent: header(request, "user-agent"),
            headers: safe_headers(request),
            url: format!("{}{}", self.state.public_url, request.uri().path()),
        };
        let job = JobMessage::WebhookV1(WebhookJobV1 {
            execution_id,
            workflow_id: endpoint.workflow_id,
            workflow_version: endpoint.workflow_version,
            user_id: endpoint.user_id,
            enqueued_at: Utc::now(),
            event,
            reply_to: (!wants_async).then(|| self.state.reply_subject.clone()),
        });

        // Registered before publishing: a fast worker may answer before `publish` returns.
        let waiting = (!wants_async).then(|| self.state.waiters.register(execution_id));
        if let Err(e) = enqueue::publish(&self.state, &job).await {
            reject(e.reason());
            return Err(e.into());
        }

        let queued = || {
            Answer::Standard(IngressResponse::Accepted(Json(ExecutionQueued {
                execution_id,
                status: "queued".to_owned(),
            })))
        };
        let Some(mut waiting) = waiting else {
            metrics::counter!("kai_webhooks_accepted_total", "mode" => "async").increment(1);
            return Ok(queued());
        };
        let timeout = Duration::from_secs(endpoint.config.webhook_timeout);
        match tokio::time::timeout(timeout, &mut waiting.receiver).await {
            Ok(Ok(reply)) => {
                metrics::counter!("kai_webhooks_accepted_total", "mode" => "sync").increment(1);
                if let Some(chosen) = reply.response {
                    return Ok(Answer::Workflow(execution_id, chosen));
                }
                let status = match reply.status {
                    ExecutionStatus::Failed => "failed",
                    _ => "completed",
                };
                Ok(Answer::Standard(IngressResponse::Finished(Json(
                    ExecutionResult {
                        execution_id,
                        status: status.to_owned(),
                        result: reply.result,
                        error: reply.error,
                    },
                ))))
            }
            // Timed out, or this instance lost the reply: the job is stored and will run.
            _ => {
                metrics::counter!("kai_webhooks_accepted_total", "mode" => "sync_timeout")
                    .increment(1);
                Ok(queued())
            }
        }
    }

    async fn endpoint(&self, webhook_id: &str) -> Result<Arc<Endpoint>, ApiError> {
        endpoint::cached(&self.state, webhook_id).await
    }
}

fn reject(reason: &'static str) {
    metrics::counter!("kai_webhooks_rejected_total", "reason" => reason).increment(1);
}

fn header(request: &Request, name: &str) -> Option<String> {
    request.header(name).map(str::to_owned)
}

/// Constant-time comparison of the bearer token with the endpoint's secret.
fn authorised(request: &Request, endpoint: &Endpoint) -> bool {
    let Some(value) = request.header("authorization") else {
        return false;
    };
    let Some((scheme, token)) = value.split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer") && endpoint.accepts_token(token.trim(), Utc::now())
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// `X-Event-Type`, else the body's `event_type` or `type`, else `webhook.received`.
fn event_type(request: &Request, data: &Value) -> String {
    header(request, "x-event-type")
        .or_else(|| {
            ["event_type", "type"]
                .iter()
                .find_map(|key| data.get(*key).and_then(Value::as_str).map(str::to_owned))
        })
        .filter(|t| !t.is_empty() && t.len() <= 100)
        .unwrap_or_else(|| "webhook.received".to_owned())
}

/// The socket peer's address (proxies are not trusted until configured to be).
fn client_ip(request: &Request) -> Option<String> {
    request
        .remote_addr()
        .as_socket_addr()
        .map(|addr| addr.ip().to_string())
}

fn safe_headers(request: &Request) -> Map<String, Value> {
    request
        .headers()
        .iter()
        .filter(|(name, _)| !SECRET_HEADERS.contains(&name.as_str()))
        .filter_map(|(name, value)| {
            value
                .to_str()
                .ok()
                .map(|v| (name.as_str().to_owned(), Value::String(v.to_owned())))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("application/json; charset=utf-8"));
        assert!(is_json("application/cloudevents+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/x-www-form-urlencoded"));
    }
}
