//! The Dockerfile, docker-compose.yml and the Helm chart against kai-scheduler's own
//! configuration: same variables and port, two replicas (a leader and a ready standby) kept
//! through node drains, never autoscaled, and health paths that answer on both.

use std::path::Path;
use std::time::Duration;

use clap::CommandFactory;
use kai_common::testing::TestEnv;
use kai_common::testing::deployment::{self as files, Binary};

use crate::harness::{self, single_leader};

const KAI_SCHEDULER: &str = env!("CARGO_BIN_EXE_kai-scheduler");

fn scheduler() -> Binary {
    Binary::from_command(
        "scheduler",
        "kai-scheduler",
        kai_scheduler::config::Cli::command(),
    )
}

#[test]
fn the_image_compose_and_every_chart_configuration_run_the_scheduler_as_it_is_configured() {
    let scheduler = scheduler();
    assert_eq!(scheduler.port, 9102);
    files::assert_every_deployment_runs(&scheduler, 2);
}

#[test]
fn two_schedulers_by_default_one_kept_through_a_node_drain_and_never_autoscaled() {
    let scheduler = scheduler();
    for configuration in files::CONFIGURATIONS {
        let manifests = files::render(*configuration, &[]);
        let deployment = manifests.get("Deployment", "kai-fusion-scheduler");
        assert_eq!(deployment["spec"]["replicas"], 2, "{configuration:?}");
        let pdb = manifests.get("PodDisruptionBudget", "kai-fusion-scheduler");
        assert_eq!(pdb["spec"]["maxUnavailable"], 1);
        assert!(
            manifests
                .find("HorizontalPodAutoscaler", "kai-fusion-scheduler")
                .is_none()
        );
        assert!(
            manifests
                .of_kind("ScaledObject")
                .iter()
                .all(|scaled| scaled["spec"]["scaleTargetRef"]["name"] != "kai-fusion-scheduler")
        );
        let retention = manifests.variable(&scheduler, "KAI_LOG_RETENTION_DAYS");
        assert_eq!(retention.as_deref(), Some("30"));
    }
    let refused = files::try_render(None, &["scheduler.replicas=0"]).unwrap_err();
    assert!(refused.contains("scheduler.replicas"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_paths_answer_on_the_leader_and_the_standby() {
    kai_common::tls::install_crypto_provider();
    let scheduler = scheduler();
    let container = files::render(None, &[]).container(&scheduler).clone();
    let env = TestEnv::new();
    let processes = vec![harness::spawn(&env).await, harness::spawn(&env).await];
    let client = reqwest::Client::new();
    let both: Vec<&harness::Scheduler> = processes.iter().collect();
    single_leader(&client, &both, Duration::from_secs(60)).await;
    for process in &processes {
        let base = process.health.trim_end_matches("/health").to_owned();
        let addr = base.trim_start_matches("http://").to_owned();
        files::wait_until_ready(&format!("{base}/health/detailed"), Duration::from_secs(30)).await;
        for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
            let path = container[probe]["httpGet"]["path"].as_str().unwrap();
            let response = client.get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(response.status(), 200, "{probe} {path} on {addr}");
        }
        // As compose runs it: the address from KAI_SCHEDULER_ADDR.
        let (ready, stderr) = files::run_healthcheck(
            Path::new(KAI_SCHEDULER),
            &[],
            &[("KAI_SCHEDULER_ADDR", addr.clone())],
        )
        .await;
        assert!(ready, "{stderr}");
    }
    for mut process in processes {
        process.child.kill().await.unwrap();
    }
    env.cleanup().await;
}
