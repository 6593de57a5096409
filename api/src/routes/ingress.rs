//! Webhook ingress, `/api/webhooks/{webhook_id}`: check the call in a fixed order (unknown 404,
//! inactive 410, method 405, address 403, credentials 401, size 413, content type 415, JSON 400,
//! event type 422, rate 429), publish the job to JetStream, and either answer 202 once JetStream
//! holds it or wait for the execution's result up to the webhook's timeout (then 202: the job
//! is never dropped). Every refusal of a known webhook is recorded.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use kai_common::jobs::{ExecutionStatus, WebhookEvent, WebhookJobV1};
use poem::http::{HeaderValue, Method};
use poem::{Body, IntoResponse, Request, RequestBody};
use poem_openapi::param::Path;
use poem_openapi::registry::{MetaMediaType, MetaRequest, MetaSchema, MetaSchemaRef};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions, OpenApi};
use std::borrow::Cow;

use serde_json::value::RawValue;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::ApiTags;
use super::ingress_answer::{Answer, ExecutionResult, IngressReply};
use crate::enqueue;
use crate::error::ApiError;
use crate::rejections::Rejection;
use crate::state::AppState;
use crate::waiters::Waiting;
use crate::webhooks::body;
use crate::webhooks::config::{AuthMode, ResponseMode};
use crate::webhooks::endpoint::{self, Endpoint};
use crate::webhooks::idempotency_store::{self, Claim, StoredAnswer};
use crate::webhooks::rate_limit::Decision;
use crate::webhooks::signature::{self, SignedHeaders};
use crate::webhooks::{client_ip, cors, idempotency, payload};

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

#[OpenApi(tag = "ApiTags::Webhooks")]
impl IngressApi {
    /// Trigger a workflow. Send `Authorization: Bearer <security_token>` (or, for webhooks in
    /// `hmac` mode, Standard Webhooks signature headers); add `Prefer: respond-async` to get
    /// 202 as soon as the job is stored, and `Idempotency-Key` to make retries safe: a retry
    /// with the same payload is answered like the first call (its stored result, with
    /// `Idempotent-Replayed: true`, once the run has finished; 409 while a synchronous first
    /// call is still being processed; 202 `duplicate` for an asynchronous one), and a different
    /// payload under a key already used is refused with 422. Keys are remembered 24 hours.
    #[oai(
        path = "/api/webhooks/:webhook_id",
        method = "post",
        operation_id = "trigger_webhook"
    )]
    async fn post(
        &self,
        request: &Request,
        webhook_id: Path<String>,
        body: WebhookBody,
    ) -> IngressReply {
        self.handle(request, &webhook_id.0, body.0).await
    }

    /// Trigger a workflow whose webhook allows GET: the query string is the payload.
    #[oai(
        path = "/api/webhooks/:webhook_id",
        method = "get",
        operation_id = "trigger_webhook_get"
    )]
    async fn get(&self, request: &Request, webhook_id: Path<String>) -> IngressReply {
        self.handle(request, &webhook_id.0, Body::empty()).await
    }

    /// Trigger a workflow whose webhook allows PUT.
    #[oai(
        path = "/api/webhooks/:webhook_id",
        method = "put",
        operation_id = "trigger_webhook_put"
    )]
    async fn put(
        &self,
        request: &Request,
        webhook_id: Path<String>,
        body: WebhookBody,
    ) -> IngressReply {
        self.handle(request, &webhook_id.0, body.0).await
    }

    /// Trigger a workflow whose webhook allows PATCH.
    #[oai(
        path = "/api/webhooks/:webhook_id",
        method = "patch",
        operation_id = "trigger_webhook_patch"
    )]
    async fn patch(
        &self,
        request: &Request,
        webhook_id: Path<String>,
        body: WebhookBody,
    ) -> IngressReply {
        self.handle(request, &webhook_id.0, body.0).await
    }

    /// Trigger a workflow whose webhook allows DELETE: the query string is the payload.
    #[oai(
        path = "/api/webhooks/:webhook_id",
        method = "delete",
        operation_id = "trigger_webhook_delete"
    )]
    async fn delete(&self, request: &Request, webhook_id: Path<String>) -> IngressReply {
        self.handle(request, &webhook_id.0, Body::empty()).await
    }

    /// CORS preflight: 204 with the allowed methods and headers for an allowed origin, 403
    /// for another origin, 405 when the webhook does not enable CORS.
    #[oai(
        path = "/api/webhooks/:webhook_id",
        method = "options",
        operation_id = "preflight_webhook"
    )]
    async fn options(&self, request: &Request, webhook_id: Path<String>) -> IngressReply {
        IngressReply(match self.preflight(request, &webhook_id.0).await {
            Ok(response) => response,
            Err(error) => error.into_response(),
        })
    }
}

/// The facts of one call that every check and every record needs.
struct Call<'a> {
    request: &'a Request,
    endpoint: Arc<Endpoint>,
    received_at: DateTime<Utc>,
    client_ip: Option<IpAddr>,
}

impl IngressApi {
    async fn handle(&self, request: &Request, webhook_id: &str, body: Body) -> IngressReply {
        let started = Instant::now();
        let mut allowed_origin = None;
        let result = self
            .accept(request, webhook_id, body, &mut allowed_origin)
            .await;
        let mut response = match result {
            Ok(answer) => answer.into_response(),
            Err(error) => error.into_response(),
        };
        if let Some(origin) = allowed_origin {
            cors::decorate(&mut response, origin);
        }
        metrics::histogram!("kai_webhook_ingress_seconds").record(started.elapsed().as_secs_f64());
        IngressReply(response)
    }

    async fn preflight(
        &self,
        request: &Request,
        webhook_id: &str,
    ) -> Result<poem::Response, ApiError> {
        let endpoint = endpoint::cached(&self.state, webhook_id).await?;
        if !endpoint.active {
            return Err(ApiError::gone("this webhook is no longer active"));
        }
        if !endpoint.config.enable_cors {
            return Err(ApiError::method_not_allowed(
                "CORS is not enabled for this webhook",
                endpoint.config.allowed_methods.join(", "),
            ));
        }
        let origin = request.header("origin").unwrap_or_default();
        let allowed = cors::allowed_origin(&endpoint.config, origin)
            .ok_or_else(|| ApiError::forbidden(format!("origin `{origin}` is not allowed")))?;
        Ok(cors::preflight(&endpoint.config, allowed))
    }

    async fn accept(
        &self,
        request: &Request,
        webhook_id: &str,
        body: Body,
        allowed_origin: &mut Option<HeaderValue>,
    ) -> Result<Answer, ApiError> {
        let endpoint = endpoint::cached(&self.state, webhook_id)
            .await
            .inspect_err(|_| reject("not_found"))?;
        if !endpoint.active {
            reject("inactive");
            return Err(ApiError::gone("this webhook is no longer active"));
        }
        if let Some(origin) = request.header("origin") {
            *allowed_origin = cors::allowed_origin(&endpoint.config, origin);
        }
        let call = Call {
            request,
            client_ip: client_ip::of_request(request, &self.state.trusted_proxies),
            endpoint,
            received_at: Utc::now(),
        };
        let config = &call.endpoint.config;

        let method = request.method();
        if !config.allowed_methods.iter().any(|m| m == method.as_str()) {
            let message = format!(
                "{method} is not accepted by this webhook; use {}",
                config.allowed_methods.join(" or ")
            );
            let allow = config.allowed_methods.join(", ");
            return Err(self.refuse(
                &call,
                405,
                "method",
                ApiError::method_not_allowed(&message, allow),
                &message,
            ));
        }
        if !client_ip::allowed(call.client_ip, &call.endpoint.networks) {
            let message = match call.client_ip {
                Some(ip) => format!("the address {ip} may not call this webhook"),
                None => "the caller's address could not be established".to_owned(),
            };
            return Err(self.refuse(&call, 403, "ip", ApiError::forbidden(&message), &message));
        }
        let signed = self.authenticate(&call)?;

        let limit = config.max_payload_bytes();
        let too_large = || {
            let message = format!("the body is larger than {} KiB", config.max_payload_size);
            self.refuse(
                &call,
                413,
                "too_large",
                ApiError::payload_too_large(&message),
                &message,
            )
        };
        let declared = request
            .header("content-length")
            .and_then(|length| length.trim().parse::<u64>().ok());
        if declared.is_some_and(|length| length > limit as u64) {
            return Err(too_large());
        }
        let query_payload = matches!(*method, Method::GET | Method::DELETE);
        if !query_payload
            && let Some(content_type) = request.content_type()
            && !is_json(content_type)
        {
            let message =
                format!("content type `{content_type}` is not accepted; send application/json");
            return Err(self.refuse(
                &call,
                415,
                "content_type",
                ApiError::unsupported_media_type(&message),
                &message,
            ));
        }
        // Held until the job is published: a burst of large bodies waits here, unread. Both
        // waits are bounded, so callers that never send their body cannot hold the room.
        let declared = declared.and_then(|length| usize::try_from(length).ok());
        let Some(held) = self.state.bodies.hold(declared.unwrap_or(limit)).await else {
            let message = "too many large bodies are being received; retry later";
            return Err(self.refuse(
                &call,
                503,
                "body_budget",
                ApiError::unavailable(message, 1),
                message,
            ));
        };
        let bytes = match body::read_limited(body, limit, declared).await {
            Ok(bytes) => bytes,
            Err(body::BodyError::TooLarge) => return Err(too_large()),
            Err(e @ (body::BodyError::TimedOut | body::BodyError::Stalled)) => {
                let message = e.to_string();
                return Err(self.refuse(
                    &call,
                    408,
                    "body_timeout",
                    ApiError::request_timeout(&message),
                    &message,
                ));
            }
            Err(e) => return Err(ApiError::bad_request(e.to_string())),
        };
        if let Some(headers) = &signed {
            let keys = call.endpoint.signing_keys(call.received_at);
            let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
            if let Err(e) = signature::verify(headers, &bytes, &keys) {
                let message = e.to_string();
                return Err(self.refuse(
                    &call,
                    401,
                    "signature",
                    ApiError::unauthorized(&message),
                    &message,
                ));
            }
        }
        // The body is kept as the caller sent it (checked, not parsed into a tree): the API holds
        // it once as bytes and once in the job, whatever its size.
        let parsed: Result<Cow<'_, RawValue>, String> = if query_payload {
            query_data(request.uri().query().unwrap_or_default()).map(Cow::Owned)
        } else {
            match payload::parse(&bytes) {
                Ok(Some(data)) => Ok(Cow::Borrowed(data)),
                Ok(None) => Ok(Cow::Owned(empty_object())),
                Err(e) => Err(e.to_string()),
            }
        };
        let data = match parsed {
            Ok(data) => data,
            Err(message) => {
                return Err(self.refuse(
                    &call,
                    400,
                    "malformed",
                    ApiError::bad_request(&message),
                    &message,
                ));
            }
        };
        let idempotency_key = match idempotency_key(request, signed.as_ref()) {
            Ok(key) => key,
            Err(e) => {
                let message = e.to_string();
                return Err(self.refuse(
                    &call,
                    400,
                    "idempotency_key",
                    ApiError::bad_request(&message),
                    &message,
                ));
            }
        };
        let event_type = event_type(request, &data);
        if !config.allowed_event_types.is_empty()
            && !config.allowed_event_types.contains(&event_type)
        {
            let message = format!(
                "event type `{event_type}` is not accepted by this webhook; accepted: {}",
                config.allowed_event_types.join(", ")
            );
            return Err(self.refuse(
                &call,
                422,
                "event_type",
                ApiError::unprocessable(&message),
                &message,
            ));
        }
        if let Decision::Limited { retry_after } = self
            .state
            .rate_limiter
            .check(&call.endpoint.webhook_id, config.rate_limit_per_minute)
            .await
        {
            let message = format!(
                "more than {} calls per minute; retry later",
                config.rate_limit_per_minute
            );
            let secs = Decision::retry_after_secs(retry_after);
            return Err(self.refuse(
                &call,
                429,
                "rate_limited",
                ApiError::too_many_requests(&message, secs),
                &message,
            ));
        }

        let published = self
            .enqueue(&call, &data, event_type, idempotency_key)
            .await?;
        // Stored: the body is no longer needed while a synchronous caller waits for the run.
        drop(data);
        drop((bytes, held));
        Ok(match published {
            Published::Answered(answer) => answer,
            Published::Waiting {
                execution_id,
                waiting,
                timeout,
                keyed,
            } => {
                let answer = Self::result(execution_id, waiting, timeout).await;
                if keyed && let Some(stored) = answer.to_stored() {
                    idempotency_store::remember(&self.state.db, execution_id, &stored).await;
                }
                answer
            }
        })
    }

    /// Checks the caller's credentials as far as they can be before the body is read. For a
    /// signed call, returns the signature headers to verify against the body.
    fn authenticate<'r>(&self, call: &Call<'r>) -> Result<Option<SignedHeaders<'r>>, ApiError> {
        let config = &call.endpoint.config;
        if !config.authentication_required {
            return Ok(None);
        }
        let unauthorized = |reason, message: &str| {
            self.refuse(call, 401, reason, ApiError::unauthorized(message), message)
        };
        match config.auth_mode {
            AuthMode::None => Ok(None),
            AuthMode::Bearer => {
                if bearer_matches(call.request, &call.endpoint, call.received_at) {
                    Ok(None)
                } else {
                    Err(unauthorized(
                        "unauthorized",
                        "missing or wrong bearer token",
                    ))
                }
            }
            AuthMode::Hmac => {
                let header = |name| call.request.header(name);
                let (Some(id), Some(timestamp), Some(signature)) = (
                    header("webhook-id"),
                    header("webhook-timestamp"),
                    header("webhook-signature"),
                ) else {
                    let message = signature::SignatureError::Missing.to_string();
                    return Err(unauthorized("signature", &message));
                };
                let headers = SignedHeaders {
                    id,
                    timestamp,
                    signature,
                };
                signature::check_timestamp(&headers, call.received_at)
                    .map_err(|e| unauthorized("signature", &e.to_string()))?;
                Ok(Some(headers))
            }
        }
    }

    async fn enqueue(
        &self,
        call: &Call<'_>,
        data: &RawValue,
        event_type: String,
        idempotency_key: Option<String>,
    ) -> Result<Published, ApiError> {
        let endpoint = &call.endpoint;
        let request = call.request;
        let execution_id = match &idempotency_key {
            Some(key) => idempotency::execution_id(&endpoint.webhook_id, key),
            None => Uuid::now_v7(),
        };
        let wants_async = endpoint.config.response_mode == ResponseMode::Async
            || request.header("prefer").is_some_and(|p| {
                p.split(',')
                    .any(|v| v.trim().eq_ignore_ascii_case("respond-async"))
            });
        let claim = match &idempotency_key {
            Some(_) => {
                let fingerprint = idempotency_store::fingerprint(
                    request.method().as_str(),
                    data.get().as_bytes(),
                );
                idempotency_store::claim(
                    &self.state.db,
                    execution_id,
                    &endpoint.webhook_id,
                    &fingerprint,
                )
                .await
            }
            None => Claim::First,
        };
        // A retry whose run has not finished yet: its job is published again (the first call
        // may have died before publishing it; a copy is dropped as a duplicate or, later, finds
        // its execution recorded and runs nothing), and it is answered without waiting.
        let mut retry_in_progress = false;
        if let Claim::Retry {
            same_payload,
            answer,
            finished,
        } = claim
        {
            if !same_payload {
                let message = format!(
                    "Idempotency-Key `{}` was already used with a different payload; send a new \
                     key for a new request",
                    idempotency_key.as_deref().unwrap_or_default()
                );
                return Err(self.refuse(
                    call,
                    422,
                    "idempotency_key_reused",
                    ApiError::unprocessable(&message),
                    &message,
                ));
            }
            let answer = answer.or_else(|| finished.map(StoredAnswer::from));
            match (answer, wants_async) {
                (Some(answer), false) => {
                    metrics::counter!("kai_webhooks_accepted_total", "mode" => "replayed")
                        .increment(1);
                    return Ok(Published::Answered(Answer::Replayed(execution_id, answer)));
                }
                (Some(_), true) => {
                    metrics::counter!("kai_webhooks_accepted_total", "mode" => "duplicate")
                        .increment(1);
                    return Ok(Published::Answered(Answer::Duplicate(execution_id)));
                }
                (None, _) => retry_in_progress = true,
            }
        }
        let event = WebhookEvent {
            webhook_id: endpoint.webhook_id.clone(),
            node_id: endpoint.node_id.clone(),
            correlation_id: Uuid::new_v4(),
            http_method: request.method().to_string(),
            event_type,
            data,
            received_at: call.received_at,
            client_ip: call.client_ip.map(|ip| ip.to_string()),
            user_agent: header(request, "user-agent"),
            headers: safe_headers(request),
            url: format!("{}{}", self.state.public_url, request.uri().path()),
        };
        let job = WebhookJobV1 {
            execution_id,
            workflow_id: endpoint.workflow_id,
            workflow_version: endpoint.workflow_version,
            user_id: endpoint.user_id,
            enqueued_at: Utc::now(),
            event,
            reply_to: (!wants_async).then(|| self.state.reply_subject.clone()),
            idempotent: idempotency_key.is_some(),
        };
        let encoded = match kai_common::jobs::encode_webhook_job(&job) {
            Ok(encoded) => encoded,
            Err(e) => {
                tracing::error!(error = %e, "could not encode a webhook job");
                return Err(ApiError::unavailable(
                    "the job could not be encoded; retry later",
                    1,
                ));
            }
        };
        drop(job);

        // Registered before publishing: a fast worker may answer before `publish` returns. A
        // retry never waits: the first call's caller is the one waiting for this run.
        let waiting =
            (!wants_async && !retry_in_progress).then(|| self.state.waiters.register(execution_id));
        let message_id = execution_id.to_string();
        let stored =
            match enqueue::publish_encoded(&self.state, "webhook", &message_id, encoded).await {
                Ok(stored) => stored,
                // The caller's body: refused like any other too large one, and logged as such.
                Err(e @ enqueue::EnqueueError::TooLarge { .. }) => {
                    let message = e.to_string();
                    return Err(self.refuse(call, 413, "too_large", e.into(), &message));
                }
                Err(e) => {
                    reject(e.reason());
                    return Err(e.into());
                }
            };
        if retry_in_progress && !wants_async {
            let message = "a call with this Idempotency-Key is still being processed; retry \
                           later to get its answer";
            return Err(self.refuse(
                call,
                409,
                "idempotency_key_in_progress",
                ApiError::conflict(message),
                message,
            ));
        }
        if stored.duplicate || retry_in_progress {
            metrics::counter!("kai_webhooks_accepted_total", "mode" => "duplicate").increment(1);
            return Ok(Published::Answered(Answer::Duplicate(execution_id)));
        }
        let Some(waiting) = waiting else {
            metrics::counter!("kai_webhooks_accepted_total", "mode" => "async").increment(1);
            return Ok(Published::Answered(Answer::Queued(execution_id)));
        };
        Ok(Published::Waiting {
            execution_id,
            waiting,
            timeout: Duration::from_secs(endpoint.config.webhook_timeout),
            keyed: idempotency_key.is_some(),
        })
    }

    /// What a synchronous caller is told: the run's result, or 202 once `timeout` has passed.
    async fn result(execution_id: Uuid, mut waiting: Waiting, timeout: Duration) -> Answer {
        match tokio::time::timeout(timeout, &mut waiting.receiver).await {
            Ok(Ok(reply)) => {
                metrics::counter!("kai_webhooks_accepted_total", "mode" => "sync").increment(1);
                if let Some(chosen) = reply.response {
                    return Answer::Workflow(execution_id, chosen);
                }
                let status = match reply.status {
                    ExecutionStatus::Failed => "failed",
                    ExecutionStatus::Cancelled => "cancelled",
                    _ => "completed",
                };
                Answer::Finished(ExecutionResult {
                    execution_id,
                    status: status.to_owned(),
                    result: std::sync::Arc::unwrap_or_clone(reply.result),
                    error: reply.error,
                })
            }
            // Timed out, or this instance lost the reply: the job is stored and will run.
            _ => {
                metrics::counter!("kai_webhooks_accepted_total", "mode" => "sync_timeout")
                    .increment(1);
                Answer::Queued(execution_id)
            }
        }
    }

    /// Counts and records a refusal of a known webhook, and returns the error to answer.
    fn refuse(
        &self,
        call: &Call<'_>,
        status: u16,
        reason: &'static str,
        error: ApiError,
        message: &str,
    ) -> ApiError {
        reject(reason);
        self.state.rejections.record(Rejection {
            webhook_id: call.endpoint.webhook_id.clone(),
            status,
            error: message.to_owned(),
            method: call.request.method().to_string(),
            client_ip: call.client_ip.map(|ip| ip.to_string()),
            user_agent: header(call.request, "user-agent"),
            received_at: call.received_at,
        });
        error
    }
}

/// A stored job: answered at once (asynchronous, or a duplicate), or awaited.
enum Published {
    Answered(Answer),
    Waiting {
        execution_id: Uuid,
        waiting: Waiting,
        timeout: Duration,
        /// Called with an idempotency key: the answer is kept for retries.
        keyed: bool,
    },
}

fn reject(reason: &'static str) {
    metrics::counter!("kai_webhooks_rejected_total", "reason" => reason).increment(1);
}

fn header(request: &Request, name: &str) -> Option<String> {
    request.header(name).map(str::to_owned)
}

/// Constant-time comparison of the bearer token with the endpoint's secret.
fn bearer_matches(request: &Request, endpoint: &Endpoint, now: DateTime<Utc>) -> bool {
    let Some(value) = request.header("authorization") else {
        return false;
    };
    let Some((scheme, token)) = value.split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer") && endpoint.accepts_token(token.trim(), now)
}

/// `Idempotency-Key`, else a signed call's `webhook-id` (Standard Webhooks senders keep it
/// across retries of one message).
fn idempotency_key(
    request: &Request,
    signed: Option<&SignedHeaders<'_>>,
) -> Result<Option<String>, idempotency::BadKey> {
    if let Some(key) = request.header("idempotency-key") {
        idempotency::check("Idempotency-Key", key)?;
        return Ok(Some(key.to_owned()));
    }
    match signed {
        Some(headers) => {
            idempotency::check("webhook-id", headers.id)?;
            Ok(Some(headers.id.to_owned()))
        }
        None => Ok(None),
    }
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

/// A query string as event data: each name once with its value, repeated names with a list.
fn empty_object() -> Box<RawValue> {
    RawValue::from_string("{}".to_owned()).expect("{} is JSON")
}

fn query_data(query: &str) -> Result<Box<RawValue>, String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|e| format!("the query string cannot be read: {e}"))?;
    let mut data = Map::new();
    for (name, value) in pairs {
        if value.contains('\0') || name.contains('\0') {
            return Err("the query string contains a NUL character".to_owned());
        }
        match data.get_mut(&name) {
            Some(Value::Array(values)) => values.push(Value::String(value)),
            Some(first) => *first = Value::Array(vec![first.take(), Value::String(value)]),
            None => {
                data.insert(name, Value::String(value));
            }
        }
    }
    serde_json::value::to_raw_value(&data).map_err(|e| e.to_string())
}

/// `X-Event-Type`, else the body's `event_type` or `type`, else `webhook.received`.
fn event_type(request: &Request, data: &RawValue) -> String {
    /// The two fields looked at, read out of the body without building the rest of it.
    #[derive(serde::Deserialize)]
    struct Named {
        event_type: Option<Value>,
        #[serde(rename = "type")]
        kind: Option<Value>,
    }
    header(request, "x-event-type")
        .or_else(|| {
            let named: Named = serde_json::from_str(data.get()).ok()?;
            [named.event_type, named.kind]
                .into_iter()
                .find_map(|value| value?.as_str().map(str::to_owned))
        })
        .filter(|t| !t.is_empty() && t.len() <= 100)
        .unwrap_or_else(|| "webhook.received".to_owned())
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
    use serde_json::json;

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("application/json; charset=utf-8"));
        assert!(is_json("application/cloudevents+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/x-www-form-urlencoded"));
    }

    #[test]
    fn query_strings_become_objects() {
        let parsed =
            |query| serde_json::from_str::<Value>(query_data(query).unwrap().get()).unwrap();
        assert_eq!(
            parsed("a=1&b=x%20y&a=2"),
            json!({"a": ["1", "2"], "b": "x y"})
        );
        assert_eq!(parsed(""), json!({}));
        assert!(query_data("a=%00").is_err());
    }
}
