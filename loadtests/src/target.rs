//! The deployment under test, through its public API: setting up a scratch user, workflow and
//! webhook for a run, reading back the executions for the audit (by cursor and by id, never by
//! offset), and cleaning up.

use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use uuid::Uuid;

/// The webhook a run fires.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: String,
    pub token: String,
}

/// A scratch user and workflow the run created (and deletes afterwards).
#[derive(Debug, Clone)]
pub struct Scratch {
    pub access_token: String,
    pub workflow_id: Uuid,
}

/// The scenario webhook's rate limit: 100 million calls a minute.
pub const LOADTEST_RATE_LIMIT_PER_MINUTE: u64 = 100_000_000;

#[derive(Debug, Clone)]
pub struct Api {
    pub base: String,
    client: reqwest::Client,
}

/// The workflow a scenario fires when it sets itself up: the webhook's payload straight to the
/// end, so the run measures the platform, not a node. Its rate limit is far above any load
/// this tool makes, but still enforced (one Redis-counted limit), so every check is measured.
pub fn echo_workflow() -> Value {
    json!({
        "name": "kai-loadtest echo",
        "description": "Created by kai-loadtest; deleted when the run ends.",
        "nodes": [
            {"id": "webhook", "type": "WebhookStartNode", "data": {
                "webhook_timeout": 30, "rate_limit_per_minute": LOADTEST_RATE_LIMIT_PER_MINUTE}},
            {"id": "end", "type": "EndNode"}
        ],
        "edges": [{"source": "webhook", "target": "end"}]
    })
}

/// The HTTP client every scenario builds on. reqwest sets `TCP_USER_TIMEOUT` (30 s) by default:
/// a server that holds back a large body while it is busy stops reading (the TCP window
/// closes), and Linux then aborts a pooled connection whose window closes again more than 30 s
/// after it first did, at once, with "Connection timed out": calls the server never saw would
/// count as refused. Each scenario's request timeout bounds a call instead.
pub fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().tcp_user_timeout(None)
}

impl Api {
    pub fn new(base: &str) -> anyhow::Result<Self> {
        kai_common::tls::install_crypto_provider();
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            client: client_builder().timeout(Duration::from_secs(30)).build()?,
        })
    }

    async fn call(&self, request: reqwest::RequestBuilder, what: &str) -> anyhow::Result<Value> {
        let response = request.send().await.with_context(|| what.to_owned())?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("{what}: {status}: {body}");
        }
        Ok(serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    /// Signs up a throw-away user and returns its access token.
    pub async fn sign_up(&self) -> anyhow::Result<String> {
        let credentials = json!({
            "email": format!("loadtest-{}@kai-loadtest.invalid", Uuid::new_v4().simple()),
            "password": Uuid::new_v4().to_string(),
        });
        let url = |path: &str| format!("{}{path}", self.base);
        self.call(
            self.client
                .post(url("/api/v1/auth/signup"))
                .json(&credentials),
            "signing up the load-test user",
        )
        .await?;
        let login = self
            .call(
                self.client
                    .post(url("/api/v1/auth/login"))
                    .json(&credentials),
                "logging in",
            )
            .await?;
        Ok(login["access_token"]
            .as_str()
            .context("login answered no access_token")?
            .to_owned())
    }

    /// Creates `workflow` and returns its id.
    pub async fn create_workflow(&self, token: &str, workflow: &Value) -> anyhow::Result<String> {
        let created = self
            .call(
                self.client
                    .post(format!("{}/api/v1/workflows", self.base))
                    .bearer_auth(token)
                    .json(workflow),
                "creating a load-test workflow",
            )
            .await?;
        Ok(created["id"]
            .as_str()
            .context("the created workflow has no id")?
            .to_owned())
    }

    /// `POST path` with `body` as the owner of `token`.
    pub async fn post(&self, token: &str, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.call(
            self.client
                .post(format!("{}{path}", self.base))
                .bearer_auth(token)
                .json(body),
            path,
        )
        .await
    }

    /// `DELETE path` as the owner of `token`.
    pub async fn delete(&self, token: &str, path: &str) -> anyhow::Result<()> {
        self.call(
            self.client
                .delete(format!("{}{path}", self.base))
                .bearer_auth(token),
            path,
        )
        .await
        .map(drop)
    }

    /// `GET path` as the owner of `token`.
    pub async fn get(&self, token: &str, path: impl AsRef<str>) -> anyhow::Result<Value> {
        let path = path.as_ref();
        self.call(
            self.client
                .get(format!("{}{path}", self.base))
                .bearer_auth(token),
            path,
        )
        .await
    }

    pub async fn delete_workflow(&self, token: &str, id: &str) -> anyhow::Result<()> {
        self.call(
            self.client
                .delete(format!("{}/api/v1/workflows/{id}", self.base))
                .bearer_auth(token),
            "deleting a load-test workflow",
        )
        .await
        .map(|_| ())
    }

    /// Signs up a throw-away user, creates `workflow` and returns its first webhook.
    pub async fn set_up(&self, workflow: &Value) -> anyhow::Result<(Scratch, Webhook)> {
        let url = |path: &str| format!("{}{path}", self.base);
        let access_token = self.sign_up().await?;
        let workflow_id: Uuid = self
            .create_workflow(&access_token, workflow)
            .await?
            .parse()
            .context("the created workflow's id is not a UUID")?;
        let hooks = self
            .call(
                self.client
                    .get(url(&format!("/api/v1/webhooks?workflow_id={workflow_id}")))
                    .bearer_auth(&access_token),
                "reading the workflow's webhook",
            )
            .await?;
        let webhook = Webhook {
            url: hooks[0]["webhook_url"]
                .as_str()
                .context("the workflow has no webhook")?
                .to_owned(),
            token: hooks[0]["security_token"]
                .as_str()
                .context("the webhook has no token")?
                .to_owned(),
        };
        Ok((
            Scratch {
                access_token,
                workflow_id,
            },
            webhook,
        ))
    }

    /// The workflow's executions started at or after `since` (all without), as summaries (no
    /// inputs), newest first, page by page through the listing's cursor: one pass costs time in
    /// proportion to the rows it reads.
    pub async fn execution_summaries(
        &self,
        scratch: &Scratch,
        since: Option<DateTime<Utc>>,
    ) -> anyhow::Result<Vec<Summary>> {
        let mut url = reqwest::Url::parse(&format!(
            "{}/api/v1/workflows/{}/executions/summaries",
            self.base, scratch.workflow_id
        ))
        .context("the API address")?;
        url.query_pairs_mut()
            .append_pair("limit", &SUMMARY_PAGE.to_string());
        if let Some(since) = since {
            url.query_pairs_mut()
                .append_pair("start_date", &since.to_rfc3339());
        }
        let mut summaries = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut page_url = url.clone();
            if let Some(cursor) = &cursor {
                page_url.query_pairs_mut().append_pair("cursor", cursor);
            }
            let page: SummariesPage = self
                .call_as(
                    self.client.get(page_url).bearer_auth(&scratch.access_token),
                    "listing execution summaries",
                )
                .await?;
            summaries.extend(page.items);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(summaries),
            }
        }
    }

    /// Which of `ids` are recorded, with their summaries: asked in lookups of up to
    /// [`LOOKUP_BATCH`] ids.
    pub async fn lookup_executions(
        &self,
        token: &str,
        ids: &[Uuid],
    ) -> anyhow::Result<Vec<Summary>> {
        let mut found = Vec::with_capacity(ids.len());
        for batch in ids.chunks(LOOKUP_BATCH) {
            let answer: LookupAnswer = self
                .call_as(
                    self.client
                        .post(format!("{}/api/v1/executions/lookup", self.base))
                        .bearer_auth(token)
                        .json(&json!({ "ids": batch })),
                    "looking up executions",
                )
                .await?;
            found.extend(answer.found);
        }
        Ok(found)
    }

    /// One execution in full (with its inputs), or `None` when it is not recorded.
    pub async fn execution(&self, token: &str, id: Uuid) -> anyhow::Result<Option<Value>> {
        let response = self
            .client
            .get(format!("{}/api/v1/executions/{id}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .context("reading an execution")?;
        match response.status() {
            reqwest::StatusCode::NOT_FOUND => Ok(None),
            status if status.is_success() => {
                Ok(Some(response.json().await.context("reading an execution")?))
            }
            status => bail!("reading execution {id}: {status}"),
        }
    }

    /// `GET url` as the owner of `token`, with the `X-Next-Cursor` the answer carries.
    pub async fn get_page(
        &self,
        token: &str,
        url: reqwest::Url,
    ) -> anyhow::Result<(Value, Option<String>)> {
        let path = url.path().to_owned();
        let response = self
            .client
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .with_context(|| path.clone())?;
        let status = response.status();
        let next = response
            .headers()
            .get("x-next-cursor")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let body = response.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("{path}: {status}: {body}");
        }
        Ok((serde_json::from_str(&body).unwrap_or(Value::Null), next))
    }

    async fn call_as<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> anyhow::Result<T> {
        let response = request.send().await.with_context(|| what.to_owned())?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            bail!("{what}: {status}: {body}");
        }
        response.json().await.with_context(|| what.to_owned())
    }

    /// The status of execution `id` (`completed`, `failed`, `running`), or `None` when it is
    /// not recorded (404).
    pub async fn execution_status(&self, token: &str, id: Uuid) -> anyhow::Result<Option<String>> {
        Ok(self
            .execution(token, id)
            .await?
            .and_then(|body| body["status"].as_str().map(str::to_owned)))
    }

    /// Jobs waiting in the queue, from the API's readiness report.
    pub async fn queue_depth(&self) -> Option<u64> {
        let response = self
            .client
            .get(format!("{}/health/detailed", self.base))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        response.json::<Value>().await.ok()?["queue_depth"].as_u64()
    }

    /// Deletes the scratch workflow (with its webhook and executions).
    pub async fn clean_up(&self, scratch: &Scratch) -> anyhow::Result<()> {
        self.delete_workflow(&scratch.access_token, &scratch.workflow_id.to_string())
            .await
    }
}

/// Rows a page of execution summaries holds (the API allows up to 10,000).
const SUMMARY_PAGE: usize = 5000;
/// Ids one lookup asks about (the API's limit).
pub const LOOKUP_BATCH: usize = 5000;

/// An execution without its inputs and outputs, as the summaries listing and the lookup answer.
#[derive(Debug, Clone, Deserialize)]
pub struct Summary {
    pub id: Uuid,
    pub status: String,
    pub enqueued_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl Summary {
    /// Accepted → finished, by the deployment's clock.
    pub fn end_to_end(&self) -> Option<Duration> {
        self.completed_at
            .and_then(|done| (done - self.enqueued_at).to_std().ok())
    }
}

#[derive(Deserialize)]
struct SummariesPage {
    items: Vec<Summary>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct LookupAnswer {
    found: Vec<Summary>,
}
