//! What webhook ingress answers: the standard shapes (result, queued), the workflow's own
//! response, or an error; all as one response type so that CORS headers can be added to any.

use kai_common::jobs::WebhookResponse;
use poem::http::StatusCode;
use poem::{IntoResponse, Response};
use poem_openapi::payload::{Binary, Json};
use poem_openapi::registry::{MetaResponses, Registry};
use poem_openapi::{ApiResponse, Object};
use serde_json::Value;
use uuid::Uuid;

use crate::error::ApiError;
use crate::webhooks::idempotency_store::{RecordedRun, StoredAnswer};

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
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
    /// `queued`; `duplicate` when an earlier call with the same idempotency key already
    /// started this execution (and this call started nothing).
    pub status: String,
}

#[derive(ApiResponse)]
pub enum IngressResponse {
    /// The workflow ran; its result.
    #[oai(status = 200)]
    Finished(Json<ExecutionResult>),
    /// The job is stored durably and will run (asynchronous call, or the wait timed out), or
    /// it is a retry of an earlier call (`status: duplicate`, header `Idempotent-Replayed`).
    #[oai(status = 202)]
    Accepted(Json<ExecutionQueued>),
    /// The answer a `RespondToWebhook` node chose: its status code, headers and body.
    #[oai(status = 200)]
    Responded(Binary<Vec<u8>>),
}

/// What an accepted call is answered.
pub enum Answer {
    Finished(ExecutionResult),
    Queued(Uuid),
    Duplicate(Uuid),
    Workflow(Uuid, WebhookResponse),
    /// A retry's answer: what the first call with its idempotency key was answered.
    Replayed(Uuid, StoredAnswer),
}

impl Answer {
    /// The answer as kept for retries: only a finished run's.
    pub fn to_stored(&self) -> Option<StoredAnswer> {
        match self {
            Answer::Finished(result) => Some(StoredAnswer::Finished {
                status: result.status.clone(),
                result: result.result.clone(),
                error: result.error.clone(),
            }),
            Answer::Workflow(_, chosen) => Some(StoredAnswer::Workflow(chosen.clone())),
            Answer::Queued(_) | Answer::Duplicate(_) | Answer::Replayed(..) => None,
        }
    }
}

impl From<RecordedRun> for StoredAnswer {
    fn from(run: RecordedRun) -> Self {
        StoredAnswer::Finished {
            status: run.status,
            result: run.outputs.unwrap_or(Value::Null),
            error: run.error,
        }
    }
}

fn replayed(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert("idempotent-replayed", "true".parse().expect("valid header"));
    response
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        match self {
            Answer::Finished(result) => IngressResponse::Finished(Json(result)).into_response(),
            Answer::Queued(execution_id) => queued(execution_id, "queued"),
            Answer::Duplicate(execution_id) => replayed(queued(execution_id, "duplicate")),
            Answer::Replayed(
                execution_id,
                StoredAnswer::Finished {
                    status,
                    result,
                    error,
                },
            ) => replayed(
                Answer::Finished(ExecutionResult {
                    execution_id,
                    status,
                    result,
                    error,
                })
                .into_response(),
            ),
            Answer::Replayed(execution_id, StoredAnswer::Workflow(chosen)) => {
                replayed(Answer::Workflow(execution_id, chosen).into_response())
            }
            Answer::Workflow(execution_id, chosen) => {
                let status = StatusCode::from_u16(chosen.status).unwrap_or(StatusCode::OK);
                let mut builder = Response::builder()
                    .status(status)
                    .content_type(chosen.content_type.as_str())
                    // The caller can still find the run behind the workflow's own answer.
                    .header("x-kai-execution-id", execution_id.to_string());
                for (name, value) in &chosen.headers {
                    builder = builder.header(name.as_str(), value.as_str());
                }
                builder.body(chosen.body_bytes())
            }
        }
    }
}

fn queued(execution_id: Uuid, status: &str) -> Response {
    IngressResponse::Accepted(Json(ExecutionQueued {
        execution_id,
        status: status.to_owned(),
    }))
    .into_response()
}

/// Any ingress answer, documented as the union of the accepted and error shapes.
pub struct IngressReply(pub Response);

impl IntoResponse for IngressReply {
    fn into_response(self) -> Response {
        self.0
    }
}

impl ApiResponse for IngressReply {
    fn meta() -> MetaResponses {
        let mut responses = IngressResponse::meta().responses;
        responses.extend(ApiError::meta().responses);
        MetaResponses { responses }
    }

    fn register(registry: &mut Registry) {
        IngressResponse::register(registry);
        ApiError::register(registry);
    }
}
