//! The Dockerfile, docker-compose.yml and the Helm chart against kai-worker's own
//! configuration: same variables and port, health paths that answer on a running worker, a
//! KEDA trigger on the stream and consumer a running worker really uses, and a termination
//! grace period that lets a drain finish.

use std::path::Path;
use std::time::Duration;

use clap::CommandFactory;
use kai_common::testing::deployment::{self as files, Binary};

use crate::harness::Harness;

const KAI_WORKER: &str = env!("CARGO_BIN_EXE_kai-worker");

fn worker() -> Binary {
    Binary::from_command("worker", "kai-worker", kai_worker::config::Cli::command())
}

/// Seconds in a compose duration such as `30s` or `1m`.
fn compose_seconds(duration: &str) -> u64 {
    match duration.strip_suffix('s') {
        Some(seconds) => seconds.parse().unwrap(),
        None => duration.strip_suffix('m').unwrap().parse::<u64>().unwrap() * 60,
    }
}

#[test]
fn the_image_compose_and_every_chart_configuration_run_the_worker_as_it_is_configured() {
    let worker = worker();
    assert_eq!(worker.port, 9101);
    files::assert_every_deployment_runs(&worker, 2);
}

#[test]
fn kubernetes_and_compose_wait_long_enough_for_a_worker_to_drain() {
    let worker = worker();
    for configuration in files::CONFIGURATIONS {
        let manifests = files::render(*configuration, &[]);
        let drain: u64 = manifests
            .variable(&worker, "KAI_WORKER_DRAIN_SECS")
            .expect("the chart sets the drain")
            .parse()
            .unwrap();
        let pod = &manifests.get("Deployment", "kai-fusion-worker")["spec"]["template"]["spec"];
        let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
        assert!(
            grace > drain,
            "{configuration:?}: grace {grace}s, drain {drain}s"
        );
    }
    let drained = files::render(
        None,
        &[
            "worker.drainSeconds=50",
            "worker.terminationGracePeriodSeconds=60",
        ],
    );
    assert_eq!(
        drained
            .variable(&worker, "KAI_WORKER_DRAIN_SECS")
            .as_deref(),
        Some("50")
    );

    let compose = files::compose();
    let service = &compose["services"]["worker"];
    let drain: u64 = service["environment"]["KAI_WORKER_DRAIN_SECS"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let grace = compose_seconds(service["stop_grace_period"].as_str().unwrap());
    assert!(grace > drain, "compose: grace {grace}s, drain {drain}s");
}

#[test]
fn without_keda_the_workers_scale_on_cpu_and_with_it_only_keda_scales_them() {
    let cpu = files::render(None, &[]);
    assert!(cpu.of_kind("ScaledObject").is_empty());
    let hpa = cpu.get("HorizontalPodAutoscaler", "kai-fusion-worker");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "kai-fusion-worker");
    assert_eq!(hpa["spec"]["metrics"][0]["resource"]["name"], "cpu");
    assert!(cpu.get("Deployment", "kai-fusion-worker")["spec"]["replicas"].is_null());

    let keda = files::render(Some("keda-values.yaml"), &[]);
    // Two autoscalers on one Deployment would fight.
    assert!(
        keda.find("HorizontalPodAutoscaler", "kai-fusion-worker")
            .is_none()
    );
    let scaled = keda.get("ScaledObject", "kai-fusion-worker");
    assert_eq!(
        scaled["spec"]["scaleTargetRef"]["name"],
        "kai-fusion-worker"
    );
    assert_eq!(scaled["spec"]["minReplicaCount"], 2);
    assert!(keda.get("Deployment", "kai-fusion-worker")["spec"]["replicas"].is_null());

    let fixed = files::render(
        None,
        &["worker.autoscaling.enabled=false", "worker.replicas=4"],
    );
    assert!(
        fixed
            .find("HorizontalPodAutoscaler", "kai-fusion-worker")
            .is_none()
    );
    assert_eq!(
        fixed.get("Deployment", "kai-fusion-worker")["spec"]["replicas"],
        4
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keda_watches_the_stream_and_consumer_a_running_worker_pulls_from() {
    let harness = Harness::start().await;
    // A prefix with a '-' and lower case, which the names map to upper case and '_'.
    let prefix = format!("{}-x", harness.env.prefix);
    let port = kai_common::testing::free_port().await;
    let mut process = harness.spawn_worker_with(
        30,
        &[
            ("KAI_NATS_PREFIX", prefix.clone()),
            ("KAI_WORKER_ADDR", format!("127.0.0.1:{port}")),
        ],
    );
    files::wait_until_ready(
        &format!("http://127.0.0.1:{port}/health/detailed"),
        Duration::from_secs(60),
    )
    .await;

    let manifests = files::render(
        Some("keda-values.yaml"),
        &[&format!("config.natsPrefix={prefix}")],
    );
    let trigger = &manifests.get("ScaledObject", "kai-fusion-worker")["spec"]["triggers"][0];
    assert_eq!(trigger["type"], "nats-jetstream");
    let metadata = &trigger["metadata"];
    assert_eq!(
        metadata["natsServerMonitoringEndpoint"],
        "nats.nats.svc.cluster.local:8222"
    );
    let stream_name = metadata["stream"].as_str().unwrap();
    let consumer_name = metadata["consumer"].as_str().unwrap();
    assert_eq!(
        manifests.variable(&worker(), "KAI_NATS_PREFIX").as_deref(),
        Some(prefix.as_str())
    );

    let client = async_nats::connect(
        std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned()),
    )
    .await
    .unwrap();
    let js = async_nats::jetstream::new(client);
    let stream = js
        .get_stream(stream_name)
        .await
        .unwrap_or_else(|e| panic!("the worker has no stream {stream_name}: {e}"));
    let consumer = stream
        .consumer_info(consumer_name)
        .await
        .unwrap_or_else(|e| panic!("the worker has no consumer {consumer_name}: {e}"));
    assert_eq!(consumer.name, consumer_name);

    process.kill().await.unwrap();
    let names = kai_common::nats::Names::new(&prefix);
    for stream in [
        names.jobs_stream(),
        names.dlq_stream(),
        names.events_stream(),
    ] {
        let _ = js.delete_stream(stream).await;
    }
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_paths_answer_on_a_running_worker_and_its_healthcheck_sees_it_ready() {
    let worker = worker();
    let container = files::render(None, &[]).container(&worker).clone();
    let harness = Harness::start().await;
    let port = kai_common::testing::free_port().await;
    let addr = format!("127.0.0.1:{port}");
    let mut child = harness.spawn_worker_with(30, &[("KAI_WORKER_ADDR", addr.clone())]);
    let base = format!("http://{addr}");
    files::wait_until_ready(&format!("{base}/health/detailed"), Duration::from_secs(60)).await;
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        let path = container[probe]["httpGet"]["path"].as_str().unwrap();
        let response = harness
            .client
            .get(format!("{base}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{probe} {path}");
    }
    // As compose runs it: the address from KAI_WORKER_ADDR.
    let (ready, stderr) =
        files::run_healthcheck(Path::new(KAI_WORKER), &[], &[("KAI_WORKER_ADDR", addr)]).await;
    assert!(ready, "{stderr}");
    child.kill().await.unwrap();
    let (ready, _) = files::run_healthcheck(
        Path::new(KAI_WORKER),
        &[format!("{base}/health/detailed")],
        &[],
    )
    .await;
    assert!(!ready, "a dead worker was reported ready");
    harness.stop().await;
}
