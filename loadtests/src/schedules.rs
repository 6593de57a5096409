//! `kai-loadtest schedules`: many active scheduled jobs on a running cluster. Reports how late
//! the leader emitted their ticks (`emitted_at - scheduled_for`, as the API lists them), checks
//! that no tick was missed or doubled, and samples the scheduler process's CPU and memory.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;
use serde_json::{Value, json};

use crate::process;
use crate::recorder::{Percentiles, new_histogram};
use crate::target::Api;

pub struct SchedulesOptions {
    pub api: String,
    /// Active schedules to create.
    pub count: usize,
    /// Each schedule's interval; ignored with `cron`.
    pub interval_seconds: u32,
    /// A cron expression for every schedule instead (all fire at once: the burst case).
    pub cron: Option<String>,
    /// Every schedule ticks once a minute, at second `i % 60` for the i-th: an even load of
    /// `count / 60` ticks a second.
    pub spread: bool,
    /// How long ticks are observed once every schedule exists.
    pub duration: Duration,
    /// API calls in flight while creating, reading and deleting.
    pub concurrency: usize,
    /// The scheduler leader's process id, on this machine, to sample CPU and memory.
    pub scheduler_pid: Option<u32>,
    pub keep: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct SchedulesReport {
    pub schedules: usize,
    pub kind: String,
    pub create_seconds: f64,
    pub window_seconds: f64,
    /// Ticks scheduled within the window and emitted.
    pub ticks: u64,
    /// Consecutive ticks of one schedule further apart than its period (a missed tick).
    pub gaps: u64,
    /// Ticks listed twice for one schedule.
    pub duplicates: u64,
    pub lateness: Percentiles,
    pub scheduler: Option<ProcessUsage>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProcessUsage {
    /// Average CPU over the window, in percent of one core.
    pub cpu_percent: f64,
    pub rss_mib_max: f64,
    pub rss_mib_end: f64,
}

pub async fn run(options: SchedulesOptions) -> anyhow::Result<SchedulesReport> {
    let api = Api::new(&options.api)?;
    let token = api.sign_up().await?;
    let (kind, period) = match (&options.cron, options.spread) {
        (Some(expression), _) => (format!("cron {expression}"), None),
        (None, true) => ("once a minute, spread over its seconds".to_owned(), None),
        (None, false) => (
            format!("every {} s", options.interval_seconds),
            Some(chrono::Duration::seconds(i64::from(
                options.interval_seconds,
            ))),
        ),
    };
    let timer = |i: usize| match (&options.cron, options.spread) {
        (Some(expression), _) => json!({"timer_type": "cron", "cron_expression": expression}),
        (None, true) => {
            json!({"timer_type": "cron", "cron_expression": format!("{} * * * * *", i % 60)})
        }
        (None, false) => {
            json!({"timer_type": "interval", "interval_seconds": options.interval_seconds})
        }
    };
    let workflow = |i: usize| {
        json!({"name": "kai-loadtest schedule", "nodes": [
            {"id": "timer", "type": "TimerStartNode", "data": timer(i)},
            {"id": "end", "type": "EndNode"}
        ], "edges": [{"source": "timer", "target": "end"}]})
    };

    let started = Instant::now();
    let created: Vec<anyhow::Result<String>> = futures::stream::iter(0..options.count)
        .map(|i| {
            let body = workflow(i);
            let (api, token) = (&api, &token);
            async move { api.create_workflow(token, &body).await }
        })
        .buffer_unordered(options.concurrency)
        .collect()
        .await;
    let workflows: Vec<String> = created.into_iter().collect::<anyhow::Result<_>>()?;
    let create_seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "created {} schedules in {create_seconds:.1} s; observing for {:?}",
        workflows.len(),
        options.duration
    );

    let window_start = Utc::now();
    let usage = match options.scheduler_pid {
        Some(pid) => Some(sample_process(pid, options.duration).await?),
        None => {
            tokio::time::sleep(options.duration).await;
            None
        }
    };
    let window_end = Utc::now();
    // Ticks due at the end of the window are emitted a moment later.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let jobs = api.get(&token, "/api/v1/jobs/scheduled").await?;
    let job_ids: Vec<String> = jobs
        .as_array()
        .context("the job list is not an array")?
        .iter()
        .filter_map(|job| job["id"].as_str().map(str::to_owned))
        .collect();
    let listed: Vec<anyhow::Result<Vec<Value>>> = futures::stream::iter(&job_ids)
        .map(|id| ticks_within(&api, &token, id, window_start, window_end))
        .buffer_unordered(options.concurrency)
        .collect()
        .await;

    let mut lateness = new_histogram();
    let (mut ticks, mut gaps, mut duplicates) = (0, 0, 0);
    let mut by_job: HashMap<usize, Vec<DateTime<Utc>>> = HashMap::new();
    for (index, page) in listed.into_iter().enumerate() {
        for tick in &page? {
            let scheduled = instant(&tick["scheduled_for"])?;
            if scheduled < window_start || scheduled > window_end {
                continue;
            }
            let emitted = instant(&tick["emitted_at"])?;
            let late = (emitted - scheduled).to_std().unwrap_or_default();
            lateness.saturating_record(late.as_micros().max(1) as u64);
            ticks += 1;
            by_job.entry(index).or_default().push(scheduled);
        }
    }
    let period = period.unwrap_or_else(|| chrono::Duration::seconds(60));
    for times in by_job.values_mut() {
        times.sort();
        for pair in times.windows(2) {
            match pair[1] - pair[0] {
                d if d == chrono::Duration::zero() => duplicates += 1,
                d if d > period => gaps += 1,
                _ => {}
            }
        }
    }

    if !options.keep {
        let _: Vec<anyhow::Result<()>> = futures::stream::iter(&workflows)
            .map(|id| api.delete_workflow(&token, id))
            .buffer_unordered(options.concurrency)
            .collect()
            .await;
    }
    Ok(SchedulesReport {
        schedules: workflows.len(),
        kind,
        create_seconds,
        window_seconds: (window_end - window_start).num_milliseconds() as f64 / 1000.0,
        ticks,
        gaps,
        duplicates,
        lateness: Percentiles::of(&lateness),
        scheduler: usage,
    })
}

/// A job's ticks scheduled within `[start, end]`, every page of them (by cursor).
async fn ticks_within(
    api: &Api,
    token: &str,
    job_id: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> anyhow::Result<Vec<Value>> {
    let mut url = reqwest::Url::parse(&format!(
        "{}/api/v1/jobs/scheduled/{job_id}/executions",
        api.base
    ))?;
    url.query_pairs_mut()
        .append_pair("limit", "500")
        .append_pair("start_date", &start.to_rfc3339())
        .append_pair(
            "end_date",
            &(end + chrono::Duration::seconds(1)).to_rfc3339(),
        );
    let mut ticks = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut page_url = url.clone();
        if let Some(cursor) = &cursor {
            page_url.query_pairs_mut().append_pair("cursor", cursor);
        }
        let (page, next) = api.get_page(token, page_url).await?;
        if let Value::Array(items) = page {
            ticks.extend(items);
        }
        match next {
            Some(next) => cursor = Some(next),
            None => return Ok(ticks),
        }
    }
}

fn instant(value: &Value) -> anyhow::Result<DateTime<Utc>> {
    value
        .as_str()
        .and_then(|text| text.parse().ok())
        .with_context(|| format!("not an instant: {value}"))
}

/// Samples `/proc/<pid>` every second for `duration`: average CPU and resident memory.
async fn sample_process(pid: u32, duration: Duration) -> anyhow::Result<ProcessUsage> {
    let read = move || -> anyhow::Result<(f64, f64)> {
        Ok((process::cpu_seconds(pid)?, process::rss_mib(pid)?))
    };
    let (cpu_start, mut rss) = read()?;
    let started = Instant::now();
    let mut rss_max = rss;
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_secs(1).min(duration)).await;
        let (_, now_rss) = read()?;
        rss = now_rss;
        rss_max = rss_max.max(rss);
    }
    let (cpu_end, _) = read()?;
    Ok(ProcessUsage {
        cpu_percent: 100.0 * (cpu_end - cpu_start) / started.elapsed().as_secs_f64(),
        rss_mib_max: rss_max,
        rss_mib_end: rss,
    })
}

pub fn summary(report: &SchedulesReport) -> String {
    let l = &report.lateness;
    let mut text = format!(
        "\nkai-loadtest schedules: {} schedules ({}), created in {:.1} s, observed {:.0} s\n  \
         ticks {}  gaps {}  duplicates {}\n  \
         lateness (emitted - scheduled): p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms\n",
        report.schedules,
        report.kind,
        report.create_seconds,
        report.window_seconds,
        report.ticks,
        report.gaps,
        report.duplicates,
        l.p50_ms,
        l.p90_ms,
        l.p99_ms,
        l.max_ms
    );
    if let Some(usage) = &report.scheduler {
        text.push_str(&format!(
            "  scheduler: CPU {:.1} % of a core, RSS max {:.1} MiB (end {:.1} MiB)\n",
            usage.cpu_percent, usage.rss_mib_max, usage.rss_mib_end
        ));
    }
    text
}
