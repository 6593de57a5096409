//! Reading a run's executions back for the audit, in time proportional to the run: one pass over
//! the workflow's execution summaries (ids, statuses and times, no inputs) by cursor; then
//! lookups of only the accepted ids still missing or unfinished, until none is or the time is up;
//! then one more pass for executions no request was answered with (a request run twice), each
//! read in full once to tell this run's from another source's.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::time::Instant;
use uuid::Uuid;

use crate::audit::{Accepted, Found};
use crate::target::{Api, Scratch, Summary};

/// Executions read in full at once while telling unexpected ones apart.
const DETAIL_CONCURRENCY: usize = 16;
/// Pause between lookups while some accepted requests are not recorded or not finished.
const LOOKUP_INTERVAL: Duration = Duration::from_millis(500);

pub struct Readback {
    /// This run's executions: every accepted one recorded, and any other carrying its run id.
    pub found: Vec<Found>,
    /// How long after the read-back began every accepted request's execution was recorded and
    /// finished; `None` when `timeout` passed first.
    pub settled_after: Option<Duration>,
}

/// What the run's workflow recorded for `accepted` (requests of run `run_id`), reading only
/// executions started at or after `since` when it is given (an existing webhook's older ones).
pub async fn read_back(
    api: &Api,
    scratch: &Scratch,
    accepted: &[Accepted],
    run_id: Uuid,
    since: Option<DateTime<Utc>>,
    timeout: Duration,
) -> anyhow::Result<Readback> {
    let began = Instant::now();
    let seq_of: HashMap<Uuid, u64> = accepted.iter().map(|a| (a.execution_id, a.seq)).collect();
    let mut known: HashMap<Uuid, Summary> = HashMap::with_capacity(accepted.len());
    remember(&mut known, api.execution_summaries(scratch, since).await?);
    let settled_after = loop {
        let outstanding = outstanding(accepted, &known);
        if outstanding.is_empty() {
            break Some(began.elapsed());
        }
        if began.elapsed() >= timeout {
            break None;
        }
        let answered = api
            .lookup_executions(&scratch.access_token, &outstanding)
            .await?;
        let resolved_all = answered.len() == outstanding.len()
            && answered.iter().all(|summary| summary.status != "running");
        remember(&mut known, answered);
        if !resolved_all {
            tokio::time::sleep(LOOKUP_INTERVAL).await;
        }
    };
    // Every accepted execution is in by now (or the time is up): a second execution of one
    // request would have been recorded alongside, so a last pass finds it.
    remember(&mut known, api.execution_summaries(scratch, since).await?);
    let unexpected: Vec<Uuid> = known
        .keys()
        .filter(|id| !seq_of.contains_key(id))
        .copied()
        .collect();
    let strays = sequence_numbers(api, &scratch.access_token, &unexpected, run_id).await?;
    let found = known
        .into_values()
        .filter_map(|summary| {
            let seq = seq_of
                .get(&summary.id)
                .or_else(|| strays.get(&summary.id))
                .copied()?;
            Some(Found {
                id: summary.id,
                seq: Some(seq),
                end_to_end: summary.end_to_end(),
                status: summary.status,
            })
        })
        .collect();
    Ok(Readback {
        found,
        settled_after,
    })
}

/// Accepted requests whose execution is not recorded yet or still running.
fn outstanding(accepted: &[Accepted], known: &HashMap<Uuid, Summary>) -> Vec<Uuid> {
    accepted
        .iter()
        .map(|a| a.execution_id)
        .filter(|id| {
            known
                .get(id)
                .is_none_or(|summary| summary.status == "running")
        })
        .collect()
}

fn remember(known: &mut HashMap<Uuid, Summary>, summaries: Vec<Summary>) {
    for summary in summaries {
        known.insert(summary.id, summary);
    }
}

/// The request sequence number behind each of `ids` that carries run `run_id` in its inputs;
/// executions from other sources are left out.
async fn sequence_numbers(
    api: &Api,
    token: &str,
    ids: &[Uuid],
    run_id: Uuid,
) -> anyhow::Result<HashMap<Uuid, u64>> {
    let details: Vec<anyhow::Result<Option<(Uuid, u64)>>> = futures::stream::iter(ids)
        .map(|id| async move {
            let Some(execution) = api.execution(token, *id).await? else {
                return Ok(None);
            };
            let data = &execution["inputs"]["data"];
            let ours = data["lt_run"].as_str() == Some(run_id.to_string().as_str());
            Ok(data["lt_seq"]
                .as_u64()
                .filter(|_| ours)
                .map(|seq| (*id, seq)))
        })
        .buffer_unordered(DETAIL_CONCURRENCY)
        .collect()
        .await;
    let mut strays = HashMap::new();
    for detail in details {
        strays.extend(detail?);
    }
    Ok(strays)
}
