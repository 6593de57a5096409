//! Job messages carried on JetStream, and the reply a worker sends to a waiting API instance.
//!
//! Messages are a tagged, versioned enum: a new shape is a new variant (`WebhookV2`), so jobs
//! already in the stream during a rolling upgrade are still understood. A message carries
//! everything the worker needs, so the worker never depends on a row the API may not have
//! committed yet.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A unit of work on the jobs stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
// Messages live only between decoding and running; boxing the webhook variant would add an
// allocation per job to save a few hundred bytes of stack.
#[allow(clippy::large_enum_variant)]
pub enum JobMessage {
    WebhookV1(WebhookJobV1),
    ManualV1(ManualJobV1),
    TimerV1(TimerJobV1),
}

impl JobMessage {
    pub fn execution_id(&self) -> Uuid {
        match self {
            JobMessage::WebhookV1(job) => job.execution_id,
            JobMessage::ManualV1(job) => job.execution_id,
            JobMessage::TimerV1(job) => job.execution_id,
        }
    }

    /// The same trigger as a new run, for replaying a dead letter: a fresh execution id, the
    /// workflow's current version, nobody waiting for the result, and (for a timer tick) a
    /// message id of its own rather than the tick's, which JetStream would take for a repeat.
    pub fn replayed(self, execution_id: Uuid, workflow_version: i32) -> Self {
        let now = Utc::now();
        match self {
            JobMessage::WebhookV1(job) => JobMessage::WebhookV1(WebhookJobV1 {
                execution_id,
                workflow_version,
                enqueued_at: now,
                reply_to: None,
                idempotent: false,
                ..job
            }),
            JobMessage::ManualV1(job) => JobMessage::ManualV1(ManualJobV1 {
                execution_id,
                workflow_version,
                enqueued_at: now,
                reply_to: None,
                ..job
            }),
            JobMessage::TimerV1(job) => JobMessage::TimerV1(TimerJobV1 {
                execution_id,
                workflow_version,
                enqueued_at: now,
                event: TimerEvent {
                    source: "replay".into(),
                    ..job.event
                },
                ..job
            }),
        }
    }

    /// Who the job runs for: (user id, workflow id).
    pub fn owner(&self) -> (Uuid, Uuid) {
        match self {
            JobMessage::WebhookV1(job) => (job.user_id, job.workflow_id),
            JobMessage::ManualV1(job) => (job.user_id, job.workflow_id),
            JobMessage::TimerV1(job) => (job.user_id, job.workflow_id),
        }
    }

    /// JetStream's `Nats-Msg-Id`: a second publish of the same job within the stream's
    /// duplicate window is dropped.
    pub fn message_id(&self) -> String {
        match self {
            JobMessage::TimerV1(job) if job.event.source == "timer" => {
                timer_message_id(job.event.job_id, job.event.scheduled_for)
            }
            other => other.execution_id().to_string(),
        }
    }

    /// The subject suffix under `<prefix>.jobs.` this job is published on.
    pub fn subject_kind(&self) -> &'static str {
        match self {
            JobMessage::WebhookV1(_) => "webhook",
            JobMessage::ManualV1(_) => "manual",
            JobMessage::TimerV1(_) => "timer",
        }
    }

    pub fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The `kind` of a message that did not decode because this release does not know its kind
    /// (a newer release's message, met during a rolling upgrade), as opposed to a malformed
    /// message. Such a message is left for a worker that knows it.
    pub fn unknown_kind(bytes: &[u8]) -> Option<String> {
        #[derive(Deserialize)]
        struct Tagged {
            kind: String,
        }
        let Tagged { kind } = serde_json::from_slice(bytes).ok()?;
        (!KNOWN_KINDS.contains(&kind.as_str())).then_some(kind)
    }
}

/// Encodes a webhook job whose payload is the caller's body as sent (validated JSON), exactly as
/// `JobMessage::WebhookV1` encodes, without building the payload's tree: the API holds a body
/// once as bytes and once inside the message, whatever its size.
pub fn encode_webhook_job(
    job: &WebhookJobV1<&serde_json::value::RawValue>,
) -> Result<Vec<u8>, serde_json::Error> {
    #[derive(Serialize)]
    struct Tagged<'a, T> {
        kind: &'static str,
        #[serde(flatten)]
        job: &'a T,
    }
    serde_json::to_vec(&Tagged {
        kind: "WebhookV1",
        job,
    })
}

/// The `kind` tags of `JobMessage`'s variants.
const KNOWN_KINDS: &[&str] = &["WebhookV1", "ManualV1", "TimerV1"];

/// A webhook call accepted by the API. The worker reads the payload as a JSON tree (`D` =
/// `Value`); the API writes it as the caller sent it (`D` = `&RawValue`), never parsing it
/// into a tree (see `encode_webhook_job`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookJobV1<D = serde_json::Value> {
    /// Chosen by the API before publishing; the worker's writes are keyed by it.
    pub execution_id: Uuid,
    pub workflow_id: Uuid,
    pub workflow_version: i32,
    pub user_id: Uuid,
    pub enqueued_at: DateTime<Utc>,
    pub event: WebhookEvent<D>,
    /// Core NATS subject of the API instance waiting for the result, when the caller waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// The execution id was derived from the caller's idempotency key: a retry after
    /// JetStream's duplicate window carries the same id, so the worker must look for a
    /// recorded run before running this one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub idempotent: bool,
}

/// A run started by hand through `POST /api/v1/workflows/{id}/execute`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManualJobV1 {
    pub execution_id: Uuid,
    pub workflow_id: Uuid,
    pub workflow_version: i32,
    pub user_id: Uuid,
    pub enqueued_at: DateTime<Utc>,
    /// What the caller gave the run: the entry nodes' input.
    pub inputs: serde_json::Value,
    /// Core NATS subject of the API instance waiting for the result, when the caller waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
}

/// A tick of a scheduled job, or its manual trigger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimerJobV1 {
    /// Derived from the job id and the tick (see `timer_execution_id`), so a tick emitted
    /// twice by two momentary leaders is one execution.
    pub execution_id: Uuid,
    pub workflow_id: Uuid,
    pub workflow_version: i32,
    pub user_id: Uuid,
    pub enqueued_at: DateTime<Utc>,
    pub event: TimerEvent,
}

/// What a timer hands the workflow's `TimerStartNode`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimerEvent {
    pub job_id: Uuid,
    pub node_id: String,
    /// The tick this run is for (the trigger time for a manual trigger).
    pub scheduled_for: DateTime<Utc>,
    /// `timer` for a tick, `manual` for `POST /api/v1/jobs/scheduled/{id}/trigger`, `replay`
    /// for a dead letter run again.
    pub source: String,
    pub trigger_data: serde_json::Value,
}

/// The execution id of `job_id`'s tick at `scheduled_for`: the same for every emission of it.
pub fn timer_execution_id(job_id: Uuid, scheduled_for: DateTime<Utc>) -> Uuid {
    let name = format!("{job_id}:{}", timer_instant(scheduled_for));
    Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes())
}

/// The JetStream message id of a tick, `timer:{job_id}:{fire_time}`.
pub fn timer_message_id(job_id: Uuid, scheduled_for: DateTime<Utc>) -> String {
    format!("timer:{job_id}:{}", timer_instant(scheduled_for))
}

fn timer_instant(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The webhook event handed to the workflow, in KAI-Fusion's shape (`D`: see `WebhookJobV1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookEvent<D = serde_json::Value> {
    pub webhook_id: String,
    pub node_id: String,
    pub correlation_id: Uuid,
    pub http_method: String,
    pub event_type: String,
    pub data: D,
    pub received_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(default)]
    pub headers: serde_json::Map<String, serde_json::Value>,
    pub url: String,
}

/// Final state of an execution as told to a waiting caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionStatus {
    Running,
    Completed,
    Failed,
    /// Stopped at its owner's request (`POST /api/v1/executions/{id}/cancel`).
    Cancelled,
}

impl ExecutionStatus {
    pub const ALL: &'static [ExecutionStatus] = &[
        ExecutionStatus::Running,
        ExecutionStatus::Completed,
        ExecutionStatus::Failed,
        ExecutionStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Running => "running",
            ExecutionStatus::Completed => "completed",
            ExecutionStatus::Failed => "failed",
            ExecutionStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "running" => Some(Self::Running),
            "completed" => Some(Self::Completed),
            "failed" => Some(Self::Failed),
            "cancelled" => Some(Self::Cancelled),
            _ => None,
        }
    }
}

/// What a worker publishes to `reply_to` once the execution is committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionReply {
    pub execution_id: Uuid,
    pub status: ExecutionStatus,
    pub result: crate::json::SharedValue,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Set by a `RespondToWebhook` node: the answer the waiting caller gets instead of the
    /// standard `{execution_id, status, result}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<WebhookResponse>,
}

/// A webhook answer chosen by the workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookResponse {
    pub status: u16,
    pub content_type: String,
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    pub body: serde_json::Value,
}

impl WebhookResponse {
    /// The body as sent: JSON for JSON content types, a string's text as it is otherwise.
    pub fn body_bytes(&self) -> Vec<u8> {
        let json = self
            .content_type
            .split(';')
            .next()
            .is_some_and(|t| t.trim().ends_with("json"));
        match (&self.body, json) {
            (serde_json::Value::Null, _) => Vec::new(),
            (serde_json::Value::String(text), false) => text.clone().into_bytes(),
            (other, _) => serde_json::to_vec(other).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_round_trips_with_its_version_tag() {
        let job = JobMessage::WebhookV1(WebhookJobV1 {
            execution_id: Uuid::now_v7(),
            workflow_id: Uuid::new_v4(),
            workflow_version: 3,
            user_id: Uuid::new_v4(),
            enqueued_at: Utc::now(),
            event: WebhookEvent {
                webhook_id: "wh_0123456789abcdef01234567".into(),
                node_id: "webhook-start".into(),
                correlation_id: Uuid::new_v4(),
                http_method: "POST".into(),
                event_type: "webhook.received".into(),
                data: serde_json::json!({"test": "payload"}),
                received_at: Utc::now(),
                client_ip: None,
                user_agent: None,
                headers: Default::default(),
                url: "http://x/api/webhooks/wh_0123456789abcdef01234567".into(),
            },
            reply_to: None,
            idempotent: false,
        });
        let bytes = job.encode().unwrap();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.starts_with(r#"{"kind":"WebhookV1""#), "{text}");
        assert_eq!(JobMessage::decode(&bytes).unwrap(), job);
        assert_eq!(JobMessage::unknown_kind(&bytes), None);
    }

    #[test]
    fn a_webhook_job_encoded_from_raw_json_decodes_as_the_parsed_one() {
        let body = r#"{"b": [1, 2.5, "x\u0041"], "a": {"nested": null}}"#;
        let raw: &serde_json::value::RawValue = serde_json::from_str(body).unwrap();
        let event = |data| WebhookEvent {
            webhook_id: "wh_1".into(),
            node_id: "hook".into(),
            correlation_id: Uuid::nil(),
            http_method: "POST".into(),
            event_type: "webhook.received".into(),
            data,
            received_at: Utc::now(),
            client_ip: Some("127.0.0.1".into()),
            user_agent: None,
            headers: Default::default(),
            url: "http://x/".into(),
        };
        let raw_job = WebhookJobV1 {
            execution_id: Uuid::now_v7(),
            workflow_id: Uuid::new_v4(),
            workflow_version: 1,
            user_id: Uuid::new_v4(),
            enqueued_at: Utc::now(),
            event: event(raw),
            reply_to: Some("kai.replies.x".into()),
            idempotent: true,
        };
        let bytes = encode_webhook_job(&raw_job).unwrap();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.contains(body), "the body is carried as sent: {text}");
        let JobMessage::WebhookV1(decoded) = JobMessage::decode(&bytes).unwrap() else {
            panic!("not a webhook job: {text}");
        };
        assert_eq!(
            decoded.event.data,
            serde_json::from_str::<serde_json::Value>(body).unwrap()
        );
        assert_eq!(
            (
                decoded.execution_id,
                decoded.reply_to.as_deref(),
                decoded.idempotent
            ),
            (raw_job.execution_id, Some("kai.replies.x"), true)
        );
    }

    #[test]
    fn a_newer_kind_is_told_apart_from_a_malformed_message() {
        let newer = br#"{"kind":"WebhookV2","execution_id":"x"}"#;
        assert!(JobMessage::decode(newer).is_err());
        assert_eq!(
            JobMessage::unknown_kind(newer).as_deref(),
            Some("WebhookV2")
        );
        for known in KNOWN_KINDS {
            // Known but incomplete: malformed, not newer.
            let incomplete = format!(r#"{{"kind":"{known}"}}"#);
            assert!(JobMessage::decode(incomplete.as_bytes()).is_err());
            assert_eq!(JobMessage::unknown_kind(incomplete.as_bytes()), None);
        }
        for malformed in [
            &b"{not json"[..],
            br#"{"no_kind":1}"#,
            br#"{"kind":7}"#,
            b"[]",
        ] {
            assert_eq!(JobMessage::unknown_kind(malformed), None);
        }
    }

    #[test]
    fn unknown_kind_is_an_error_not_a_panic() {
        assert!(JobMessage::decode(br#"{"kind":"WebhookV9"}"#).is_err());
    }
}
