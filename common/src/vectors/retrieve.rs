//! Retrieval for the nodes that answer from a collection (RetrieverProvider's tool,
//! RetrievalQA): the question embedded, the collection searched, the hits optionally re-ordered
//! by a reranker (which then says its method).

use std::sync::Arc;

use serde_json::{Value, json};

use super::catalogue::Collection;
use super::search::{self, Hit, SearchMode, SearchRequest};
use crate::nodes::NodeError;
use crate::nodes::capability::{Embedder, Reranker};
use sqlx::PgPool;

/// What to retrieve.
#[derive(Debug, Clone)]
pub struct RetrievalSettings {
    pub k: usize,
    pub threshold: Option<f64>,
    pub filter: Option<Value>,
    pub mode: SearchMode,
}

/// The collection's best `k` chunks for `question`, reranked when a reranker is given (it sees
/// four times as many candidates, so it can bring up what the vectors ranked lower).
pub async fn retrieve(
    db: &PgPool,
    collection: &Collection,
    embedder: &Arc<dyn Embedder>,
    reranker: Option<&Arc<dyn Reranker>>,
    question: &str,
    settings: &RetrievalSettings,
    node_id: &str,
) -> Result<Vec<Hit>, NodeError> {
    let vector = embedder
        .embed(&[question.to_owned()])
        .await?
        .pop()
        .ok_or_else(|| {
            NodeError::Network(format!("node {node_id}: the embedder answered nothing"))
        })?;
    if vector.len() != collection.dimension {
        return Err(NodeError::VectorStore(format!(
            "node {node_id}: the embedder `{}` gives {} dimensions; collection `{}` holds {}",
            embedder.model(),
            vector.len(),
            collection.name,
            collection.dimension
        )));
    }
    let candidates = if reranker.is_some() {
        (settings.k * 4).min(search::MAX_K)
    } else {
        settings.k
    };
    let request = SearchRequest {
        embedding: vector,
        k: candidates,
        threshold: settings.threshold,
        filter: settings.filter.clone(),
        mode: settings.mode,
    };
    let hits = search::search(db, collection, &request)
        .await
        .map_err(|e| e.into_node_error(node_id))?;
    let Some(reranker) = reranker else {
        return Ok(hits);
    };
    let texts: Vec<String> = hits.iter().map(|h| h.content.clone()).collect();
    let order = reranker.rerank(question, &texts, Some(settings.k)).await?;
    Ok(order
        .into_iter()
        .filter_map(|(index, score)| {
            hits.get(index).cloned().map(|mut hit| {
                if !hit.metadata.is_object() {
                    hit.metadata = json!({});
                }
                hit.metadata["rerank_score"] = json!(score);
                hit.metadata["reranked_by"] = json!(reranker.method());
                hit
            })
        })
        .take(settings.k)
        .collect())
}

/// A hit as nodes hand it on.
pub fn hit_value(hit: &Hit) -> Value {
    json!({
        "id": hit.document_id,
        "chunk_index": hit.chunk_index,
        "content": hit.content,
        "metadata": hit.metadata,
        "score": hit.score,
    })
}
