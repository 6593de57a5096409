//! A reranker on a Cohere-compatible server (`POST {base}/v2/rerank`, Cohere's v2 shape:
//! `{model, query, documents, top_n}` answered with `{results: [{index, relevance_score}]}`),
//! one call per ranking, retried under the node's policy.

use futures::FutureExt;
use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use url::Url;

use super::openai::{read_json, send_to};
use super::policy::CallPolicy;
use crate::nodes::NodeError;
use crate::nodes::capability::Reranker;

const SERVICE: &str = "the rerank server";

pub struct CohereReranker {
    pub base_url: Url,
    pub api_key: Option<SecretString>,
    pub http: reqwest::Client,
    pub model: String,
    /// The node's `top_n`, used when the consumer asks for no number.
    pub top_n: Option<usize>,
    pub policy: CallPolicy,
}

#[derive(Deserialize)]
struct Ranked {
    index: usize,
    relevance_score: f64,
}

#[derive(Deserialize)]
struct Answer {
    results: Vec<Ranked>,
}

impl CohereReranker {
    async fn call(
        &self,
        query: &str,
        documents: &[String],
        top_n: Option<usize>,
    ) -> Result<Vec<(usize, f64)>, NodeError> {
        let url = format!("{}/v2/rerank", self.base_url.as_str().trim_end_matches('/'));
        let mut body = json!({"model": self.model, "query": query, "documents": documents});
        if let Some(top_n) = top_n.or(self.top_n) {
            body["top_n"] = json!(top_n);
        }
        let mut request = self.http.post(url).timeout(self.policy.timeout).json(&body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key.expose_secret());
        }
        let key = self.api_key.as_ref().map(|key| key.expose_secret());
        let answer: Answer = read_json(send_to(request, SERVICE, key).await?, SERVICE).await?;
        answer
            .results
            .into_iter()
            .map(|r| {
                if r.index < documents.len() {
                    Ok((r.index, r.relevance_score))
                } else {
                    Err(NodeError::Configuration(format!(
                        "the rerank server ranked document {} of {}",
                        r.index,
                        documents.len()
                    )))
                }
            })
            .collect()
    }
}

impl Reranker for CohereReranker {
    fn method(&self) -> &str {
        "cohere"
    }

    fn rerank<'a>(
        &'a self,
        query: &'a str,
        documents: &'a [String],
        top_n: Option<usize>,
    ) -> BoxFuture<'a, Result<Vec<(usize, f64)>, NodeError>> {
        async move {
            if documents.is_empty() {
                return Ok(Vec::new());
            }
            self.policy
                .run(|| self.call(query, documents, top_n), || true)
                .await
        }
        .boxed()
    }
}
