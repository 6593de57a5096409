//! Jobs whose deliveries all vanished (lost acks, killed workers) are still run or
//! dead-lettered: JetStream's delivery limit would otherwise leave them in the stream, unseen.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream::Stream};
use futures::StreamExt;
use kai_common::nats::{self, ConsumerSettings, Names};
use uuid::Uuid;

use crate::harness::{Harness, assert_exactly_once, fire};

const ACK_WAIT: Duration = Duration::from_secs(1);
const MAX_DELIVER: i64 = 2;

async fn jobs_stream(harness: &Harness) -> (jetstream::Context, Stream, Names) {
    let client = async_nats::connect(kai_common::testing::nats_url())
        .await
        .unwrap();
    let js = jetstream::new(client);
    let names = Names::new(&harness.env.prefix);
    let stream = nats::ensure_streams(&js, &names, (&harness.env.common_config()).into())
        .await
        .unwrap();
    (js, stream, names)
}

/// Takes every job from the shared consumer `rounds` times without ever settling it, as a
/// worker does whose acks are lost or that is killed mid-job, waiting out the ack wait each time.
async fn lose_deliveries(consumer: &consumer::PullConsumer, jobs: usize, rounds: usize) {
    for round in 1..=rounds {
        let mut taken = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while taken < jobs {
            assert!(
                tokio::time::Instant::now() < deadline,
                "round {round}: only {taken} delivered"
            );
            let mut batch = consumer
                .batch()
                .max_messages(jobs - taken)
                .expires(Duration::from_millis(500))
                .messages()
                .await
                .unwrap();
            while let Some(Ok(message)) = batch.next().await {
                assert_eq!(message.info().unwrap().delivered, round as i64);
                taken += 1;
            }
        }
        tokio::time::sleep(ACK_WAIT + Duration::from_millis(300)).await;
    }
}

/// A webhook with `jobs` accepted calls waiting in the stream, and the shared consumer as this
/// release creates it (the worker's own delivery limit, JetStream's off).
struct Scene {
    harness: Harness,
    hook: crate::harness::Hook,
    stream: Stream,
    shared: consumer::PullConsumer,
    accepted: Vec<Uuid>,
}

impl Scene {
    async fn with_jobs(jobs: usize) -> Self {
        let harness = Harness::start().await;
        let hook = harness.hook().await;
        let (_js, stream, names) = jobs_stream(&harness).await;
        let settings = ConsumerSettings {
            ack_wait: ACK_WAIT,
            max_deliver: MAX_DELIVER,
        };
        let shared = nats::ensure_workers_consumer(&stream, &names, settings)
            .await
            .unwrap()
            .consumer;
        let (accepted, refused) = fire(harness.client.clone(), &hook, jobs, jobs).await;
        assert_eq!(refused, 0);
        Self {
            harness,
            hook,
            stream,
            shared,
            accepted,
        }
    }
}

/// A worker with this test's delivery limit and ack wait.
fn worker_with_the_limit(harness: &Harness) -> tokio::process::Child {
    harness.spawn_worker_with(
        ACK_WAIT.as_secs(),
        &[("KAI_JOB_MAX_DELIVER", MAX_DELIVER.to_string())],
    )
}

async fn dead_letters(harness: &Harness, workflow_id: Uuid) -> Vec<Uuid> {
    sqlx::query_scalar("SELECT execution_id FROM dead_letters WHERE workflow_id = $1")
        .bind(workflow_id)
        .fetch_all(&harness.state.db)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_whose_deliveries_all_vanished_still_run() {
    let Scene {
        harness,
        hook,
        shared,
        accepted,
        ..
    } = Scene::with_jobs(5).await;

    // As many deliveries as the limit allows, none of them settled.
    lose_deliveries(&shared, accepted.len(), MAX_DELIVER as usize).await;

    let mut worker = worker_with_the_limit(&harness);
    harness
        .wait_for_executions(hook.workflow_id, accepted.len(), Duration::from_secs(30))
        .await;
    assert_exactly_once(&accepted, &harness.executions(hook.workflow_id).await);
    assert!(dead_letters(&harness, hook.workflow_id).await.is_empty());
    worker.start_kill().unwrap();
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_never_finishes_a_delivery_is_dead_lettered_not_left_in_the_stream() {
    let Scene {
        harness,
        hook,
        stream,
        shared,
        accepted,
    } = Scene::with_jobs(3).await;

    // Twice the limit of deliveries that each vanished (a job that kills its worker): the next
    // one is not run again but dead-lettered, with its reason.
    lose_deliveries(&shared, accepted.len(), 2 * MAX_DELIVER as usize).await;

    let mut worker = worker_with_the_limit(&harness);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut listed = dead_letters(&harness, hook.workflow_id).await;
    while listed.len() < accepted.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "dead letters: {listed:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        listed = dead_letters(&harness, hook.workflow_id).await;
    }
    listed.sort();
    let mut expected = accepted.clone();
    expected.sort();
    assert_eq!(listed, expected);
    let reason: String =
        sqlx::query_scalar("SELECT reason FROM dead_letters WHERE workflow_id = $1 LIMIT 1")
            .bind(hook.workflow_id)
            .fetch_one(&harness.state.db)
            .await
            .unwrap();
    assert!(reason.contains("without finishing"), "{reason}");
    // Acknowledged once dead-lettered: nothing is left in the queue.
    let mut stream = stream;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stream.info().await.unwrap().state.messages > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "jobs left in the stream"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    worker.start_kill().unwrap();
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_stranded_by_an_older_releases_consumer_run_when_a_worker_starts() {
    let harness = Harness::start().await;
    let hook = harness.hook().await;
    let (_js, stream, names) = jobs_stream(&harness).await;
    // The consumer as releases before this one created it: with JetStream's delivery limit.
    let old: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some(names.workers_consumer()),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: ACK_WAIT,
            max_deliver: MAX_DELIVER,
            filter_subject: names.jobs_wildcard(),
            max_ack_pending: 20_000,
            ..Default::default()
        })
        .await
        .unwrap();
    let (accepted, refused) = fire(harness.client.clone(), &hook, 4, 4).await;
    assert_eq!(refused, 0);
    lose_deliveries(&old, accepted.len(), MAX_DELIVER as usize).await;
    // The limit reached, JetStream delivers them no more...
    let mut batch = old
        .batch()
        .max_messages(accepted.len())
        .expires(Duration::from_millis(1500))
        .messages()
        .await
        .unwrap();
    assert!(batch.next().await.is_none(), "delivered past the limit");
    // ...and they are stranded: in the stream, neither pending nor awaiting an ack.
    assert_eq!(
        nats::stranded_jobs(&stream, &names).await.unwrap(),
        accepted.len() as u64
    );

    let mut worker = worker_with_the_limit(&harness);
    harness
        .wait_for_executions(hook.workflow_id, accepted.len(), Duration::from_secs(30))
        .await;
    assert_exactly_once(&accepted, &harness.executions(hook.workflow_id).await);
    assert_eq!(nats::stranded_jobs(&stream, &names).await.unwrap(), 0);
    worker.start_kill().unwrap();
    harness.stop().await;
}
