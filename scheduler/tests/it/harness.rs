//! Real `kai-scheduler` processes, and the API in-process to create schedules through.

use std::process::Stdio;
use std::time::{Duration, Instant};

use kai_common::testing::TestEnv;
use serde_json::Value;
use tokio::process::{Child, Command};

pub struct Scheduler {
    pub child: Child,
    pub health: String,
}

pub async fn spawn(env: &TestEnv) -> Scheduler {
    spawn_with(env, &[]).await
}

/// Like `spawn`, with some variables set otherwise (e.g. a proxied `NATS_URL`).
pub async fn spawn_with(env: &TestEnv, vars: &[(&str, String)]) -> Scheduler {
    let port = kai_common::testing::free_port().await;
    let child = Command::new(env!("CARGO_BIN_EXE_kai-scheduler"))
        .envs(env.env_vars())
        .env("KAI_SCHEDULER_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("kai-scheduler starts");
    Scheduler {
        child,
        health: format!("http://127.0.0.1:{port}/health"),
    }
}

/// The scheduler's Prometheus exposition.
pub async fn metrics_of(client: &reqwest::Client, scheduler: &Scheduler) -> String {
    client
        .get(scheduler.health.replace("/health", "/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// `Some(is_leader)` once the process answers its health endpoint.
pub async fn is_leader(client: &reqwest::Client, scheduler: &Scheduler) -> Option<bool> {
    let body: Value = client
        .get(&scheduler.health)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    body["is_leader"].as_bool()
}

/// Waits until exactly one of `schedulers` leads and returns its index.
pub async fn single_leader(
    client: &reqwest::Client,
    schedulers: &[&Scheduler],
    limit: Duration,
) -> usize {
    let deadline = Instant::now() + limit;
    loop {
        let mut leaders = Vec::new();
        let mut answered = 0;
        for (i, s) in schedulers.iter().enumerate() {
            if let Some(leading) = is_leader(client, s).await {
                answered += 1;
                if leading {
                    leaders.push(i);
                }
            }
        }
        assert!(leaders.len() <= 1, "two leaders at once: {leaders:?}");
        if answered == schedulers.len() && leaders.len() == 1 {
            return leaders[0];
        }
        assert!(
            Instant::now() < deadline,
            "no single leader within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The API in-process, a signed-up user, and what the scheduler emits.
pub struct Cluster {
    pub env: TestEnv,
    pub base: String,
    pub client: reqwest::Client,
    pub token: String,
    pub db: sqlx::PgPool,
    js: async_nats::jetstream::Context,
    names: kai_common::nats::Names,
    shutdown: tokio_util::sync::CancellationToken,
}

/// One tick found on the jobs stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tick {
    pub job_id: uuid::Uuid,
    pub scheduled_for: chrono::DateTime<chrono::Utc>,
    pub message_id: String,
    pub source: String,
}

impl Cluster {
    pub async fn start() -> Self {
        kai_common::tls::install_crypto_provider();
        let env = TestEnv::new();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let api = kai_api::testing::start(&env, shutdown.clone()).await;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let token = kai_api::testing::access_token(&api.base, "timers@example.com").await;
        Self {
            token,
            db: api.state.db.clone(),
            js: api.state.js.clone(),
            names: api.state.names.clone(),
            env,
            base: api.base,
            client,
            shutdown,
        }
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// A workflow whose timer node has `data`; returns (workflow id, scheduled job id).
    pub async fn timer_workflow(&self, data: Value) -> (String, String) {
        let workflow = self
            .send(
                reqwest::Method::POST,
                "/api/v1/workflows",
                Some(serde_json::json!({"name": "timed", "nodes": [
                    {"id": "timer", "type": "TimerStartNode", "data": data},
                    {"id": "end", "type": "EndNode"}
                ], "edges": [{"source": "timer", "target": "end"}]})),
            )
            .await;
        let id = workflow["id"].as_str().unwrap().to_owned();
        let jobs = self
            .send(
                reqwest::Method::GET,
                &format!("/api/v1/jobs/scheduled?workflow_id={id}"),
                None,
            )
            .await;
        let job_id = jobs[0]["id"].as_str().expect("a scheduled job").to_owned();
        (id, job_id)
    }

    /// Every timer job on the jobs stream, in stream order (no worker consumes them here).
    pub async fn ticks(&self) -> Vec<Tick> {
        let mut stream = self.js.get_stream(self.names.jobs_stream()).await.unwrap();
        let state = stream.info().await.unwrap().state.clone();
        let mut ticks = Vec::new();
        if state.messages == 0 {
            return ticks;
        }
        for sequence in state.first_sequence..=state.last_sequence {
            let Ok(message) = stream.get_raw_message(sequence).await else {
                continue;
            };
            let job = kai_common::jobs::JobMessage::decode(&message.payload).unwrap();
            if let kai_common::jobs::JobMessage::TimerV1(timer) = job {
                ticks.push(Tick {
                    job_id: timer.event.job_id,
                    scheduled_for: timer.event.scheduled_for,
                    message_id: message
                        .headers
                        .get("Nats-Msg-Id")
                        .map(|v| v.as_str().to_owned())
                        .unwrap_or_default(),
                    source: timer.event.source,
                });
            }
        }
        ticks
    }

    /// The ticks of `job_id` on the stream.
    pub async fn ticks_of(&self, job_id: &str) -> Vec<Tick> {
        let job_id: uuid::Uuid = job_id.parse().unwrap();
        self.ticks()
            .await
            .into_iter()
            .filter(|t| t.job_id == job_id)
            .collect()
    }

    /// Waits until `job_id` has at least `count` ticks on the stream.
    pub async fn wait_for_ticks(&self, job_id: &str, count: usize, limit: Duration) -> Vec<Tick> {
        let deadline = Instant::now() + limit;
        loop {
            let ticks = self.ticks_of(job_id).await;
            if ticks.len() >= count {
                return ticks;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {count} ticks within {limit:?}",
                ticks.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.db.close().await;
        self.env.cleanup().await;
    }
}
