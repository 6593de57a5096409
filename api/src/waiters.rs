//! Callers waiting for their execution's result. Each API instance listens on its own reply
//! subject; a worker publishes there once the execution is committed, and the reply is handed
//! to the request that waits for that execution id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use kai_common::jobs::ExecutionReply;
use tokio::sync::oneshot;
use uuid::Uuid;

#[derive(Default)]
pub struct Waiters {
    pending: Mutex<HashMap<Uuid, oneshot::Sender<ExecutionReply>>>,
}

/// Removes its registration when the waiting request ends, however it ends.
pub struct Waiting {
    waiters: Arc<Waiters>,
    execution_id: Uuid,
    pub receiver: oneshot::Receiver<ExecutionReply>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.waiters.lock().remove(&self.execution_id);
    }
}

impl Waiters {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, oneshot::Sender<ExecutionReply>>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers interest in `execution_id`; must happen before the job is published.
    pub fn register(self: &Arc<Self>, execution_id: Uuid) -> Waiting {
        let (sender, receiver) = oneshot::channel();
        self.lock().insert(execution_id, sender);
        Waiting {
            waiters: self.clone(),
            execution_id,
            receiver,
        }
    }

    fn deliver(&self, reply: ExecutionReply) {
        if let Some(sender) = self.lock().remove(&reply.execution_id) {
            let _ = sender.send(reply);
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Delivers replies from `subject` until the subscription ends.
    pub async fn listen(self: Arc<Self>, nats: async_nats::Client, subject: String) {
        let mut subscription = match nats.subscribe(subject.clone()).await {
            Ok(subscription) => subscription,
            Err(e) => {
                tracing::error!(error = %e, %subject, "cannot receive execution results");
                return;
            }
        };
        while let Some(message) = subscription.next().await {
            match serde_json::from_slice::<ExecutionReply>(&message.payload) {
                Ok(reply) => self.deliver(reply),
                Err(e) => tracing::warn!(error = %e, "ignoring malformed execution reply"),
            }
        }
    }
}
