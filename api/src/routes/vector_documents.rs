//! A collection's documents and search: `POST .../documents` stores documents (embedding those
//! that come without a vector, in batches, with the collection's embedder; a document stored
//! again replaces its chunks), `DELETE .../documents?document_ids=` removes every chunk of
//! those documents, and `GET`/`POST .../search` finds the nearest chunks to a text or a vector.

use std::sync::Arc;

use kai_common::vectors::search::{self, SearchMode, SearchRequest};
use kai_common::vectors::write::{self, NewChunk};
use kai_common::vectors::{Collection, catalogue, embedding};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::ApiTags;
use crate::auth::UserAuth;
use crate::error::ApiError;
use crate::state::AppState;
use crate::typed_json::TypedJson;

pub struct VectorDocumentsApi {
    pub state: Arc<AppState>,
}

/// Most documents one request stores.
pub(crate) const MAX_DOCUMENTS: usize = 5_000;
const DEFAULT_K: u32 = 5;

// Read by serde (`TypedJson`): the attributes of both derives must agree.
#[derive(Debug, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct DocumentIn {
    /// The document's id; several entries with one id and different `chunk_index` are its
    /// chunks. Absent: the content's hash, so the same text stored twice is one document.
    pub id: Option<String>,
    /// Default 0.
    pub chunk_index: Option<i32>,
    pub content: String,
    /// A JSON object (searchable with `filter`).
    pub metadata: Option<Value>,
    /// Its vector; absent: embedded with the collection's embedder.
    pub embedding: Option<Vec<f32>>,
}

#[derive(Debug, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct DocumentsIn {
    /// 1 to 5,000 entries.
    pub documents: Vec<DocumentIn>,
}

#[derive(Debug, Object)]
pub struct DocumentsStored {
    /// The documents written, in the order first seen.
    pub document_ids: Vec<String>,
    pub chunks_written: u64,
    /// Chunks those documents had before, now replaced.
    pub chunks_replaced: u64,
}

#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename_all = "snake_case")]
pub enum SearchType {
    /// The k nearest.
    Similarity,
    /// k diverse results among the nearest (maximal marginal relevance).
    Mmr,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct SearchIn {
    /// Text, embedded with the collection's embedder; or give `embedding`.
    pub query: Option<String>,
    pub embedding: Option<Vec<f32>>,
    /// 1 to 1,000 (default 5).
    pub k: Option<u32>,
    /// Leave out results scoring below it (see the collection's distance strategy).
    pub threshold: Option<f64>,
    /// A JSON object the chunk's metadata must contain.
    pub filter: Option<Value>,
    /// Default `similarity`.
    pub search_type: Option<SearchType>,
}

#[derive(Debug, Object)]
pub struct SearchHit {
    /// The document's id.
    pub id: String,
    pub chunk_index: i32,
    pub content: String,
    pub metadata: Value,
    /// Larger is closer: cosine similarity for `cosine`, the inner product for
    /// `inner_product`, 1 / (1 + distance) for `l2`.
    pub score: f64,
}

#[derive(Debug, Object)]
pub struct SearchOut {
    pub documents: Vec<SearchHit>,
    pub distance_strategy: String,
}

#[derive(ApiResponse)]
enum Stored {
    #[oai(status = 201)]
    Created(Json<DocumentsStored>),
}

#[derive(ApiResponse)]
enum Deleted {
    #[oai(status = 204)]
    Deleted,
}

#[OpenApi(tag = "ApiTags::Vectors")]
impl VectorDocumentsApi {
    /// Store documents. A wrong vector size is a 422 saying expected and got; nothing is
    /// stored unless everything is.
    #[oai(
        path = "/api/v1/vectors/collections/:collection_id/documents",
        method = "post",
        operation_id = "add_vector_documents"
    )]
    async fn add(
        &self,
        auth: UserAuth,
        collection_id: Path<Uuid>,
        body: TypedJson<DocumentsIn>,
    ) -> Result<Stored, ApiError> {
        let documents = body.0.documents;
        if documents.is_empty() || documents.len() > MAX_DOCUMENTS {
            return Err(ApiError::unprocessable(format!(
                "documents must hold 1 to {MAX_DOCUMENTS} entries"
            )));
        }
        let collection = catalogue::get(&self.state.db, auth.0.id, collection_id.0).await?;
        let chunks = self.chunks(&collection, documents).await?;
        let summary = write::replace_documents(&self.state.db, &collection, &chunks, false).await?;
        self.state.node_services.vector_written(collection.id);
        Ok(Stored::Created(Json(DocumentsStored {
            document_ids: summary.document_ids,
            chunks_written: summary.chunks_written,
            chunks_replaced: summary.chunks_replaced,
        })))
    }

    /// Delete every chunk of the listed documents (comma-separated ids).
    #[oai(
        path = "/api/v1/vectors/collections/:collection_id/documents",
        method = "delete",
        operation_id = "delete_vector_documents"
    )]
    async fn delete(
        &self,
        auth: UserAuth,
        collection_id: Path<Uuid>,
        document_ids: Query<String>,
    ) -> Result<Deleted, ApiError> {
        let ids: Vec<String> = document_ids
            .0
            .split(',')
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .collect();
        if ids.is_empty() {
            return Err(ApiError::unprocessable(
                "document_ids must list at least one document id",
            ));
        }
        let collection = catalogue::get(&self.state.db, auth.0.id, collection_id.0).await?;
        write::delete_documents(&self.state.db, &collection, &ids).await?;
        self.state.node_services.vector_written(collection.id);
        Ok(Deleted::Deleted)
    }

    /// Search by text (`query`), with `k`, `threshold`, `filter` (a JSON object, URL-encoded)
    /// and `search_type`.
    #[oai(
        path = "/api/v1/vectors/collections/:collection_id/search",
        method = "get",
        operation_id = "search_vector_collection"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn search_get(
        &self,
        auth: UserAuth,
        collection_id: Path<Uuid>,
        query: Query<String>,
        k: Query<Option<u32>>,
        threshold: Query<Option<f64>>,
        filter: Query<Option<String>>,
        search_type: Query<Option<SearchType>>,
    ) -> Result<Json<SearchOut>, ApiError> {
        let filter = filter
            .0
            .map(|text| {
                serde_json::from_str::<Value>(&text)
                    .map_err(|e| ApiError::unprocessable(format!("filter is not JSON: {e}")))
            })
            .transpose()?;
        self.search(
            auth,
            collection_id.0,
            SearchIn {
                query: Some(query.0),
                embedding: None,
                k: k.0,
                threshold: threshold.0,
                filter,
                search_type: search_type.0,
            },
        )
        .await
    }

    /// Search by text (`query`) or by vector (`embedding`).
    #[oai(
        path = "/api/v1/vectors/collections/:collection_id/search",
        method = "post",
        operation_id = "search_vector_collection_post"
    )]
    async fn search_post(
        &self,
        auth: UserAuth,
        collection_id: Path<Uuid>,
        body: Json<SearchIn>,
    ) -> Result<Json<SearchOut>, ApiError> {
        self.search(auth, collection_id.0, body.0).await
    }
}

impl VectorDocumentsApi {
    async fn search(
        &self,
        auth: UserAuth,
        collection_id: Uuid,
        body: SearchIn,
    ) -> Result<Json<SearchOut>, ApiError> {
        let collection = catalogue::get(&self.state.db, auth.0.id, collection_id).await?;
        let k = body.k.unwrap_or(DEFAULT_K) as usize;
        let query_vector = match (body.embedding, body.query) {
            (Some(vector), None) => vector,
            (None, Some(text)) if !text.trim().is_empty() => {
                self.embed(&collection, vec![text]).await?.remove(0)
            }
            (Some(_), Some(_)) => {
                return Err(ApiError::unprocessable(
                    "give either query or embedding, not both",
                ));
            }
            _ => {
                return Err(ApiError::unprocessable(
                    "query (text) or embedding (a vector) is required",
                ));
            }
        };
        let mode = match body.search_type.unwrap_or(SearchType::Similarity) {
            SearchType::Similarity => "similarity",
            SearchType::Mmr => "mmr",
        };
        let request = SearchRequest {
            embedding: query_vector,
            k,
            threshold: body.threshold,
            filter: body.filter,
            mode: SearchMode::parse(mode, k).unwrap_or(SearchMode::Similarity),
        };
        let hits = search::search(&self.state.db, &collection, &request).await?;
        Ok(Json(SearchOut {
            distance_strategy: collection.distance.as_str().to_owned(),
            documents: hits
                .into_iter()
                .map(|hit| SearchHit {
                    id: hit.document_id,
                    chunk_index: hit.chunk_index,
                    content: hit.content,
                    metadata: hit.metadata,
                    score: hit.score,
                })
                .collect(),
        }))
    }

    /// The chunks of `documents`, those without a vector embedded (in the embedder's batches).
    async fn chunks(
        &self,
        collection: &Collection,
        documents: Vec<DocumentIn>,
    ) -> Result<Vec<NewChunk>, ApiError> {
        let mut chunks = Vec::with_capacity(documents.len());
        let mut to_embed: Vec<usize> = Vec::new();
        for (position, document) in documents.into_iter().enumerate() {
            let metadata = match document.metadata {
                None | Some(Value::Null) => Value::Object(Default::default()),
                Some(object @ Value::Object(_)) => object,
                Some(_) => {
                    return Err(ApiError::unprocessable(format!(
                        "documents[{position}].metadata must be a JSON object"
                    )));
                }
            };
            if document.embedding.is_none() {
                to_embed.push(position);
            }
            chunks.push(NewChunk {
                document_id: document
                    .id
                    .filter(|id| !id.trim().is_empty())
                    .unwrap_or_else(|| write::content_id(&document.content)),
                chunk_index: document.chunk_index.unwrap_or(0),
                content: document.content,
                metadata,
                embedding: document.embedding.unwrap_or_default(),
            });
        }
        if !to_embed.is_empty() {
            let texts: Vec<String> = to_embed
                .iter()
                .map(|&i| chunks[i].content.clone())
                .collect();
            let vectors = self.embed(collection, texts).await?;
            for (position, vector) in to_embed.into_iter().zip(vectors) {
                chunks[position].embedding = vector;
            }
        }
        Ok(chunks)
    }

    /// `texts` embedded with `collection`'s embedder; a model answering vectors of another size
    /// than the collection's is a 422 saying both.
    async fn embed(
        &self,
        collection: &Collection,
        texts: Vec<String>,
    ) -> Result<Vec<Vec<f32>>, ApiError> {
        let embedder =
            embedding::collection_embedder(collection, &self.state.node_services).await?;
        let vectors = embedder.embed(&texts).await?;
        if vectors.len() != texts.len() {
            return Err(ApiError::unavailable(
                format!(
                    "the embeddings server answered {} vectors for {} texts",
                    vectors.len(),
                    texts.len()
                ),
                5,
            ));
        }
        if let Some(wrong) = vectors.iter().find(|v| v.len() != collection.dimension) {
            return Err(ApiError::unprocessable(format!(
                "the embedder `{}` returns {} dimensions; the collection expects {}",
                embedder.model(),
                wrong.len(),
                collection.dimension
            )));
        }
        Ok(vectors)
    }
}
