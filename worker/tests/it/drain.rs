//! A stopping worker's drain: jobs still running when its grace period ends are handed back at
//! once, so another worker runs them without waiting for the acknowledgement timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use poem::web::{Data, Json};
use poem::{EndpointExt, Route, handler, post};
use serde_json::{Value, json};

use kai_common::test_proxy::TcpProxy;
use kai_common::testing::{addr_of, nats_url};

use crate::harness::{Harness, assert_exactly_once, fire};

/// Hangs on its first call (longer than any test), answers at once afterwards.
#[handler]
async fn slow_first(calls: Data<&Arc<AtomicU32>>) -> Json<Value> {
    if calls.fetch_add(1, Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_secs(120)).await;
    }
    Json(json!("done"))
}

async fn slow_service(calls: Arc<AtomicU32>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).unwrap();
    let routes = Route::new().at("/run", post(slow_first).data(calls));
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(routes));
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_still_running_after_the_grace_period_is_handed_back_and_run_elsewhere() {
    let harness = Harness::start().await;
    let calls = Arc::new(AtomicU32::new(0));
    let service = slow_service(calls.clone()).await;
    let token = harness.token("drain@example.com").await;
    harness
        .post(
            &token,
            "/api/v1/nodes/registry",
            &json!({"node_type": "Sleepy", "endpoint_url": format!("{service}/run"),
                    "timeout_ms": 300000, "max_attempts": 1}),
        )
        .await;
    let hook = harness
        .hook_for(&token, Some(json!({"type": "Sleepy"})))
        .await;
    // A 60-s acknowledgement timeout: a job not handed back would wait that long.
    let mut first = harness.spawn_worker_with(60, &[("KAI_WORKER_DRAIN_SECS", "1".into())]);
    let (accepted, refused) = fire(harness.client.clone(), &hook, 1, 1).await;
    assert_eq!(refused, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while calls.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the job never reached its node");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let stopped = Instant::now();
    kill(Pid::from_raw(first.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), first.wait())
        .await
        .expect("the worker exits after its grace period")
        .unwrap();
    assert!(status.success(), "exit status {status}");
    let took = stopped.elapsed();
    assert!(took < Duration::from_secs(5), "drain took {took:?}");

    let _second = harness.spawn_worker(60);
    harness
        .wait_for_executions(hook.workflow_id, 1, Duration::from_secs(20))
        .await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "run again by the second worker"
    );
    assert_exactly_once(&accepted, &harness.executions(hook.workflow_id).await);
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_told_to_stop_while_nats_is_unreachable_still_exits() {
    // Its last flush waited for a NATS server to answer, so such a worker stayed alive (a pod
    // stuck terminating) until the link came back.
    let harness = Harness::start().await;
    let hook = harness.hook().await;
    let nats = TcpProxy::start(addr_of(&nats_url())).await;
    let mut worker = harness.spawn_worker_with(
        30,
        &[
            ("NATS_URL", format!("nats://{}", nats.addr())),
            ("KAI_WORKER_DRAIN_SECS", "1".into()),
        ],
    );
    let (accepted, refused) = fire(harness.client.clone(), &hook, 5, 5).await;
    assert_eq!(refused, 0);
    harness
        .wait_for_executions(hook.workflow_id, 5, Duration::from_secs(30))
        .await;
    assert_exactly_once(&accepted, &harness.executions(hook.workflow_id).await);

    nats.cut();
    tokio::time::sleep(Duration::from_millis(500)).await;
    kill(Pid::from_raw(worker.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), worker.wait())
        .await
        .expect("the worker exits although NATS cannot be reached")
        .unwrap();
    assert!(status.success(), "exit status {status}");
    harness.stop().await;
}
