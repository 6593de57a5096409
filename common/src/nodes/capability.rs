//! What provider nodes hand to the nodes they feed, typed: a provider declares the capability it
//! provides, a consumer's provider input declares the one it accepts, and a wrong wiring is
//! refused when the workflow is saved (see `workflow::graph`), never found at run time.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value;

use super::NodeError;
use crate::llm::openai::{ChatMessage, ChatResponse, ToolSpec};

/// A kind of thing a provider node builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    ChatModel,
    Embedder,
    Tool,
    Memory,
    Reranker,
}

impl Capability {
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::ChatModel => "chat_model",
            Capability::Embedder => "embedder",
            Capability::Tool => "tool",
            Capability::Memory => "memory",
            Capability::Reranker => "reranker",
        }
    }
}

/// A consumer's input for providers: its handle and what it accepts there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderInput {
    pub handle: &'static str,
    pub accepts: Capability,
    /// Whether a workflow is refused without a provider here (an agent's model).
    pub required: bool,
}

impl ProviderInput {
    pub const fn required(handle: &'static str, accepts: Capability) -> Self {
        Self {
            handle,
            accepts,
            required: true,
        }
    }

    pub const fn optional(handle: &'static str, accepts: Capability) -> Self {
        Self {
            handle,
            accepts,
            required: false,
        }
    }
}

/// Called with each piece of text a model streams.
pub type TokenSink<'a> = &'a (dyn Fn(&str) + Sync);

/// A chat model (OpenAIChat, OpenAICompatibleNode).
pub trait ChatModel: Send + Sync {
    /// The model's name, for records.
    fn model(&self) -> &str;
    /// Whether the author asked for streamed answers.
    fn streams(&self) -> bool;
    /// One answer to `messages`, offering `tools`; streamed text goes to `tokens` as it arrives
    /// when the model streams. Retries 429/5xx itself under its node's policy.
    fn complete<'a>(
        &'a self,
        messages: &'a [ChatMessage],
        tools: &'a [ToolSpec],
        tokens: Option<TokenSink<'a>>,
    ) -> BoxFuture<'a, Result<ChatResponse, NodeError>>;
}

/// Turns text into vectors (OpenAIEmbedder).
pub trait Embedder: Send + Sync {
    fn model(&self) -> &str;
    /// The vectors of `texts`, in order (none for none: no call is made).
    fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>, NodeError>>;
    /// How many dimensions its vectors have: known for the model or configured, else probed
    /// once with a call.
    fn dimension(&self) -> BoxFuture<'_, Result<usize, NodeError>>;
    /// The credential it uses, if any: recorded with a collection it fills so that a retriever
    /// without an embedder of its own embeds questions the same way.
    fn credential_id(&self) -> Option<&str> {
        None
    }
}

/// A tool an agent may call (TavilySearch, a retriever).
pub trait Tool: Send + Sync {
    /// Its name, description and the JSON Schema of its arguments, as offered to the model.
    fn spec(&self) -> ToolSpec;
    /// Runs it with the model's arguments; its answer goes back to the model as text or JSON.
    fn call(&self, arguments: Value) -> BoxFuture<'_, Result<Value, NodeError>>;
}

/// A conversation's memory (BufferMemory, ConversationMemory), per session.
pub trait Memory: Send + Sync {
    /// The turns to show the model before the new one, oldest first.
    fn load<'a>(&'a self, session: &'a str) -> BoxFuture<'a, Result<Vec<ChatMessage>, NodeError>>;
    /// Keeps a finished turn.
    fn save<'a>(
        &'a self,
        session: &'a str,
        user: &'a str,
        assistant: &'a str,
    ) -> BoxFuture<'a, Result<(), NodeError>>;
}

/// Orders documents by relevance to a query (Reranker).
pub trait Reranker: Send + Sync {
    /// `cohere` or the local `bm25`, said in outputs so a user knows which ranked them.
    fn method(&self) -> &str;
    /// Up to `top_n` of `documents`, most relevant first, as (index in `documents`, score).
    fn rerank<'a>(
        &'a self,
        query: &'a str,
        documents: &'a [String],
        top_n: Option<usize>,
    ) -> BoxFuture<'a, Result<Vec<(usize, f64)>, NodeError>>;
}

/// What a provider node built.
#[derive(Clone)]
pub enum Provided {
    ChatModel(Arc<dyn ChatModel>),
    Embedder(Arc<dyn Embedder>),
    Tool(Arc<dyn Tool>),
    Memory(Arc<dyn Memory>),
    Reranker(Arc<dyn Reranker>),
}

impl Provided {
    pub fn capability(&self) -> Capability {
        match self {
            Provided::ChatModel(_) => Capability::ChatModel,
            Provided::Embedder(_) => Capability::Embedder,
            Provided::Tool(_) => Capability::Tool,
            Provided::Memory(_) => Capability::Memory,
            Provided::Reranker(_) => Capability::Reranker,
        }
    }
}

/// The providers handed to a node, by the input handle their edge arrives at.
#[derive(Default, Clone)]
pub struct Providers {
    entries: Vec<(String, String, Provided)>,
}

impl Providers {
    /// An empty set, for nodes no provider feeds.
    pub const fn none() -> Self {
        Self {
            entries: Vec::new(),
        }
    }

    pub fn push(&mut self, handle: &str, node_id: &str, provided: Provided) {
        self.entries
            .push((handle.to_owned(), node_id.to_owned(), provided));
    }

    /// Every provider at `handle` (several tools, say), in edge order, with its node's id.
    pub fn all<'a>(&'a self, handle: &'a str) -> impl Iterator<Item = (&'a str, &'a Provided)> {
        self.entries
            .iter()
            .filter(move |(h, _, _)| h == handle)
            .map(|(_, node, p)| (node.as_str(), p))
    }

    pub fn chat_model(&self, handle: &str) -> Option<&Arc<dyn ChatModel>> {
        self.entries.iter().find_map(|(h, _, p)| match p {
            Provided::ChatModel(model) if h == handle => Some(model),
            _ => None,
        })
    }

    pub fn embedder(&self, handle: &str) -> Option<&Arc<dyn Embedder>> {
        self.entries.iter().find_map(|(h, _, p)| match p {
            Provided::Embedder(embedder) if h == handle => Some(embedder),
            _ => None,
        })
    }

    pub fn memory(&self, handle: &str) -> Option<&Arc<dyn Memory>> {
        self.entries.iter().find_map(|(h, _, p)| match p {
            Provided::Memory(memory) if h == handle => Some(memory),
            _ => None,
        })
    }

    pub fn reranker(&self, handle: &str) -> Option<&Arc<dyn Reranker>> {
        self.entries.iter().find_map(|(h, _, p)| match p {
            Provided::Reranker(reranker) if h == handle => Some(reranker),
            _ => None,
        })
    }

    /// Every tool at `handle`, in edge order.
    pub fn tools<'a>(&'a self, handle: &'a str) -> impl Iterator<Item = &'a Arc<dyn Tool>> {
        self.all(handle).filter_map(|(_, p)| match p {
            Provided::Tool(tool) => Some(tool),
            _ => None,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
