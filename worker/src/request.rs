//! A run as the worker handles it, whatever started it: a webhook call, a timer or a manual run. One
//! shape, so running, recording and replying do not care where a job came from.

use chrono::{DateTime, Utc};
use kai_common::jobs::{JobMessage, ManualJobV1, TimerJobV1, WebhookEvent, WebhookJobV1};
use kai_common::json::SharedValue;
use serde_json::Value;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct RunRequest {
    pub execution_id: Uuid,
    pub workflow_id: Uuid,
    pub workflow_version: i32,
    pub user_id: Uuid,
    pub enqueued_at: DateTime<Utc>,
    /// Where the waiting API instance listens, when a caller waits.
    pub reply_to: Option<String>,
    /// `webhook`, `timer` or `manual`, as recorded in `workflow_executions.trigger_type`.
    pub trigger_type: &'static str,
    /// The webhook id for a webhook run, the scheduled job id for a timer run.
    pub trigger_id: Option<String>,
    /// What the entry nodes receive, recorded as the execution's inputs.
    pub trigger: SharedValue,
    /// The webhook call, recorded in `webhook_events`; its payload (`data`) is not here but in
    /// `trigger`, so that it is held once (see `webhook_payload`).
    pub event: Option<WebhookEvent>,
    /// A retry of this run may already be recorded (see `WebhookJobV1::idempotent`).
    pub idempotent: bool,
    /// Size of the job message it came in: what its run weighs in a write batch.
    pub message_bytes: usize,
}

impl RunRequest {
    /// The webhook call's payload, which the trigger holds.
    pub fn webhook_payload(&self) -> &Value {
        self.trigger.get("data").unwrap_or(&Value::Null)
    }
}

impl From<WebhookJobV1> for RunRequest {
    fn from(mut job: WebhookJobV1) -> Self {
        // KAI-Fusion's webhook event object, with the payload moved in rather than copied.
        let data = std::mem::take(&mut job.event.data);
        let mut trigger = serde_json::to_value(&job.event).unwrap_or(Value::Null);
        if let Some(fields) = trigger.as_object_mut() {
            fields.insert("data".to_owned(), data);
        }
        Self {
            execution_id: job.execution_id,
            workflow_id: job.workflow_id,
            workflow_version: job.workflow_version,
            user_id: job.user_id,
            enqueued_at: job.enqueued_at,
            reply_to: job.reply_to,
            trigger_type: "webhook",
            trigger_id: Some(job.event.webhook_id.clone()),
            trigger: SharedValue::new(trigger),
            event: Some(job.event),
            idempotent: job.idempotent,
            message_bytes: 0,
        }
    }
}

impl From<ManualJobV1> for RunRequest {
    fn from(job: ManualJobV1) -> Self {
        Self {
            execution_id: job.execution_id,
            workflow_id: job.workflow_id,
            workflow_version: job.workflow_version,
            user_id: job.user_id,
            enqueued_at: job.enqueued_at,
            reply_to: job.reply_to,
            trigger_type: "manual",
            trigger_id: None,
            trigger: SharedValue::new(job.inputs),
            event: None,
            idempotent: false,
            message_bytes: 0,
        }
    }
}

impl From<TimerJobV1> for RunRequest {
    fn from(job: TimerJobV1) -> Self {
        Self {
            execution_id: job.execution_id,
            workflow_id: job.workflow_id,
            workflow_version: job.workflow_version,
            user_id: job.user_id,
            enqueued_at: job.enqueued_at,
            reply_to: None,
            trigger_type: "timer",
            trigger_id: Some(job.event.job_id.to_string()),
            trigger: SharedValue::new(serde_json::to_value(&job.event).unwrap_or(Value::Null)),
            event: None,
            // The id is derived from the tick: a tick emitted again after JetStream's
            // duplicate window (a leader that stalled that long) must find the recorded run.
            idempotent: true,
            message_bytes: 0,
        }
    }
}

impl From<JobMessage> for RunRequest {
    fn from(job: JobMessage) -> Self {
        match job {
            JobMessage::WebhookV1(job) => job.into(),
            JobMessage::ManualV1(job) => job.into(),
            JobMessage::TimerV1(job) => job.into(),
        }
    }
}
