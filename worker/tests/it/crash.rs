//! Workers dying or draining while webhooks are accepted.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::harness::{Harness, assert_exactly_once, fire};

const ACK_WAIT_SECS: u64 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_worker_loses_and_duplicates_nothing() {
    let harness = Harness::start().await;
    let hook = harness.hook().await;
    let mut first = harness.spawn_worker(ACK_WAIT_SECS);

    let total = 600;
    let firing = tokio::spawn({
        let client = harness.client.clone();
        let hook = crate::harness::Hook {
            workflow_id: hook.workflow_id,
            url: hook.url.clone(),
            secret: hook.secret.clone(),
        };
        async move { fire(client, &hook, total, 16).await }
    });
    // Kill the worker in the middle of the stream, while it holds jobs.
    harness
        .wait_for_executions(hook.workflow_id, 100, Duration::from_secs(60))
        .await;
    first.start_kill().unwrap();
    first.wait().await.unwrap();
    let killed_after = harness.executions(hook.workflow_id).await.len();

    let (accepted, refused) = firing.await.unwrap();
    assert_eq!(
        refused, 0,
        "ingress must keep accepting while no worker runs"
    );
    assert_eq!(accepted.len(), total);

    let mut second = harness.spawn_worker(ACK_WAIT_SECS);
    harness
        .wait_for_executions(hook.workflow_id, accepted.len(), Duration::from_secs(120))
        .await;
    // Give a straggling redelivery the chance to (wrongly) add a row before checking.
    tokio::time::sleep(Duration::from_secs(ACK_WAIT_SECS + 1)).await;
    let recorded = harness.executions(hook.workflow_id).await;
    assert_exactly_once(&accepted, &recorded);
    assert!(
        killed_after < total,
        "the kill must happen before every job ran"
    );
    let redelivered = recorded
        .iter()
        .filter(|(_, _, attempt)| *attempt > 1)
        .count();
    eprintln!(
        "killed after {killed_after} of {total}; {redelivered} executions ran on a redelivery"
    );

    second.start_kill().unwrap();
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_worker_and_it_exits_cleanly() {
    let harness = Harness::start().await;
    let hook = harness.hook().await;
    let mut worker = harness.spawn_worker(30);
    let (accepted, refused) = fire(harness.client.clone(), &hook, 300, 16).await;
    assert_eq!(refused, 0);

    harness
        .wait_for_executions(hook.workflow_id, 1, Duration::from_secs(60))
        .await;
    kill(Pid::from_raw(worker.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), worker.wait())
        .await
        .expect("the worker exits promptly on SIGTERM")
        .unwrap();
    assert!(status.success(), "exit status {status}");

    // What it did not pull is still queued (ack wait is 30 s, so nothing it held is waiting
    // for a redelivery): a new worker finishes the rest at once.
    let mut next = harness.spawn_worker(30);
    harness
        .wait_for_executions(hook.workflow_id, accepted.len(), Duration::from_secs(20))
        .await;
    assert_exactly_once(&accepted, &harness.executions(hook.workflow_id).await);
    next.start_kill().unwrap();
    harness.stop().await;
}
