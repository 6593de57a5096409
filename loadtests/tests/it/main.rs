//! The load tool against a real cluster (API and worker in-process, real PostgreSQL and NATS):
//! one short run of each scenario, asserting on the audit.

use std::time::Duration;

use kai_common::testing::TestEnv;
use kai_loadtest::webhook::{self, Load, WebhookOptions};
use kai_worker::config::{EventsMode, WorkerConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

struct Cluster {
    env: TestEnv,
    api: String,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Cluster {
    async fn start(with_worker: bool) -> Self {
        Self::start_with(with_worker, |_| {}).await
    }

    /// A cluster whose API's configuration `adjust` changes first.
    async fn start_with(
        with_worker: bool,
        adjust: impl FnOnce(&mut kai_api::config::ApiConfig),
    ) -> Self {
        let env = TestEnv::new();
        let shutdown = CancellationToken::new();
        let api = kai_api::testing::start_with(&env, shutdown.clone(), adjust).await;
        let mut cluster = Self {
            env,
            api: api.base,
            shutdown,
            tasks: vec![api.server],
        };
        if with_worker {
            cluster.start_worker().await;
        }
        cluster
    }

    async fn start_worker(&mut self) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = worker_config(&self.env, listener.local_addr().unwrap());
        let stop = self.shutdown.clone();
        self.tasks.push(tokio::spawn(async move {
            kai_worker::run(config, listener, stop)
                .await
                .expect("worker runs")
        }));
    }

    fn options(&self, load: Load, sync: bool) -> WebhookOptions {
        WebhookOptions {
            scenario: "webhook",
            api: self.api.clone(),
            existing: None,
            audit_as: None,
            load,
            duration: Duration::from_secs(2),
            sync,
            payload_bytes: 128,
            request_timeout: Duration::from_secs(10),
            audit_timeout: Duration::from_secs(30),
            live: false,
            keep: false,
            also_via: Vec::new(),
        }
    }

    /// A scheduler in this process (its leader election is scoped to this test's prefix).
    async fn start_scheduler(&mut self) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = kai_scheduler::config::SchedulerConfig {
            common: self.env.common_config(),
            addr: listener.local_addr().unwrap(),
            log_retention_days: 30,
            execution_retention_days: 30,
            audit_retention_days: 365,
        };
        let stop = self.shutdown.clone();
        self.tasks.push(tokio::spawn(async move {
            kai_scheduler::run(config, listener, stop)
                .await
                .expect("scheduler runs")
        }));
    }

    async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        self.env.cleanup().await;
    }
}

fn worker_config(env: &TestEnv, addr: std::net::SocketAddr) -> WorkerConfig {
    WorkerConfig {
        common: env.common_config(),
        addr,
        concurrency: 64,
        ack_wait: Duration::from_secs(5),
        drain_grace: Duration::from_secs(10),
        breaker_failures: 5,
        breaker_open: Duration::from_secs(30),
        max_deliver: 5,
        max_inflight_bytes: 64 << 20,
        // Test services (custom node endpoints) listen on loopback.
        outbound: kai_common::outbound::OutboundConfig::allowing("127.0.0.1"),
        encryption: Default::default(),
        models: Default::default(),
        vector_index: Default::default(),
        execution_events: EventsMode::All,
    }
}

/// A worker for `env`, started once the jobs stream holds `jobs` messages, after deleting the
/// oldest of them when `lose_one` (a job lost on purpose); returns the lost job's execution id.
async fn worker_after_jobs(
    env: TestEnv,
    jobs: u64,
    lose_one: bool,
    stop: CancellationToken,
) -> Option<uuid::Uuid> {
    let client = async_nats::connect(kai_common::testing::nats_url())
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client);
    let names = kai_common::nats::Names::new(&env.prefix);
    let mut stream = js.get_stream(names.jobs_stream()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while stream.info().await.unwrap().state.messages < jobs {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the jobs never arrived"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lost = if lose_one {
        let first = stream.info().await.unwrap().state.first_sequence;
        let message = stream.get_raw_message(first).await.unwrap();
        let job = kai_common::jobs::JobMessage::decode(&message.payload).unwrap();
        assert!(stream.delete_message(first).await.unwrap());
        Some(job.execution_id())
    } else {
        None
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = worker_config(&env, listener.local_addr().unwrap());
    tokio::spawn(async move { kai_worker::run(config, listener, stop).await.unwrap() });
    lost
}

#[tokio::test]
async fn an_audit_running_while_executions_still_arrive_finds_every_one() {
    // No worker during the load: the audit starts with nothing recorded, and the worker starts
    // behind it, so every execution is recorded while the audit reads.
    let cluster = Cluster::start(false).await;
    let late_worker = tokio::spawn(worker_after_jobs(
        cluster.env.clone(),
        60,
        false,
        cluster.shutdown.clone(),
    ));
    let mut options = cluster.options(
        Load::OpenLoop {
            rate: 30.0,
            max_in_flight: 8,
        },
        false,
    );
    options.audit_timeout = Duration::from_secs(60);
    let report = webhook::run(options).await.unwrap();
    assert_eq!(late_worker.await.unwrap(), None);
    let audit = report.audit.clone().expect("audited");
    assert_eq!(report.accepted, 60);
    assert_eq!(audit.completed, 60, "{audit:?}");
    assert!(audit.is_clean(), "{audit:?}");
    assert!(report.drained_after_s.is_some());
    assert_eq!(report.end_to_end.expect("e2e").count, 60);
    cluster.stop().await;
}

#[tokio::test]
async fn an_audit_names_the_execution_of_a_job_lost_on_purpose() {
    let cluster = Cluster::start(false).await;
    let late_worker = tokio::spawn(worker_after_jobs(
        cluster.env.clone(),
        40,
        true,
        cluster.shutdown.clone(),
    ));
    let mut options = cluster.options(
        Load::OpenLoop {
            rate: 20.0,
            max_in_flight: 8,
        },
        false,
    );
    options.audit_timeout = Duration::from_secs(10);
    let report = webhook::run(options).await.unwrap();
    let lost = late_worker.await.unwrap().expect("a job was deleted");
    let audit = report.audit.clone().expect("audited");
    assert_eq!(report.accepted, 40);
    assert_eq!((audit.completed, audit.missing), (39, 1), "{audit:?}");
    assert_eq!(audit.missing_ids, vec![lost], "the lost job is named");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["audit"]["missing_ids"], serde_json::json!([lost]));
    cluster.stop().await;
}

#[tokio::test]
async fn an_open_loop_async_run_accounts_for_every_request() {
    let cluster = Cluster::start(true).await;
    let load = Load::OpenLoop {
        rate: 100.0,
        max_in_flight: 64,
    };
    let report = webhook::run(cluster.options(load, false)).await.unwrap();
    assert_eq!(report.sent, 200, "100/s for 2 s");
    assert_eq!(report.accepted, 200);
    let audit = report.audit.clone().expect("audited");
    assert_eq!(audit.completed, 200, "{audit:?}");
    assert_eq!((audit.missing, audit.duplicated, audit.failed), (0, 0, 0));
    assert!(report.drained_after_s.is_some());
    assert!(report.latency.p50_ms > 0.0);
    assert_eq!(report.histogram.iter().map(|(_, n)| n).sum::<u64>(), 200);
    assert!(report.windows.len() >= 2, "{:?}", report.windows);
    assert!(
        report.payload_bytes >= 100,
        "the body is padded to about 128 bytes"
    );
    let html = kai_loadtest::html::webhook_report(&report).unwrap();
    assert_eq!(html.matches("<svg").count(), 2, "two charts");
    assert!(html.contains("Latency over time") && html.contains("Latency histogram"));
    assert!(
        html.contains("<polyline") || html.contains("<path"),
        "the lines are drawn"
    );
    assert!(
        html.contains("\"missing\": 0"),
        "the audit is in the report"
    );
    std::fs::write(std::env::temp_dir().join("kai-loadtest-report.html"), &html).unwrap();
    cluster.stop().await;
}

#[tokio::test]
async fn a_closed_loop_sync_run_waits_for_results_and_audits_clean() {
    let cluster = Cluster::start(true).await;
    let load = Load::ClosedLoop { connections: 4 };
    let report = webhook::run(cluster.options(load, true)).await.unwrap();
    assert!(
        report.sent > 10,
        "four connections for 2 s: {}",
        report.sent
    );
    assert_eq!(report.accepted, report.sent);
    let audit = report.audit.expect("audited");
    assert_eq!(audit.completed, report.accepted);
    assert!(audit.is_clean(), "{audit:?}");
    cluster.stop().await;
}

#[tokio::test]
async fn synchronous_calls_through_two_api_replicas_each_get_their_runs_answer() {
    let mut cluster = Cluster::start(true).await;
    // A second API of the same deployment (its own reply subject), reached directly.
    let second = kai_api::testing::start_with(&cluster.env, cluster.shutdown.clone(), |_| {}).await;
    cluster.tasks.push(second.server);
    let mut options = cluster.options(Load::ClosedLoop { connections: 4 }, true);
    options.also_via = vec![second.base.clone()];
    let report = webhook::run(options).await.unwrap();
    let audit = report.audit.clone().expect("audited");
    assert!(report.sent >= 8, "{report:?}");
    assert_eq!(report.accepted, report.sent, "{:?}", report.refusals);
    assert_eq!(report.refusals.count, 0);
    assert_eq!(audit.completed, report.sent, "{audit:?}");
    assert!(audit.is_clean(), "{audit:?}");
    cluster.stop().await;
}

#[tokio::test]
async fn accepted_requests_without_executions_are_reported_missing() {
    // No worker: every accepted job waits in the queue, so none is recorded in time.
    let cluster = Cluster::start(false).await;
    let load = Load::OpenLoop {
        rate: 20.0,
        max_in_flight: 8,
    };
    let mut options = cluster.options(load, false);
    options.audit_timeout = Duration::from_secs(2);
    let report = webhook::run(options).await.unwrap();
    let audit = report.audit.clone().expect("audited");
    assert_eq!(report.accepted, 40);
    assert_eq!(audit.missing, 40, "{audit:?}");
    assert!(report.drained_after_s.is_none());
    let failed = kai_loadtest::thresholds::violations(&report, &Default::default());
    assert!(
        failed[0].contains("40 accepted requests have no execution"),
        "{failed:?}"
    );
    cluster.stop().await;
}

#[tokio::test]
async fn an_e2e_run_reports_received_to_finished_latency_for_every_execution() {
    let cluster = Cluster::start(true).await;
    let mut options = cluster.options(
        Load::OpenLoop {
            rate: 50.0,
            max_in_flight: 16,
        },
        false,
    );
    options.scenario = "e2e";
    let report = webhook::run(options).await.unwrap();
    assert_eq!(report.scenario, "e2e");
    let e2e = report.end_to_end.clone().expect("e2e latencies");
    assert_eq!(e2e.count, report.accepted, "one latency per execution");
    assert!(e2e.p50_ms > 0.0 && e2e.max_ms >= e2e.p99_ms, "{e2e:?}");
    assert!(report.audit.unwrap().is_clean());
    cluster.stop().await;
}

#[tokio::test]
async fn the_seed_scenario_passes_the_webhook_and_vector_search_checks() {
    let fake = kai_common::testing::fake_openai::FakeOpenAi::start(None, 384).await;
    let root = fake.root.clone();
    let cluster = Cluster::start_with(true, |config| {
        config.models = kai_common::llm::servers::ModelServersConfig::all_at(&root);
    })
    .await;
    let report = kai_loadtest::seed::run(&cluster.api, Duration::from_secs(30), 384)
        .await
        .unwrap();
    assert_eq!(report.checks[0].name, "test_webhook_load");
    assert_eq!(report.checks[0].result, "passed", "{:?}", report.checks[0]);
    assert_eq!(report.checks[1].name, "test_vector_search_performance");
    assert_eq!(report.checks[1].result, "passed", "{:?}", report.checks[1]);
    // 20 documents embedded in one request, then one request per search.
    assert_eq!(fake.received_at("/v1/embeddings").len(), 51);
    assert_eq!(report.audit.completed, 100);
    assert!(report.passed());
    cluster.stop().await;
}

#[tokio::test]
async fn the_seed_vector_check_fails_saying_why_without_an_embeddings_server() {
    let cluster = Cluster::start(true).await;
    let report = kai_loadtest::seed::run(&cluster.api, Duration::from_secs(30), 384)
        .await
        .unwrap();
    assert_eq!(report.checks[1].result, "failed");
    assert!(
        report.checks[1].detail.contains("KAI_EMBEDDINGS_BASE_URL"),
        "{:?}",
        report.checks[1]
    );
    assert!(!report.passed());
    cluster.stop().await;
}

#[tokio::test]
async fn the_vectors_scenario_loads_indexes_and_measures_recall() {
    let cluster = Cluster::start_with(false, |config| {
        config.vector_index.after_rows = 500;
        config.vector_index.quiet = Duration::from_millis(200);
    })
    .await;
    let settings = kai_loadtest::vectors::VectorsSettings {
        rows: 3_000,
        dimension: 16,
        batch: 500,
        writers: 2,
        searches: 200,
        concurrency: 8,
        k: 10,
        recall_queries: 50,
        index_timeout: Duration::from_secs(60),
        seed: 3,
        ef_search: None,
        keep: false,
    };
    let report = kai_loadtest::vectors::run(&cluster.api, &settings)
        .await
        .unwrap();
    assert_eq!(report.rows, 3_000);
    assert!(report.vectors_per_second > 0.0);
    assert!(
        report.index_build_ms.is_some() && report.index_bytes.unwrap() > 0,
        "{report:?}"
    );
    assert!(report.search.recall_at_k > 0.9, "{report:?}");
    assert_eq!(report.filtered.short, 0, "{report:?}");
    assert!(report.filtered.recall_at_k > 0.9, "{report:?}");
    cluster.stop().await;
}

#[tokio::test]
async fn the_ceiling_scenario_measures_jetstream_and_a_bare_http_server() {
    let report = kai_loadtest::ceiling::run(kai_loadtest::ceiling::CeilingOptions {
        nats_url: std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into()),
        duration: Duration::from_millis(500),
        publishers: 8,
        connections: 8,
        payload_bytes: 64,
    })
    .await
    .unwrap();
    assert!(report.jetstream_publishes_per_s > 0.0, "{report:?}");
    assert!(report.http_requests_per_s > 0.0, "{report:?}");
    assert!(report.http_latency.count > 0);
}

#[tokio::test]
async fn the_schedules_scenario_reports_tick_lateness_and_the_scheduler_s_cost() {
    let mut cluster = Cluster::start(true).await;
    cluster.start_scheduler().await;
    let report = kai_loadtest::schedules::run(kai_loadtest::schedules::SchedulesOptions {
        api: cluster.api.clone(),
        count: 20,
        interval_seconds: 1,
        cron: None,
        spread: false,
        duration: Duration::from_secs(4),
        concurrency: 8,
        // The scheduler runs in this process.
        scheduler_pid: Some(std::process::id()),
        keep: false,
    })
    .await
    .unwrap();
    eprintln!("{}", kai_loadtest::schedules::summary(&report));
    assert_eq!(report.schedules, 20);
    // Four seconds of 20 one-second schedules: about 80 ticks (window edges vary).
    assert!(report.ticks >= 20 * 3, "{report:?}");
    assert_eq!(report.gaps, 0, "{report:?}");
    assert_eq!(report.duplicates, 0, "{report:?}");
    assert_eq!(report.lateness.count, report.ticks);
    let usage = report.scheduler.expect("sampled");
    assert!(usage.rss_mib_max > 1.0, "{usage:?}");
    cluster.stop().await;
}

#[tokio::test]
async fn the_bursts_scenario_reads_memory_each_round_and_audits_every_call_by_id() {
    let cluster = Cluster::start(true).await;
    let report = kai_loadtest::bursts::run(kai_loadtest::bursts::BurstsOptions {
        api: cluster.api.clone(),
        requests: 20,
        connections: 10,
        rounds: 2,
        body_bytes: 64 * 1024,
        settle: Duration::from_millis(200),
        drain_timeout: Duration::from_secs(60),
        // The API and the worker run in this process.
        watch: vec![("cluster".to_owned(), std::process::id())],
        audit_timeout: Duration::from_secs(30),
    })
    .await
    .unwrap();
    assert_eq!(report.rounds.len(), 2);
    for round in &report.rounds {
        assert_eq!(round.accepted, 20, "{round:?}");
        assert!(round.refused.is_empty());
        assert!(round.peak_mib["cluster"] > 0.0);
        assert!(round.settled_mib["cluster"] > 0.0);
        assert!(round.drained_s >= round.sent_s);
    }
    let audit = &report.audit;
    assert_eq!((audit.accepted, audit.completed), (40, 40), "{audit:?}");
    assert!(audit.is_clean());
    assert!(kai_loadtest::bursts::summary(&report).contains("40 completed"));
    cluster.stop().await;
}

#[tokio::test]
async fn the_listing_scenario_times_the_first_and_the_deepest_page_of_an_audited_webhook() {
    let cluster = Cluster::start(true).await;
    // An existing webhook, audited with its owner's token: the audit reads only this run's
    // executions, and the listing afterwards pages over them.
    let api = kai_loadtest::target::Api::new(&cluster.api).unwrap();
    let (owner, webhook) = api
        .set_up(&kai_loadtest::target::echo_workflow())
        .await
        .unwrap();
    let mut options = cluster.options(
        Load::OpenLoop {
            rate: 100.0,
            max_in_flight: 16,
        },
        false,
    );
    options.existing = Some(webhook);
    options.audit_as = Some(owner.clone());
    let run = webhook::run(options).await.unwrap();
    let audit = run.audit.clone().expect("audited with the owner's token");
    assert_eq!(audit.completed, 200, "{audit:?}");
    assert!(audit.is_clean(), "{audit:?}");

    let report = kai_loadtest::listing::run(kai_loadtest::listing::ListingOptions {
        api: cluster.api.clone(),
        target: owner,
        page_size: 50,
        samples: 3,
        offset_samples: 1,
    })
    .await
    .unwrap();
    assert_eq!(report.rows, 200, "{report:?}");
    assert_eq!(report.depth, 150, "the last full page");
    assert_eq!(report.first_page.count, 3);
    assert_eq!(report.deep_page.count, 3);
    assert_eq!(report.deep_page_by_offset.count, 1);
    cluster.stop().await;
}
