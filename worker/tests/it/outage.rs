//! A PostgreSQL outage under a running worker: jobs are held until it is back, none dies.

use std::time::Duration;

use async_nats::jetstream;
use kai_common::test_proxy::TcpProxy;
use kai_common::testing::{addr_of, free_port, service_addr};

use crate::harness::{Harness, assert_exactly_once, fire};

async fn stream_messages(js: &jetstream::Context, name: String) -> u64 {
    let mut stream = js.get_stream(name).await.unwrap();
    stream.info().await.unwrap().state.messages
}

/// The worker's readiness status code, once it answers.
async fn readiness(client: &reqwest::Client, port: u16) -> Option<u16> {
    let response = client
        .get(format!("http://127.0.0.1:{port}/health/detailed"))
        .send()
        .await
        .ok()?;
    Some(response.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_wait_out_a_database_outage_instead_of_dying() {
    let harness = Harness::start().await;
    let hook = harness.hook().await;
    let database = url::Url::parse(&harness.env.database_url()).unwrap();
    let postgres = TcpProxy::start(addr_of(database.as_str())).await;
    let mut through_proxy = database.clone();
    through_proxy.set_host(Some("127.0.0.1")).unwrap();
    through_proxy
        .set_port(Some(postgres.addr().port()))
        .unwrap();
    let port = free_port().await;
    // Three deliveries, two seconds apart: before, an outage of more than about six seconds
    // sent every job in it to the dead letters.
    let mut worker = harness.spawn_worker_with(
        2,
        &[
            ("DATABASE_URL", through_proxy.to_string()),
            ("KAI_JOB_MAX_DELIVER", "3".into()),
            ("KAI_WORKER_ADDR", format!("127.0.0.1:{port}")),
        ],
    );
    let (mut accepted, refused) = fire(harness.client.clone(), &hook, 5, 5).await;
    assert_eq!(refused, 0);
    harness
        .wait_for_executions(hook.workflow_id, 5, Duration::from_secs(60))
        .await;

    postgres.cut();
    let (during, refused) = fire(harness.client.clone(), &hook, 20, 10).await;
    assert_eq!(refused, 0, "the API still accepts: jobs wait in the queue");
    accepted.extend(during);
    let mut reported = None;
    for _ in 0..100 {
        reported = readiness(&harness.client, port).await;
        if reported == Some(503) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(reported, Some(503), "readiness reports the outage");
    tokio::time::sleep(Duration::from_secs(12)).await;
    postgres.restore();

    harness
        .wait_for_executions(hook.workflow_id, accepted.len(), Duration::from_secs(180))
        .await;
    assert_exactly_once(&accepted, &harness.executions(hook.workflow_id).await);
    assert_eq!(
        stream_messages(&harness.state.js, harness.state.names.dlq_stream()).await,
        0,
        "nothing was dead-lettered"
    );
    let listed: i64 = sqlx::query_scalar("SELECT count(*) FROM dead_letters")
        .fetch_one(&harness.state.db)
        .await
        .unwrap();
    assert_eq!(listed, 0);
    assert_eq!(readiness(&harness.client, port).await, Some(200));
    let _ = worker.start_kill();
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_reconnects_to_nats_by_itself_and_loses_nothing() {
    let harness = Harness::start().await;
    let hook = harness.hook().await;
    let nats = TcpProxy::start(service_addr("NATS_URL", "nats://127.0.0.1:4222")).await;
    let mut worker =
        harness.spawn_worker_with(2, &[("NATS_URL", format!("nats://{}", nats.addr()))]);
    let (mut accepted, refused) = fire(harness.client.clone(), &hook, 10, 5).await;
    assert_eq!(refused, 0);
    harness
        .wait_for_executions(hook.workflow_id, 10, Duration::from_secs(60))
        .await;

    // The worker's connection drops; the API (connected directly) keeps accepting.
    nats.cut();
    let (during, refused) = fire(harness.client.clone(), &hook, 20, 10).await;
    assert_eq!(refused, 0);
    accepted.extend(during);
    tokio::time::sleep(Duration::from_secs(5)).await;
    nats.restore();

    harness
        .wait_for_executions(hook.workflow_id, accepted.len(), Duration::from_secs(180))
        .await;
    assert_exactly_once(&accepted, &harness.executions(hook.workflow_id).await);
    let _ = worker.start_kill();
    harness.stop().await;
}
