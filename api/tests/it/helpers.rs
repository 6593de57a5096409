//! `TestApp`: the real API and a real worker on port 0, isolated per test.

use std::sync::Arc;
use std::time::Duration;

use kai_api::config::ApiConfig;
use kai_api::state::AppState;
use kai_common::testing::TestEnv;
use kai_worker::config::WorkerConfig;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub struct TestApp {
    pub env: TestEnv,
    pub base: String,
    /// The API's operations port.
    pub ops_base: String,
    pub client: reqwest::Client,
    pub state: Arc<AppState>,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl TestApp {
    /// API and one worker.
    pub async fn spawn() -> Self {
        let mut app = Self::spawn_api_only().await;
        app.start_worker().await;
        app
    }

    /// The API alone: jobs stay in the stream until a worker is started.
    pub async fn spawn_api_only() -> Self {
        Self::spawn_api_only_with(|_| {}).await
    }

    /// The API alone, its configuration adjusted first (e.g. a dependency behind a proxy).
    pub async fn spawn_api_only_with(adjust: impl FnOnce(&mut ApiConfig)) -> Self {
        // Logs of the app under test, shown for failing tests (RUST_LOG=debug for more).
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
        let env = TestEnv::new();
        let shutdown = CancellationToken::new();
        let api = kai_api::testing::start_with(&env, shutdown.clone(), adjust).await;
        Self {
            env,
            base: api.base,
            ops_base: api.ops_base,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            state: api.state,
            shutdown,
            tasks: vec![api.server],
        }
    }

    pub async fn start_worker(&mut self) {
        self.start_worker_with(|_| {}).await;
    }

    /// A worker configured as `start_worker`'s, then changed by `adjust`.
    pub async fn start_worker_with(&mut self, adjust: impl FnOnce(&mut WorkerConfig)) {
        self.start_abortable_worker(adjust).await;
    }

    /// A worker as `start_worker_with` starts it, and the handle that kills it on the spot (as
    /// a crash would: nothing acknowledged, nothing finished).
    pub async fn start_abortable_worker(
        &mut self,
        adjust: impl FnOnce(&mut WorkerConfig),
    ) -> tokio::task::AbortHandle {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut config = WorkerConfig {
            common: self.env.common_config(),
            addr: listener.local_addr().unwrap(),
            concurrency: 8,
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
            execution_events: kai_worker::config::EventsMode::All,
        };
        adjust(&mut config);
        let shutdown = self.shutdown.clone();
        let task = tokio::spawn(async move {
            kai_worker::run(config, listener, shutdown)
                .await
                .expect("worker runs")
        });
        let handle = task.abort_handle();
        self.tasks.push(task);
        handle
    }

    /// Another API replica in this test's environment (same database, NATS prefix, Redis),
    /// stopped with the rest.
    pub async fn another_api(&mut self, adjust: impl FnOnce(&mut ApiConfig)) -> String {
        let api = kai_api::testing::start_with(&self.env, self.shutdown.clone(), adjust).await;
        self.tasks.push(api.server);
        api.base
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        self.state.db.close().await;
        self.env.cleanup().await;
    }

    pub fn request(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        };
        let builder = self.client.request(method, url);
        match token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    /// Signs up `email` and returns an access token.
    pub async fn user(&self, email: &str) -> String {
        let credentials = json!({"email": email, "password": "correct-horse-battery"});
        let signup = self
            .request(Method::POST, "/api/v1/auth/signup", None)
            .json(&credentials)
            .send()
            .await
            .unwrap();
        assert_eq!(
            signup.status(),
            StatusCode::CREATED,
            "{}",
            signup.text().await.unwrap()
        );
        let login = self
            .request(Method::POST, "/api/v1/auth/login", None)
            .json(&credentials)
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), StatusCode::OK);
        login.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Stores a credential and returns its id.
    pub async fn credential(&self, token: &str, name: &str, kind: &str, data: Value) -> String {
        let (status, created) = self
            .post_json(
                "/api/v1/credentials",
                token,
                &json!({"name": name, "service_type": kind, "data": data}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        created["id"].as_str().unwrap().to_owned()
    }

    pub async fn create_workflow(&self, token: &str, body: &Value) -> Value {
        let response = self
            .request(Method::POST, "/api/v1/workflows", Some(token))
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "{}",
            response.text().await.unwrap()
        );
        response.json().await.unwrap()
    }

    /// (webhook_url, security_token) of the workflow's first webhook.
    pub async fn webhook_of(&self, token: &str, workflow_id: &str) -> (String, String) {
        let hooks: Value = self
            .request(
                Method::GET,
                &format!("/api/v1/webhooks?workflow_id={workflow_id}"),
                Some(token),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let hook = &hooks[0];
        assert!(hook.is_object(), "webhooks: {hooks}");
        (
            hook["webhook_url"].as_str().unwrap().to_owned(),
            hook["security_token"].as_str().unwrap().to_owned(),
        )
    }

    pub async fn get_json(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let response = self
            .request(Method::GET, path, Some(token))
            .send()
            .await
            .unwrap();
        json_of(response).await
    }

    pub async fn post_json(&self, path: &str, token: &str, body: &Value) -> (StatusCode, Value) {
        self.send_json(Method::POST, path, token, body).await
    }

    pub async fn put_json(&self, path: &str, token: &str, body: &Value) -> (StatusCode, Value) {
        self.send_json(Method::PUT, path, token, body).await
    }

    async fn send_json(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: &Value,
    ) -> (StatusCode, Value) {
        let response = self
            .request(method, path, Some(token))
            .json(body)
            .send()
            .await
            .unwrap();
        json_of(response).await
    }

    /// Runs workflow `id` with `inputs`, waiting for it to finish; its execution record.
    pub async fn execute_and_wait(&self, token: &str, id: &str, inputs: Value) -> Value {
        let (status, answer) = self
            .post_json(
                &format!("/api/v1/workflows/{id}/execute?wait=true&timeout=60"),
                token,
                &json!({"inputs": inputs}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        self.wait_for_execution(token, answer["execution_id"].as_str().unwrap())
            .await
    }

    /// Polls `GET /api/v1/executions/{id}` until its outcome is recorded (not `queued` or
    /// `running`).
    pub async fn wait_for_execution(&self, token: &str, execution_id: &str) -> Value {
        for _ in 0..600 {
            let (status, body) = self
                .get_json(&format!("/api/v1/executions/{execution_id}"), token)
                .await;
            if status == StatusCode::OK
                && !matches!(body["status"].as_str(), Some("queued" | "running"))
            {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("execution {execution_id} never appeared");
    }
}

pub async fn json_of(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The seed's test workflow: a lone webhook start node.
pub fn lone_webhook_workflow() -> Value {
    json!({
        "name": "Test Webhook Workflow",
        "nodes": [{"id": "webhook-start", "type": "WebhookStartNode", "data": {"timeout": 30}}]
    })
}
