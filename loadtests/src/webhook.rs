//! The `webhook` scenario: fire a webhook at a fixed arrival rate (open loop) or from N
//! connections sending back to back (closed loop), asynchronously (`Prefer: respond-async`) or
//! waiting for each result; then audit what became of every accepted request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use uuid::Uuid;

use crate::audit::{self, Accepted, Audit, Found};
use crate::pacing::Schedule;
use crate::recorder::{Percentiles, Recorder, Refusals, Sample, Window};
use crate::target::{Api, Scratch, Webhook, echo_workflow};

/// How requests are paced.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Load {
    /// Requests due at a fixed rate, whatever the answers (latency from the intended time).
    OpenLoop { rate: f64, max_in_flight: usize },
    /// N connections, each sending its next request when the previous one is answered.
    ClosedLoop { connections: usize },
}

#[derive(Debug, Clone)]
pub struct WebhookOptions {
    /// `webhook` or `e2e` (the same run; `e2e` insists on the audit for its latencies).
    pub scenario: &'static str,
    pub api: String,
    /// Fire this webhook instead of setting one up (then the audit needs `audit_as`).
    pub existing: Option<Webhook>,
    /// Access token and workflow id to audit an existing webhook's executions with.
    pub audit_as: Option<Scratch>,
    pub load: Load,
    pub duration: Duration,
    /// Wait for each execution's result instead of `Prefer: respond-async`.
    pub sync: bool,
    /// Approximate size of each JSON body.
    pub payload_bytes: usize,
    pub request_timeout: Duration,
    /// Longest the audit waits for accepted requests' executions to be recorded.
    pub audit_timeout: Duration,
    /// Print a line every second.
    pub live: bool,
    /// Keep the scratch user and workflow after the run (their token and id are printed).
    pub keep: bool,
    /// Other API base URLs to send calls through, in turn with `api`.
    pub also_via: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WebhookReport {
    /// `webhook` or `e2e`.
    pub scenario: &'static str,
    pub load: Load,
    pub mode: &'static str,
    pub duration_s: f64,
    pub payload_bytes: usize,
    pub sent: u64,
    pub accepted: u64,
    /// Accepted requests per second of the load phase.
    pub accepted_per_s: f64,
    pub latency: Percentiles,
    /// Calls not accepted: how many lacked `Retry-After`, when the first and last came.
    pub refusals: Refusals,
    pub windows: Vec<Window>,
    /// `None` when the run could not audit (an existing webhook without `--access-token`).
    pub audit: Option<Audit>,
    /// Webhook received → execution finished, from the executions' own timestamps (audited
    /// runs only).
    pub end_to_end: Option<Percentiles>,
    /// Seconds after the load ended until every accepted request's execution was recorded.
    pub drained_after_s: Option<f64>,
    /// Seconds after the load ended until the deployment's queue was first seen empty (while
    /// the audit ran).
    pub queue_empty_after_s: Option<f64>,
    /// Seconds after the load ended until the audit had its answer.
    pub audit_done_after_s: Option<f64>,
    /// Latency histogram buckets for the report: (upper bound in ms, count).
    pub histogram: Vec<(f64, u64)>,
}

/// What every request task shares.
pub(crate) struct Shared {
    client: reqwest::Client,
    /// The webhook's URL through each entry point (round robin by sequence number), parsed
    /// once, with the `Authorization` value: per-request work is the generator's cost.
    urls: Vec<reqwest::Url>,
    authorization: reqwest::header::HeaderValue,
    sync: bool,
    body_padding: String,
    run_id: Uuid,
    recorder: Mutex<Recorder>,
    accepted: Mutex<Vec<Accepted>>,
}

impl Shared {
    pub(crate) fn new(
        webhook: Webhook,
        sync: bool,
        payload_bytes: usize,
        request_timeout: Duration,
        connections: usize,
    ) -> anyhow::Result<Self> {
        kai_common::tls::install_crypto_provider();
        Ok(Self {
            client: crate::target::client_builder()
                .timeout(request_timeout)
                .pool_max_idle_per_host(connections)
                .build()?,
            urls: vec![reqwest::Url::parse(&webhook.url).context("the webhook URL")?],
            authorization: reqwest::header::HeaderValue::from_str(&format!(
                "Bearer {}",
                webhook.token
            ))
            .context("the webhook token")?,
            sync,
            body_padding: "x".repeat(payload_bytes.saturating_sub(60)),
            run_id: Uuid::new_v4(),
            recorder: Mutex::new(Recorder::default()),
            accepted: Mutex::new(Vec::new()),
        })
    }

    /// Also sends calls through these API base URLs (the webhook's path on each), in turn with
    /// the webhook's own URL: several API replicas behind no shared load balancer.
    pub(crate) fn also_via(mut self, bases: &[String]) -> anyhow::Result<Self> {
        let first = self.urls[0].clone();
        for base in bases {
            let mut url =
                reqwest::Url::parse(base).with_context(|| format!("--also-via {base}"))?;
            url.set_path(first.path());
            url.set_query(first.query());
            self.urls.push(url);
        }
        Ok(self)
    }

    pub(crate) fn recorder(&self) -> std::sync::MutexGuard<'_, Recorder> {
        self.recorder.lock().expect("recorder")
    }

    fn body(&self, seq: u64) -> String {
        json!({"lt_run": self.run_id, "lt_seq": seq, "pad": self.body_padding}).to_string()
    }

    /// Sends request `seq`, due at `due` (`second` of the run), and records what came back.
    pub(crate) async fn fire(&self, seq: u64, due: Instant, second: u64) {
        let url = &self.urls[(seq % self.urls.len() as u64) as usize];
        let mut request = self
            .client
            .post(url.clone())
            .header("authorization", self.authorization.clone())
            .header("content-type", "application/json")
            .body(self.body(seq));
        if !self.sync {
            request = request.header("prefer", "respond-async");
        }
        let (status, retry_after, execution_id) = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response.headers().contains_key("retry-after");
                let header_id = response
                    .headers()
                    .get("x-kai-execution-id")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok());
                let body = response.bytes().await.unwrap_or_default();
                let body_id = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v["execution_id"].as_str()?.parse().ok());
                (Some(status), retry_after, header_id.or(body_id))
            }
            Err(_) => (None, false, None),
        };
        let latency = due.elapsed();
        self.recorder.lock().expect("recorder").record(&Sample {
            second,
            latency,
            status,
            retry_after,
            answered_at: std::time::SystemTime::now(),
        });
        if let (Some(200..=299), Some(execution_id)) = (status, execution_id) {
            self.accepted
                .lock()
                .expect("accepted")
                .push(Accepted { seq, execution_id });
        }
    }
}

/// Runs the scenario against a deployment and audits it.
pub async fn run(options: WebhookOptions) -> anyhow::Result<WebhookReport> {
    let api = Api::new(&options.api)?;
    if options.scenario == "e2e" && options.existing.is_some() && options.audit_as.is_none() {
        anyhow::bail!(
            "e2e latencies come from the executions: with --webhook-url, also give \
             --access-token and --workflow-id"
        );
    }
    let (scratch, webhook) = match &options.existing {
        Some(webhook) => (options.audit_as.clone(), webhook.clone()),
        None => {
            let (scratch, webhook) = api.set_up(&echo_workflow()).await?;
            (Some(scratch), webhook)
        }
    };
    let connections = match options.load {
        Load::OpenLoop { max_in_flight, .. } => max_in_flight,
        Load::ClosedLoop { connections } => connections,
    };
    let shared = Arc::new(
        Shared::new(
            webhook,
            options.sync,
            options.payload_bytes,
            options.request_timeout,
            connections,
        )?
        .also_via(&options.also_via)?,
    );

    let start = Instant::now();
    // An existing webhook's workflow may hold older executions: read back from this run on
    // (a minute early, for clocks that differ a little).
    let since = options
        .existing
        .is_some()
        .then(|| chrono::Utc::now() - chrono::Duration::seconds(60));
    let live = options
        .live
        .then(|| tokio::spawn(live_lines(shared.clone(), api.clone(), start)));
    match options.load {
        Load::OpenLoop {
            rate,
            max_in_flight,
        } => open_loop(&shared, rate, max_in_flight, options.duration, start).await,
        Load::ClosedLoop { connections } => {
            closed_loop(&shared, connections, options.duration, start).await
        }
    }
    let load_time = start.elapsed();
    if let Some(live) = live {
        live.abort();
    }

    let load_ended = Instant::now();
    let queue_watch = tokio::spawn(queue_empty_after(api.clone(), load_ended));
    let (audit, drained_after, end_to_end) = match &scratch {
        Some(scratch) => {
            let (audit, drained, found) =
                audit_run(&api, scratch, &shared, since, options.audit_timeout).await?;
            (Some(audit), drained, Some(end_to_end_of(&found)))
        }
        None => (None, None, None),
    };
    let audit_done_after = audit.is_some().then(|| load_ended.elapsed());
    let queue_empty_after = if queue_watch.is_finished() {
        queue_watch.await.ok()
    } else {
        queue_watch.abort();
        None
    };
    if options.existing.is_none()
        && let Some(scratch) = &scratch
    {
        if options.keep {
            eprintln!(
                "kept workflow {} (access token: {})",
                scratch.workflow_id, scratch.access_token
            );
        } else if let Err(e) = api.clean_up(scratch).await {
            eprintln!("warning: {e}");
        }
    }

    let recorder = shared.recorder.lock().expect("recorder");
    let accepted = recorder.accepted();
    Ok(WebhookReport {
        scenario: options.scenario,
        load: options.load,
        mode: if options.sync { "sync" } else { "async" },
        duration_s: load_time.as_secs_f64(),
        payload_bytes: shared.body(0).len(),
        sent: recorder.sent(),
        accepted,
        accepted_per_s: accepted as f64 / load_time.as_secs_f64().max(1e-9),
        latency: recorder.latency(),
        refusals: recorder.refusals.clone(),
        windows: recorder.windows(),
        audit,
        end_to_end,
        drained_after_s: drained_after.map(|d| d.as_secs_f64()),
        queue_empty_after_s: queue_empty_after.map(|d| d.as_secs_f64()),
        audit_done_after_s: audit_done_after.map(|d| d.as_secs_f64()),
        histogram: crate::report::buckets(recorder.histogram()),
    })
}

async fn open_loop(
    shared: &Arc<Shared>,
    rate: f64,
    max_in_flight: usize,
    duration: Duration,
    start: Instant,
) {
    let schedule = Schedule::new(rate, duration);
    let in_flight = Arc::new(Semaphore::new(max_in_flight));
    let mut tasks = tokio::task::JoinSet::new();
    for seq in 0..schedule.total {
        let due = start + schedule.due(seq);
        tokio::time::sleep_until(due).await;
        // At the in-flight limit the next request waits: its latency still counts from `due`.
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let shared = shared.clone();
        let second = schedule.due(seq).as_secs();
        tasks.spawn(async move {
            shared.fire(seq, due, second).await;
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

pub(crate) async fn closed_loop(
    shared: &Arc<Shared>,
    connections: usize,
    duration: Duration,
    start: Instant,
) {
    let next = Arc::new(AtomicU64::new(0));
    let deadline = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (shared, next) = (shared.clone(), next.clone());
        tasks.spawn(async move {
            loop {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                let seq = next.fetch_add(1, Ordering::Relaxed);
                shared.fire(seq, now, (now - start).as_secs()).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Waits until every accepted request's execution is recorded and finished (or the timeout),
/// then audits. Returns how long after the load that took. `since` limits the read-back to
/// executions started from then on (for an existing webhook's workflow).
pub(crate) async fn audit_run(
    api: &Api,
    scratch: &Scratch,
    shared: &Shared,
    since: Option<chrono::DateTime<chrono::Utc>>,
    timeout: Duration,
) -> anyhow::Result<(Audit, Option<Duration>, Vec<Found>)> {
    let statuses = shared.recorder.lock().expect("recorder").statuses.clone();
    let accepted = shared.accepted.lock().expect("accepted").clone();
    let readback =
        crate::readback::read_back(api, scratch, &accepted, shared.run_id, since, timeout).await?;
    let report = audit::audit(&statuses, &accepted, &readback.found);
    Ok((report, readback.settled_after, readback.found))
}

/// How long after `since` the deployment's queue was first seen empty.
async fn queue_empty_after(api: Api, since: Instant) -> Duration {
    loop {
        if api.queue_depth().await == Some(0) {
            return since.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// End-to-end latency percentiles of the finished executions.
fn end_to_end_of(found: &[Found]) -> Percentiles {
    let mut histogram = crate::recorder::new_histogram();
    for latency in found.iter().filter_map(|f| f.end_to_end) {
        histogram.saturating_record((latency.as_micros() as u64).max(1));
    }
    Percentiles::of(&histogram)
}

/// One line a second: requests, rate, latency, errors and the queue depth.
async fn live_lines(shared: Arc<Shared>, api: Api, start: Instant) {
    let mut tick = tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    loop {
        tick.tick().await;
        let second = (start.elapsed().as_secs()).saturating_sub(1);
        let (window, sent) = {
            let recorder = shared.recorder.lock().expect("recorder");
            (recorder.window(second), recorder.sent())
        };
        let queue = api
            .queue_depth()
            .await
            .map_or_else(|| "?".to_owned(), |d| d.to_string());
        match window {
            Some(w) => eprintln!(
                "[{:>4}s] {:>7} sent  {:>6}/s  p50 {:>8.2} ms  p99 {:>8.2} ms  errors {:>5}  queue {queue}",
                second + 1,
                sent,
                w.requests,
                w.latency.p50_ms,
                w.latency.p99_ms,
                w.errors
            ),
            None => eprintln!(
                "[{:>4}s] {sent:>7} sent  no answers this second  queue {queue}",
                second + 1
            ),
        }
    }
}
