//! `GET /api/v1/executions/{id}/events`: an execution's progress as Server-Sent Events. A
//! recorded (finished) execution is replayed from PostgreSQL; one still queued or running is
//! followed on the events stream from its first event, so a client that connects mid-run still
//! sees it from the start. The stream ends after the run's final event.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::{self, BoxStream};
use kai_common::events::{EventKind, ExecutionEvent};
use poem::web::sse::Event;
use poem_openapi::OpenApi;
use poem_openapi::param::Path;
use poem_openapi::payload::EventStream;
use serde_json::Value;
use uuid::Uuid;

use super::ApiTags;
use crate::auth::UserAuth;
use crate::error::ApiError;
use crate::state::AppState;

/// Comment lines sent while nothing happens, so proxies keep the connection open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Longest a client follows one execution; it can reconnect and is replayed from the start.
const MAX_FOLLOW: Duration = Duration::from_secs(15 * 60);

pub struct ExecutionEventsApi {
    pub state: Arc<AppState>,
}

type Events = EventStream<BoxStream<'static, Value>>;

#[derive(sqlx::FromRow)]
struct RecordedExecution {
    user_id: Uuid,
    workflow_id: Uuid,
    status: String,
    started_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
    outputs: Option<Value>,
    error: Option<String>,
    attempt: i32,
}

#[derive(sqlx::FromRow)]
struct RecordedNode {
    node_id: String,
    node_type: String,
    status: String,
    outputs: Option<Value>,
    error: Option<String>,
    started_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
    duration_ms: Option<i32>,
    attempts: i32,
}

#[OpenApi(tag = "ApiTags::Executions")]
impl ExecutionEventsApi {
    /// Follow an execution: `execution_queued`, `execution_started`, `node_started`,
    /// `node_completed` / `node_failed` / `node_skipped`, `node_progress` (streamed tokens, an
    /// agent's tool calls), then `execution_completed`, `execution_failed` or
    /// `execution_cancelled`, each a JSON event named by its kind. Finished runs are replayed.
    #[oai(
        path = "/api/v1/executions/:id/events",
        method = "get",
        operation_id = "execution_events"
    )]
    async fn events(&self, auth: UserAuth, id: Path<Uuid>) -> Result<Events, ApiError> {
        let recorded: Option<RecordedExecution> = sqlx::query_as(
            "SELECT user_id, workflow_id, status, started_at, completed_at, \
                CASE WHEN outputs_are_inputs THEN inputs ELSE outputs END AS outputs, error, \
                attempt FROM workflow_executions WHERE id = $1",
        )
        .bind(id.0)
        .fetch_optional(&self.state.db)
        .await?;
        let events: BoxStream<'static, ExecutionEvent> = match recorded {
            Some(execution) if execution.user_id != auth.0.id => {
                return Err(ApiError::not_found("execution"));
            }
            Some(execution) if execution.status != "running" => {
                stream::iter(self.replay(id.0, execution).await?).boxed()
            }
            _ => self.follow(id.0, auth.0.id).await?,
        };
        Ok(EventStream::new(events.map(to_json).boxed())
            .keep_alive(KEEP_ALIVE)
            .to_event(|value| {
                let kind = value["event"].as_str().unwrap_or("message").to_owned();
                Event::message(value.to_string()).event_type(kind)
            }))
    }
}

fn to_json(event: ExecutionEvent) -> Value {
    serde_json::to_value(event).unwrap_or(Value::Null)
}

impl ExecutionEventsApi {
    /// The events of a recorded execution, rebuilt from its record in the order it ran.
    async fn replay(
        &self,
        execution_id: Uuid,
        execution: RecordedExecution,
    ) -> Result<Vec<ExecutionEvent>, ApiError> {
        let nodes: Vec<RecordedNode> = sqlx::query_as(
            "SELECT n.node_id, n.node_type, n.status, \
                CASE WHEN n.outputs_are_trigger THEN e.inputs ELSE n.outputs END AS outputs, \
                n.error, n.started_at, n.completed_at, n.duration_ms, n.attempts \
             FROM node_executions n JOIN workflow_executions e ON e.id = n.execution_id \
             WHERE n.execution_id = $1 ORDER BY n.started_at, n.node_id",
        )
        .bind(execution_id)
        .fetch_all(&self.state.db)
        .await?;
        let event = |kind: EventKind, at: DateTime<Utc>| {
            let mut event =
                ExecutionEvent::new(kind, execution_id, execution.workflow_id, execution.user_id);
            event.at = at;
            event
        };
        let mut events = Vec::with_capacity(2 + nodes.len() * 2);
        let mut started = event(EventKind::ExecutionStarted, execution.started_at);
        started.attempts = Some(execution.attempt.unsigned_abs());
        events.push(started);
        for node in nodes {
            let finished_at = node.completed_at.unwrap_or(node.started_at);
            if node.status != "skipped" {
                let mut started = event(EventKind::NodeStarted, node.started_at);
                started.node_id = Some(node.node_id.clone());
                started.node_type = Some(node.node_type.clone());
                events.push(started);
            }
            let mut settled = event(EventKind::for_node_status(&node.status), finished_at);
            settled.node_id = Some(node.node_id);
            settled.node_type = Some(node.node_type);
            settled.attempts = Some(node.attempts.unsigned_abs());
            settled.duration_ms = node.duration_ms.map(i64::from);
            settled.error = node.error;
            if node.status == "completed" {
                settled = settled.with_output(&node.outputs.unwrap_or(Value::Null));
            }
            events.push(settled);
        }
        let kind = match execution.status.as_str() {
            "failed" => EventKind::ExecutionFailed,
            "cancelled" => EventKind::ExecutionCancelled,
            _ => EventKind::ExecutionCompleted,
        };
        let finished_at = execution.completed_at.unwrap_or(execution.started_at);
        let mut finished =
            event(kind, finished_at).with_output(&execution.outputs.unwrap_or(Value::Null));
        finished.error = execution.error;
        events.push(finished);
        Ok(events)
    }

    /// The events of an execution not recorded yet, from the events stream: its first event
    /// onwards, ending after its final one (or after `MAX_FOLLOW`).
    async fn follow(
        &self,
        execution_id: Uuid,
        user_id: Uuid,
    ) -> Result<BoxStream<'static, ExecutionEvent>, ApiError> {
        let unavailable = |e: &dyn std::fmt::Display| {
            tracing::warn!(error = %e, "events stream unavailable");
            ApiError::unavailable("execution events are unavailable; retry later", 1)
        };
        let subject = self.state.names.events_subject(execution_id);
        let events = self
            .state
            .js
            .get_stream(self.state.names.events_stream())
            .await
            .map_err(|e| unavailable(&e))?;
        // Any event tells whether the execution exists and whose it is. No event means no
        // such execution (yet); any other failure is NATS being unavailable, not a 404.
        let latest = match events.get_last_raw_message_by_subject(&subject).await {
            Ok(message) => serde_json::from_slice::<ExecutionEvent>(&message.payload).ok(),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => None,
            Err(e) => return Err(unavailable(&e)),
        };
        if latest.is_none_or(|event| event.user_id != user_id) {
            return Err(ApiError::not_found("execution"));
        }
        let consumer = events
            .create_consumer(OrderedConfig {
                filter_subject: subject,
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable(&e))?;
        let messages = consumer.messages().await.map_err(|e| unavailable(&e))?;
        let events = messages
            .filter_map(|message| async move {
                let message = message.ok()?;
                serde_json::from_slice::<ExecutionEvent>(&message.payload).ok()
            })
            .boxed();
        // Up to and including the final event: the stream ends as soon as it is sent.
        let until_final = stream::unfold((events, false), |(mut events, finished)| async move {
            if finished {
                return None;
            }
            let event = events.next().await?;
            let finished = event.event.is_final();
            Some((event, (events, finished)))
        });
        Ok(until_final
            .take_until(tokio::time::sleep(MAX_FOLLOW))
            .boxed())
    }
}
