//! The `kai-loadtest` command line.

// The generator shares the machine with what it measures: spend as little CPU as possible
// (glibc malloc was a sixth of its CPU).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use kai_loadtest::bursts::{self, BurstsOptions};
use kai_loadtest::ceiling::{self, CeilingOptions};
use kai_loadtest::report;
use kai_loadtest::schedules::{self, SchedulesOptions};
use kai_loadtest::seed;
use kai_loadtest::target::{Scratch, Webhook};
use kai_loadtest::thresholds::{Thresholds, violations};
use kai_loadtest::webhook::{self, Load, WebhookOptions};

#[derive(Debug, Parser)]
#[command(
    name = "kai-loadtest",
    version,
    about = "Load-tests a KAI-Fusion deployment and audits what became of every accepted request",
    after_help = "Examples:
  # 1,000 webhooks/s for 30 s against a local cluster (sets up and removes its own workflow):
  kai-loadtest webhook --rate 1000 --duration 30s

  # 64 connections back to back, each waiting for the run's result:
  kai-loadtest webhook --connections 64 --sync --duration 20s

  # Webhook received -> execution finished latency, from the executions' own timestamps:
  kai-loadtest e2e --rate 500 --duration 20s

  # The original requirements' performance tests, pass or fail:
  kai-loadtest seed

  # This machine's limits (raw JetStream publish rate, bare HTTP server rate):
  kai-loadtest ceiling --duration 10s

  # 10,000 schedules ticking every minute for 3 minutes; tick lateness and the scheduler's cost:
  kai-loadtest schedules --count 10000 --interval-seconds 60 --duration 180s \\
      --scheduler-pid $(pgrep -f kai-scheduler | head -1)

  # 4 rounds of 200 concurrent 1 MiB webhooks; the worker's and API's memory at each peak and
  # after each quiet spell, every call audited:
  kai-loadtest bursts --body-size 1MiB --requests 200 --rounds 4 --settle 30s \\
      --watch worker=$(pgrep -f kai-worker | head -1) --watch api=$(pgrep -f kai-api | head -1)

  # A partition between a worker and PostgreSQL (kill -USR1 cuts, kill -USR2 heals):
  kai-loadtest partition --route 127.0.0.1:25432=127.0.0.1:5432 &
  DATABASE_URL=postgres://postgres@127.0.0.1:25432/kai kai-worker

  # Gate a deployment pipeline: fail unless p99 < 50 ms, 99.9 % accepted and nothing lost:
  kai-loadtest webhook --api https://kai.example.com --rate 500 --duration 60s \\
      --max-p99-ms 50 --min-success-rate 0.999 --max-lost 0 --json result.json"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Fire a webhook at a fixed rate (open loop) or from N connections (closed loop).
    Webhook(WebhookArgs),
    /// Like `webhook`, reporting webhook-received → execution-finished latency from the
    /// executions' own timestamps.
    E2e(WebhookArgs),
    /// The original requirements' performance tests as written: pass or fail.
    Seed(SeedArgs),
    /// This machine's limits: raw JetStream publishes/s and a bare HTTP server's requests/s.
    Ceiling(CeilingArgs),
    /// Many active scheduled jobs: how late their ticks are emitted, none missed or doubled,
    /// and the scheduler's CPU and memory meanwhile.
    Schedules(SchedulesArgs),
    /// Rounds of concurrent large asynchronous webhooks: the watched processes' memory at the
    /// peak of each round and after a quiet spell, and every call audited by execution id.
    Bursts(BurstsArgs),
    /// A workflow's execution listing at depth: every execution read once by cursor, then its
    /// first page against its deepest page by cursor (and by offset), timed.
    Listing(ListingArgs),
    /// A vector collection: bulk load with precomputed embeddings, the index built after it,
    /// concurrent top-k searches (latency, recall against exact search), filtered searches.
    Vectors(VectorsArgs),
    /// A TCP proxy for fault injection: forwards each route until SIGUSR1, then stops
    /// forwarding without closing anything (a network partition) until SIGUSR2.
    Partition(PartitionArgs),
}

#[derive(Debug, Args)]
struct PartitionArgs {
    /// `LISTEN=UPSTREAM` address pairs, e.g. `127.0.0.1:25432=127.0.0.1:5432` (repeat).
    #[arg(long = "route", required = true)]
    routes: Vec<kai_loadtest::partition::Route>,
}

#[derive(Debug, Args)]
struct VectorsArgs {
    #[command(flatten)]
    target: Target,
    #[arg(long, default_value = "100000")]
    rows: usize,
    #[arg(long, default_value = "384")]
    dimension: usize,
    /// Vectors per documents request.
    #[arg(long, default_value = "500")]
    batch: usize,
    /// Documents requests in flight at once.
    #[arg(long, default_value = "4")]
    writers: usize,
    /// Timed searches (and as many filtered ones).
    #[arg(long, default_value = "5000")]
    searches: usize,
    /// Searches in flight at once.
    #[arg(long, default_value = "50")]
    concurrency: usize,
    #[arg(long, default_value = "10")]
    k: usize,
    /// Distinct queries, each with its exact neighbours computed for recall.
    #[arg(long, default_value = "200")]
    recall_queries: usize,
    /// HNSW's per-query candidate list (the collection's `index_params.ef_search`).
    #[arg(long)]
    ef_search: Option<u32>,
    /// Longest the index may take to be built after the load.
    #[arg(long, default_value = "900s", value_parser = parse_duration)]
    index_timeout: Duration,
    #[arg(long, default_value = "19")]
    seed: u64,
    /// Leave the collection in place afterwards (printed with an access token).
    #[arg(long)]
    keep: bool,
    /// Fail when the search p99 (ms) is above this.
    #[arg(long)]
    max_p99_ms: Option<f64>,
    /// Fail when recall@k is below this.
    #[arg(long)]
    min_recall: Option<f64>,
    /// Write the result as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ListingArgs {
    #[command(flatten)]
    target: Target,
    /// An access token of the workflow's owner (`webhook --keep` prints one).
    #[arg(long, env = "KAI_LOADTEST_ACCESS_TOKEN")]
    access_token: String,
    /// The workflow whose executions are listed.
    #[arg(long)]
    workflow_id: uuid::Uuid,
    /// Rows of each timed page.
    #[arg(long, default_value = "50")]
    page_size: usize,
    /// Timed requests of the first page and of the deep page, each.
    #[arg(long, default_value = "20")]
    samples: usize,
    /// Timed requests of the deep page by offset (slow at depth).
    #[arg(long, default_value = "3")]
    offset_samples: usize,
    /// Fail (exit 1) when the deep page's median is more than this many times the first's.
    #[arg(long)]
    max_deep_ratio: Option<f64>,
    /// Write the result as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct BurstsArgs {
    #[command(flatten)]
    target: Target,
    /// Size of each JSON body: bytes, or with a unit (`512KiB`, `1MiB`, `1MB`).
    #[arg(long, default_value = "1MiB", value_parser = parse_size)]
    body_size: usize,
    /// Calls each round makes, all asynchronous.
    #[arg(long, default_value = "200")]
    requests: usize,
    /// Calls in flight at once (default: all of a round's).
    #[arg(long)]
    connections: Option<usize>,
    #[arg(long, default_value = "4")]
    rounds: usize,
    /// Quiet time after each round's queue has drained, before memory is read again.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    settle: Duration,
    /// Longest a round's queue may take to drain.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    drain_timeout: Duration,
    /// A process of this machine to watch, as `name=pid` (repeatable), e.g. `worker=1234`.
    #[arg(long, value_parser = parse_watch)]
    watch: Vec<(String, u32)>,
    /// Fail when a watched process peaks above this, as `name=MiB` (repeatable).
    #[arg(long, value_parser = parse_limit)]
    max_peak_mib: Vec<(String, f64)>,
    /// Fail when a watched process is above this after a quiet spell, as `name=MiB`.
    #[arg(long, value_parser = parse_limit)]
    max_settled_mib: Vec<(String, f64)>,
    /// Longest the audit waits for every accepted call's execution.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    audit_timeout: Duration,
    /// Write the result as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// The deployment a scenario runs against.
#[derive(Debug, Args)]
struct Target {
    /// Base URL of the deployment's API.
    #[arg(
        long,
        env = "KAI_LOADTEST_API",
        default_value = "http://127.0.0.1:8001"
    )]
    api: String,
}

#[derive(Debug, Args)]
struct SchedulesArgs {
    #[command(flatten)]
    target: Target,
    /// Active schedules to create (deleted at the end unless --keep).
    #[arg(long, default_value = "10000")]
    count: usize,
    /// Each schedule's interval in seconds (their starts spread over the creation time).
    #[arg(long, default_value = "60", value_parser = clap::value_parser!(u32).range(1..))]
    interval_seconds: u32,
    /// A cron expression for every schedule instead, e.g. `* * * * *`: all fire together.
    #[arg(long, conflicts_with = "spread")]
    cron: Option<String>,
    /// Each schedule once a minute at its own second (`i % 60`): an even count/60 ticks a second.
    #[arg(long)]
    spread: bool,
    /// How long to observe ticks once every schedule exists.
    #[arg(long, default_value = "180s", value_parser = parse_duration)]
    duration: Duration,
    /// API calls in flight while creating, reading and deleting.
    #[arg(long, default_value = "32")]
    concurrency: usize,
    /// Process id of the scheduler leader on this machine, to sample its CPU and memory.
    #[arg(long)]
    scheduler_pid: Option<u32>,
    /// Leave the schedules in place.
    #[arg(long)]
    keep: bool,
    /// Write the result as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct SeedArgs {
    #[command(flatten)]
    target: Target,
    /// Longest the audit waits for every accepted request's execution.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    audit_timeout: Duration,
    /// Vector size of the deployment's embeddings model (the search test's collection).
    #[arg(long, default_value = "384")]
    vector_dimension: usize,
    /// Write the result as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct CeilingArgs {
    /// The NATS server (JetStream) the deployment uses.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// How long each of the two measurements runs.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Concurrent JetStream publishers, each awaiting its acknowledgement.
    #[arg(long, default_value = "64")]
    publishers: usize,
    /// Connections to the bare HTTP server.
    #[arg(long, default_value = "64")]
    connections: usize,
    /// Size of each message and request body in bytes.
    #[arg(long, default_value = "64")]
    payload_bytes: usize,
    /// Write the result as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct WebhookArgs {
    #[command(flatten)]
    target: Target,
    /// Requests per second, due at even intervals whatever the answers (open loop); latency is
    /// measured from each request's intended send time.
    #[arg(long, conflicts_with = "connections")]
    rate: Option<f64>,
    /// Connections sending back to back (closed loop). Default when --rate is not given: 64.
    #[arg(long)]
    connections: Option<usize>,
    /// Requests in flight at most in open-loop mode (beyond it, requests wait and their wait
    /// counts in their latency).
    #[arg(long, default_value = "1024")]
    max_in_flight: usize,
    /// How long to send, e.g. `30s`, `2m`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Wait for each execution's result instead of `Prefer: respond-async`.
    #[arg(long)]
    sync: bool,
    /// Approximate size of each JSON body: bytes, or with a unit (`512KiB`, `1MiB`).
    #[arg(long, alias = "body-size", default_value = "64", value_parser = parse_size)]
    payload_bytes: usize,
    /// Per-request timeout.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    request_timeout: Duration,
    /// Longest the audit waits for every accepted request's execution.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    audit_timeout: Duration,
    /// Fire this existing webhook URL instead of setting one up (needs --webhook-token).
    #[arg(long, requires = "webhook_token")]
    webhook_url: Option<String>,
    /// The existing webhook's security token.
    #[arg(long, env = "KAI_LOADTEST_WEBHOOK_TOKEN", requires = "webhook_url")]
    webhook_token: Option<String>,
    /// To audit an existing webhook: an access token of its workflow's owner.
    #[arg(long, env = "KAI_LOADTEST_ACCESS_TOKEN", requires = "workflow_id")]
    access_token: Option<String>,
    /// To audit an existing webhook: its workflow's id.
    #[arg(long, requires = "access_token")]
    workflow_id: Option<uuid::Uuid>,
    /// Write the full result (with per-second windows and the histogram) as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write an HTML report with a latency-over-time chart and a latency histogram.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Fail (exit 1) when the p99 latency is above this many milliseconds.
    #[arg(long)]
    max_p99_ms: Option<f64>,
    /// Fail when fewer than this fraction (0 to 1) of the requests were accepted.
    #[arg(long, value_parser = parse_fraction)]
    min_success_rate: Option<f64>,
    /// Fail when more accepted requests than this have no execution (default 0: a lost or
    /// duplicated execution always fails the run).
    #[arg(long)]
    max_lost: Option<u64>,
    /// No line every second.
    #[arg(long)]
    quiet: bool,
    /// Also send calls through these API base URLs (repeat, or comma-separate), in turn with
    /// --api: the webhook's path on each, as several replicas without a shared load balancer.
    #[arg(long, value_delimiter = ',')]
    also_via: Vec<String>,
    /// Keep the scratch user and workflow (with its executions) after the run, and print their
    /// access token and id (e.g. for `kai-loadtest listing`).
    #[arg(long, conflicts_with = "webhook_url")]
    keep: bool,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((text, "s"), |at| text.split_at(at));
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 30s, 2m or 500ms"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("`{text}`: the unit must be ms, s, m or h")),
    };
    if !(seconds > 0.0 && seconds.is_finite()) {
        return Err(format!("`{text}` must be positive"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// A size in bytes: a number, optionally with a unit (B, KB, MB, KiB, MiB, GiB).
fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let at = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(at);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size like 1048576, 512KiB or 1MiB"))?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "`{text}`: unknown unit `{other}` (B, KB, MB, KiB, MiB, GiB)"
            ));
        }
    };
    let bytes = value * scale;
    if !(bytes >= 1.0 && bytes.is_finite()) {
        return Err(format!("`{text}` must be at least one byte"));
    }
    Ok(bytes as usize)
}

/// `name=pid`.
fn parse_watch(text: &str) -> Result<(String, u32), String> {
    let (name, pid) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: expected name=pid, e.g. worker=1234"))?;
    let pid = pid
        .trim()
        .parse()
        .map_err(|_| format!("`{text}`: the pid must be a number"))?;
    Ok((name.trim().to_owned(), pid))
}

/// `name=MiB`.
fn parse_limit(text: &str) -> Result<(String, f64), String> {
    let (name, mib) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: expected name=MiB, e.g. worker=300"))?;
    let mib: f64 = mib
        .trim()
        .parse()
        .map_err(|_| format!("`{text}`: the limit must be a number of MiB"))?;
    Ok((name.trim().to_owned(), mib))
}

fn parse_fraction(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if (0.0..=1.0).contains(&value) => Ok(value),
        _ => Err(format!("`{text}` must be a number from 0 to 1")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.scenario {
        Scenario::Webhook(args) => run_webhook(args, "webhook").await,
        Scenario::E2e(args) => run_webhook(args, "e2e").await,
        Scenario::Seed(args) => run_seed(args).await,
        Scenario::Ceiling(args) => run_ceiling(args).await,
        Scenario::Schedules(args) => run_schedules(args).await,
        Scenario::Bursts(args) => run_bursts(args).await,
        Scenario::Listing(args) => run_listing(args).await,
        Scenario::Vectors(args) => run_vectors(args).await,
        Scenario::Partition(args) => kai_loadtest::partition::run(args.routes)
            .await
            .map(|()| true),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("kai-loadtest: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the scenario, prints and writes the result; `Ok(false)` when a threshold was missed.
async fn run_webhook(args: WebhookArgs, scenario: &'static str) -> anyhow::Result<bool> {
    if let Some(rate) = args.rate
        && !(rate > 0.0 && rate.is_finite())
    {
        anyhow::bail!("--rate must be positive");
    }
    let load = match (args.rate, args.connections) {
        (Some(rate), _) => Load::OpenLoop {
            rate,
            max_in_flight: args.max_in_flight.max(1),
        },
        (None, connections) => Load::ClosedLoop {
            connections: connections.unwrap_or(64).max(1),
        },
    };
    let options = WebhookOptions {
        scenario,
        api: args.target.api,
        existing: args
            .webhook_url
            .zip(args.webhook_token)
            .map(|(url, token)| Webhook { url, token }),
        audit_as: args
            .access_token
            .zip(args.workflow_id)
            .map(|(access_token, workflow_id)| Scratch {
                access_token,
                workflow_id,
            }),
        load,
        duration: args.duration,
        sync: args.sync,
        payload_bytes: args.payload_bytes,
        request_timeout: args.request_timeout,
        audit_timeout: args.audit_timeout,
        live: !args.quiet,
        keep: args.keep,
        also_via: args.also_via,
    };
    let result = webhook::run(options).await?;
    println!("{}", report::webhook_summary(&result));
    if let Some(path) = &args.json {
        report::write_json(path, &result)?;
    }
    if let Some(path) = &args.html {
        std::fs::write(path, kai_loadtest::html::webhook_report(&result)?)?;
    }
    let thresholds = Thresholds {
        max_p99_ms: args.max_p99_ms,
        min_success_rate: args.min_success_rate,
        max_lost: args.max_lost,
    };
    let failed = violations(&result, &thresholds);
    for violation in &failed {
        println!("FAILED: {violation}");
    }
    Ok(failed.is_empty())
}

async fn run_listing(args: ListingArgs) -> anyhow::Result<bool> {
    let result = kai_loadtest::listing::run(kai_loadtest::listing::ListingOptions {
        api: args.target.api,
        target: Scratch {
            access_token: args.access_token,
            workflow_id: args.workflow_id,
        },
        page_size: args.page_size.max(1),
        samples: args.samples.max(1),
        offset_samples: args.offset_samples,
    })
    .await?;
    println!("{}", kai_loadtest::listing::summary(&result));
    if let Some(path) = &args.json {
        report::write_json(path, &result)?;
    }
    let ratio = result.deep_over_first();
    match args.max_deep_ratio {
        Some(max) if ratio > max => {
            println!(
                "FAILED: the deep page took {ratio:.2}x the first page's time (at most {max}x)"
            );
            Ok(false)
        }
        _ => Ok(true),
    }
}

async fn run_schedules(args: SchedulesArgs) -> anyhow::Result<bool> {
    let result = schedules::run(SchedulesOptions {
        api: args.target.api,
        count: args.count,
        interval_seconds: args.interval_seconds,
        cron: args.cron,
        spread: args.spread,
        duration: args.duration,
        concurrency: args.concurrency.max(1),
        scheduler_pid: args.scheduler_pid,
        keep: args.keep,
    })
    .await?;
    println!("{}", schedules::summary(&result));
    if let Some(path) = &args.json {
        report::write_json(path, &result)?;
    }
    // A missed or doubled tick fails the run.
    Ok(result.gaps == 0 && result.duplicates == 0)
}

async fn run_bursts(args: BurstsArgs) -> anyhow::Result<bool> {
    for (name, _) in args.max_peak_mib.iter().chain(&args.max_settled_mib) {
        if !args.watch.iter().any(|(watched, _)| watched == name) {
            anyhow::bail!("a memory limit names `{name}`, which no --watch gives a pid for");
        }
    }
    let result = bursts::run(BurstsOptions {
        api: args.target.api,
        requests: args.requests.max(1),
        connections: args.connections.unwrap_or(args.requests).max(1),
        rounds: args.rounds.max(1),
        body_bytes: args.body_size,
        settle: args.settle,
        drain_timeout: args.drain_timeout,
        watch: args.watch,
        audit_timeout: args.audit_timeout,
    })
    .await?;
    println!("{}", bursts::summary(&result));
    if let Some(path) = &args.json {
        report::write_json(path, &result)?;
    }
    let mut failed = Vec::new();
    if !result.audit.is_clean() {
        failed.push(format!(
            "{} accepted calls missing, {} unfinished",
            result.audit.missing.len(),
            result.audit.unfinished
        ));
    }
    for round in &result.rounds {
        for (name, limit) in &args.max_peak_mib {
            if let Some(peak) = round.peak_mib.get(name).filter(|peak| *peak > limit) {
                failed.push(format!(
                    "round {}: {name} peaked at {peak:.0} MiB, above {limit} MiB",
                    round.round
                ));
            }
        }
        for (name, limit) in &args.max_settled_mib {
            if let Some(settled) = round.settled_mib.get(name).filter(|mib| *mib > limit) {
                failed.push(format!(
                    "round {}: {name} held {settled:.0} MiB after the quiet spell, above {limit} MiB",
                    round.round
                ));
            }
        }
    }
    for failure in &failed {
        println!("FAILED: {failure}");
    }
    Ok(failed.is_empty())
}

async fn run_vectors(args: VectorsArgs) -> anyhow::Result<bool> {
    let settings = kai_loadtest::vectors::VectorsSettings {
        rows: args.rows,
        dimension: args.dimension,
        batch: args.batch.max(1),
        writers: args.writers.max(1),
        searches: args.searches,
        concurrency: args.concurrency.max(1),
        k: args.k,
        recall_queries: args.recall_queries,
        index_timeout: args.index_timeout,
        seed: args.seed,
        ef_search: args.ef_search,
        keep: args.keep,
    };
    let result = kai_loadtest::vectors::run(&args.target.api, &settings).await?;
    println!(
        "\nkai-loadtest vectors ({} × {}, k = {}, {} concurrent)",
        result.rows, result.dimension, result.k, result.concurrency
    );
    println!(
        "  load      {:.1} s, {:.0} vectors/s",
        result.insert_seconds, result.vectors_per_second
    );
    println!(
        "  index     ready {:.1} s after the load, built in {} ms, {} MiB (table {} MiB)",
        result.index_wait_seconds,
        result.index_build_ms.unwrap_or(-1),
        result.index_bytes.unwrap_or(0) / (1 << 20),
        result.table_bytes / (1 << 20)
    );
    for (name, latency) in [("search", &result.search), ("filtered", &result.filtered)] {
        println!(
            "  {name:<9} {:.0}/s, p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms, recall@{} {:.3}, {} short",
            latency.per_second,
            latency.p50_ms,
            latency.p90_ms,
            latency.p99_ms,
            latency.max_ms,
            result.k,
            latency.recall_at_k,
            latency.short
        );
    }
    if let Some(path) = &args.json {
        report::write_json(path, &result)?;
    }
    let mut passed = result.filtered.short == 0;
    if let Some(max) = args.max_p99_ms
        && result.search.p99_ms > max
    {
        println!(
            "  FAILED: search p99 {:.1} ms is above {max} ms",
            result.search.p99_ms
        );
        passed = false;
    }
    if let Some(min) = args.min_recall
        && result.search.recall_at_k < min
    {
        println!(
            "  FAILED: recall {:.3} is below {min}",
            result.search.recall_at_k
        );
        passed = false;
    }
    Ok(passed)
}

async fn run_seed(args: SeedArgs) -> anyhow::Result<bool> {
    let result = seed::run(&args.target.api, args.audit_timeout, args.vector_dimension).await?;
    println!("\nkai-loadtest seed");
    for check in &result.checks {
        println!("  {:<32} {:<14} {}", check.name, check.result, check.detail);
    }
    let audit = &result.audit;
    println!(
        "  audit: {} accepted, {} completed, {} failed, {} missing, {} duplicated",
        audit.accepted, audit.completed, audit.failed, audit.missing, audit.duplicated
    );
    if let Some(path) = &args.json {
        report::write_json(path, &result)?;
    }
    Ok(result.passed())
}

async fn run_ceiling(args: CeilingArgs) -> anyhow::Result<bool> {
    let result = ceiling::run(CeilingOptions {
        nats_url: args.nats_url,
        duration: args.duration,
        publishers: args.publishers,
        connections: args.connections,
        payload_bytes: args.payload_bytes,
    })
    .await?;
    println!("\nkai-loadtest ceiling ({:.0} s each)", result.duration_s);
    println!(
        "  JetStream publishes (file storage, {} publishers awaiting acks)  {:.0}/s",
        result.publishers, result.jetstream_publishes_per_s
    );
    println!(
        "  bare HTTP server, {} connections                              {:.0} req/s (p50 {:.2} ms, p99 {:.2} ms)",
        result.connections,
        result.http_requests_per_s,
        result.http_latency.p50_ms,
        result.http_latency.p99_ms
    );
    println!("  Compare `kai-loadtest webhook` rates with these: async ingest is bounded by both.");
    if let Some(path) = &args.json {
        report::write_json(path, &result)?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_fractions_parse_or_say_what_is_wrong() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("3 days").unwrap_err().contains("unit"));
        assert!(parse_fraction("0.99").is_ok());
        assert_eq!(parse_size("1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_size("512KiB").unwrap(), 512 << 10);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert_eq!(parse_size("1 MB").unwrap(), 1_000_000);
        assert!(parse_size("1 parsec").unwrap_err().contains("unit"));
        assert!(parse_size("0").is_err());
        assert_eq!(parse_watch("worker=12").unwrap(), ("worker".to_owned(), 12));
        assert!(parse_watch("worker").is_err());
        assert_eq!(parse_limit("api=150").unwrap(), ("api".to_owned(), 150.0));
        assert!(parse_fraction("99").is_err());
    }
}
