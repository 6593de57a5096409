//! KAI-Fusion's node catalogue by name: which types exist, the legacy names KAI-Fusion exports
//! still use, and which of them this engine runs (those in `crate::nodes`).

use crate::nodes::NodeType;

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

/// The node type a workflow names (canonically or by a legacy name), when this engine runs it;
/// `None` when the type is unknown or not implemented yet (see `canonical_name`).
pub fn implemented(name: &str) -> Option<NodeType> {
    crate::nodes::find(canonical_name(name)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_names_import_as_canonical_ones() {
        assert_eq!(
            implemented("WebhookTrigger").unwrap().type_name(),
            "WebhookStartNode"
        );
        assert!(implemented("NoSuchNode").is_none());
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
        for node in crate::nodes::registry() {
            assert_eq!(canonical_name(node.type_name()), Some(node.type_name()));
        }
    }
}
