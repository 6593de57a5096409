//! The node catalogue: what every node type declares (category, handles, config validation)
//! and how it runs. Adding a node type means adding one file here and one line in `registry`.

mod agent;
pub mod breaker;
pub mod capability;
mod chunk_splitter;
mod code;
mod condition;
pub mod custom_http;
pub mod custom_store;
mod document_loader;
mod end;
pub mod fields;
mod http_request;
mod memory;
mod openai_chat;
pub mod openai_embedder;
mod pg_vector_store;
mod registry;
mod reranker;
mod respond_to_webhook;
mod retrieval_qa;
mod retriever_provider;
pub mod retry;
pub mod services;
mod start;
mod tavily_search;
mod timer_start;
pub mod web_scraper;
mod webhook_start;

pub use capability::{Capability, Provided, ProviderInput, Providers};
pub use registry::{find, registry};

/// A node type as graphs hold it: built-in ones live for the whole process, custom ones (see
/// `custom_http`) are loaded from the database, so both are shared by reference counting.
pub type NodeType = std::sync::Arc<dyn NodeDefinition>;

use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;

use crate::jobs::WebhookResponse;
use crate::json::SharedValue;
use crate::workflow::template::TemplateScope;

/// What part a node plays in a graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeCategory {
    /// Starts a run (a graph needs at least one).
    Entry,
    /// Runs as a step.
    Processor,
    /// Ends a run; its output is the run's result.
    End,
    /// Has no step of its own: built for, and handed to, each processor it has an edge to
    /// (through one of that processor's `provider_inputs`): a chat model, an embedder, a
    /// reranker, tools, memory.
    Provider,
}

impl NodeCategory {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeCategory::Entry => "entry",
            NodeCategory::Processor => "processor",
            NodeCategory::End => "end",
            NodeCategory::Provider => "provider",
        }
    }
}

/// A configuration field that is missing or wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("field `{field}`: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// Why a node failed while running, classified so the engine knows whether to retry.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NodeError {
    /// Its configuration cannot work (a template error, a bad value): retrying cannot help.
    #[error("configuration error: {0}")]
    Configuration(String),
    /// A credential is missing, wrong or refused.
    #[error("credential error: {0}")]
    Credential(String),
    /// A connection failed or a service answered 5xx.
    #[error("network error: {0}")]
    Network(String),
    /// A service asked us to slow down, perhaps saying for how long (`Retry-After`).
    #[error("rate limited: {0}")]
    RateLimited(String, Option<Duration>),
    /// The node did not finish within its timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The vector store refused an operation.
    #[error("vector store error: {0}")]
    VectorStore(String),
}

impl NodeError {
    /// A stable label for records and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            NodeError::Configuration(_) => "configuration",
            NodeError::Credential(_) => "credential",
            NodeError::Network(_) => "network",
            NodeError::RateLimited(..) => "rate_limit",
            NodeError::Timeout(_) => "timeout",
            NodeError::VectorStore(_) => "vector_store",
        }
    }

    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            NodeError::Network(_) | NodeError::RateLimited(..) | NodeError::Timeout(_)
        )
    }

    /// How long the service asked us to wait before trying again.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            NodeError::RateLimited(_, after) => *after,
            _ => None,
        }
    }
}

/// How the engine runs one node: how long an attempt may take, how many attempts a retryable
/// failure gets, and the delay before the second attempt (doubling after each, jittered; see
/// `retry`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunPolicy {
    pub timeout: Duration,
    pub max_attempts: u32,
    pub backoff: Duration,
}

impl Default for RunPolicy {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(300),
            max_attempts: 1,
            backoff: Duration::from_secs(1),
        }
    }
}

/// What a node produced.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeOutput {
    /// Shared, not copied, with the node records and the nodes it feeds.
    pub value: SharedValue,
    /// The only output handle whose edges carry the value on; `None` means all of them.
    pub route: Option<&'static str>,
    /// The answer for a caller waiting on the webhook (`RespondToWebhook`).
    pub response: Option<WebhookResponse>,
    /// What the node records about how it worked, beside its output (a model's token usage,
    /// an agent's steps): kept on the node execution, not passed on.
    pub details: Option<Value>,
}

impl NodeOutput {
    /// A value carried on by every outgoing edge.
    pub fn all(value: impl Into<SharedValue>) -> Self {
        Self {
            value: value.into(),
            route: None,
            response: None,
            details: None,
        }
    }

    /// The same output with `details` recorded beside it.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// A value carried on only through the `route` handle.
    pub fn routed(value: impl Into<SharedValue>, route: &'static str) -> Self {
        Self {
            value: value.into(),
            route: Some(route),
            response: None,
            details: None,
        }
    }
}

/// Where a running node reports progress (streamed tokens, intermediate steps). The worker
/// publishes each report with the run's execution events as `node_progress`; reports are a view,
/// never part of the execution's record, and dropped when nobody can take them.
pub trait NodeEvents: Sync {
    fn progress(&self, node_id: &str, data: &Value);
}

/// Progress reports nobody receives (runs without events, tests).
pub struct NoEvents;

impl NodeEvents for NoEvents {
    fn progress(&self, _node_id: &str, _data: &Value) {}
}

/// What a provider node sees when it is built for a processor.
pub struct ProviderContext<'a> {
    pub node_id: &'a str,
    pub config: &'a Value,
    /// What templates in the config can refer to (empty when the config has no template).
    pub scope: &'a TemplateScope,
    /// The providers this provider consumes itself (a retriever's embedder, say).
    pub providers: &'a Providers,
    /// Whose run it is built for.
    pub run: &'a services::RunIds,
    /// The run's trigger (a manual run's inputs, a webhook's event), for settings a run may
    /// supply (a retriever's `collection_name`).
    pub trigger: &'a SharedValue,
    /// The worker process's run-time services.
    pub services: &'a services::NodeServices,
}

/// What a node sees when it runs.
pub struct NodeContext<'a> {
    pub node_id: &'a str,
    /// The node's configuration (`data.inputs` when it is an object, else `data`).
    pub config: &'a Value,
    /// Its inputs: the one active predecessor's output, or an object of them by node id.
    pub input: &'a SharedValue,
    /// The trigger's event (for a webhook, KAI-Fusion's webhook event object).
    pub trigger: &'a SharedValue,
    /// What templates in the config can refer to. Empty when the node's configuration has no
    /// template (the engine then need not keep a snapshot of the run's outputs for it).
    pub scope: &'a TemplateScope,
    /// The providers its provider inputs receive.
    pub providers: &'a Providers,
    /// Whose run it is (owner, workflow, execution).
    pub run: &'a services::RunIds,
    /// Which attempt this is (1 for the first; retries count up).
    pub attempt: u32,
    /// Where it reports progress while it runs.
    pub events: &'a dyn NodeEvents,
    /// The worker process's run-time services (guarded HTTP, credentials, logs, database).
    pub services: &'a services::NodeServices,
}

/// One node type.
pub trait NodeDefinition: Send + Sync + 'static {
    /// The canonical type name.
    fn type_name(&self) -> &str;
    fn category(&self) -> NodeCategory;
    /// Handles edges may leave from; an edge without one leaves from `output`.
    fn output_handles(&self) -> &'static [&'static str];
    /// Handles edges may arrive at; an edge without one arrives at `input`.
    fn input_handles(&self) -> &'static [&'static str];
    /// Handles at which provider nodes are handed in (`llm`, `embedder`, `tools`, `memory`...),
    /// each with what it accepts.
    fn provider_inputs(&self) -> &'static [ProviderInput] {
        &[]
    }
    /// What a `Provider` node builds for the nodes it feeds.
    fn provides(&self) -> Option<Capability> {
        None
    }
    /// Whether a provider also runs as a step of its own when a data edge reaches or leaves it
    /// (a chat model answering its input, as older KAI-Fusion exports wire `OpenAINode`).
    fn also_a_step(&self) -> bool {
        false
    }
    /// One sentence for people choosing a node.
    fn description(&self) -> &str;
    /// JSON Schema of the configuration (`data`, or `data.inputs`).
    fn config_schema(&self) -> Value;
    /// Checks a configuration when a workflow is saved.
    fn validate(&self, config: &Value) -> Result<(), ConfigError>;
    /// Timeout and retries for a node with this configuration.
    fn policy(&self, _config: &Value) -> RunPolicy {
        RunPolicy::default()
    }
    fn execute<'a>(&'a self, ctx: NodeContext<'a>) -> BoxFuture<'a, Result<NodeOutput, NodeError>>;
    /// Builds what a `Provider` node hands to the processors it feeds. Other categories are
    /// never asked (the graph only lets provider nodes feed provider inputs).
    fn provide<'a>(
        &'a self,
        _ctx: ProviderContext<'a>,
    ) -> BoxFuture<'a, Result<Provided, NodeError>> {
        Box::pin(async {
            Err(NodeError::Configuration(
                "this node type is not a provider".to_owned(),
            ))
        })
    }
}

/// What the registry publishes about a node type: its configuration schema and handles.
pub fn schema_definition(node: &dyn NodeDefinition) -> Value {
    serde_json::json!({
        "config": node.config_schema(),
        "inputs": node.input_handles(),
        "providers": node.provider_inputs().iter()
            .map(|input| serde_json::json!({"handle": input.handle, "accepts": input.accepts.as_str(),
                "required": input.required}))
            .collect::<Vec<_>>(),
        "provides": node.provides().map(Capability::as_str),
        "outputs": node.output_handles(),
        "category": node.category().as_str(),
    })
}

/// The configuration object of a node's `data`: `data.inputs` when it is an object (KAI-Fusion's
/// newer exports), else `data` itself.
pub fn config_of(data: &Value) -> &Value {
    match data.get("inputs") {
        Some(inputs) if inputs.is_object() => inputs,
        _ => data,
    }
}
