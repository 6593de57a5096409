//! Execution progress events: what a worker tells watchers while a run goes on (run started,
//! each node started and settled, run finished), carried on `<prefix>.events.<execution id>`
//! and streamed to clients by `GET /api/v1/executions/{id}/events`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Largest node output carried in an event; a larger one is left out (it is in the record).
pub const MAX_EVENT_OUTPUT_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    ExecutionQueued,
    ExecutionStarted,
    NodeStarted,
    NodeCompleted,
    NodeFailed,
    NodeSkipped,
    /// Something a running node reported (a streamed token, a step), in `output`.
    NodeProgress,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionCancelled,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ExecutionQueued => "execution_queued",
            EventKind::ExecutionStarted => "execution_started",
            EventKind::NodeStarted => "node_started",
            EventKind::NodeCompleted => "node_completed",
            EventKind::NodeFailed => "node_failed",
            EventKind::NodeSkipped => "node_skipped",
            EventKind::NodeProgress => "node_progress",
            EventKind::ExecutionCompleted => "execution_completed",
            EventKind::ExecutionFailed => "execution_failed",
            EventKind::ExecutionCancelled => "execution_cancelled",
        }
    }

    /// Whether nothing follows this event.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            EventKind::ExecutionCompleted
                | EventKind::ExecutionFailed
                | EventKind::ExecutionCancelled
        )
    }

    /// The event for a node that settled with this status.
    pub fn for_node_status(status: &str) -> Self {
        match status {
            "completed" => EventKind::NodeCompleted,
            "skipped" => EventKind::NodeSkipped,
            _ => EventKind::NodeFailed,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionEvent {
    pub event: EventKind,
    pub execution_id: Uuid,
    pub workflow_id: Uuid,
    /// The owner: only they may watch.
    pub user_id: Uuid,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_type: Option<String>,
    /// Attempts a settled node took; the delivery number for `execution_started`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    /// A completed node's output, or the run's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ExecutionEvent {
    pub fn new(kind: EventKind, execution_id: Uuid, workflow_id: Uuid, user_id: Uuid) -> Self {
        Self {
            event: kind,
            execution_id,
            workflow_id,
            user_id,
            at: Utc::now(),
            node_id: None,
            node_type: None,
            attempts: None,
            duration_ms: None,
            output: None,
            error: None,
        }
    }

    /// Sets `output`, or leaves it out when it is too large to carry in an event.
    pub fn with_output(mut self, output: &Value) -> Self {
        self.output = encodes_within(output, MAX_EVENT_OUTPUT_BYTES).then(|| output.clone());
        self
    }
}

/// Whether `value` encodes to at most `limit` bytes of JSON, found without encoding more than
/// that (a megabyte payload is not written out to learn that it is too large).
fn encodes_within(value: &Value, limit: usize) -> bool {
    struct Counter {
        left: usize,
    }
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.left = self
                .left
                .checked_sub(bytes.len())
                .ok_or_else(|| std::io::Error::other("over the limit"))?;
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    serde_json::to_writer(&mut Counter { left: limit }, value).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_large_outputs_are_left_out() {
        let event = ExecutionEvent::new(
            EventKind::NodeCompleted,
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        )
        .with_output(&serde_json::json!({"small": true}));
        let text = serde_json::to_string(&event).unwrap();
        assert!(text.contains(r#""event":"node_completed""#), "{text}");
        assert_eq!(
            serde_json::from_str::<ExecutionEvent>(&text).unwrap(),
            event
        );
        let big = Value::String("x".repeat(MAX_EVENT_OUTPUT_BYTES + 1));
        assert!(event.clone().with_output(&big).output.is_none());
        // Exactly at the limit still fits (two bytes are the quotes).
        let edge = Value::String("x".repeat(MAX_EVENT_OUTPUT_BYTES - 2));
        assert!(event.with_output(&edge).output.is_some());
        assert!(EventKind::ExecutionFailed.is_final() && !EventKind::NodeFailed.is_final());
    }
}
