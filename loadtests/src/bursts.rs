//! The `bursts` scenario: rounds of many concurrent asynchronous webhooks with large bodies,
//! each round followed by a quiet spell. Reports, for each process watched (the worker, the
//! API), its resident memory at its peak during the round and at the end of the quiet spell, so
//! that memory bounded by bytes and given back after a burst can be seen; then checks, by
//! execution id, that every accepted call was executed once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::process;
use crate::target::{Api, Scratch, Webhook, echo_workflow};

#[derive(Debug, Clone)]
pub struct BurstsOptions {
    pub api: String,
    /// Calls a round makes.
    pub requests: usize,
    /// Calls in flight at once.
    pub connections: usize,
    pub rounds: usize,
    /// Size of each JSON body in bytes.
    pub body_bytes: usize,
    /// Quiet time after each round's queue has drained, before memory is read again.
    pub settle: Duration,
    /// Longest a round's queue may take to drain.
    pub drain_timeout: Duration,
    /// Processes to watch, by name.
    pub watch: Vec<(String, u32)>,
    pub audit_timeout: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct BurstsReport {
    pub body_bytes: usize,
    pub requests: usize,
    pub connections: usize,
    /// Resident memory of each watched process before the first round, in MiB.
    pub idle_mib: BTreeMap<String, f64>,
    pub rounds: Vec<Round>,
    pub audit: BurstsAudit,
}

#[derive(Debug, Clone, Serialize)]
pub struct Round {
    pub round: usize,
    pub accepted: usize,
    /// Answers that were not 202, by status (`0`: no answer).
    pub refused: BTreeMap<u16, u64>,
    /// Seconds until every call was answered.
    pub sent_s: f64,
    /// Seconds from the round's start until the queue was empty.
    pub drained_s: f64,
    /// Peak resident memory of each watched process during the round, in MiB.
    pub peak_mib: BTreeMap<String, f64>,
    /// Resident memory of each watched process after the quiet spell, in MiB.
    pub settled_mib: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct BurstsAudit {
    pub accepted: usize,
    pub completed: usize,
    pub failed: usize,
    pub unfinished: usize,
    /// Accepted calls with no execution, by the execution id they were answered with.
    pub missing: Vec<Uuid>,
}

impl BurstsAudit {
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.unfinished == 0
    }
}

pub async fn run(options: BurstsOptions) -> anyhow::Result<BurstsReport> {
    let api = Api::new(&options.api)?;
    let (scratch, webhook) = api.set_up(&echo_workflow()).await?;
    let outcome = rounds(&api, &scratch, &webhook, &options).await;
    // The scratch workflow goes whatever happened (it holds every large payload).
    let cleaned = api.clean_up(&scratch).await;
    let report = outcome?;
    cleaned?;
    Ok(report)
}

async fn rounds(
    api: &Api,
    scratch: &Scratch,
    webhook: &Webhook,
    options: &BurstsOptions,
) -> anyhow::Result<BurstsReport> {
    let client = crate::target::client_builder()
        .timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(options.connections)
        .build()?;
    let run_id = Uuid::new_v4();
    let padding = "x".repeat(options.body_bytes.saturating_sub(100));
    let mut report = BurstsReport {
        body_bytes: options.body_bytes,
        requests: options.requests,
        connections: options.connections,
        idle_mib: read_all(&options.watch)?,
        rounds: Vec::new(),
        audit: BurstsAudit::default(),
    };
    let mut accepted_ids = Vec::new();
    for round in 1..=options.rounds {
        let started = Instant::now();
        let sampling = Sampler::start(options.watch.clone());
        let first_seq = (round - 1) * options.requests;
        let answers: Vec<(u16, Option<Uuid>)> =
            futures::stream::iter(first_seq..first_seq + options.requests)
                .map(|seq| {
                    let body = json!({"lt_run": run_id, "lt_seq": seq, "pad": &padding});
                    fire(&client, webhook, body.to_string())
                })
                .buffer_unordered(options.connections.max(1))
                .collect()
                .await;
        let sent_s = started.elapsed().as_secs_f64();
        wait_for_empty_queue(api, options.drain_timeout).await?;
        let drained_s = started.elapsed().as_secs_f64();
        let peak_mib = sampling.stop().await?;
        tokio::time::sleep(options.settle).await;
        let mut refused = BTreeMap::new();
        let mut accepted = 0;
        for (status, id) in answers {
            match id {
                Some(id) => {
                    accepted += 1;
                    accepted_ids.push(id);
                }
                None => *refused.entry(status).or_default() += 1,
            }
        }
        let line = Round {
            round,
            accepted,
            refused,
            sent_s,
            drained_s,
            peak_mib,
            settled_mib: read_all(&options.watch)?,
        };
        println!("{}", round_line(&line));
        report.rounds.push(line);
    }
    report.audit = audit(api, scratch, &accepted_ids, options.audit_timeout).await?;
    Ok(report)
}

/// Sends one asynchronous call: its status, and its execution id when accepted.
async fn fire(client: &reqwest::Client, webhook: &Webhook, body: String) -> (u16, Option<Uuid>) {
    let sent = client
        .post(&webhook.url)
        .bearer_auth(&webhook.token)
        .header("content-type", "application/json")
        .header("prefer", "respond-async")
        .body(body)
        .send()
        .await;
    let response = match sent {
        Ok(response) => response,
        Err(error) => {
            eprintln!("a call got no answer: {:#}", anyhow::Error::from(error));
            return (0, None);
        }
    };
    let status = response.status().as_u16();
    if status != 202 {
        return (status, None);
    }
    let id = response
        .json::<Value>()
        .await
        .ok()
        .and_then(|body| body["execution_id"].as_str()?.parse().ok());
    (status, id)
}

async fn wait_for_empty_queue(api: &Api, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if api.queue_depth().await == Some(0) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the queue did not drain within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every accepted call's execution, looked up by id in batches, until all are finished or
/// `limit` has passed.
async fn audit(
    api: &Api,
    scratch: &Scratch,
    accepted: &[Uuid],
    limit: Duration,
) -> anyhow::Result<BurstsAudit> {
    let deadline = Instant::now() + limit;
    let mut pending: Vec<Uuid> = accepted.to_vec();
    let mut report = BurstsAudit {
        accepted: accepted.len(),
        ..Default::default()
    };
    let mut running = std::collections::HashSet::new();
    loop {
        let found = api
            .lookup_executions(&scratch.access_token, &pending)
            .await?;
        running.clear();
        let mut finished = std::collections::HashSet::new();
        for summary in found {
            match summary.status.as_str() {
                "completed" => report.completed += 1,
                "failed" => report.failed += 1,
                _ => {
                    running.insert(summary.id);
                    continue;
                }
            }
            finished.insert(summary.id);
        }
        pending.retain(|id| !finished.contains(id));
        if pending.is_empty() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for id in pending {
        if running.contains(&id) {
            report.unfinished += 1;
        } else {
            report.missing.push(id);
        }
    }
    Ok(report)
}

/// Reads the resident memory of every watched process.
fn read_all(watch: &[(String, u32)]) -> anyhow::Result<BTreeMap<String, f64>> {
    watch
        .iter()
        .map(|(name, pid)| Ok((name.clone(), process::rss_mib(*pid)?)))
        .collect()
}

/// Samples the watched processes every 50 ms, keeping each one's peak.
struct Sampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<anyhow::Result<BTreeMap<String, f64>>>,
}

impl Sampler {
    fn start(watch: Vec<(String, u32)>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut peak = read_all(&watch)?;
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    for (name, now) in read_all(&watch)? {
                        let entry = peak.entry(name).or_insert(now);
                        *entry = entry.max(now);
                    }
                }
                Ok(peak)
            }
        });
        Self { stop, task }
    }

    async fn stop(self) -> anyhow::Result<BTreeMap<String, f64>> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.context("the memory sampler")?
    }
}

fn mib(values: &BTreeMap<String, f64>) -> String {
    values
        .iter()
        .map(|(name, mib)| format!("{name} {mib:.0} MiB"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn round_line(round: &Round) -> String {
    format!(
        "  round {}: {} accepted{} in {:.1} s, drained after {:.1} s; peak: {}; after the quiet spell: {}",
        round.round,
        round.accepted,
        if round.refused.is_empty() {
            String::new()
        } else {
            format!(" (refused: {:?})", round.refused)
        },
        round.sent_s,
        round.drained_s,
        mib(&round.peak_mib),
        mib(&round.settled_mib)
    )
}

pub fn summary(report: &BurstsReport) -> String {
    let mut text = format!(
        "\nkai-loadtest bursts: {} rounds of {} calls with {}-byte bodies, {} at once\n  idle: {}\n",
        report.rounds.len(),
        report.requests,
        report.body_bytes,
        report.connections,
        mib(&report.idle_mib)
    );
    for round in &report.rounds {
        text.push_str(&round_line(round));
        text.push('\n');
    }
    let audit = &report.audit;
    text.push_str(&format!(
        "  audit: {} accepted, {} completed, {} failed, {} unfinished, {} missing{}\n",
        audit.accepted,
        audit.completed,
        audit.failed,
        audit.unfinished,
        audit.missing.len(),
        if audit.missing.is_empty() {
            String::new()
        } else {
            format!(" ({:?})", audit.missing)
        }
    ));
    text
}
