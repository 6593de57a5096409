//! Pull requests to the shared consumer, all answered on one long-lived subscription.
//!
//! The client library's batch gives each pull request its own inbox and drops it at the first
//! status it reads. On a clustered stream (nats-server 2.10 and later) the server's
//! `409 Batch Completed` can overtake the last jobs of a batch: they then reach a dropped inbox,
//! and each waits out the acknowledgement timeout (30 s) before it is delivered again (measured
//! on a 3-server cluster: about one job in twenty of every batch). Here every request gets its
//! own reply subject under one wildcard subscription, so a job that arrives after its request
//! ended is still received and run, and a status is matched to the request it ends.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer, consumer::pull::BatchConfig};
use async_nats::{StatusCode, Subscriber};
use futures::StreamExt;
use tokio::time::Instant;

/// How long the client waits past a request's expiry for the server's word that it ended (it
/// can be lost with a connection): then the request is taken as over.
const STATUS_GRACE: Duration = Duration::from_secs(2);

pub struct Pulls {
    pull: PullConsumer,
    client: async_nats::Client,
    js: jetstream::Context,
    inbox: String,
    subscriber: Subscriber,
    sequence: u64,
    current: Option<Request>,
}

/// The open request: its reply subject, jobs it may still bring, and when it is over anyway.
struct Request {
    reply: String,
    remaining: usize,
    deadline: Instant,
}

impl Pulls {
    /// Subscribes to this worker's pull inbox.
    pub async fn open(
        pull: PullConsumer,
        client: async_nats::Client,
        js: jetstream::Context,
    ) -> Result<Self, async_nats::SubscribeError> {
        let inbox = client.new_inbox();
        let subscriber = client.subscribe(format!("{inbox}.*")).await?;
        Ok(Self {
            pull,
            client,
            js,
            inbox,
            subscriber,
            sequence: 0,
            current: None,
        })
    }

    /// Asks for up to `messages` jobs of at most `bytes` in all, waiting at most `expires` for
    /// them. Replaces the open request, if any (its late jobs still come through `next`).
    pub async fn request(
        &mut self,
        messages: usize,
        bytes: usize,
        expires: Duration,
    ) -> Result<(), async_nats::Error> {
        self.sequence += 1;
        let reply = format!("{}.{}", self.inbox, self.sequence);
        let config = BatchConfig {
            batch: messages,
            max_bytes: bytes,
            expires: Some(expires),
            ..Default::default()
        };
        self.pull
            .request_batch(config, reply.clone().into())
            .await?;
        self.current = Some(Request {
            reply,
            remaining: messages,
            deadline: Instant::now() + expires + STATUS_GRACE,
        });
        Ok(())
    }

    /// The next job, or `None` once the open request is over: it brought all it asked for, the
    /// server ended it (expired, byte limit reached, refused), or no word came in time.
    pub async fn next(&mut self) -> Option<jetstream::Message> {
        loop {
            let request = self.current.as_mut()?;
            if request.remaining == 0 {
                self.current = None;
                return None;
            }
            let message =
                match tokio::time::timeout_at(request.deadline, self.subscriber.next()).await {
                    Ok(Some(message)) => message,
                    // The subscription ended (the client is closing): the request is over at
                    // its deadline, so a caller asking again does not spin.
                    Ok(None) => {
                        tokio::time::sleep_until(request.deadline).await;
                        self.current = None;
                        return None;
                    }
                    Err(_) => {
                        self.current = None;
                        return None;
                    }
                };
            match message.status {
                None | Some(StatusCode::OK) => {
                    // A job of an earlier request counts against this one too: together they
                    // stay within what was asked for.
                    request.remaining -= 1;
                    return Some(jetstream::Message {
                        message,
                        context: self.js.clone(),
                    });
                }
                Some(StatusCode::IDLE_HEARTBEAT) => continue,
                // An earlier request's end, arriving after it was replaced.
                Some(_) if message.subject.as_str() != request.reply => continue,
                Some(status) => {
                    if !is_normal_end(status, message.description.as_deref()) {
                        tracing::warn!(%status, description = ?message.description,
                            "a pull request for jobs was refused");
                    }
                    self.current = None;
                    return None;
                }
            }
        }
    }

    /// Stops receiving and hands back at once (negative acknowledgement) any job that arrived
    /// but was not taken, so that another worker runs it without waiting for its timeout.
    pub async fn close(mut self) {
        let _ = self.subscriber.unsubscribe().await;
        while let Ok(Some(message)) =
            tokio::time::timeout(Duration::from_millis(200), self.subscriber.next()).await
        {
            if message.status.is_none() || message.status == Some(StatusCode::OK) {
                let job = jetstream::Message {
                    message,
                    context: self.js.clone(),
                };
                let _ = job.ack_with(jetstream::AckKind::Nak(None)).await;
            }
        }
        kai_common::nats::flush_within(&self.client, Duration::from_secs(1)).await;
    }
}

/// The ends a pull request meets in normal operation: it expired (408), the stream had no more
/// (404), or it was completed by its byte limit (409: `Batch Completed` since nats-server 2.10,
/// `Message Size Exceeds MaxBytes` before).
fn is_normal_end(status: StatusCode, description: Option<&str>) -> bool {
    match status {
        StatusCode::TIMEOUT | StatusCode::NOT_FOUND => true,
        StatusCode::REQUEST_TERMINATED => description
            .is_some_and(|text| text.contains("Batch Completed") || text.contains("MaxBytes")),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_and_byte_limits_are_normal_ends_other_refusals_are_not() {
        assert!(is_normal_end(StatusCode::TIMEOUT, Some("Request Timeout")));
        assert!(is_normal_end(StatusCode::NOT_FOUND, Some("No Messages")));
        assert!(is_normal_end(
            StatusCode::REQUEST_TERMINATED,
            Some("Batch Completed")
        ));
        assert!(is_normal_end(
            StatusCode::REQUEST_TERMINATED,
            Some("Message Size Exceeds MaxBytes")
        ));
        assert!(!is_normal_end(
            StatusCode::REQUEST_TERMINATED,
            Some("Consumer Deleted")
        ));
        assert!(!is_normal_end(
            StatusCode::REQUEST_TERMINATED,
            Some("Exceeded MaxWaiting")
        ));
        assert!(!is_normal_end(StatusCode::NO_RESPONDERS, None));
    }
}
