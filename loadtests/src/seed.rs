//! The `seed` scenario: the original requirements' performance tests as they are written.
//! `test_webhook_load`: 100 concurrent webhook requests (waiting for the result, no
//! `Prefer: respond-async`), passing when more than 95 % answer 200; here also audited.
//! `test_vector_search_performance`: 50 concurrent text searches of a collection, all answered
//! 200 within 5 s (the deployment's embeddings server embeds the queries, as the seed's test
//! searches by text).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::audit::Audit;
use crate::target::{Api, echo_workflow};
use crate::webhook::Shared;

#[derive(Debug, Clone, Serialize)]
pub struct SeedCheck {
    pub name: &'static str,
    /// `passed`, `failed` or `not_available`.
    pub result: &'static str,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SeedReport {
    pub scenario: &'static str,
    pub checks: Vec<SeedCheck>,
    pub audit: Audit,
}

impl SeedReport {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.result != "failed") && self.audit.is_clean()
    }
}

pub const CONCURRENT_REQUESTS: u64 = 100;

pub const CONCURRENT_SEARCHES: usize = 50;

/// The seed's vector search test: a collection of `dimension` with a few documents embedded by
/// the deployment's embeddings server, then 50 concurrent searches by text.
async fn vector_search(api: &Api, token: &str, dimension: usize) -> SeedCheck {
    let failed = |detail: String| SeedCheck {
        name: "test_vector_search_performance",
        result: "failed",
        detail,
    };
    let created = match api
        .post(
            token,
            "/api/v1/vectors/collections",
            &serde_json::json!({"collection_name": "seed-vector-search", "embedding_dimension": dimension}),
        )
        .await
    {
        Ok(created) => created,
        Err(e) => return failed(format!("creating the collection: {e}")),
    };
    let path = format!(
        "/api/v1/vectors/collections/{}",
        created["id"].as_str().unwrap_or_default()
    );
    let documents: Vec<serde_json::Value> = (0..20)
        .map(|i| serde_json::json!({"content": format!("Test document {i} about topic {}", i % 5)}))
        .collect();
    if let Err(e) = api
        .post(
            token,
            &format!("{path}/documents"),
            &serde_json::json!({"documents": documents}),
        )
        .await
    {
        let _ = api.delete(token, &path).await;
        return failed(format!(
            "storing documents (embedded by the deployment's server): {e}"
        ));
    }
    let start = Instant::now();
    let searches = (0..CONCURRENT_SEARCHES).map(|i| {
        let path = format!("{path}/search?query=test%20query%20{i}&k=10");
        async move { api.get(token, path).await }
    });
    let results = futures::future::join_all(searches).await;
    let elapsed = start.elapsed();
    let _ = api.delete(token, &path).await;
    let ok = results
        .iter()
        .filter(|r| {
            r.as_ref()
                .is_ok_and(|found| found["documents"].as_array().is_some_and(|d| d.len() == 10))
        })
        .count();
    let passed = ok == CONCURRENT_SEARCHES && elapsed < Duration::from_secs(5);
    SeedCheck {
        name: "test_vector_search_performance",
        result: if passed { "passed" } else { "failed" },
        detail: format!(
            "{ok} of {CONCURRENT_SEARCHES} concurrent searches answered 200 with 10 results in {:.2} s (needs all, under 5 s)",
            elapsed.as_secs_f64()
        ),
    }
}

pub async fn run(
    api_base: &str,
    audit_timeout: Duration,
    dimension: usize,
) -> anyhow::Result<SeedReport> {
    let api = Api::new(api_base)?;
    let (scratch, webhook) = api.set_up(&echo_workflow()).await?;
    let shared = Arc::new(Shared::new(
        webhook,
        true,
        64,
        Duration::from_secs(60),
        CONCURRENT_REQUESTS as usize,
    )?);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for seq in 0..CONCURRENT_REQUESTS {
        let shared = shared.clone();
        tasks.spawn(async move { shared.fire(seq, start, 0).await });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = start.elapsed();
    let (audit, ok) = {
        let (audit, _, _) =
            crate::webhook::audit_run(&api, &scratch, &shared, None, audit_timeout).await?;
        let ok = shared.recorder().statuses.get(&200).copied().unwrap_or(0);
        (audit, ok)
    };
    let vector_check_result = vector_search(&api, &scratch.access_token, dimension).await;
    if let Err(e) = api.clean_up(&scratch).await {
        eprintln!("warning: {e}");
    }
    let rate = ok as f64 / CONCURRENT_REQUESTS as f64;
    let webhook_check = SeedCheck {
        name: "test_webhook_load",
        result: if rate > 0.95 { "passed" } else { "failed" },
        detail: format!(
            "{ok} of {CONCURRENT_REQUESTS} concurrent requests answered 200 ({:.0} %, needs > 95 %) in {:.2} s",
            rate * 100.0,
            elapsed.as_secs_f64()
        ),
    };
    let vector_check = vector_check_result;
    Ok(SeedReport {
        scenario: "seed",
        checks: vec![webhook_check, vector_check],
        audit,
    })
}
