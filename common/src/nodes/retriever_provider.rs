//! `RetrieverProvider`: a tool an Agent calls to search one of the owner's collections: the
//! question embedded with the connected embedder, the `search_k` nearest chunks (`similarity`
//! or `mmr`, `score_threshold`, `metadata_filter` by containment), optionally reordered by a
//! connected reranker. When the export names no collection, the run may (`collection_name`).

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use sqlx::PgPool;

use super::capability::{Embedder, Provided, ProviderInput, Reranker, Tool};
use super::fields;
use super::{
    Capability, ConfigError, NodeCategory, NodeContext, NodeDefinition, NodeError, NodeOutput,
    ProviderContext,
};
use crate::llm::openai::ToolSpec;
use crate::vectors::retrieve::{RetrievalSettings, hit_value, retrieve};
use crate::vectors::search::SearchMode;
use crate::vectors::{Collection, catalogue};

pub struct RetrieverProvider;

const DEFAULT_K: u64 = 6;

struct RetrieverConfig {
    collection: Option<String>,
    settings: RetrievalSettings,
    name: Option<String>,
    description: Option<String>,
}

/// A metadata filter given as an object or as JSON text; `{}` means none.
pub fn metadata_filter(config: &Value, names: &[&str]) -> Result<Option<Value>, ConfigError> {
    let filter = match fields::field(config, names) {
        None => return Ok(None),
        Some(Value::String(text)) if text.trim().is_empty() => return Ok(None),
        Some(Value::String(text)) => serde_json::from_str::<Value>(text)
            .map_err(|e| ConfigError::new(names[0], format!("is not JSON: {e}")))?,
        Some(other) => other.clone(),
    };
    match filter {
        Value::Object(object) if object.is_empty() => Ok(None),
        object @ Value::Object(_) => Ok(Some(object)),
        _ => Err(ConfigError::new(names[0], "must be a JSON object")),
    }
}

fn parse(config: &Value) -> Result<RetrieverConfig, ConfigError> {
    let k = fields::integer(config, &["search_k", "k"], 1, 100)?.unwrap_or(DEFAULT_K) as usize;
    let kind = fields::text(config, &["search_type"])?.unwrap_or("similarity");
    let mode = SearchMode::parse(kind, k)
        .ok_or_else(|| ConfigError::new("search_type", "must be similarity or mmr"))?;
    let filter_enabled = fields::boolean(config, &["enable_metadata_filtering"])?.unwrap_or(true);
    let filter = metadata_filter(config, &["metadata_filter"])?.filter(|_| filter_enabled);
    Ok(RetrieverConfig {
        collection: fields::text(config, &["collection_name"])?.map(str::to_owned),
        settings: RetrievalSettings {
            k,
            threshold: fields::number(config, &["score_threshold"], -1e9, 1e9)?
                .filter(|t| *t != 0.0),
            filter,
            mode,
        },
        name: fields::text(config, &["tool_name"])?.map(str::to_owned),
        description: fields::text(config, &["tool_description"])?.map(str::to_owned),
    })
}

struct RetrieverTool {
    db: PgPool,
    collection: Collection,
    embedder: Arc<dyn Embedder>,
    reranker: Option<Arc<dyn Reranker>>,
    settings: RetrievalSettings,
    node_id: String,
    name: String,
    description: String,
}

impl Tool for RetrieverTool {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.name.clone(),
            description: self.description.clone(),
            parameters: json!({
                "type": "object",
                "properties": {"query": {"type": "string", "description": "What to look up."}},
                "required": ["query"]
            }),
        }
    }

    fn call(&self, arguments: Value) -> BoxFuture<'_, Result<Value, NodeError>> {
        async move {
            let query = arguments["query"]
                .as_str()
                .map(str::trim)
                .filter(|q| !q.is_empty())
                .ok_or_else(|| {
                    NodeError::Configuration(format!("{} needs a `query`", self.name))
                })?;
            let hits = retrieve(
                &self.db,
                &self.collection,
                &self.embedder,
                self.reranker.as_ref(),
                query,
                &self.settings,
                &self.node_id,
            )
            .await?;
            Ok(json!({
                "collection": self.collection.name,
                "documents": hits.iter().map(hit_value).collect::<Vec<_>>(),
            }))
        }
        .boxed()
    }
}

/// A tool name models accept (`^[a-zA-Z0-9_-]{1,64}$`).
fn tool_name(collection: &str) -> String {
    let cleaned: String = collection
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(48)
        .collect();
    format!("search_{cleaned}")
}

impl NodeDefinition for RetrieverProvider {
    fn type_name(&self) -> &str {
        "RetrieverProvider"
    }
    fn category(&self) -> NodeCategory {
        NodeCategory::Provider
    }
    fn output_handles(&self) -> &'static [&'static str] {
        &["retriever_tool", "output"]
    }
    fn input_handles(&self) -> &'static [&'static str] {
        &[]
    }
    fn provider_inputs(&self) -> &'static [ProviderInput] {
        const INPUTS: &[ProviderInput] = &[
            ProviderInput::required("embedder", Capability::Embedder),
            ProviderInput::optional("reranker", Capability::Reranker),
        ];
        INPUTS
    }
    fn provides(&self) -> Option<Capability> {
        Some(Capability::Tool)
    }
    fn description(&self) -> &str {
        "A tool that searches one of your vector collections, for agents."
    }
    fn config_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "collection_name": {"type": "string", "description": "Unset: the run's `collection_name` input."},
                "search_k": {"type": "integer", "minimum": 1, "maximum": 100, "default": DEFAULT_K},
                "search_type": {"type": "string", "enum": ["similarity", "mmr"], "default": "similarity"},
                "score_threshold": {"type": "number", "default": 0, "description": "0: none."},
                "metadata_filter": {"type": ["object", "string"], "description": "Metadata the chunks must contain."},
                "tool_name": {"type": "string"},
                "tool_description": {"type": "string"}
            }
        })
    }
    fn validate(&self, config: &Value) -> Result<(), ConfigError> {
        parse(config).map(drop)
    }
    fn execute<'a>(&'a self, _: NodeContext<'a>) -> BoxFuture<'a, Result<NodeOutput, NodeError>> {
        async {
            Err(NodeError::Configuration(
                "a retriever is not a step: connect it to an agent's `tools` input".to_owned(),
            ))
        }
        .boxed()
    }
    fn provide<'a>(
        &'a self,
        ctx: ProviderContext<'a>,
    ) -> BoxFuture<'a, Result<Provided, NodeError>> {
        async move {
            let node = ctx.node_id;
            let config = parse(ctx.config).map_err(|e| NodeError::Configuration(e.to_string()))?;
            let name = fields::collection_name(config.collection.as_deref(), ctx.trigger, node)?;
            let db = ctx.services.database(node)?.clone();
            let collection = catalogue::find_by_name(&db, ctx.run.owner, &name)
                .await
                .map_err(|e| e.into_node_error(node))?
                .ok_or_else(|| {
                    NodeError::VectorStore(format!(
                        "node {node}: you have no collection named `{name}` (store documents in it first)"
                    ))
                })?;
            let embedder = ctx.providers.embedder("embedder").cloned().ok_or_else(|| {
                NodeError::Configuration(format!("node {node}: connect an embedder"))
            })?;
            let tool = RetrieverTool {
                name: config.name.unwrap_or_else(|| tool_name(&collection.name)),
                description: config.description.unwrap_or_else(|| {
                    format!(
                        "Searches the knowledge base `{}` and returns the passages most relevant \
                         to the query, with their sources. Use it to answer from those documents.",
                        collection.name
                    )
                }),
                db,
                collection,
                embedder,
                reranker: ctx.providers.reranker("reranker").cloned(),
                settings: config.settings,
                node_id: node.to_owned(),
            };
            Ok(Provided::Tool(Arc::new(tool)))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_names_and_search_types_are_checked() {
        let config =
            parse(&json!({"metadata_filter": "{\"lang\": \"de\"}", "search_type": "mmr"})).unwrap();
        assert_eq!(config.settings.filter, Some(json!({"lang": "de"})));
        assert!(matches!(config.settings.mode, SearchMode::Mmr { .. }));
        assert_eq!(
            parse(&json!({"metadata_filter": "{}"}))
                .unwrap()
                .settings
                .filter,
            None
        );
        assert!(parse(&json!({"metadata_filter": "[1]"})).is_err());
        assert!(parse(&json!({"search_type": "fuzzy"})).is_err());
        assert_eq!(tool_name("team docs/2026"), "search_team_docs_2026");
    }
}
