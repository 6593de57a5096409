//! NATS JetStream: names derived from the prefix, connecting, and creating the jobs stream, the
//! dead-letter stream and the shared worker consumer idempotently.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use secrecy::{ExposeSecret, SecretString};

use crate::jobs::JobMessage;

/// Stream, consumer and subject names for one prefix.
#[derive(Debug, Clone)]
pub struct Names {
    prefix: String,
}

impl Names {
    /// `prefix` has been validated by the config (letters, digits, `_`, `-`).
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// The deployment's prefix (also the namespace of its Redis keys).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn upper(&self) -> String {
        self.prefix.to_ascii_uppercase().replace('-', "_")
    }

    pub fn jobs_stream(&self) -> String {
        format!("{}_JOBS", self.upper())
    }

    pub fn dlq_stream(&self) -> String {
        format!("{}_DLQ", self.upper())
    }

    pub fn events_stream(&self) -> String {
        format!("{}_EVENTS", self.upper())
    }

    /// `<prefix>.events.<execution id>`: one execution's progress events.
    pub fn events_subject(&self, execution_id: uuid::Uuid) -> String {
        format!("{}.events.{execution_id}", self.prefix)
    }

    pub fn events_wildcard(&self) -> String {
        format!("{}.events.>", self.prefix)
    }

    pub fn workers_consumer(&self) -> String {
        format!("{}_WORKERS", self.upper())
    }

    /// `<prefix>.jobs.<kind>`
    pub fn job_subject(&self, kind: &str) -> String {
        format!("{}.jobs.{kind}", self.prefix)
    }

    pub fn jobs_wildcard(&self) -> String {
        format!("{}.jobs.>", self.prefix)
    }

    pub fn dlq_wildcard(&self) -> String {
        format!("{}.dlq.>", self.prefix)
    }

    /// Core NATS subject on which every worker hears that execution `execution_id` is to be
    /// cancelled.
    pub fn cancel_subject(&self, execution_id: uuid::Uuid) -> String {
        format!("{}.cancel.{execution_id}", self.prefix)
    }

    pub fn cancel_wildcard(&self) -> String {
        format!("{}.cancel.*", self.prefix)
    }

    /// Core NATS subject where one API instance receives execution results.
    pub fn reply_subject(&self, instance: &str) -> String {
        format!("{}.replies.{instance}", self.prefix)
    }
}

/// How the shared worker consumer redelivers.
#[derive(Debug, Clone, Copy)]
pub struct ConsumerSettings {
    /// A job not acknowledged (nor marked in progress) within this time is redelivered.
    pub ack_wait: Duration,
    /// Deliveries after which the worker dead-letters a job that still fails. The worker counts
    /// them itself: JetStream's own limit is off (see `ensure_workers_consumer`).
    pub max_deliver: i64,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("could not connect to NATS: {0}")]
    Connect(#[from] async_nats::ConnectError),
    #[error(
        "could not set up stream {stream} with {replicas} replica(s) \
         (KAI_NATS_STREAM_REPLICAS): {source}"
    )]
    Stream {
        stream: String,
        replicas: usize,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("could not set up consumer {consumer}: {source}")]
    Consumer {
        consumer: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("could not encode the job: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("JetStream did not accept the job: {0}")]
    Publish(#[from] jetstream::context::PublishError),
    #[error("the job is {size} bytes, more than NATS carries ({max} bytes)")]
    TooLarge { size: usize, max: usize },
}

impl NatsError {
    /// Whether a publish found no server leading the stream (NATS answered "no responders"): a
    /// leader election after a server was lost, or the stream's servers out of reach. Nothing
    /// was stored, so publishing again (with the same `Nats-Msg-Id`) is safe.
    pub fn is_leaderless(&self) -> bool {
        matches!(self, NatsError::Publish(e)
            if e.kind() == jetstream::context::PublishErrorKind::StreamNotFound)
    }

    /// Whether the job may or may not have been stored: its acknowledgement never came (timed
    /// out, or lost with the connection it was to arrive on).
    pub fn outcome_unknown(&self) -> bool {
        use jetstream::context::PublishErrorKind::{BrokenPipe, TimedOut};
        matches!(self, NatsError::Publish(e) if matches!(e.kind(), TimedOut | BrokenPipe))
    }
}

/// How often the client pings its server. A connection that stops answering (a partition: no
/// reset, no end of stream) is given up after its third unanswered ping, so within
/// `3 × PING_INTERVAL`, and the client reconnects to another server; the library's default
/// (60 s) would leave a process stuck on a dead link for up to three minutes.
pub const PING_INTERVAL: Duration = Duration::from_secs(5);

/// Connects to NATS: to any of the comma-separated seed servers in `url` (the client then
/// learns the cluster's other servers from the one it reached and fails over among them).
pub async fn connect(url: &SecretString, name: &str) -> Result<async_nats::Client, NatsError> {
    let client = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(5))
        .ping_interval(PING_INTERVAL)
        .event_callback(|event| async move { log_connection_event(&event) })
        .connect(seed_servers(url.expose_secret()))
        .await?;
    Ok(client)
}

/// Sends what the client still buffers (replies, acknowledgements, cancellations), waiting at
/// most `limit`. The client's own flush waits for a server to answer, so with NATS unreachable
/// it would never return: a process told to stop, or a request, would hang on it until the
/// link came back. Returns whether the flush completed.
pub async fn flush_within(client: &async_nats::Client, limit: Duration) -> bool {
    match tokio::time::timeout(limit, client.flush()).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not flush to NATS");
            false
        }
        Err(_) => {
            tracing::warn!(
                ?limit,
                "NATS did not confirm a flush in time; going on without it"
            );
            false
        }
    }
}

/// Says when the connection to NATS is lost and found again (what an operator, and the fault
/// suite timing a partition's detection, look for), and counts it.
fn log_connection_event(event: &async_nats::Event) {
    use async_nats::Event;
    let label = match event {
        Event::Connected => {
            tracing::info!("connected to NATS");
            "connected"
        }
        Event::Disconnected => {
            tracing::warn!("lost the connection to NATS; reconnecting");
            "disconnected"
        }
        Event::LameDuckMode => {
            tracing::info!("the NATS server is shutting down (lame duck); moving on");
            "lame_duck"
        }
        Event::SlowConsumer(_) => "slow_consumer",
        Event::ServerError(e) => {
            tracing::warn!(error = %e, "NATS server error");
            "server_error"
        }
        Event::ClientError(e) => {
            tracing::warn!(error = %e, "NATS client error");
            "client_error"
        }
        Event::Draining | Event::Closed => return,
    };
    metrics::counter!("kai_nats_connection_events_total", "event" => label).increment(1);
}

/// The servers of a comma-separated `NATS_URL`. The client reads a single string as one
/// address, so a list must be split before it is given to it.
fn seed_servers(url: &str) -> Vec<&str> {
    url.split(',')
        .map(str::trim)
        .filter(|server| !server.is_empty())
        .collect()
}

/// How long execution events stay in the events stream, and how much memory it may use.
pub const EVENTS_RETENTION: Duration = Duration::from_secs(15 * 60);
pub const EVENTS_MAX_BYTES: i64 = 256 * 1024 * 1024;

/// Creates the jobs, dead-letter and events streams, or brings existing ones to `settings`
/// (limits and replica count: an operator's change takes effect at the next start rather than
/// being silently ignored), and creates the workers' consumer if it does not exist yet, so the
/// queue's lag is visible (to KEDA, scaling workers from zero) before any worker has run.
///
/// File storage, so a job acknowledged to a publisher survives a NATS restart; work-queue
/// retention, so a job leaves the stream once a worker acknowledges it.
pub async fn ensure_streams(
    js: &jetstream::Context,
    names: &Names,
    settings: StreamSettings,
) -> Result<stream::Stream, NatsError> {
    let replicas = settings.replicas;
    let jobs = create_or_update(js, jobs_stream_config(names, settings), replicas).await?;
    create_or_update(
        js,
        stream::Config {
            name: names.dlq_stream(),
            subjects: vec![names.dlq_wildcard()],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            max_age: Duration::from_secs(14 * 24 * 3600),
            num_replicas: replicas,
            ..Default::default()
        },
        replicas,
    )
    .await?;
    // Progress events of running executions, kept briefly in memory so a client that starts
    // watching mid-run still sees the run from its start. Finished runs replay from PostgreSQL.
    create_or_update(
        js,
        stream::Config {
            name: names.events_stream(),
            subjects: vec![names.events_wildcard()],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::Memory,
            discard: stream::DiscardPolicy::Old,
            max_age: EVENTS_RETENTION,
            max_bytes: EVENTS_MAX_BYTES,
            num_replicas: replicas,
            ..Default::default()
        },
        replicas,
    )
    .await?;
    ensure_workers_consumer_exists(&jobs, names).await?;
    Ok(jobs)
}

/// The jobs stream's configuration.
fn jobs_stream_config(names: &Names, settings: StreamSettings) -> stream::Config {
    stream::Config {
        name: names.jobs_stream(),
        subjects: vec![names.jobs_wildcard()],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        // A full queue refuses new jobs (ingress answers 503); it never drops stored ones.
        discard: stream::DiscardPolicy::New,
        max_messages: i64::try_from(settings.max_messages).unwrap_or(i64::MAX),
        max_bytes: match settings.max_bytes {
            0 => -1,
            bytes => i64::try_from(bytes).unwrap_or(i64::MAX),
        },
        // Deduplication window for `Nats-Msg-Id`: a retried publish is stored once.
        duplicate_window: Duration::from_secs(120),
        num_replicas: settings.replicas,
        ..Default::default()
    }
}

/// Creates the stream `config` describes, or updates the existing one to it when it differs. A
/// replica count the servers cannot hold (3 on a single server) fails here, at start, with the
/// setting named.
///
/// An existing stream already as configured is left alone rather than "updated" to itself:
/// APIs, workers and schedulers start together, and nats-server 2.9 crashes (a nil dereference
/// in `updateWithAdvisory`) when an update reaches a stream another client is still creating.
async fn create_or_update(
    js: &jetstream::Context,
    config: stream::Config,
    replicas: usize,
) -> Result<stream::Stream, NatsError> {
    type Boxed = Box<dyn std::error::Error + Send + Sync>;
    let name = config.name.clone();
    let error = |e: Boxed| NatsError::Stream {
        stream: name.clone(),
        replicas,
        source: e,
    };
    let mut attempts = 0;
    loop {
        attempts += 1;
        let outcome: Result<(), Boxed> = match js.get_stream(&name).await {
            Ok(stream) if differs(&stream.cached_info().config, &config) => js
                .update_stream(&config)
                .await
                .map(drop)
                .map_err(Into::into),
            Ok(_) => Ok(()),
            Err(e) if is_stream_not_found(&e) => js
                .create_stream(config.clone())
                .await
                .map(drop)
                .map_err(Into::into),
            Err(e) => Err(e.into()),
        };
        match outcome {
            Ok(()) => break,
            // Another process created the stream between this one's lookup and its create,
            // which the server refuses ("subjects overlap"): it exists now, so look again.
            Err(_) if attempts < CREATE_ATTEMPTS && js.get_stream(&name).await.is_ok() => {}
            Err(e) => return Err(error(e)),
        }
    }
    js.get_stream(&name).await.map_err(|e| error(Box::new(e)))
}

fn is_stream_not_found(error: &jetstream::context::GetStreamError) -> bool {
    matches!(error.kind(), jetstream::context::GetStreamErrorKind::JetStream(e)
        if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
}

/// Whether the stream's `current` configuration differs from the `wanted` one in anything this
/// process sets (the server fills in the rest; a limit of 0 and one of -1 both mean none).
fn differs(current: &stream::Config, wanted: &stream::Config) -> bool {
    let limit = |value: i64| if value <= 0 { -1 } else { value };
    current.subjects != wanted.subjects
        || current.retention != wanted.retention
        || current.storage != wanted.storage
        || current.discard != wanted.discard
        || limit(current.max_messages) != limit(wanted.max_messages)
        || limit(current.max_bytes) != limit(wanted.max_bytes)
        || current.max_age != wanted.max_age
        || current.num_replicas.max(1) != wanted.num_replicas.max(1)
        || (!wanted.duplicate_window.is_zero()
            && current.duplicate_window != wanted.duplicate_window)
}

/// How often `create_or_update` tries before it gives up on a stream that exists but cannot be
/// brought to the settings (a replica count the servers cannot hold).
const CREATE_ATTEMPTS: u32 = 3;

/// How the streams are kept: how much the job queue may hold, and on how many servers.
#[derive(Debug, Clone, Copy)]
pub struct StreamSettings {
    pub max_messages: usize,
    /// 0: no limit of our own.
    pub max_bytes: u64,
    /// Copies of each stream (`KAI_NATS_STREAM_REPLICAS`).
    pub replicas: usize,
}

impl From<&crate::config::CommonConfig> for StreamSettings {
    fn from(config: &crate::config::CommonConfig) -> Self {
        Self {
            max_messages: config.jobs_max_messages,
            max_bytes: config.jobs_max_bytes,
            replicas: config.stream_replicas,
        }
    }
}

/// Creates the workers' consumer with the default settings when it does not exist; an existing
/// one is left as it is (each worker brings it to its own settings at start, see
/// `ensure_workers_consumer`). Its replica count follows the stream's.
async fn ensure_workers_consumer_exists(
    jobs: &stream::Stream,
    names: &Names,
) -> Result<(), NatsError> {
    let name = names.workers_consumer();
    let config = workers_consumer_config(names, ConsumerSettings::default());
    match jobs.get_or_create_consumer(&name, config).await {
        Ok(_) => Ok(()),
        // Created at the same moment by another process (a worker, another API).
        Err(_) if jobs.consumer_info(&name).await.is_ok() => Ok(()),
        Err(e) => Err(NatsError::Consumer {
            consumer: name,
            source: Box::new(e),
        }),
    }
}

/// The durable pull consumer all workers share, created or brought up to date.
///
/// JetStream's delivery limit is off (`max_deliver` -1): a job that reached such a limit without
/// being acknowledged (its acks lost, its worker killed each time) would stay in the work-queue
/// stream for ever, delivered to nobody and in nobody's dead letters. Instead JetStream always
/// redelivers, and the worker, which sees each delivery's count, dead-letters a job once its
/// own limit (`ConsumerSettings::max_deliver`) is reached, acknowledging it only after the dead
/// letter is stored.
pub async fn ensure_workers_consumer(
    jobs: &stream::Stream,
    names: &Names,
    settings: ConsumerSettings,
) -> Result<WorkersConsumer, NatsError> {
    let name = names.workers_consumer();
    let error = |e: Box<dyn std::error::Error + Send + Sync>| NatsError::Consumer {
        consumer: name.clone(),
        source: e,
    };
    let previous_limit = match jobs.consumer_info(&name).await {
        Ok(info) => Some(info.config.max_deliver),
        Err(e) if e.kind() == jetstream::context::ConsumerInfoErrorKind::NotFound => None,
        Err(e) => return Err(error(Box::new(e))),
    };
    let config = workers_consumer_config(names, settings);
    let consumer = jobs
        .create_consumer(config.clone())
        .await
        .map_err(|e| error(Box::new(e)))?;
    Ok(WorkersConsumer {
        consumer,
        // Created by an older release with a delivery limit: jobs may be stranded behind it.
        had_delivery_limit: previous_limit.is_some_and(|limit| limit > 0),
    })
}

/// The shared consumer's configuration.
fn workers_consumer_config(names: &Names, settings: ConsumerSettings) -> consumer::pull::Config {
    let name = names.workers_consumer();
    consumer::pull::Config {
        durable_name: Some(name),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: settings.ack_wait,
        max_deliver: -1,
        filter_subject: names.jobs_wildcard(),
        // Enough outstanding jobs for many workers; each worker bounds its own share.
        max_ack_pending: 20_000,
        ..Default::default()
    }
}

/// The shared consumer, and whether it was found with a delivery limit (made by an older
/// release), in which case jobs may sit in the stream that it will never deliver again.
pub struct WorkersConsumer {
    pub consumer: consumer::PullConsumer,
    pub had_delivery_limit: bool,
}

/// Jobs in the stream that the consumer will never deliver (they reached a delivery limit
/// without an ack): messages neither waiting for a first delivery nor awaiting an ack. An
/// estimate while jobs are being acknowledged; exact on a quiet queue.
pub async fn stranded_jobs(
    jobs: &stream::Stream,
    names: &Names,
) -> Result<u64, Box<dyn std::error::Error + Send + Sync>> {
    // The consumer first: a job acknowledged between the two reads then lowers the estimate
    // instead of raising it.
    let consumer = jobs.consumer_info(names.workers_consumer()).await?;
    let held = consumer.num_pending + consumer.num_ack_pending as u64;
    let mut jobs = jobs.clone();
    let messages = jobs.info().await?.state.messages;
    Ok(messages.saturating_sub(held))
}

/// Makes the consumer deliver again every job still in the stream, stranded ones included:
/// deletes it and creates it anew. Jobs held by workers at that moment are delivered once more;
/// their runs are recorded once (the writes are keyed by execution id).
pub async fn recreate_workers_consumer(
    jobs: &stream::Stream,
    names: &Names,
    settings: ConsumerSettings,
) -> Result<consumer::PullConsumer, NatsError> {
    let name = names.workers_consumer();
    let error = |e: Box<dyn std::error::Error + Send + Sync>| NatsError::Consumer {
        consumer: name.clone(),
        source: e,
    };
    jobs.delete_consumer(&name)
        .await
        .map_err(|e| error(Box::new(e)))?;
    jobs.create_consumer(workers_consumer_config(names, settings))
        .await
        .map_err(|e| error(Box::new(e)))
}

/// Publishes `job` and waits for JetStream's acknowledgement: when this returns `Ok`, the job
/// is stored durably. The execution id is the `Nats-Msg-Id`, so a retried publish is stored once.
pub async fn publish_job(
    js: &jetstream::Context,
    names: &Names,
    job: &JobMessage,
) -> Result<Stored, NatsError> {
    publish_encoded(
        js,
        names,
        job.subject_kind(),
        &job.message_id(),
        job.encode()?,
    )
    .await
}

/// Publishes an encoded job of kind `kind` (the subject suffix) with `message_id` as its
/// `Nats-Msg-Id`, and waits for JetStream's acknowledgement (see `publish_job`).
pub async fn publish_encoded(
    js: &jetstream::Context,
    names: &Names,
    kind: &str,
    message_id: &str,
    payload: impl Into<bytes::Bytes>,
) -> Result<Stored, NatsError> {
    let payload = payload.into();
    let size = payload.len();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", message_id);
    crate::telemetry::inject_trace_context(&mut headers);
    let ack = match js
        .publish_with_headers(names.job_subject(kind), headers, payload)
        .await
    {
        Ok(ack) => ack,
        // The client refuses a message over the server's `max_payload` before sending it: the
        // caller is told it is the job's size (413), not an unavailable queue (503, retried
        // for ever).
        Err(e) if e.kind() == jetstream::context::PublishErrorKind::MaxPayloadExceeded => {
            return Err(NatsError::TooLarge {
                size,
                max: js.client().max_payload(),
            });
        }
        Err(e) => return Err(e.into()),
    }
    .await?;
    Ok(Stored {
        duplicate: ack.duplicate,
    })
}

/// What JetStream said when it stored a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// A job with the same execution id was already stored within the duplicate window; this
    /// one was dropped.
    pub duplicate: bool,
}

/// Messages waiting in the jobs stream (the queue depth), for health and metrics.
pub async fn queue_depth(js: &jetstream::Context, names: &Names) -> Option<u64> {
    let mut stream = js.get_stream(names.jobs_stream()).await.ok()?;
    let info = stream.info().await.ok()?;
    Some(info.state.messages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_as_configured_is_not_updated_but_a_changed_setting_is() {
        let names = Names::new("differs");
        let settings = StreamSettings {
            max_messages: 1_000,
            max_bytes: 0,
            replicas: 1,
        };
        let wanted = jobs_stream_config(&names, settings);
        // As the server reports it: unset limits filled in as -1.
        let mut current = wanted.clone();
        current.max_bytes = -1;
        current.max_messages_per_subject = -1;
        assert!(!differs(&current, &wanted));
        let replicated = jobs_stream_config(
            &names,
            StreamSettings {
                replicas: 3,
                ..settings
            },
        );
        assert!(differs(&current, &replicated));
        let smaller = jobs_stream_config(
            &names,
            StreamSettings {
                max_messages: 10,
                ..settings
            },
        );
        assert!(differs(&current, &smaller));
    }
}
