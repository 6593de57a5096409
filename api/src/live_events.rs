//! What the events stream tells about an execution that is not finished: whose it is (its
//! latest event) and which of its nodes have settled so far (its events up to now). The record
//! in PostgreSQL is written when the run ends; meanwhile this is how it is watched.

use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use futures::StreamExt;
use kai_common::events::{EventKind, ExecutionEvent};
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;

/// Events read at most for one execution's settled nodes.
const MAX_EVENTS: usize = 10_000;

fn unavailable(e: &dyn std::fmt::Display) -> ApiError {
    tracing::warn!(error = %e, "events stream unavailable");
    ApiError::unavailable("execution events are unavailable; retry later", 1)
}

/// The execution's latest event and its sequence in the stream; `None` when it has none.
pub async fn latest(
    state: &AppState,
    execution_id: Uuid,
) -> Result<Option<(ExecutionEvent, u64)>, ApiError> {
    let events = state
        .js
        .get_stream(state.names.events_stream())
        .await
        .map_err(|e| unavailable(&e))?;
    match events
        .get_last_raw_message_by_subject(&state.names.events_subject(execution_id))
        .await
    {
        Ok(message) => Ok(serde_json::from_slice::<ExecutionEvent>(&message.payload)
            .ok()
            .map(|event| (event, message.sequence))),
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(unavailable(&e)),
    }
}

/// The execution's events so far, oldest first (none when the stream has none or is down:
/// the caller still has the record).
pub async fn so_far(state: &AppState, execution_id: Uuid) -> Vec<ExecutionEvent> {
    let Ok(Some((_, last))) = latest(state, execution_id).await else {
        return Vec::new();
    };
    let read = async {
        let stream = state
            .js
            .get_stream(state.names.events_stream())
            .await
            .ok()?;
        let consumer = stream
            .create_consumer(OrderedConfig {
                filter_subject: state.names.events_subject(execution_id),
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .ok()?;
        let mut messages = consumer.messages().await.ok()?;
        let mut events = Vec::new();
        while let Some(Ok(message)) = messages.next().await {
            let sequence = message
                .info()
                .map(|info| info.stream_sequence)
                .unwrap_or(last);
            if let Ok(event) = serde_json::from_slice::<ExecutionEvent>(&message.payload) {
                events.push(event);
            }
            if sequence >= last || events.len() >= MAX_EVENTS {
                break;
            }
        }
        Some(events)
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), read)
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Whether an event says a node settled (completed, failed or skipped).
pub fn is_settled_node(event: &ExecutionEvent) -> bool {
    matches!(
        event.event,
        EventKind::NodeCompleted | EventKind::NodeFailed | EventKind::NodeSkipped
    )
}
