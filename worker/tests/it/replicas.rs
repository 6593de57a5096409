//! The streams' replica count follows `KAI_NATS_STREAM_REPLICAS` on a real 3-server NATS
//! cluster: an existing stream is brought to the configured count at start (its jobs kept), not
//! silently left as it was; a count the servers cannot hold stops the start with the setting
//! named; a `NATS_URL` of several seeds connects while one of them is down.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream::Stream};
use kai_common::nats::{self, Names, StreamSettings};
use kai_common::testing::nats_cluster::{self, NatsCluster};

use crate::harness::{Harness, assert_exactly_once, fire};
use secrecy::SecretString;

fn settings(replicas: usize) -> StreamSettings {
    StreamSettings {
        max_messages: 1_000,
        max_bytes: 0,
        replicas,
    }
}

async fn jetstream_of(url: &str) -> jetstream::Context {
    let client = nats::connect(&SecretString::from(url.to_owned()), "replicas-test")
        .await
        .unwrap();
    jetstream::new(client)
}

/// Waits until `stream` has `replicas` copies, every follower current; returns its message count.
async fn wait_for_replicas(stream: &mut Stream, replicas: usize) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let info = stream.info().await.unwrap();
        let cluster = info.cluster.clone().unwrap_or_default();
        let followers_current = cluster.replicas.iter().filter(|r| r.current).count();
        if info.config.num_replicas == replicas
            && cluster.leader.is_some()
            && followers_current == replicas - 1
            && cluster.replicas.len() == replicas - 1
        {
            return info.state.messages;
        }
        assert!(
            Instant::now() < deadline,
            "{}: {} replicas wanted, found {:?}",
            info.config.name,
            replicas,
            info.cluster
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_streams_replica_count_follows_the_setting() {
    let cluster = NatsCluster::start(3).await;
    let js = jetstream_of(&cluster.url()).await;
    let names = Names::new("replicas");
    let stream_names = [
        names.jobs_stream(),
        names.dlq_stream(),
        names.events_stream(),
    ];

    // A deployment started with one copy of each stream, one job waiting.
    nats::ensure_streams(&js, &names, settings(1))
        .await
        .unwrap();
    nats::publish_encoded(&js, &names, "webhook", "job-1", b"{}".to_vec())
        .await
        .unwrap();
    for name in &stream_names {
        let mut stream = js.get_stream(name).await.unwrap();
        wait_for_replicas(&mut stream, 1).await;
    }

    // Restarted with three: every stream is brought to three copies, the job still in it.
    nats::ensure_streams(&js, &names, settings(3))
        .await
        .unwrap();
    for name in &stream_names {
        let mut stream = js.get_stream(name).await.unwrap();
        let messages = wait_for_replicas(&mut stream, 3).await;
        if *name == names.jobs_stream() {
            assert_eq!(messages, 1, "the waiting job is kept");
        }
    }
    // The workers' consumer (made with the stream) follows the stream's count.
    let jobs = js.get_stream(names.jobs_stream()).await.unwrap();
    let consumer = jobs.consumer_info(names.workers_consumer()).await.unwrap();
    assert_eq!(consumer.num_pending, 1);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let consumer = jobs.consumer_info(names.workers_consumer()).await.unwrap();
        if consumer.cluster.as_ref().map(|c| c.replicas.len()) == Some(2) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "consumer replicas: {:?}",
            consumer.cluster
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // And back to one when the setting is lowered.
    nats::ensure_streams(&js, &names, settings(1))
        .await
        .unwrap();
    for name in &stream_names {
        let mut stream = js.get_stream(name).await.unwrap();
        wait_for_replicas(&mut stream, 1).await;
    }
}

#[tokio::test]
async fn more_replicas_than_servers_stop_the_start_naming_the_setting() {
    let env = kai_common::testing::TestEnv::new();
    let js = jetstream_of(&kai_common::testing::nats_url()).await;
    let names = Names::new(&env.prefix);
    // The shared test server is a single server: it cannot hold three copies.
    let error = nats::ensure_streams(&js, &names, settings(3))
        .await
        .expect_err("three replicas on one server are refused")
        .to_string();
    assert!(error.contains("KAI_NATS_STREAM_REPLICAS"), "{error}");
    assert!(error.contains("3 replica"), "{error}");
    assert!(js.get_stream(names.jobs_stream()).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_seed_servers_connect_while_one_is_down() {
    let mut cluster = NatsCluster::start(3).await;
    cluster.kill(0);
    cluster.wait_for_jetstream().await;
    // Every attempt may pick the dead seed first; each must still connect.
    for _ in 0..5 {
        let client = nats::connect(&SecretString::from(cluster.url()), "seeds-test")
            .await
            .unwrap();
        assert!(nats_cluster::jetstream_ready(&client).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_starting_together_all_set_up_the_streams() {
    // A deployment's APIs, workers and schedulers start at once, each bringing the streams to its
    // settings: whichever process creates a stream first, every other one must start too.
    let mut processes = Vec::new();
    for _ in 0..12 {
        processes.push(jetstream_of(&kai_common::testing::nats_url()).await);
    }
    // Several deployments, so the creations collide in more than one way.
    for _ in 0..10 {
        let env = kai_common::testing::TestEnv::new();
        let names = Names::new(&env.prefix);
        let mut starts = tokio::task::JoinSet::new();
        for js in &processes {
            let (js, names) = (js.clone(), names.clone());
            starts.spawn(async move { nats::ensure_streams(&js, &names, settings(1)).await });
        }
        while let Some(start) = starts.join_next().await {
            start
                .unwrap()
                .expect("a process starting beside others sets up the streams");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_job_runs_at_once_on_a_replicated_stream() {
    // On a clustered stream, nats-server 2.10 and later can send a pull's `409 Batch Completed`
    // ahead of its last jobs. A worker that stopped listening at that status left those jobs to
    // wait out the acknowledgement timeout (here 120 s) before anyone ran them.
    let cluster = NatsCluster::start(3).await;
    let harness = Harness::start_on_nats(cluster.url(), 3).await;
    let hook = harness.hook().await;
    let _worker = harness.spawn_worker(120);
    let (accepted, refused) = fire(harness.client.clone(), &hook, 2_000, 32).await;
    assert_eq!(refused, 0);
    harness
        .wait_for_executions(hook.workflow_id, accepted.len(), Duration::from_secs(60))
        .await;
    assert_exactly_once(&accepted, &harness.executions(hook.workflow_id).await);
    harness.stop().await;
}
