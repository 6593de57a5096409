//! The document pipeline's parts, shared by its nodes (DocumentLoader, WebScraper,
//! ChunkSplitter, PGVectorStore) and the document-source jobs: documents in KAI-Fusion's shape,
//! fetching pages (robots.txt, two requests per host, the SSRF guard), readable text out of HTML
//! and PDF, and chunking with offsets.

pub mod chunking;
pub mod fetch;
pub mod html;
pub mod load;
pub mod pdf;
pub mod robots;
pub mod sources;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// A document or a chunk as KAI-Fusion's nodes pass them: `{page_content, metadata}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    pub page_content: String,
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

impl Document {
    pub fn new(page_content: impl Into<String>, metadata: Map<String, Value>) -> Self {
        Self {
            page_content: page_content.into(),
            metadata,
        }
    }

    /// Where it came from (`metadata.source`), if said.
    pub fn source(&self) -> Option<&str> {
        self.metadata.get("source").and_then(Value::as_str)
    }

    pub fn to_value(&self) -> Value {
        json!({"page_content": self.page_content, "metadata": self.metadata})
    }
}

/// The documents a node's input carries, whichever shape it has: a list of documents (or of
/// strings), one document, a splitter's `{chunks}` / loader's `{documents}` output, or several
/// of those joined by source node. Plain text is one document.
pub fn from_input(input: &Value) -> Vec<Document> {
    let mut documents = Vec::new();
    collect(input, &mut documents, 0);
    documents
}

fn collect(value: &Value, into: &mut Vec<Document>, depth: usize) {
    if depth > 4 {
        return;
    }
    match value {
        Value::Array(items) => {
            for item in items {
                collect(item, into, depth + 1);
            }
        }
        Value::String(text) if !text.trim().is_empty() => {
            into.push(Document::new(text.clone(), Map::new()));
        }
        Value::Object(object) => {
            let content = ["page_content", "content", "text"]
                .iter()
                .find_map(|key| object.get(*key).and_then(Value::as_str));
            if let Some(content) = content {
                let metadata = object
                    .get("metadata")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                into.push(Document::new(content, metadata));
                return;
            }
            // A splitter's output carries its chunks under both names: take them once.
            for key in ["chunks", "documents"] {
                if let Some(inner) = object.get(key) {
                    collect(inner, into, depth + 1);
                    return;
                }
            }
            // A join: one value per source node.
            for inner in object.values() {
                if inner.is_object() || inner.is_array() {
                    collect(inner, into, depth + 1);
                }
            }
        }
        _ => {}
    }
}

/// URLs given as text: separated by newlines, commas or spaces; only http(s).
pub fn urls_in(text: &str) -> Vec<String> {
    text.split(|c: char| c == '\n' || c == ',' || c.is_whitespace())
        .map(str::trim)
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
        .map(str::to_owned)
        .collect()
}

/// The URLs a node's input carries: text, a list, `{urls}` / `{input_urls}` / `{url}`, or the
/// sources of documents.
pub fn urls_from_input(input: &Value) -> Vec<String> {
    match input {
        Value::String(text) => urls_in(text),
        Value::Array(items) => items.iter().flat_map(urls_from_input).collect(),
        Value::Object(object) => {
            for key in ["urls", "input_urls", "url", "input", "output"] {
                if let Some(inner) = object.get(key) {
                    let found = urls_from_input(inner);
                    if !found.is_empty() {
                        return found;
                    }
                }
            }
            Vec::new()
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_read_from_every_shape_nodes_hand_on() {
        let doc = json!({"page_content": "a", "metadata": {"source": "s"}});
        assert_eq!(from_input(&doc)[0].source(), Some("s"));
        let splitter = json!({"documents": [doc.clone()], "chunks": [doc.clone()], "stats": {}});
        assert_eq!(from_input(&splitter).len(), 1);
        let join = json!({"scraper": [doc.clone()], "loader": {"documents": [doc]}});
        assert_eq!(from_input(&join).len(), 2);
        assert_eq!(
            from_input(&json!("plain text"))[0].page_content,
            "plain text"
        );
        assert!(from_input(&json!(42)).is_empty());
    }

    #[test]
    fn urls_come_from_text_lists_and_objects() {
        assert_eq!(
            urls_in("https://a.example/x\nhttps://b.example, ftp://c nothing"),
            ["https://a.example/x", "https://b.example"]
        );
        assert_eq!(
            urls_from_input(&json!({"input": "https://a.example"})),
            ["https://a.example"]
        );
        assert_eq!(
            urls_from_input(&json!(["https://a.example", "https://b.example"])).len(),
            2
        );
    }
}
