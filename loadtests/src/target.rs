//! The deployment under test, through its public API: setting up a scratch user, workflow and
//! webhook for a run, reading back the executions for the audit, and cleaning up.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::audit::Found;

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

impl Api {
    pub fn new(base: &str) -> anyhow::Result<Self> {
        kai_common::tls::install_crypto_provider();
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
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

    /// Every execution of the workflow, with the sequence number of the request behind it.
    /// Pages are read newest first while executions may still be arriving, so one can show up
    /// on two pages: each id is kept once (a real duplicate has an id of its own).
    pub async fn executions(&self, scratch: &Scratch) -> anyhow::Result<Vec<Found>> {
        const PAGE: usize = 500;
        let mut found = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut offset = 0;
        loop {
            let page = self
                .call(
                    self.client
                        .get(format!(
                            "{}/api/v1/workflows/{}/executions?limit={PAGE}&offset={}",
                            self.base, scratch.workflow_id, offset
                        ))
                        .bearer_auth(&scratch.access_token),
                    "listing executions",
                )
                .await?;
            let items = page.as_array().cloned().unwrap_or_default();
            let count = items.len();
            offset += count;
            found.extend(
                items
                    .iter()
                    .filter_map(found_of)
                    .filter(|execution| seen.insert(execution.id)),
            );
            if count < PAGE {
                return Ok(found);
            }
        }
    }

    /// The status of execution `id` (`completed`, `failed`, `running`), or `None` when it is
    /// not recorded (404).
    pub async fn execution_status(&self, token: &str, id: Uuid) -> anyhow::Result<Option<String>> {
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
                let body: Value = response.json().await.context("reading an execution")?;
                Ok(body["status"].as_str().map(str::to_owned))
            }
            status => bail!("reading execution {id}: {status}"),
        }
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

/// An execution as the audit needs it; `seq` comes from the webhook payload (`lt_seq`).
fn found_of(item: &Value) -> Option<Found> {
    let time = |value: &Value| {
        chrono::DateTime::parse_from_rfc3339(value.as_str()?)
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc))
    };
    let end_to_end = time(&item["completed_at"])
        .zip(time(&item["inputs"]["received_at"]))
        .and_then(|(done, received)| (done - received).to_std().ok());
    Some(Found {
        id: item["id"].as_str()?.parse().ok()?,
        seq: item["inputs"]["data"]["lt_seq"].as_u64(),
        status: item["status"].as_str()?.to_owned(),
        end_to_end,
    })
}
