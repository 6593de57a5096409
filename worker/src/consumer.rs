//! The job loop: pull from the shared consumer no more jobs than there is capacity for, run
//! each in its own task, acknowledge only after the execution is committed, and on shutdown
//! stop pulling and finish what is held.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use kai_common::jobs::{ExecutionReply, ExecutionStatus, JobMessage};
use kai_common::nats::Names;
use kai_common::nodes::services::{NodeServices, RunIds};
use sqlx::PgPool;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::budget::{self, ByteBudget};
use crate::cancellations::Cancellations;
use crate::config::EventsMode;
use crate::dead_letters::{self, DeadLetter};
use crate::engine::{self, RunInput};
use crate::events::{EventBus, RunEvents};
use crate::outage::DatabaseGate;
use crate::persist::{self, FinishedRun, Written};
use crate::pulls::Pulls;
use crate::request::RunRequest;
use crate::versions::{VersionError, Versions};
use crate::writer::{RunWriter, WriteFailure};
use kai_common::events::{EventKind, ExecutionEvent};

/// Concurrent write transactions, and runs per transaction at most, and their job messages'
/// bytes at most (past which a batch takes no further run).
/// How long a run goes on before it is recorded as `running` (see `visible_while_long`).
const LIVE_AFTER: Duration = Duration::from_millis(500);
const WRITERS: usize = 4;
/// How long one pull request waits for jobs before the loop asks again.
const PULL_EXPIRES: Duration = Duration::from_secs(1);
const MAX_BATCH: usize = 128;
const MAX_BATCH_BYTES: usize = 2 << 20;

/// What became of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Ran and recorded.
    Completed,
    /// A later delivery of a job that was already recorded; nothing written again.
    Duplicate,
    /// A transient failure (database or NATS unreachable): redeliver after a delay.
    Retry(String),
    /// Cannot ever succeed (undecodable, workflow deleted): dead-lettered.
    Dead(String),
    /// Ran and recorded as failed by a node whose failure a later run may not meet (network,
    /// rate limit, timeout) after its last attempt: acknowledged and dead-lettered, so its
    /// owner can replay it once the service is back.
    FailedRetryable(String),
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Duplicate => "duplicate",
            Outcome::Retry(_) => "retry",
            Outcome::Dead(_) => "dead",
            Outcome::FailedRetryable(_) => "failed_retryable",
        }
    }
}

/// Runs one job message. Separate from the loop so tests can drive it directly.
pub struct JobHandler {
    db: PgPool,
    nats: async_nats::Client,
    js: jetstream::Context,
    names: Names,
    versions: Versions,
    writer: RunWriter,
    /// Deliveries after which a job that still fails is dead-lettered (the worker's own limit:
    /// JetStream redelivers without one, so that no job is ever left undelivered).
    max_deliver: i64,
    events: EventBus,
    events_mode: EventsMode,
    /// Holds jobs through a database outage (see `outage`).
    gate: DatabaseGate,
    /// What nodes get at run time (the guarded HTTP client), built once per process.
    services: Arc<NodeServices>,
    /// The runs in progress here, for cancellation requests.
    cancellations: Cancellations,
}

impl JobHandler {
    pub fn new(
        db: PgPool,
        nats: async_nats::Client,
        js: jetstream::Context,
        names: Names,
        max_deliver: i64,
        services: Arc<NodeServices>,
    ) -> Self {
        let versions = Versions::new(db.clone());
        let writer = RunWriter::start(db.clone(), WRITERS, MAX_BATCH, MAX_BATCH_BYTES);
        let events = EventBus::start(nats.clone(), names.clone());
        let cancellations = Cancellations::default();
        cancellations.listen(nats.clone(), &names);
        Self {
            cancellations,
            gate: DatabaseGate::new(db.clone()),
            db,
            nats,
            js,
            names,
            versions,
            writer,
            max_deliver,
            events,
            events_mode: EventsMode::All,
            services,
        }
    }

    /// Which runs publish progress events (all by default).
    pub fn with_events_mode(mut self, mode: EventsMode) -> Self {
        self.events_mode = mode;
        self
    }

    /// The final event of `job`, to be filled in once its outcome is known; `None` when the
    /// run publishes no events.
    fn final_event(&self, job: &RunRequest) -> Option<ExecutionEvent> {
        self.events_mode
            .covers(job.trigger_type)
            .then(|| self.events.event(job, EventKind::ExecutionCompleted))
    }

    /// Publishes a run's final event from what its caller is told.
    fn emit_finished(&self, event: Option<ExecutionEvent>, reply: &ExecutionReply) {
        let Some(event) = event else { return };
        let mut event = event.with_output(&reply.result);
        event.event = match reply.status {
            ExecutionStatus::Failed => EventKind::ExecutionFailed,
            ExecutionStatus::Cancelled => EventKind::ExecutionCancelled,
            _ => EventKind::ExecutionCompleted,
        };
        event.at = chrono::Utc::now();
        event.error = reply.error.clone();
        self.events.emit(&event);
    }

    /// Handles the payload of delivery number `attempt`.
    pub async fn handle(&self, payload: &[u8], attempt: i32) -> Outcome {
        if let Some(job) = kai_common::documents::sources::DocumentJobMessage::decode(payload) {
            return crate::document_jobs::process(&self.db, &self.services, job).await;
        }
        match JobMessage::decode(payload) {
            Ok(job) => {
                let mut job = RunRequest::from(job);
                job.message_bytes = payload.len();
                self.run_job(job, attempt).await
            }
            // During a rolling upgrade a newer API may publish a kind this worker predates:
            // handed back for a newer worker (dead-lettered only if none takes it in time).
            Err(_) if let Some(kind) = JobMessage::unknown_kind(payload) => {
                Outcome::Retry(format!(
                    "job kind {kind} is unknown to this worker (an older release): left for a newer one"
                ))
            }
            Err(e) => Outcome::Dead(format!("undecodable job message: {e}")),
        }
    }

    async fn run_job(&self, job: RunRequest, attempt: i32) -> Outcome {
        let span = tracing::Span::current();
        span.record("execution_id", tracing::field::display(job.execution_id));
        span.record("workflow_id", tracing::field::display(job.workflow_id));
        if let Some(webhook_id) = &job.trigger_id {
            span.record("webhook_id", webhook_id.as_str());
        }
        // Only a redelivery (committed, but the ack was lost) or an idempotent retry can find
        // its run already recorded: answer from the record instead of running it again. Other
        // first deliveries skip the lookup; the write itself is idempotent either way.
        if attempt > 1 || job.idempotent {
            match persist::recorded_reply(&self.db, job.execution_id).await {
                Ok(Some(reply)) => {
                    self.emit_finished(self.final_event(&job), &reply);
                    self.reply(job.reply_to.as_deref(), &reply).await;
                    // The record may be an earlier delivery's asynchronous commit.
                    if let Err(e) = self.writer.durable().await {
                        return Outcome::Retry(e);
                    }
                    return Outcome::Duplicate;
                }
                Ok(None) => {}
                Err(e) => return Outcome::Retry(format!("database: {e}")),
            }
            if i64::from(attempt) > self.abandon_after() {
                // Every earlier delivery vanished without an outcome: its worker died (a job
                // that kills its worker would otherwise do so for ever) or lost it.
                return Outcome::Dead(format!(
                    "delivered {attempt} times without finishing; a worker may have died running it"
                ));
            }
        }

        let record = match self
            .versions
            .get(job.workflow_id, job.workflow_version, job.user_id)
            .await
        {
            Ok(graph) => {
                let registered = self.cancellations.start(job.execution_id);
                let input = RunInput {
                    trigger: job.trigger.clone(),
                    services: self.services.clone(),
                    run: RunIds {
                        owner: job.user_id,
                        workflow: job.workflow_id,
                        execution: job.execution_id,
                    },
                    cancel: registered.token.clone(),
                };
                let run = async {
                    if self.events_mode.covers(job.trigger_type) {
                        let mut started = self
                            .events
                            .event(&job, EventKind::ExecutionStarted)
                            .with_output(&serde_json::json!({
                                "workflow_version": job.workflow_version,
                                "trigger_type": job.trigger_type,
                                "trigger_id": job.trigger_id,
                                "enqueued_at": job.enqueued_at,
                            }));
                        started.attempts = Some(attempt.unsigned_abs());
                        self.events.emit(&started);
                        let observer = RunEvents {
                            bus: &self.events,
                            job: &job,
                        };
                        engine::run_observed(&graph, &input, &observer).await
                    } else {
                        engine::run(&graph, &input).await
                    }
                };
                self.visible_while_long(&job, attempt, run).await
            }
            Err(VersionError::Database(e)) => return Outcome::Retry(format!("database: {e}")),
            Err(VersionError::Missing { .. }) => {
                let error = "the workflow was deleted before this job ran".to_owned();
                self.reply_failed(&job, &error).await;
                return Outcome::Dead(error);
            }
            Err(e @ VersionError::Invalid(_)) => engine::failed(e.to_string(), "configuration"),
        };

        let execution_id = job.execution_id;
        let reply_to = job.reply_to.clone();
        let final_event = self.final_event(&job);
        let (run, written) = self
            .writer
            .write(FinishedRun {
                job,
                record,
                attempt,
            })
            .await;
        match (written, run) {
            (Ok(Written::New), Some(run)) => {
                let duration = (run.record.completed_at - run.record.started_at).num_microseconds();
                metrics::histogram!("kai_worker_execution_duration_seconds")
                    .record(duration.unwrap_or(0) as f64 / 1e6);
                let replayable = (run.record.status == ExecutionStatus::Failed
                    && run.record.error_type.is_some_and(is_retryable_kind))
                .then(|| run.record.error.clone().unwrap_or_default());
                let reply = ExecutionReply {
                    execution_id,
                    status: run.record.status,
                    result: run.record.result,
                    error: run.record.error,
                    response: run.record.response,
                };
                self.emit_finished(final_event, &reply);
                // The caller gets the result as soon as it is committed; the job is
                // acknowledged only once the commit is on disk.
                self.reply(reply_to.as_deref(), &reply).await;
                match (self.writer.durable().await, replayable) {
                    (Ok(()), None) => Outcome::Completed,
                    (Ok(()), Some(error)) => Outcome::FailedRetryable(error),
                    (Err(e), _) => Outcome::Retry(e),
                }
            }
            (Ok(_), _) => {
                if let Ok(Some(reply)) = persist::recorded_reply(&self.db, execution_id).await {
                    self.emit_finished(final_event, &reply);
                    self.reply(reply_to.as_deref(), &reply).await;
                }
                match self.writer.durable().await {
                    Ok(()) => Outcome::Duplicate,
                    Err(e) => Outcome::Retry(e),
                }
            }
            (Err(WriteFailure::OwnerGone), run) => {
                let error = "the workflow was deleted before this job ran".to_owned();
                if let Some(run) = run {
                    self.reply_failed(&run.job, &error).await;
                }
                Outcome::Dead(error)
            }
            (Err(WriteFailure::Retry(reason)), _) => Outcome::Retry(reason),
        }
    }

    /// Runs `run`; once it has lasted `LIVE_AFTER`, records the execution as `running` (in the
    /// background: the run does not wait) so that its owner sees it, lists it and can cancel
    /// it. Short runs, nearly all of them, are written once, when they end.
    async fn visible_while_long(
        &self,
        job: &RunRequest,
        attempt: i32,
        run: impl Future<Output = engine::RunRecord>,
    ) -> engine::RunRecord {
        let run = std::pin::pin!(run);
        let mut run = run;
        tokio::select! {
            biased;
            record = &mut run => record,
            () = tokio::time::sleep(LIVE_AFTER) => {
                let db = self.db.clone();
                let running = persist::RunningExecution::of(job, attempt);
                tokio::spawn(async move {
                    if let Err(e) = persist::mark_running(&db, &running).await {
                        tracing::warn!(error = %e, "could not record a long run as running");
                    }
                });
                run.await
            }
        }
    }

    /// Deliveries after which a job none of whose deliveries ended is no longer run: twice the
    /// limit, so that deliveries lost to a crash or a lost ack still leave it a fair attempt.
    fn abandon_after(&self) -> i64 {
        self.max_deliver.saturating_mul(2).max(self.max_deliver + 2)
    }

    async fn reply_failed(&self, job: &RunRequest, error: &str) {
        let reply = ExecutionReply {
            execution_id: job.execution_id,
            status: ExecutionStatus::Failed,
            result: serde_json::Value::Null.into(),
            error: Some(error.to_owned()),
            response: None,
        };
        self.emit_finished(self.final_event(job), &reply);
        self.reply(job.reply_to.as_deref(), &reply).await;
    }

    /// Tells a waiting API instance the result. Best effort: the caller that stopped waiting
    /// (or an API that restarted) still finds the execution through the API.
    async fn reply(&self, reply_to: Option<&str>, reply: &ExecutionReply) {
        let Some(subject) = reply_to else { return };
        match serde_json::to_vec(reply) {
            Ok(bytes) => {
                if let Err(e) = self.nats.publish(subject.to_owned(), bytes.into()).await {
                    tracing::warn!(error = %e, "could not reply to the waiting API instance");
                }
            }
            Err(e) => tracing::error!(error = %e, "could not encode the execution reply"),
        }
    }

    /// Moves a job that can never succeed to the dead-letter stream, with its reason, and
    /// lists it in `dead_letters` for its owner. `false` when the stream did not take it.
    async fn dead_letter(&self, message: &jetstream::Message, reason: &str) -> bool {
        let kind = message.subject.rsplit('.').next().unwrap_or("unknown");
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Kai-Dead-Reason", reason);
        headers.insert("Kai-Original-Subject", message.subject.as_str());
        let subject = format!(
            "{}.{kind}",
            self.names.dlq_wildcard().trim_end_matches(".>")
        );
        let stored = match self
            .js
            .publish_with_headers(subject, headers, message.payload.clone())
            .await
        {
            Ok(ack) => match ack.await {
                Ok(ack) => ack.sequence,
                Err(_) => return false,
            },
            Err(_) => return false,
        };
        let deliveries = message
            .info()
            .map(|i| i.delivered)
            .unwrap_or(1)
            .clamp(1, i32::MAX as i64) as i32;
        let letter = DeadLetter {
            subject: message.subject.as_str(),
            payload: &message.payload,
            reason,
            deliveries,
            stream_sequence: Some(stored),
        };
        // The execution first: once the dead letter is listed, its execution says why.
        if let Err(e) =
            dead_letters::mark_failed(&self.db, &message.payload, reason, deliveries).await
        {
            tracing::warn!(error = %e, "could not mark the dead-lettered execution failed");
        }
        if let Err(e) = dead_letters::record(&self.db, letter).await {
            // The stream keeps it (14 days); only the owner's listing misses it.
            tracing::error!(error = %e, "dead letter stored in the stream but not listed");
            metrics::counter!("kai_worker_dead_letters_unlisted_total").increment(1);
        }
        metrics::counter!("kai_worker_dead_letters_total").increment(1);
        true
    }
}

/// The pull loop over the shared durable consumer.
pub struct Consumer {
    pull: PullConsumer,
    handler: Arc<JobHandler>,
    concurrency: usize,
    bytes: ByteBudget,
    ack_wait: Duration,
    drain_grace: Duration,
}

/// How a worker stops: `shutdown` ends pulling, `abandon` (after the drain's grace period)
/// hands back what is still running.
#[derive(Clone, Default)]
struct Stopping {
    shutdown: CancellationToken,
    abandon: CancellationToken,
}

impl Consumer {
    pub fn new(
        pull: PullConsumer,
        handler: Arc<JobHandler>,
        concurrency: usize,
        bytes: ByteBudget,
        ack_wait: Duration,
        drain_grace: Duration,
    ) -> Self {
        Self {
            pull,
            handler,
            concurrency,
            bytes,
            ack_wait,
            drain_grace,
        }
    }

    /// Pulls and runs jobs until `shutdown`, then waits for the jobs in flight, at most the
    /// drain's grace period, after which the rest are handed back.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut pulls = match Pulls::open(
            self.pull.clone(),
            self.handler.nats.clone(),
            self.handler.js.clone(),
        )
        .await
        {
            Ok(pulls) => pulls,
            Err(e) => {
                tracing::error!(error = %e, "cannot subscribe to receive jobs");
                return;
            }
        };
        let capacity = Arc::new(Semaphore::new(self.concurrency));
        let tasks = TaskTracker::new();
        let stopping = Stopping {
            shutdown: shutdown.clone(),
            abandon: CancellationToken::new(),
        };
        while !shutdown.is_cancelled() {
            // Nothing new is taken while the database is down: it could not be recorded.
            if self.handler.gate.is_down() && !self.handler.gate.wait_until_up(&shutdown).await {
                break;
            }
            let first = tokio::select! {
                permit = capacity.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
                _ = shutdown.cancelled() => break,
            };
            // Bytes as well as jobs: a burst of large payloads waits in the stream.
            let room = tokio::select! {
                room = self.bytes.room() => room,
                _ = shutdown.cancelled() => break,
            };
            // Only this loop takes permits, so everything available now stays available until
            // the batch is handed out: we never hold a job we have no capacity to run.
            let wanted = 1 + capacity.available_permits();
            if let Err(e) = pulls.request(wanted, room, PULL_EXPIRES).await {
                tracing::warn!(error = %e, "could not pull jobs; retrying");
                drop(first);
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            let mut first = Some(first);
            while let Some(message) = pulls.next().await {
                let permit = match first.take() {
                    Some(permit) => permit,
                    None => match capacity.clone().acquire_owned().await {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                };
                let Some(held) = self.bytes.hold(budget::message_bytes(&message)).await else {
                    break;
                };
                let handler = self.handler.clone();
                let ack_wait = self.ack_wait;
                let stopping = stopping.clone();
                tasks.spawn(async move {
                    metrics::gauge!("kai_worker_jobs_in_flight").increment(1.0);
                    process(&handler, message, ack_wait, &stopping).await;
                    metrics::gauge!("kai_worker_jobs_in_flight").decrement(1.0);
                    drop((permit, held));
                });
            }
        }
        // Jobs that arrived after the last request ended go back to the queue at once.
        pulls.close().await;
        tracing::info!(
            in_flight = tasks.len(),
            "stopped pulling; finishing jobs in flight"
        );
        tasks.close();
        if tokio::time::timeout(self.drain_grace, tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                still_running = tasks.len(),
                grace = ?self.drain_grace,
                "drain grace period over; handing the rest back"
            );
            stopping.abandon.cancel();
            tasks.wait().await;
        }
    }
}

/// Runs one delivery and settles it with JetStream. A panic inside the run dead-letters the
/// job with the panic's message; the loop is never affected.
async fn process(
    handler: &JobHandler,
    message: jetstream::Message,
    ack_wait: Duration,
    stopping: &Stopping,
) {
    let attempt = message
        .info()
        .map(|i| i.delivered)
        .unwrap_or(1)
        .clamp(1, i32::MAX as i64) as i32;
    let span = tracing::info_span!(
        "job",
        subject = %message.subject,
        attempt,
        execution_id = tracing::field::Empty,
        workflow_id = tracing::field::Empty,
        webhook_id = tracing::field::Empty,
    );
    kai_common::telemetry::adopt_trace_context(&span, message.headers.as_ref());
    async {
        let outcome = tokio::select! {
            outcome = run_delivery(handler, &message, attempt, ack_wait, &stopping.shutdown) => outcome,
            _ = stopping.abandon.cancelled() => {
                // The drain's grace period is over: hand the job back for another worker (a
                // run already recorded is found there, not run twice).
                tracing::warn!("drain grace period over; handing the job back");
                let _ = message.ack_with(AckKind::Nak(None)).await;
                metrics::counter!("kai_worker_jobs_handed_back_total").increment(1);
                return;
            }
        };
        // The last delivery JetStream will make: a transient failure now would leave the job
        // in the stream for ever, so it is dead-lettered with its reason instead.
        let outcome = match outcome {
            Outcome::Retry(reason) if i64::from(attempt) >= handler.max_deliver => {
                Outcome::Dead(format!("gave up after {attempt} deliveries: {reason}"))
            }
            other => other,
        };
        metrics::counter!("kai_worker_jobs_total", "outcome" => outcome.label()).increment(1);
        settle(handler, &message, outcome).await;
    }
    .instrument(span)
    .await;
}

/// Whether a run that failed with this error type may succeed when run again later.
fn is_retryable_kind(error_type: &str) -> bool {
    matches!(error_type, "network" | "rate_limit" | "timeout")
}

/// Runs one delivery to an outcome, holding it through a database outage.
async fn run_delivery(
    handler: &JobHandler,
    message: &jetstream::Message,
    attempt: i32,
    ack_wait: Duration,
    shutdown: &CancellationToken,
) -> Outcome {
    loop {
        let outcome = with_progress(message, ack_wait, guarded(handler, message, attempt)).await;
        let Outcome::Retry(reason) = outcome else {
            return outcome;
        };
        if shutdown.is_cancelled() {
            return Outcome::Retry(reason);
        }
        if handler.gate.probe().await {
            // The database answers: a failure of this job's own (or a blip), handed back for a
            // counted redelivery.
            return Outcome::Retry(reason);
        }
        // An outage: held, then run again on the same delivery once the database is back.
        if !with_progress(message, ack_wait, handler.gate.wait_until_up(shutdown)).await {
            // Shutting down during the outage: handed back for another worker.
            return Outcome::Retry(reason);
        }
    }
}

/// Handles a delivery, turning a panic in the run into a dead letter rather than a delivery
/// that vanishes (and comes back, and panics again).
async fn guarded(handler: &JobHandler, message: &jetstream::Message, attempt: i32) -> Outcome {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(handler.handle(&message.payload, attempt))
        .catch_unwind()
        .await
    {
        Ok(outcome) => outcome,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            metrics::counter!("kai_worker_job_panics_total").increment(1);
            Outcome::Dead(format!("the worker failed running this job: {what}"))
        }
    }
}

/// Runs `work` while telling JetStream the delivery is alive, so a long job (or one held through
/// a database outage) is not redelivered meanwhile.
async fn with_progress<F: Future>(
    message: &jetstream::Message,
    ack_wait: Duration,
    work: F,
) -> F::Output {
    tokio::pin!(work);
    let mut progress =
        tokio::time::interval_at(tokio::time::Instant::now() + ack_wait / 3, ack_wait / 3);
    loop {
        tokio::select! {
            output = &mut work => return output,
            _ = progress.tick() => {
                let _ = message.ack_with(AckKind::Progress).await;
            }
        }
    }
}

async fn settle(handler: &JobHandler, message: &jetstream::Message, outcome: Outcome) {
    match outcome {
        Outcome::Completed | Outcome::Duplicate => {
            // Double ack: wait for the server to confirm, so a lost ack shows up here rather
            // than as a surprise redelivery (which would be harmless, only wasteful).
            if let Err(e) = message.double_ack().await {
                tracing::warn!(error = %e, "ack not confirmed; the job may be redelivered");
            }
        }
        Outcome::Retry(reason) => {
            tracing::warn!(%reason, "job failed transiently; will be redelivered");
            let _ = message
                .ack_with(AckKind::Nak(Some(Duration::from_secs(2))))
                .await;
        }
        Outcome::FailedRetryable(error) => {
            // Recorded as failed already; the dead letter is for replaying it later. A failure
            // to store it does not undo the run, so the job is acknowledged either way.
            let reason = format!("failed after its last attempt: {error}");
            if !handler.dead_letter(message, &reason).await {
                tracing::warn!("a failed run's dead letter could not be stored");
            }
            let _ = message.double_ack().await;
        }
        Outcome::Dead(reason) => {
            tracing::error!(%reason, "job cannot run; dead-lettering it");
            if handler.dead_letter(message, &reason).await {
                let _ = message.double_ack().await;
            } else {
                let _ = message
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(5))))
                    .await;
            }
        }
    }
}
