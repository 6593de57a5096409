//! The node types this engine runs: one line per type.

use std::sync::{Arc, LazyLock};

use super::NodeType;

static NODES: LazyLock<Vec<NodeType>> = LazyLock::new(|| {
    vec![
        Arc::new(super::start::Start),
        Arc::new(super::webhook_start::WebhookStart),
        Arc::new(super::timer_start::TimerStart),
        Arc::new(super::end::End),
        Arc::new(super::condition::Condition),
        Arc::new(super::respond_to_webhook::RespondToWebhook),
        Arc::new(super::http_request::HttpRequest),
        Arc::new(super::code::Code),
        Arc::new(super::openai_chat::OpenAIChat),
        Arc::new(super::openai_chat::OpenAICompatibleNode),
        Arc::new(super::openai_embedder::OpenAIEmbedder),
        Arc::new(super::agent::Agent),
        Arc::new(super::memory::BUFFER_MEMORY),
        Arc::new(super::memory::CONVERSATION_MEMORY),
        Arc::new(super::tavily_search::TavilySearch),
        Arc::new(super::reranker::Reranker),
        Arc::new(super::web_scraper::WebScraper),
        Arc::new(super::document_loader::DocumentLoader),
        Arc::new(super::chunk_splitter::ChunkSplitter),
        Arc::new(super::pg_vector_store::PGVectorStore),
        Arc::new(super::retriever_provider::RetrieverProvider),
        Arc::new(super::retrieval_qa::RetrievalQA),
    ]
});

/// Every node type this engine runs.
pub fn registry() -> &'static [NodeType] {
    &NODES
}

/// The node type with this canonical name.
pub fn find(canonical: &str) -> Option<NodeType> {
    NODES
        .iter()
        .find(|node| node.type_name() == canonical)
        .cloned()
}
