//! `PGVectorStore` (legacy `VectorStoreOrchestrator`, `PGVectorStoreNode`): embeds the documents
//! or chunks it receives with the connected embedder and stores them in the owner's collection
//! `collection_name` (created on first use, with the embedder recorded for retrievers). A
//! document stored again replaces its chunks; `pre_delete_collection` empties the collection
//! first, in the same transaction. `metadata_strategy`: `merge` (the document's metadata and
//! `custom_metadata`, which wins), `replace` (`custom_metadata` only) or `document_only`.
//! When the export names no collection, the run may (`collection_name` in its inputs).

use std::collections::HashMap;
use std::time::Instant;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Map, Value, json};

use super::capability::ProviderInput;
use super::fields;
use super::{
    Capability, ConfigError, NodeCategory, NodeContext, NodeDefinition, NodeError, NodeOutput,
};
use crate::documents::chunking::document_id;
use crate::documents::{self, Document};
use crate::vectors::write::{self, NewChunk};
use crate::vectors::{CollectionSpec, Distance, EmbedderSpec, IndexKind, IndexParams, catalogue};

pub struct PGVectorStore;

const DEFAULT_K: u64 = 6;
const DEFAULT_BATCH: u64 = 100;
const STRATEGIES: &[&str] = &["merge", "replace", "document_only"];

struct StoreConfig {
    collection: Option<String>,
    pre_delete: bool,
    custom_metadata: Map<String, Value>,
    strategy: &'static str,
    dimension: Option<usize>,
    distance: Distance,
    search_k: u64,
    threshold: f64,
    batch_size: usize,
    index: IndexKind,
}

fn parse(config: &Value) -> Result<StoreConfig, ConfigError> {
    let custom_metadata = match fields::field(config, &["custom_metadata"]) {
        None => Map::new(),
        Some(Value::Object(object)) => object.clone(),
        Some(Value::String(text)) if text.trim().is_empty() => Map::new(),
        Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(object)) => object,
            _ => return Err(ConfigError::new("custom_metadata", "must be a JSON object")),
        },
        Some(_) => return Err(ConfigError::new("custom_metadata", "must be a JSON object")),
    };
    let strategy = fields::text(config, &["metadata_strategy"])?.unwrap_or("merge");
    let strategy = STRATEGIES
        .iter()
        .find(|s| **s == strategy)
        .copied()
        .ok_or_else(|| {
            ConfigError::new(
                "metadata_strategy",
                format!("`{strategy}` is not one of {}", STRATEGIES.join(", ")),
            )
        })?;
    let distance =
        fields::text(config, &["search_algorithm", "distance_strategy"])?.unwrap_or("cosine");
    let distance = Distance::parse(distance).ok_or_else(|| {
        ConfigError::new(
            "search_algorithm",
            format!("`{distance}` is not cosine, euclidean or inner_product"),
        )
    })?;
    Ok(StoreConfig {
        collection: fields::text(config, &["collection_name"])?.map(str::to_owned),
        pre_delete: fields::boolean(config, &["pre_delete_collection"])?.unwrap_or(false),
        custom_metadata,
        strategy,
        dimension: fields::integer(config, &["embedding_dimension"], 0, 16_000)?
            .filter(|d| *d > 0)
            .map(|d| d as usize),
        distance,
        search_k: fields::integer(config, &["search_k"], 1, 1000)?.unwrap_or(DEFAULT_K),
        threshold: fields::number(config, &["score_threshold"], -1e9, 1e9)?.unwrap_or(0.0),
        batch_size: fields::integer(config, &["batch_size"], 1, 5000)?.unwrap_or(DEFAULT_BATCH)
            as usize,
        index: if fields::boolean(config, &["enable_hnsw_index"])?.unwrap_or(true) {
            IndexKind::Hnsw
        } else {
            IndexKind::None
        },
    })
}

/// The chunk's metadata under the node's strategy.
fn metadata_of(document: &Document, config: &StoreConfig) -> Map<String, Value> {
    match config.strategy {
        "replace" => config.custom_metadata.clone(),
        "document_only" => document.metadata.clone(),
        _ => {
            let mut merged = document.metadata.clone();
            merged.extend(config.custom_metadata.clone());
            merged
        }
    }
}

/// Each document's id and place: its `doc_id`/source and `chunk_index` when it has them (a
/// splitter's chunks), else its order among the pieces of the same document.
fn places(documents: &[Document]) -> Vec<(String, i32)> {
    let mut next: HashMap<String, i32> = HashMap::new();
    let mut taken: std::collections::HashSet<(String, i32)> = Default::default();
    documents
        .iter()
        .map(|document| {
            let id = document_id(document);
            let given = document
                .metadata
                .get("chunk_index")
                .and_then(Value::as_i64)
                .map(|i| i as i32);
            let index = match given {
                Some(index) if !taken.contains(&(id.clone(), index)) => index,
                _ => {
                    let counter = next.entry(id.clone()).or_insert(0);
                    while taken.contains(&(id.clone(), *counter)) {
                        *counter += 1;
                    }
                    *counter
                }
            };
            taken.insert((id.clone(), index));
            (id, index)
        })
        .collect()
}

impl NodeDefinition for PGVectorStore {
    fn type_name(&self) -> &str {
        "PGVectorStore"
    }
    fn category(&self) -> NodeCategory {
        NodeCategory::Processor
    }
    fn output_handles(&self) -> &'static [&'static str] {
        &["output", "result", "storage_stats"]
    }
    fn input_handles(&self) -> &'static [&'static str] {
        &["input", "documents"]
    }
    fn provider_inputs(&self) -> &'static [ProviderInput] {
        const INPUTS: &[ProviderInput] =
            &[ProviderInput::required("embedder", Capability::Embedder)];
        INPUTS
    }
    fn description(&self) -> &str {
        "Embeds documents with the connected embedder and stores them in a pgvector collection."
    }
    fn config_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "collection_name": {"type": "string", "description": "Your collection; created on first use. Unset: the run's `collection_name` input."},
                "pre_delete_collection": {"type": "boolean", "default": false},
                "custom_metadata": {"type": ["object", "string"], "description": "Added to every chunk's metadata."},
                "metadata_strategy": {"type": "string", "enum": STRATEGIES, "default": "merge"},
                "embedding_dimension": {"type": "integer", "minimum": 0, "default": 0, "description": "0: the embedder's."},
                "search_algorithm": {"type": "string", "enum": ["cosine", "euclidean", "inner_product"], "default": "cosine"},
                "search_k": {"type": "integer", "minimum": 1, "maximum": 1000, "default": DEFAULT_K},
                "score_threshold": {"type": "number", "default": 0},
                "batch_size": {"type": "integer", "minimum": 1, "maximum": 5000, "default": DEFAULT_BATCH},
                "enable_hnsw_index": {"type": "boolean", "default": true}
            }
        })
    }
    fn validate(&self, config: &Value) -> Result<(), ConfigError> {
        parse(config).map(drop)
    }
    fn execute<'a>(&'a self, ctx: NodeContext<'a>) -> BoxFuture<'a, Result<NodeOutput, NodeError>> {
        async move {
            let started = Instant::now();
            let node = ctx.node_id;
            let config = parse(ctx.config).map_err(|e| NodeError::Configuration(e.to_string()))?;
            let name = fields::collection_name(config.collection.as_deref(), ctx.trigger, node)?;
            let db = ctx.services.database(node)?;
            let embedder = ctx.providers.embedder("embedder").ok_or_else(|| {
                NodeError::Configuration(format!("node {node}: connect an embedder"))
            })?;
            let documents = documents::from_input(ctx.input);
            if documents.is_empty() && !config.pre_delete {
                return Err(NodeError::Configuration(format!(
                    "node {node}: no documents in its input to store"
                )));
            }
            // Embedded first: the vectors' own size is the truth (a local model may answer to an
            // OpenAI model's name with another size).
            let texts: Vec<String> = documents.iter().map(|d| d.page_content.clone()).collect();
            let mut vectors = Vec::with_capacity(texts.len());
            for batch in texts.chunks(config.batch_size) {
                vectors.extend(embedder.embed(batch).await?);
            }
            let dimension = match (config.dimension, vectors.first()) {
                (Some(dimension), _) => dimension,
                (None, Some(first)) => first.len(),
                (None, None) => embedder.dimension().await?,
            };
            let spec = CollectionSpec {
                name: name.clone(),
                dimension,
                distance: config.distance,
                index: config.index,
                params: IndexParams::default(),
                embedder: Some(EmbedderSpec {
                    credential_id: embedder.credential_id().map(str::to_owned),
                    model: embedder.model().to_owned(),
                }),
            };
            let collection = catalogue::find_or_create(db, ctx.run.owner, &spec)
                .await
                .map_err(|e| e.into_node_error(node))?;
            if collection.dimension != dimension {
                return Err(NodeError::VectorStore(format!(
                    "node {node}: collection `{name}` holds {} dimensions; the embedder `{}` gives {dimension}",
                    collection.dimension,
                    embedder.model()
                )));
            }
            if let Some(wrong) = vectors.iter().find(|v| v.len() != dimension) {
                return Err(NodeError::VectorStore(format!(
                    "node {node}: the embedder `{}` returned {} dimensions; collection `{name}` expects {dimension}",
                    embedder.model(),
                    wrong.len()
                )));
            }
            let chunks: Vec<NewChunk> = documents
                .iter()
                .zip(places(&documents))
                .zip(vectors)
                .map(|((document, (document_id, chunk_index)), embedding)| NewChunk {
                    document_id,
                    chunk_index,
                    content: document.page_content.clone(),
                    metadata: Value::Object(metadata_of(document, &config)),
                    embedding,
                })
                .collect();
            let summary = write::replace_documents(db, &collection, &chunks, config.pre_delete)
                .await
                .map_err(|e| e.into_node_error(node))?;
            ctx.services.vector_written(collection.id);
            let stored = catalogue::get(db, ctx.run.owner, collection.id)
                .await
                .map_err(|e| e.into_node_error(node))?;
            Ok(NodeOutput::all(json!({
                "result": {
                    "collection_id": collection.id,
                    "collection_name": collection.name,
                    "search_k": config.search_k,
                    "score_threshold": config.threshold,
                    "distance_strategy": collection.distance.as_str(),
                },
                "storage_stats": {
                    "documents_stored": summary.document_ids.len(),
                    "chunks_written": summary.chunks_written,
                    "chunks_replaced": summary.chunks_replaced,
                    "collection_chunks": stored.chunk_count,
                    "embedding_dimension": dimension,
                    "embedding_model": embedder.model(),
                    "processing_time_ms": started.elapsed().as_millis() as u64,
                },
                "document_ids": summary.document_ids,
            })))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_places_come_from_metadata_else_their_order() {
        let chunk = |source: &str, index: Option<i64>| {
            let mut metadata = Map::new();
            metadata.insert("source".into(), json!(source));
            if let Some(index) = index {
                metadata.insert("chunk_index".into(), json!(index));
            }
            Document::new("text", metadata)
        };
        let places = places(&[
            chunk("a", Some(0)),
            chunk("a", Some(1)),
            chunk("b", None),
            chunk("b", None),
            chunk("a", Some(1)),
        ]);
        assert_eq!(
            places,
            [
                ("a".into(), 0),
                ("a".into(), 1),
                ("b".into(), 0),
                ("b".into(), 1),
                ("a".into(), 2)
            ]
        );
    }

    #[test]
    fn metadata_strategies_and_bad_fields() {
        let mut base = Map::new();
        base.insert("source".into(), json!("s"));
        base.insert("lang".into(), json!("en"));
        let document = Document::new("x", base);
        let config = |strategy: &str| {
            parse(&json!({"metadata_strategy": strategy, "custom_metadata": "{\"lang\": \"de\", \"team\": 1}"}))
                .unwrap()
        };
        assert_eq!(metadata_of(&document, &config("merge"))["lang"], "de");
        assert_eq!(metadata_of(&document, &config("merge"))["source"], "s");
        assert!(
            metadata_of(&document, &config("replace"))
                .get("source")
                .is_none()
        );
        assert_eq!(
            metadata_of(&document, &config("document_only"))["lang"],
            "en"
        );
        assert!(parse(&json!({"metadata_strategy": "mix"})).is_err());
        assert!(parse(&json!({"search_algorithm": "manhattan"})).is_err());
        assert_eq!(
            parse(&json!({"search_algorithm": "euclidean"}))
                .unwrap()
                .distance,
            Distance::L2
        );
    }
}
