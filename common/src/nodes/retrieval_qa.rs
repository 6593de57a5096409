//! `RetrievalQA` (legacy `RetrievalQANode`): answers a question from one of the owner's
//! collections: retrieves the `k` most relevant chunks (reranked when a reranker is connected),
//! asks the connected chat model (else the deployment's) to answer from them alone, and returns
//! the answer with its sources. The question is `question` (templated), else the run's
//! `question`/`query`, else the input's text; the collection is `collection_name`, else the
//! one a PGVectorStore before it filled, else the run's `collection_name`. Without an embedder
//! of its own it embeds the question as the collection was embedded.

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use uuid::Uuid;

use super::capability::{ChatModel, Provided, ProviderInput};
use super::fields;
use super::retriever_provider::metadata_filter;
use super::{
    Capability, ConfigError, NodeCategory, NodeContext, NodeDefinition, NodeError, NodeOutput,
    ProviderContext,
};
use crate::llm::openai::ChatMessage;
use crate::vectors::retrieve::{RetrievalSettings, hit_value, retrieve};
use crate::vectors::search::SearchMode;
use crate::vectors::{Collection, catalogue, embedding};
use crate::workflow::template;

pub struct RetrievalQA;

const DEFAULT_K: u64 = 4;
const DEFAULT_PROMPT: &str = "Answer the question using only the numbered context passages \
below. Cite the passages you used as [1], [2]... If the context does not contain the answer, \
say that you do not know.";

struct QaConfig {
    question: Option<String>,
    collection: Option<String>,
    settings: RetrievalSettings,
    system_prompt: String,
    return_sources: bool,
    model_name: Option<String>,
}

fn parse(config: &Value) -> Result<QaConfig, ConfigError> {
    let k =
        fields::integer(config, &["k", "search_k", "top_k"], 1, 100)?.unwrap_or(DEFAULT_K) as usize;
    let kind = fields::text(config, &["search_type"])?.unwrap_or("similarity");
    let mode = SearchMode::parse(kind, k)
        .ok_or_else(|| ConfigError::new("search_type", "must be similarity or mmr"))?;
    if let Some(chain) = fields::text(config, &["chain_type"])?
        && chain != "stuff"
    {
        return Err(ConfigError::new(
            "chain_type",
            format!("`{chain}` is not supported; `stuff` puts the passages in one prompt"),
        ));
    }
    let question = fields::text(config, &["question", "query"])?.map(str::to_owned);
    if let Some(text) = &question {
        template::check(text).map_err(|e| ConfigError::new("question", e))?;
    }
    Ok(QaConfig {
        question,
        collection: fields::text(config, &["collection_name"])?.map(str::to_owned),
        settings: RetrievalSettings {
            k,
            threshold: fields::number(config, &["score_threshold"], -1e9, 1e9)?
                .filter(|t| *t != 0.0),
            filter: metadata_filter(config, &["metadata_filter"])?,
            mode,
        },
        system_prompt: fields::text(config, &["system_prompt", "prompt"])?
            .unwrap_or(DEFAULT_PROMPT)
            .to_owned(),
        return_sources: fields::boolean(config, &["return_source_documents"])?.unwrap_or(true),
        model_name: fields::text(config, &["model_name", "model"])?.map(str::to_owned),
    })
}

/// The question to answer.
async fn question_of(ctx: &NodeContext<'_>, config: &QaConfig) -> Result<String, NodeError> {
    if let Some(text) = &config.question {
        return template::render_bounded(text, ctx.scope, ctx.input, &ctx.services.compute)
            .await
            .map_err(|e| NodeError::Configuration(format!("field `question`: {e}")));
    }
    if let Some(asked) = fields::from_run(ctx.trigger, &["question", "query"]) {
        return Ok(asked);
    }
    let input = &**ctx.input;
    for key in ["question", "query"] {
        if let Some(text) = input[key].as_str().filter(|t| !t.trim().is_empty()) {
            return Ok(text.to_owned());
        }
    }
    match input {
        Value::String(text) if !text.trim().is_empty() => Ok(text.clone()),
        _ => Err(NodeError::Configuration(format!(
            "node {}: no question (set `question`, or give the run a `question` input)",
            ctx.node_id
        ))),
    }
}

/// The collection to answer from.
async fn collection_of(ctx: &NodeContext<'_>, config: &QaConfig) -> Result<Collection, NodeError> {
    let node = ctx.node_id;
    let db = ctx.services.database(node)?;
    let owner = ctx.run.owner;
    // A vector store before this node says which collection it filled.
    let stored = &ctx.input["result"];
    if config.collection.is_none()
        && let Some(id) = stored["collection_id"]
            .as_str()
            .and_then(|id| Uuid::parse_str(id).ok())
    {
        return catalogue::get(db, owner, id)
            .await
            .map_err(|e| e.into_node_error(node));
    }
    let name = config
        .collection
        .clone()
        .or_else(|| stored["collection_name"].as_str().map(str::to_owned))
        .or_else(|| fields::from_run(ctx.trigger, &["collection_name"]))
        .ok_or_else(|| {
            NodeError::Configuration(format!(
                "node {node}: no collection (set `collection_name`, connect a vector store, or \
                 give the run a `collection_name` input)"
            ))
        })?;
    catalogue::find_by_name(db, owner, &name)
        .await
        .map_err(|e| e.into_node_error(node))?
        .ok_or_else(|| {
            NodeError::VectorStore(format!(
                "node {node}: you have no collection named `{name}`"
            ))
        })
}

/// The connected chat model, else the deployment's.
async fn model_of(
    ctx: &NodeContext<'_>,
    config: &QaConfig,
) -> Result<Arc<dyn ChatModel>, NodeError> {
    if let Some(model) = ctx.providers.chat_model("llm") {
        return Ok(model.clone());
    }
    let mut chat_config = json!({});
    if let Some(model) = &config.model_name {
        chat_config["model_name"] = json!(model);
    }
    let provided = super::openai_chat::OpenAIChat
        .provide(ProviderContext {
            node_id: ctx.node_id,
            config: &chat_config,
            scope: ctx.scope,
            providers: ctx.providers,
            run: ctx.run,
            trigger: ctx.trigger,
            services: ctx.services,
        })
        .await?;
    match provided {
        Provided::ChatModel(model) => Ok(model),
        _ => Err(NodeError::Configuration(
            "the chat node provided something else".into(),
        )),
    }
}

impl NodeDefinition for RetrievalQA {
    fn type_name(&self) -> &str {
        "RetrievalQA"
    }
    fn category(&self) -> NodeCategory {
        NodeCategory::Processor
    }
    fn output_handles(&self) -> &'static [&'static str] {
        &["output", "answer", "sources"]
    }
    fn input_handles(&self) -> &'static [&'static str] {
        &["input", "question", "retriever"]
    }
    fn provider_inputs(&self) -> &'static [ProviderInput] {
        const INPUTS: &[ProviderInput] = &[
            ProviderInput::optional("llm", Capability::ChatModel),
            ProviderInput::optional("embedder", Capability::Embedder),
            ProviderInput::optional("reranker", Capability::Reranker),
            ProviderInput::optional("memory", Capability::Memory),
        ];
        INPUTS
    }
    fn description(&self) -> &str {
        "Answers a question from a vector collection with a chat model, citing its sources."
    }
    fn config_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "question": {"type": "string", "description": "Templated; unset: the run's `question`, else the input."},
                "collection_name": {"type": "string", "description": "Unset: the vector store before it, else the run's `collection_name`."},
                "k": {"type": "integer", "minimum": 1, "maximum": 100, "default": DEFAULT_K},
                "search_type": {"type": "string", "enum": ["similarity", "mmr"], "default": "similarity"},
                "score_threshold": {"type": "number", "default": 0},
                "metadata_filter": {"type": ["object", "string"]},
                "system_prompt": {"type": "string", "default": DEFAULT_PROMPT},
                "return_source_documents": {"type": "boolean", "default": true},
                "chain_type": {"type": "string", "enum": ["stuff"], "default": "stuff"},
                "model_name": {"type": "string", "description": "For the deployment's model when no llm is connected."}
            }
        })
    }
    fn validate(&self, config: &Value) -> Result<(), ConfigError> {
        parse(config).map(drop)
    }
    fn execute<'a>(&'a self, ctx: NodeContext<'a>) -> BoxFuture<'a, Result<NodeOutput, NodeError>> {
        async move {
            let node = ctx.node_id;
            let config = parse(ctx.config).map_err(|e| NodeError::Configuration(e.to_string()))?;
            let question = question_of(&ctx, &config).await?;
            let collection = collection_of(&ctx, &config).await?;
            let embedder = match ctx.providers.embedder("embedder") {
                Some(embedder) => embedder.clone(),
                None => embedding::collection_embedder(&collection, ctx.services).await?,
            };
            let db = ctx.services.db.as_ref().expect("checked by collection_of");
            let hits = retrieve(
                db,
                &collection,
                &embedder,
                ctx.providers.reranker("reranker"),
                &question,
                &config.settings,
                node,
            )
            .await?;
            let context: Vec<String> = hits
                .iter()
                .enumerate()
                .map(|(i, hit)| {
                    let source = hit.metadata["source"].as_str().unwrap_or(&hit.document_id);
                    format!("[{}] (source: {source})\n{}", i + 1, hit.content)
                })
                .collect();
            let session = super::agent::session_of(&ctx);
            let memory = ctx.providers.memory("memory");
            let mut messages = vec![ChatMessage::new("system", config.system_prompt.clone())];
            if let Some(memory) = memory {
                messages.extend(memory.load(&session).await?);
            }
            messages.push(ChatMessage::new(
                "user",
                format!(
                    "Context:\n{}\n\nQuestion: {question}",
                    if context.is_empty() {
                        "(no passages found)".to_owned()
                    } else {
                        context.join("\n\n")
                    }
                ),
            ));
            let model = model_of(&ctx, &config).await?;
            let answer = model.complete(&messages, &[], None).await?;
            let text = answer.message.content.clone().unwrap_or_default();
            if let Some(memory) = memory {
                memory.save(&session, &question, &text).await?;
            }
            let sources: Vec<Value> = if config.return_sources {
                hits.iter().map(hit_value).collect()
            } else {
                Vec::new()
            };
            Ok(NodeOutput::all(json!({
                "output": text,
                "answer": text,
                "question": question,
                "sources": sources,
                "collection": collection.name,
                "model": model.model(),
                "usage": answer.usage,
            })))
        }
        .boxed()
    }
}
