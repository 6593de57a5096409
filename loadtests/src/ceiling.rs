//! The `ceiling` scenario: the limits of the machine the run is on, measured with the same
//! tools, so a deployment's rates can be stated as a fraction of them. Two figures: JetStream
//! publishes acknowledged per second into a scratch stream with the jobs stream's storage
//! settings, and the request rate of a bare HTTP server (it answers 202 and does nothing else)
//! driven by this tool's own client.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::stream;
use poem::{EndpointExt, Route, handler, post};
use serde::Serialize;
use tokio::time::Instant;
use uuid::Uuid;

use crate::recorder::Percentiles;
use crate::target::Webhook;
use crate::webhook::{Shared, closed_loop};

#[derive(Debug, Clone)]
pub struct CeilingOptions {
    pub nats_url: String,
    pub duration: Duration,
    /// Concurrent publishers, each awaiting its acknowledgement (as API requests do).
    pub publishers: usize,
    /// Connections to the bare HTTP server.
    pub connections: usize,
    pub payload_bytes: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct CeilingReport {
    pub scenario: &'static str,
    pub duration_s: f64,
    pub publishers: usize,
    pub jetstream_publishes_per_s: f64,
    pub connections: usize,
    pub http_requests_per_s: f64,
    pub http_latency: Percentiles,
}

pub async fn run(options: CeilingOptions) -> anyhow::Result<CeilingReport> {
    let jetstream = jetstream_ceiling(&options).await?;
    let (http, latency) = http_ceiling(&options).await?;
    Ok(CeilingReport {
        scenario: "ceiling",
        duration_s: options.duration.as_secs_f64(),
        publishers: options.publishers,
        jetstream_publishes_per_s: jetstream,
        connections: options.connections,
        http_requests_per_s: http,
        http_latency: latency,
    })
}

/// Acknowledged publishes per second into a scratch work-queue stream on file storage.
async fn jetstream_ceiling(options: &CeilingOptions) -> anyhow::Result<f64> {
    let client = async_nats::connect(&options.nats_url).await?;
    let js = async_nats::jetstream::new(client);
    let id = Uuid::new_v4().simple().to_string();
    let name = format!("KAI_LOADTEST_CEILING_{id}");
    let subject = format!("kailoadtest.ceiling.{id}");
    js.create_stream(stream::Config {
        name: name.clone(),
        subjects: vec![subject.clone()],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await?;
    let payload = bytes::Bytes::from(vec![b'x'; options.payload_bytes.max(1)]);
    let published = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + options.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..options.publishers.max(1) {
        let (js, subject, payload, published) = (
            js.clone(),
            subject.clone(),
            payload.clone(),
            published.clone(),
        );
        tasks.spawn(async move {
            while Instant::now() < deadline {
                let acked = async { js.publish(subject.clone(), payload.clone()).await?.await };
                if acked.await.is_ok() {
                    published.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = start.elapsed().as_secs_f64();
    let _ = js.delete_stream(&name).await;
    Ok(published.load(Ordering::Relaxed) as f64 / elapsed)
}

#[handler]
fn accept(body: String) -> poem::Response {
    let _ = body;
    poem::Response::builder()
        .status(poem::http::StatusCode::ACCEPTED)
        .content_type("application/json")
        .body(r#"{"status":"queued"}"#)
}

/// Requests per second a bare HTTP server answers to this tool's client.
async fn http_ceiling(options: &CeilingOptions) -> anyhow::Result<(f64, Percentiles)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/accept", listener.local_addr()?);
    let acceptor = poem::listener::TcpAcceptor::from_tokio(listener)?;
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn({
        let stop = stop.clone();
        poem::Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(
            Route::new().at("/accept", post(accept)).boxed(),
            stop.cancelled_owned(),
            None,
        )
    });
    let webhook = Webhook {
        url,
        token: "ceiling".to_owned(),
    };
    let shared = Arc::new(Shared::new(
        webhook,
        false,
        options.payload_bytes,
        Duration::from_secs(10),
        options.connections,
    )?);
    let start = Instant::now();
    closed_loop(&shared, options.connections.max(1), options.duration, start).await;
    let elapsed = start.elapsed().as_secs_f64();
    stop.cancel();
    let _ = server.await;
    let recorder = shared.recorder();
    Ok((recorder.accepted() as f64 / elapsed, recorder.latency()))
}
