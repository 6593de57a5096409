//! `OpenAIEmbedder` (legacy `OpenAIEmbeddingsProvider`, `OpenAIEmbedderNode`): an embeddings
//! model on an OpenAI-compatible server for the vector store and retriever nodes it feeds.
//! Inputs go in batches of `batch_size` (100 by default), each retried under `max_retries`;
//! `dimensions` is passed to models that can shorten their vectors. The server is its
//! credential's, its `base_url` (both guarded), else the operator's embeddings server
//! (`KAI_EMBEDDINGS_BASE_URL`, by default `KAI_OPENAI_BASE_URL`).

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::capability::Provided;
use super::fields;
use super::{
    Capability, ConfigError, NodeCategory, NodeContext, NodeDefinition, NodeError, NodeOutput,
    ProviderContext,
};
use crate::llm::chat::CallPolicy;
use crate::llm::connection::{self, Target};
use crate::llm::embedder::{DEFAULT_BATCH_SIZE, OpenAiEmbedder};

pub struct OpenAIEmbedder;

const DEFAULT_MODEL: &str = "text-embedding-3-small";
const DEFAULT_TIMEOUT_SECS: f64 = 60.0;
const DEFAULT_RETRIES: u64 = 3;
/// OpenAI's limit of inputs per request.
const MAX_BATCH_SIZE: u64 = 2048;

struct EmbedderConfig {
    model: String,
    dimensions: Option<u32>,
    batch_size: usize,
    timeout: Duration,
    max_retries: u32,
    credential_id: Option<String>,
    base_url: Option<String>,
}

impl EmbedderConfig {
    fn parse(config: &Value) -> Result<Self, ConfigError> {
        let base_url = fields::text(config, &["base_url"])?;
        if let Some(url) = base_url {
            url::Url::parse(url)
                .map_err(|e| ConfigError::new("base_url", format!("not a URL: {e}")))?;
        }
        Ok(Self {
            model: fields::text(config, &["model", "model_name", "embed_model"])?
                .unwrap_or(DEFAULT_MODEL)
                .to_owned(),
            dimensions: fields::integer(config, &["dimensions"], 1, 16_000)?.map(|d| d as u32),
            batch_size: fields::integer(config, &["batch_size"], 1, MAX_BATCH_SIZE)?
                .map_or(DEFAULT_BATCH_SIZE, |b| b as usize),
            timeout: Duration::from_secs_f64(
                fields::number(config, &["request_timeout", "timeout"], 1.0, 600.0)?
                    .unwrap_or(DEFAULT_TIMEOUT_SECS),
            ),
            max_retries: fields::integer(config, &["max_retries"], 0, 10)?
                .unwrap_or(DEFAULT_RETRIES) as u32,
            credential_id: fields::credential_id(config).map(str::to_owned),
            base_url: base_url.map(str::to_owned),
        })
    }
}

impl NodeDefinition for OpenAIEmbedder {
    fn type_name(&self) -> &str {
        "OpenAIEmbedder"
    }
    fn category(&self) -> NodeCategory {
        NodeCategory::Provider
    }
    fn output_handles(&self) -> &'static [&'static str] {
        &["embedder", "output"]
    }
    fn input_handles(&self) -> &'static [&'static str] {
        &[]
    }
    fn provides(&self) -> Option<Capability> {
        Some(Capability::Embedder)
    }
    fn description(&self) -> &str {
        "An embeddings model on an OpenAI-compatible server, for vector stores and retrievers."
    }
    fn config_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "credential_id": {"type": "string", "description": "An `openai` or `openai_compatible` credential; without one the deployment's embeddings server is used."},
                "model": {"type": "string", "default": DEFAULT_MODEL},
                "dimensions": {"type": "integer", "minimum": 1},
                "batch_size": {"type": "integer", "minimum": 1, "maximum": MAX_BATCH_SIZE, "default": DEFAULT_BATCH_SIZE},
                "request_timeout": {"type": "number", "minimum": 1, "maximum": 600, "default": DEFAULT_TIMEOUT_SECS},
                "max_retries": {"type": "integer", "minimum": 0, "maximum": 10, "default": DEFAULT_RETRIES},
                "base_url": {"type": "string"}
            }
        })
    }
    fn validate(&self, config: &Value) -> Result<(), ConfigError> {
        EmbedderConfig::parse(config).map(drop)
    }
    fn execute<'a>(&'a self, _: NodeContext<'a>) -> BoxFuture<'a, Result<NodeOutput, NodeError>> {
        async {
            Err(NodeError::Configuration(
                "an embedder is not a step: connect it to a node's `embedder` input".to_owned(),
            ))
        }
        .boxed()
    }
    fn provide<'a>(
        &'a self,
        ctx: ProviderContext<'a>,
    ) -> BoxFuture<'a, Result<Provided, NodeError>> {
        async move {
            let config = EmbedderConfig::parse(ctx.config)
                .map_err(|e| NodeError::Configuration(e.to_string()))?;
            let connection = connection::connect(
                Target {
                    node_id: ctx.node_id,
                    credential_id: config.credential_id.as_deref(),
                    base_url: config.base_url.as_deref(),
                    default: ctx.services.models.embeddings.as_ref(),
                    default_setting: "KAI_EMBEDDINGS_BASE_URL or KAI_OPENAI_BASE_URL",
                },
                ctx.run,
                ctx.services,
            )
            .await?;
            Ok(Provided::Embedder(Arc::new(OpenAiEmbedder {
                connection,
                model: config.model,
                dimensions: config.dimensions,
                batch_size: config.batch_size,
                policy: CallPolicy {
                    timeout: config.timeout,
                    max_retries: config.max_retries,
                    backoff: Duration::from_secs(1),
                },
                probed: Default::default(),
                credential_id: config.credential_id,
            })))
        }
        .boxed()
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;
    use crate::llm::servers::ModelServersConfig;
    use crate::nodes::Providers;
    use crate::nodes::services::{NodeServices, RunIds};
    use crate::testing::fake_openai::{FakeOpenAi, stable_embedding};
    use crate::workflow::template::TemplateScope;

    fn provider<'a>(
        config: &'a Value,
        services: &'a NodeServices,
        parts: &'a (RunIds, TemplateScope, Providers, crate::json::SharedValue),
    ) -> ProviderContext<'a> {
        ProviderContext {
            node_id: "embed",
            config,
            scope: &parts.1,
            providers: &parts.2,
            run: &parts.0,
            trigger: &parts.3,
            services,
        }
    }

    #[tokio::test]
    async fn without_a_credential_it_embeds_on_the_default_server_in_batches() {
        let fake = FakeOpenAi::start(None, 6).await;
        let services = NodeServices::default()
            .with_models(&ModelServersConfig::all_at(&fake.root))
            .unwrap();
        let parts = (
            RunIds::default(),
            TemplateScope::empty(),
            Providers::none(),
            Default::default(),
        );
        let config = json!({"model": "local-e5", "batch_size": 2});
        let Ok(Provided::Embedder(embedder)) = OpenAIEmbedder
            .provide(provider(&config, &services, &parts))
            .await
        else {
            panic!("an embedder");
        };
        let texts: Vec<String> = ["a", "b", "c"].map(str::to_owned).to_vec();
        let vectors = embedder.embed(&texts).await.unwrap();
        assert_eq!(vectors[2], stable_embedding("c", 6));
        assert_eq!(fake.received_at("/v1/embeddings").len(), 2);
        assert_eq!(
            fake.received_at("/v1/embeddings")[0].body["model"],
            "local-e5"
        );
        assert_eq!(embedder.dimension().await.unwrap(), 6);

        // No credential and no default server: a credential error naming the node.
        let bare = NodeServices::default();
        let error = OpenAIEmbedder
            .provide(provider(&config, &bare, &parts))
            .await
            .err()
            .unwrap();
        assert_eq!(error.kind(), "credential");
        assert!(error.to_string().contains("node embed"), "{error}");
        assert!(
            OpenAIEmbedder
                .validate(&json!({"batch_size": 5000}))
                .is_err()
        );
    }
}
