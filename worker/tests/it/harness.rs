//! An in-process API on port 0 plus real `kai-worker` processes, isolated per test.

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use kai_api::state::AppState;
use kai_common::testing::TestEnv;
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub struct Harness {
    pub env: TestEnv,
    pub state: Arc<AppState>,
    pub client: reqwest::Client,
    base: String,
    shutdown: CancellationToken,
    /// Set when the test runs its own NATS deployment: (its URL, the streams' replica count).
    nats: Option<(String, usize)>,
}

/// A webhook ready to be called.
pub struct Hook {
    pub workflow_id: Uuid,
    pub url: String,
    pub secret: String,
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// On a NATS deployment of the test's own (`url`), its streams with `replicas` copies.
    pub async fn start_on_nats(url: String, replicas: usize) -> Self {
        Self::start_with(Some((url, replicas))).await
    }

    async fn start_with(nats: Option<(String, usize)>) -> Self {
        let env = TestEnv::new();
        let shutdown = CancellationToken::new();
        let own_nats = nats.clone();
        let api = kai_api::testing::start_with(&env, shutdown.clone(), move |config| {
            if let Some((url, replicas)) = own_nats {
                config.common.nats_url = secrecy::SecretString::from(url);
                config.common.stream_replicas = replicas;
            }
        })
        .await;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Self {
            env,
            state: api.state,
            client,
            base: api.base,
            shutdown,
            nats,
        }
    }

    /// A user with a webhook workflow.
    pub async fn hook(&self) -> Hook {
        let token = self.token("crash@example.com").await;
        self.hook_for(&token, None).await
    }

    /// The API's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Signs up `email`; its access token.
    pub async fn token(&self, email: &str) -> String {
        kai_api::testing::access_token(&self.base, email).await
    }

    /// `POST path` on the API as the owner of `token`.
    pub async fn post(&self, token: &str, path: &str, body: &Value) -> Value {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }

    /// A webhook workflow of `token`'s user: webhook → `middle` (when given) → end.
    pub async fn hook_for(&self, token: &str, middle: Option<Value>) -> Hook {
        let mut nodes = vec![
            // Hundreds of calls in a few seconds: no rate limit.
            json!({"id": "hook", "type": "WebhookStartNode", "data": {"rate_limit_per_minute": 0}}),
            json!({"id": "end", "type": "EndNode"}),
        ];
        let edges = match middle {
            Some(mut node) => {
                node["id"] = json!("middle");
                nodes.push(node);
                json!([{"source": "hook", "target": "middle"}, {"source": "middle", "target": "end"}])
            }
            None => json!([{"source": "hook", "target": "end"}]),
        };
        let workflow: Value = self
            .client
            .post(format!("{}/api/v1/workflows", self.base))
            .bearer_auth(token)
            .json(&json!({"name": "crash", "nodes": nodes, "edges": edges}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let workflow_id: Uuid = workflow["id"].as_str().unwrap().parse().unwrap();
        let hooks: Value = self
            .client
            .get(format!(
                "{}/api/v1/webhooks?workflow_id={workflow_id}",
                self.base
            ))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Hook {
            workflow_id,
            url: hooks[0]["webhook_url"].as_str().unwrap().to_owned(),
            secret: hooks[0]["security_token"].as_str().unwrap().to_owned(),
        }
    }

    /// A `kai-worker` process in this test's environment; unacknowledged jobs of a dead worker
    /// are redelivered after `ack_wait_secs`.
    pub fn spawn_worker(&self, ack_wait_secs: u64) -> Child {
        self.spawn_worker_with(ack_wait_secs, &[])
    }

    /// Like `spawn_worker`, with some variables set otherwise (e.g. a proxied `DATABASE_URL`).
    pub fn spawn_worker_with(&self, ack_wait_secs: u64, vars: &[(&str, String)]) -> Child {
        let own_nats = self.nats.iter().flat_map(|(url, replicas)| {
            [
                ("NATS_URL", url.clone()),
                ("KAI_NATS_STREAM_REPLICAS", replicas.to_string()),
            ]
        });
        Command::new(env!("CARGO_BIN_EXE_kai-worker"))
            .envs(self.env.env_vars())
            .envs(own_nats)
            .env("KAI_WORKER_ADDR", "127.0.0.1:0")
            .env("KAI_WORKER_CONCURRENCY", "32")
            .env("KAI_JOB_ACK_WAIT_SECS", ack_wait_secs.to_string())
            .env("RUST_LOG", "warn")
            // Test services (custom node endpoints) listen on loopback.
            .env("KAI_HTTP_ALLOWED_HOSTS", "127.0.0.1")
            .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("kai-worker starts")
    }

    /// Executions recorded for the workflow: (execution id, status, attempt).
    pub async fn executions(&self, workflow_id: Uuid) -> Vec<(Uuid, String, i32)> {
        sqlx::query_as("SELECT id, status, attempt FROM workflow_executions WHERE workflow_id = $1")
            .bind(workflow_id)
            .fetch_all(&self.state.db)
            .await
            .unwrap()
    }

    /// Waits until at least `count` executions of the workflow have their outcome recorded (a
    /// long run is recorded `running` while it goes on).
    pub async fn wait_for_executions(&self, workflow_id: Uuid, count: usize, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        let finished = || async {
            let executions = self.executions(workflow_id).await;
            executions
                .iter()
                .filter(|(_, status, _)| status != "running")
                .count()
        };
        while finished().await < count {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {count} executions"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.state.db.close().await;
        self.env.cleanup().await;
    }
}

/// Fires `total` asynchronous webhook calls, `concurrency` at a time; returns the execution ids
/// of the calls answered 202. Other answers are counted, not collected.
pub async fn fire(
    client: reqwest::Client,
    hook: &Hook,
    total: usize,
    concurrency: usize,
) -> (Vec<Uuid>, usize) {
    use futures::StreamExt;
    let results: Vec<Option<Uuid>> = futures::stream::iter(0..total)
        .map(|n| {
            let request = client
                .post(&hook.url)
                .bearer_auth(&hook.secret)
                .header("Prefer", "respond-async")
                .json(&json!({ "n": n }));
            async move {
                let response = request.send().await.ok()?;
                if response.status() != reqwest::StatusCode::ACCEPTED {
                    return None;
                }
                let body: Value = response.json().await.ok()?;
                body["execution_id"].as_str()?.parse().ok()
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let refused = results.iter().filter(|r| r.is_none()).count();
    (results.into_iter().flatten().collect(), refused)
}

/// Every accepted id has exactly one completed execution, and nothing else was recorded.
pub fn assert_exactly_once(accepted: &[Uuid], recorded: &[(Uuid, String, i32)]) {
    let unique: HashSet<Uuid> = accepted.iter().copied().collect();
    assert_eq!(
        unique.len(),
        accepted.len(),
        "the API handed out an execution id twice"
    );
    let mut by_id: HashMap<Uuid, Vec<&str>> = HashMap::new();
    for (id, status, _) in recorded {
        by_id.entry(*id).or_default().push(status);
    }
    for id in accepted {
        assert_eq!(
            by_id.get(id).map(Vec::as_slice),
            Some(&["completed"][..]),
            "execution {id}"
        );
    }
    assert_eq!(
        recorded.len(),
        accepted.len(),
        "executions recorded that were never accepted"
    );
}
