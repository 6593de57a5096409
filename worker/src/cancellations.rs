//! Cancellation requests for the runs of this worker. The API publishes a request on
//! `<prefix>.cancel.<execution id>` (core NATS) and every worker hears it: the worker running
//! that execution cancels it; the others remember it for an hour, so a queued run that a worker
//! starts later is recorded cancelled without running.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kai_common::nats::Names;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How long a request for a run not (yet) here is remembered.
const REMEMBER_FOR: Duration = Duration::from_secs(3600);
/// Requests remembered at most (the oldest are forgotten first).
const MAX_REMEMBERED: usize = 100_000;

#[derive(Default)]
struct State {
    running: HashMap<Uuid, CancellationToken>,
    requested: HashMap<Uuid, Instant>,
}

/// The runs in progress here and the cancellations asked for.
#[derive(Clone, Default)]
pub struct Cancellations {
    state: Arc<Mutex<State>>,
}

/// A run registered for cancellation; unregistered when dropped.
pub struct Registered {
    cancellations: Cancellations,
    execution_id: Uuid,
    pub token: CancellationToken,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut state = self.cancellations.state.lock().expect("cancellations");
        state.running.remove(&self.execution_id);
    }
}

impl Cancellations {
    /// Registers a run about to start; its token is already cancelled when that was asked.
    pub fn start(&self, execution_id: Uuid) -> Registered {
        let token = CancellationToken::new();
        let mut state = self.state.lock().expect("cancellations");
        if state.requested.remove(&execution_id).is_some() {
            token.cancel();
        }
        state.running.insert(execution_id, token.clone());
        Registered {
            cancellations: self.clone(),
            execution_id,
            token,
        }
    }

    /// Cancels the run if it is here, else remembers the request.
    pub fn request(&self, execution_id: Uuid) {
        let mut state = self.state.lock().expect("cancellations");
        if let Some(token) = state.running.get(&execution_id) {
            token.cancel();
            return;
        }
        let now = Instant::now();
        state
            .requested
            .retain(|_, at| now.duration_since(*at) < REMEMBER_FOR);
        if state.requested.len() >= MAX_REMEMBERED
            && let Some(oldest) = state
                .requested
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(id, _)| *id)
        {
            state.requested.remove(&oldest);
        }
        state.requested.insert(execution_id, now);
    }

    /// Listens for cancellation requests until the connection closes.
    pub fn listen(&self, nats: async_nats::Client, names: &Names) {
        let subject = names.cancel_wildcard();
        let cancellations = self.clone();
        tokio::spawn(async move {
            let mut requests = match nats.subscribe(subject).await {
                Ok(requests) => requests,
                Err(e) => {
                    tracing::error!(error = %e, "cannot hear cancellation requests");
                    return;
                }
            };
            while let Some(message) = requests.next().await {
                let id = message
                    .subject
                    .rsplit('.')
                    .next()
                    .and_then(|id| id.parse().ok());
                if let Some(id) = id {
                    tracing::info!(execution_id = %id, "cancellation requested");
                    cancellations.request(id);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_cancels_a_running_run_or_waits_for_it_to_start() {
        let cancellations = Cancellations::default();
        let (running, later) = (Uuid::new_v4(), Uuid::new_v4());
        let registered = cancellations.start(running);
        assert!(!registered.token.is_cancelled());
        cancellations.request(running);
        assert!(registered.token.is_cancelled());
        drop(registered);
        assert!(cancellations.state.lock().unwrap().running.is_empty());

        cancellations.request(later);
        assert!(cancellations.start(later).token.is_cancelled());
        assert!(
            !cancellations.start(later).token.is_cancelled(),
            "a request is used once"
        );
    }
}
