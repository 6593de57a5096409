//! The node types this engine can run, the rest of KAI-Fusion's catalogue it knows by name, and
//! the legacy names KAI-Fusion exports still use.

/// A node type the engine knows how to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeType {
    /// Manual entry point; its output is `initial_input` or the run's input.
    Start,
    /// Entry point of a webhook-triggered run; its output is the webhook event.
    WebhookStart,
    /// Terminal node; its output is its input.
    End,
}

/// Every node type of KAI-Fusion's catalogue, by canonical name, with the names older exports
/// use for it. A workflow naming one that is not implemented yet is refused with its name, never
/// imported with the node silently dropped.
const CATALOGUE: &[(&str, &[&str])] = &[
    ("StartNode", &["Start"]),
    ("WebhookStartNode", &["WebhookTrigger", "WebhookNode"]),
    ("EndNode", &["End"]),
    ("TimerStartNode", &["TimerStart"]),
    ("ConditionNode", &[]),
    ("RespondToWebhook", &[]),
    ("OpenAIChat", &["OpenAINode"]),
    ("OpenAICompatibleNode", &[]),
    ("HttpRequest", &["HttpClientNode"]),
    (
        "OpenAIEmbedder",
        &["OpenAIEmbeddingsProvider", "OpenAIEmbedderNode"],
    ),
    (
        "PGVectorStore",
        &["VectorStoreOrchestrator", "PGVectorStoreNode"],
    ),
    ("Reranker", &["CohereRerankerProvider", "RerankerNode"]),
    ("Agent", &["ReactAgentNode", "ToolAgentNode", "ReactAgent"]),
    ("BufferMemory", &["BufferMemoryNode"]),
    ("ConversationMemory", &[]),
    ("RetrievalQA", &["RetrievalQANode"]),
    ("RetrieverProvider", &[]),
    ("TavilySearch", &[]),
    ("WebScraper", &["WebScraperNode"]),
    ("ChunkSplitter", &["ChunkSplitterNode"]),
    ("DocumentLoader", &["DocumentLoaderNode"]),
    ("CodeNode", &[]),
];

/// The canonical name of a catalogue type written as `name` (itself or a legacy name).
pub fn canonical_name(name: &str) -> Option<&'static str> {
    CATALOGUE
        .iter()
        .find(|(canonical, aliases)| *canonical == name || aliases.contains(&name))
        .map(|(canonical, _)| *canonical)
}

impl NodeType {
    /// Resolves a type name as written in a workflow, including KAI-Fusion's legacy names;
    /// `None` when the type is unknown or not implemented yet (see `canonical_name`).
    pub fn parse(name: &str) -> Option<Self> {
        match canonical_name(name)? {
            "StartNode" => Some(Self::Start),
            "WebhookStartNode" => Some(Self::WebhookStart),
            "EndNode" => Some(Self::End),
            _ => None,
        }
    }

    /// The canonical type name (what is stored and reported).
    pub fn name(self) -> &'static str {
        match self {
            Self::Start => "StartNode",
            Self::WebhookStart => "WebhookStartNode",
            Self::End => "EndNode",
        }
    }

    /// Entry points start a run: a graph needs at least one.
    pub fn is_entry(self) -> bool {
        matches!(self, Self::Start | Self::WebhookStart)
    }

    /// Every type this engine can run, by canonical name.
    pub fn all() -> &'static [NodeType] {
        &[Self::Start, Self::WebhookStart, Self::End]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_names_import_as_canonical_ones() {
        assert_eq!(
            NodeType::parse("WebhookTrigger"),
            Some(NodeType::WebhookStart)
        );
        assert_eq!(
            NodeType::parse("WebhookStartNode").unwrap().name(),
            "WebhookStartNode"
        );
        assert_eq!(NodeType::parse("NoSuchNode"), None);
        assert_eq!(
            canonical_name("OpenAIEmbeddingsProvider"),
            Some("OpenAIEmbedder")
        );
        assert_eq!(
            canonical_name("VectorStoreOrchestrator"),
            Some("PGVectorStore")
        );
        assert_eq!(canonical_name("NoSuchNode"), None);
    }

    #[test]
    fn every_implemented_type_is_in_the_catalogue() {
        for node_type in NodeType::all() {
            assert_eq!(canonical_name(node_type.name()), Some(node_type.name()));
        }
    }
}
