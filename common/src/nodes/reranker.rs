//! `Reranker` (legacy `CohereRerankerProvider`, `RerankerNode`): orders retrieved documents by
//! relevance for the retriever it feeds. With a `cohere` credential it calls Cohere's v2
//! `/rerank` (the credential's `base_url`, guarded, or `KAI_COHERE_BASE_URL`); without one, the
//! operator's rerank server (`KAI_RERANK_BASE_URL`) when configured; with neither, a local
//! lexical ranking (BM25) that names itself `bm25` wherever results are shown, so workflows
//! exported with a Cohere reranker run as they are.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use secrecy::SecretString;
use serde_json::{Value, json};

use super::capability::Provided;
use super::fields;
use super::{
    Capability, ConfigError, NodeCategory, NodeContext, NodeDefinition, NodeError, NodeOutput,
    ProviderContext,
};
use crate::llm::bm25::Bm25Reranker;
use crate::llm::cohere::CohereReranker;
use crate::llm::connection::guarded_url;
use crate::llm::policy::CallPolicy;

pub struct Reranker;

const DEFAULT_MODEL: &str = "rerank-english-v3.0";
const DEFAULT_TIMEOUT_SECS: f64 = 30.0;

/// The model, `top_n` and the call policy.
fn parse(config: &Value) -> Result<(String, Option<usize>, CallPolicy), ConfigError> {
    let model = fields::text(config, &["model", "model_name"])?.unwrap_or(DEFAULT_MODEL);
    let top_n = fields::integer(config, &["top_n", "top_k"], 1, 1000)?.map(|n| n as usize);
    let policy = CallPolicy {
        timeout: Duration::from_secs_f64(
            fields::number(config, &["timeout"], 1.0, 600.0)?.unwrap_or(DEFAULT_TIMEOUT_SECS),
        ),
        max_retries: fields::integer(config, &["max_retries"], 0, 10)?.unwrap_or(2) as u32,
        backoff: Duration::from_secs(1),
    };
    Ok((model.to_owned(), top_n, policy))
}

async fn build(ctx: &ProviderContext<'_>) -> Result<Provided, NodeError> {
    let (model, top_n, policy) =
        parse(ctx.config).map_err(|e| NodeError::Configuration(e.to_string()))?;
    let node = ctx.node_id;
    let services = ctx.services;
    let cohere = |base_url, api_key, http| {
        Provided::Reranker(Arc::new(CohereReranker {
            base_url,
            api_key,
            http,
            model: model.clone(),
            top_n,
            policy,
        }))
    };
    if let Some(id) = fields::credential_id(ctx.config) {
        let credential = services.credential(ctx.run, node, id).await?;
        if credential.kind.name != "cohere" {
            return Err(NodeError::Credential(format!(
                "node {node}: credential `{}` is a `{}` credential, not `cohere`",
                credential.name, credential.kind.name
            )));
        }
        let key = credential
            .field("api_key")
            .map(|k| SecretString::from(k.to_owned()));
        let (url, http) = match credential.field("base_url") {
            Some(base) => guarded_url(node, base, services)?,
            None => (
                services.models.cohere.clone().ok_or_else(|| {
                    NodeError::Configuration(format!(
                        "node {node}: no Cohere address (KAI_COHERE_BASE_URL) is configured"
                    ))
                })?,
                services.models.http.clone(),
            ),
        };
        return Ok(cohere(url, key, http));
    }
    Ok(match &services.models.rerank {
        Some((url, key)) => cohere(url.clone(), key.clone(), services.models.http.clone()),
        None => Provided::Reranker(Arc::new(Bm25Reranker { top_n })),
    })
}

impl NodeDefinition for Reranker {
    fn type_name(&self) -> &str {
        "Reranker"
    }
    fn category(&self) -> NodeCategory {
        NodeCategory::Provider
    }
    fn output_handles(&self) -> &'static [&'static str] {
        &["reranker", "output"]
    }
    fn input_handles(&self) -> &'static [&'static str] {
        &[]
    }
    fn provides(&self) -> Option<Capability> {
        Some(Capability::Reranker)
    }
    fn description(&self) -> &str {
        "Reorders retrieved documents by relevance (Cohere, or local BM25 without a credential)."
    }
    fn config_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "credential_id": {"type": "string", "description": "A `cohere` credential; without one the deployment's rerank server, else local BM25."},
                "model": {"type": "string", "default": DEFAULT_MODEL},
                "top_n": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 5},
                "timeout": {"type": "number", "minimum": 1, "maximum": 600, "default": DEFAULT_TIMEOUT_SECS},
                "max_retries": {"type": "integer", "minimum": 0, "maximum": 10, "default": 2}
            }
        })
    }
    fn validate(&self, config: &Value) -> Result<(), ConfigError> {
        parse(config).map(drop)
    }
    fn execute<'a>(&'a self, _: NodeContext<'a>) -> BoxFuture<'a, Result<NodeOutput, NodeError>> {
        async {
            Err(NodeError::Configuration(
                "a reranker is not a step: connect it to a retriever's `reranker` input".to_owned(),
            ))
        }
        .boxed()
    }
    fn provide<'a>(
        &'a self,
        ctx: ProviderContext<'a>,
    ) -> BoxFuture<'a, Result<Provided, NodeError>> {
        async move { build(&ctx).await }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodes::Providers;
    use crate::nodes::services::{NodeServices, RunIds};
    use crate::workflow::template::TemplateScope;

    #[tokio::test]
    async fn without_a_credential_or_a_rerank_server_it_ranks_locally_and_says_so() {
        let services = NodeServices::default();
        let (run, scope, providers) =
            (RunIds::default(), TemplateScope::empty(), Providers::none());
        let config = json!({"top_n": 1});
        let ctx = ProviderContext {
            node_id: "rerank",
            config: &config,
            scope: &scope,
            providers: &providers,
            run: &run,
            trigger: &Default::default(),
            services: &services,
        };
        let Ok(Provided::Reranker(reranker)) = Reranker.provide(ctx).await else {
            panic!("a reranker");
        };
        assert_eq!(reranker.method(), "bm25");
        let documents = ["cats", "the borrow checker"].map(str::to_owned);
        let ranked = reranker
            .rerank("borrow checker", &documents, None)
            .await
            .unwrap();
        assert_eq!(ranked.len(), 1, "the node's top_n");
        assert_eq!(ranked[0].0, 1);
    }
}
