//! `ChunkSplitter` (legacy `ChunkSplitterNode`): splits the documents it receives into chunks
//! for embedding (`text-splitter`): `split_strategy` recursive_character (default), character
//! (`separator`), tokens (cl100k), markdown_headers, html_headers (`header_levels`),
//! python_code or latex; `chunk_size` (1000) and `chunk_overlap` (200, smaller than the size).
//! Answers `{documents, chunks, stats}`, each chunk with its source and character offsets.

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::fields;
use super::{ConfigError, NodeCategory, NodeContext, NodeDefinition, NodeError, NodeOutput};
use crate::documents::chunking::{
    self, DEFAULT_CHUNK_OVERLAP, DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, SplitSettings, Strategy,
};
use crate::documents::{self, Document};

pub struct ChunkSplitter;

fn settings(config: &Value) -> Result<SplitSettings, ConfigError> {
    let name =
        fields::text(config, &["split_strategy", "strategy"])?.unwrap_or("recursive_character");
    let separator = match fields::field(config, &["separator"]) {
        Some(Value::String(text)) if !text.is_empty() => Some(text.as_str()),
        _ => None,
    };
    let strategy = Strategy::parse(name, separator, fields::text(config, &["header_levels"])?)
        .ok_or_else(|| {
            ConfigError::new(
                "split_strategy",
                format!("`{name}` is not one of {}", Strategy::NAMES.join(", ")),
            )
        })?;
    let chunk_size = fields::integer(config, &["chunk_size"], 1, MAX_CHUNK_SIZE as u64)?
        .map_or(DEFAULT_CHUNK_SIZE, |s| s as usize);
    let chunk_overlap = fields::integer(config, &["chunk_overlap"], 0, MAX_CHUNK_SIZE as u64)?
        // The default overlap never exceeds a small chunk size.
        .map_or(DEFAULT_CHUNK_OVERLAP.min(chunk_size / 5), |o| o as usize);
    let settings = SplitSettings {
        strategy,
        chunk_size,
        chunk_overlap,
        strip_whitespace: fields::boolean(config, &["strip_whitespace"])?.unwrap_or(true),
    };
    settings
        .check()
        .map_err(|message| ConfigError::new("chunk_overlap", message))?;
    Ok(settings)
}

impl NodeDefinition for ChunkSplitter {
    fn type_name(&self) -> &str {
        "ChunkSplitter"
    }
    fn category(&self) -> NodeCategory {
        NodeCategory::Processor
    }
    fn output_handles(&self) -> &'static [&'static str] {
        &["output", "documents", "chunks", "stats"]
    }
    fn input_handles(&self) -> &'static [&'static str] {
        &["input", "documents"]
    }
    fn description(&self) -> &str {
        "Splits documents into chunks for embedding, each with its source and offsets."
    }
    fn config_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "split_strategy": {"type": "string", "enum": Strategy::NAMES, "default": "recursive_character"},
                "chunk_size": {"type": "integer", "minimum": 1, "maximum": MAX_CHUNK_SIZE, "default": DEFAULT_CHUNK_SIZE,
                    "description": "Characters per chunk (tokens for `tokens`)."},
                "chunk_overlap": {"type": "integer", "minimum": 0, "default": DEFAULT_CHUNK_OVERLAP,
                    "description": "Shared with the previous chunk; smaller than chunk_size."},
                "separator": {"type": "string", "default": "\n\n", "description": "For `character`."},
                "header_levels": {"type": "string", "default": "h1,h2,h3", "description": "For `html_headers`."},
                "strip_whitespace": {"type": "boolean", "default": true}
            }
        })
    }
    fn validate(&self, config: &Value) -> Result<(), ConfigError> {
        settings(config).map(drop)
    }
    fn execute<'a>(&'a self, ctx: NodeContext<'a>) -> BoxFuture<'a, Result<NodeOutput, NodeError>> {
        async move {
            let settings =
                settings(ctx.config).map_err(|e| NodeError::Configuration(e.to_string()))?;
            let input: Vec<Document> = documents::from_input(ctx.input);
            if input.is_empty() {
                return Err(NodeError::Configuration(format!(
                    "node {}: no documents in its input to split",
                    ctx.node_id
                )));
            }
            let split_settings = settings.clone();
            let (chunks, stats) = ctx
                .services
                .compute
                .run(move || chunking::split(&input, &split_settings))
                .await;
            let chunks: Vec<Value> = chunks.iter().map(Document::to_value).collect();
            Ok(NodeOutput::all(json!({
                "documents": chunks,
                "chunks": chunks,
                "stats": stats.to_value(&settings),
            })))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_checked_naming_both() {
        let error = settings(&json!({"chunk_size": 100, "chunk_overlap": 100})).unwrap_err();
        assert_eq!(
            error.to_string(),
            "field `chunk_overlap`: chunk_overlap (100) must be smaller than chunk_size (100)"
        );
        let error = settings(&json!({"split_strategy": "sentences"})).unwrap_err();
        assert!(error.to_string().contains("recursive_character"), "{error}");
        // A small size without an overlap gets a fitting default overlap.
        assert_eq!(
            settings(&json!({"chunk_size": 50})).unwrap().chunk_overlap,
            10
        );
        assert_eq!(
            settings(&json!({"chunk_size": "1000"}))
                .unwrap()
                .chunk_overlap,
            200
        );
    }
}
