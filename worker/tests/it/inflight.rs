//! A worker holds no more job bytes than `KAI_WORKER_MAX_INFLIGHT_BYTES`: a burst of large
//! payloads waits in the queue and still all runs.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::harness::{Harness, assert_exactly_once};

const PAYLOAD: usize = 256 * 1024;
const CALLS: usize = 40;
/// Well under the burst (10 MiB), above NATS's largest message (1 MiB here).
const BOUND: usize = 3 << 20;

/// A gauge's value in a Prometheus text page.
fn gauge(page: &str, name: &str) -> Option<f64> {
    page.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_larger_than_the_byte_bound_all_runs_within_it() {
    let harness = Harness::start().await;
    let hook = harness.hook().await;
    let port = kai_common::testing::free_port().await;
    let mut worker = harness.spawn_worker_with(
        30,
        &[
            ("KAI_WORKER_ADDR", format!("127.0.0.1:{port}")),
            ("KAI_WORKER_MAX_INFLIGHT_BYTES", BOUND.to_string()),
        ],
    );
    let pad = "x".repeat(PAYLOAD);

    let accepted: Vec<Uuid> = futures::stream::iter(0..CALLS)
        .map(|n| {
            let request = harness
                .client
                .post(&hook.url)
                .bearer_auth(&hook.secret)
                .header("Prefer", "respond-async")
                .json(&json!({"n": n, "pad": pad}));
            async move {
                let response = request.send().await.unwrap();
                assert_eq!(response.status(), 202);
                let body: Value = response.json().await.unwrap();
                body["execution_id"]
                    .as_str()
                    .unwrap()
                    .parse::<Uuid>()
                    .unwrap()
            }
        })
        .buffer_unordered(CALLS)
        .collect()
        .await;
    harness
        .wait_for_executions(hook.workflow_id, CALLS, Duration::from_secs(60))
        .await;
    assert_exactly_once(&accepted, &harness.executions(hook.workflow_id).await);

    let page = harness
        .client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let limit = gauge(&page, "kai_worker_inflight_bytes_limit").expect("the bound is reported");
    let peak = gauge(&page, "kai_worker_inflight_bytes_max").expect("the peak is reported");
    assert_eq!(limit, BOUND as f64);
    assert!(
        peak <= limit,
        "held {peak} bytes at once, above the bound {limit}"
    );
    assert!(
        peak >= PAYLOAD as f64,
        "peak {peak}: the payloads were counted"
    );
    eprintln!("peak {peak} bytes held of a {limit}-byte bound; {CALLS} × {PAYLOAD} bytes sent");
    worker.start_kill().unwrap();
    harness.stop().await;
}
