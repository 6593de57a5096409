//! Publishes execution progress events. Runs hand events to one bounded queue drained by one
//! task, so events of a run reach NATS in the order they happened and a slow NATS never slows a
//! run: when the queue is full, events are dropped and counted (they are a view of progress;
//! the execution record is written regardless).

use bytes::Bytes;
use kai_common::events::{EventKind, ExecutionEvent};
use kai_common::nats::Names;
use kai_common::nodes::NodeEvents;
use tokio::sync::mpsc;

use crate::engine::{NodeRun, Observer};
use crate::request::RunRequest;

const QUEUE_CAPACITY: usize = 65_536;

#[derive(Clone)]
pub struct EventBus {
    sender: mpsc::Sender<(String, Bytes)>,
    names: Names,
}

impl EventBus {
    /// Starts the publishing task; it ends when every `EventBus` clone is dropped.
    pub fn start(nats: async_nats::Client, names: Names) -> Self {
        let (sender, mut receiver) = mpsc::channel::<(String, Bytes)>(QUEUE_CAPACITY);
        tokio::spawn(async move {
            while let Some((subject, payload)) = receiver.recv().await {
                // Core publish into the events stream: no acknowledgement to wait for.
                if let Err(e) = nats.publish(subject, payload).await {
                    metrics::counter!("kai_execution_events_dropped_total").increment(1);
                    tracing::debug!(error = %e, "could not publish an execution event");
                }
            }
        });
        Self { sender, names }
    }

    pub fn emit(&self, event: &ExecutionEvent) {
        let Ok(payload) = serde_json::to_vec(event) else {
            return;
        };
        let subject = self.names.events_subject(event.execution_id);
        if self.sender.try_send((subject, payload.into())).is_err() {
            metrics::counter!("kai_execution_events_dropped_total").increment(1);
        }
    }

    /// An event about `job` of kind `kind`.
    pub fn event(&self, job: &RunRequest, kind: EventKind) -> ExecutionEvent {
        ExecutionEvent::new(kind, job.execution_id, job.workflow_id, job.user_id)
    }
}

/// Publishes one run's node events.
pub struct RunEvents<'a> {
    pub bus: &'a EventBus,
    pub job: &'a RunRequest,
}

impl NodeEvents for RunEvents<'_> {
    fn progress(&self, node_id: &str, data: &serde_json::Value) {
        let mut event = self.bus.event(self.job, EventKind::NodeProgress);
        event.node_id = Some(node_id.to_owned());
        self.bus.emit(&event.with_output(data));
    }
}

impl Observer for RunEvents<'_> {
    fn node_started(&self, node_id: &str, node_type: &str) {
        let mut event = self.bus.event(self.job, EventKind::NodeStarted);
        event.node_id = Some(node_id.to_owned());
        event.node_type = Some(node_type.to_owned());
        self.bus.emit(&event);
    }

    fn node_settled(&self, node: &NodeRun) {
        let mut event = self
            .bus
            .event(self.job, EventKind::for_node_status(node.status));
        event.at = node.completed_at;
        event.node_id = Some(node.node_id.clone());
        event.node_type = Some(node.node_type.to_string());
        event.attempts = Some(node.attempts);
        event.duration_ms = Some((node.completed_at - node.started_at).num_milliseconds());
        event.error = node.error.clone();
        if node.status == "completed" {
            event = event.with_output(&node.outputs);
        }
        self.bus.emit(&event);
    }
}
