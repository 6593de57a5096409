//! Vector collections, `/api/v1/vectors/collections`: create (with its own table), list, read,
//! delete (dropping the table) and statistics (cached five minutes). Owner-scoped: another
//! user's collection is a 404; names are unique per owner.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use kai_common::vectors::{
    self, Collection, CollectionSpec, Distance, EmbedderSpec, IndexKind, IndexParams, catalogue,
};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use serde_json::Value;
use uuid::Uuid;

use super::ApiTags;
use crate::auth::UserAuth;
use crate::error::ApiError;
use crate::state::AppState;

pub struct VectorCollectionsApi {
    pub state: Arc<AppState>,
}

/// How closeness is measured. Search scores, larger is closer: `cosine` → cosine similarity
/// (1 − cosine distance, −1..1); `inner_product` → the inner product; `l2` → 1 / (1 +
/// Euclidean distance), in (0, 1].
#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename_all = "snake_case")]
pub enum DistanceStrategy {
    Cosine,
    L2,
    InnerProduct,
}

impl From<DistanceStrategy> for Distance {
    fn from(value: DistanceStrategy) -> Self {
        match value {
            DistanceStrategy::Cosine => Distance::Cosine,
            DistanceStrategy::L2 => Distance::L2,
            DistanceStrategy::InnerProduct => Distance::InnerProduct,
        }
    }
}

/// The approximate index, built once the collection holds enough rows (searches are exact
/// until then); `none`: always exact.
#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename_all = "snake_case")]
pub enum IndexType {
    Hnsw,
    Ivfflat,
    None,
}

impl From<IndexType> for IndexKind {
    fn from(value: IndexType) -> Self {
        match value {
            IndexType::Hnsw => IndexKind::Hnsw,
            IndexType::Ivfflat => IndexKind::Ivfflat,
            IndexType::None => IndexKind::None,
        }
    }
}

/// pgvector's index parameters; absent ones take pgvector's defaults.
#[derive(Debug, Clone, Copy, Object)]
#[oai(deny_unknown_fields)]
pub struct IndexParamsIn {
    /// HNSW links per node (2..100, default 16).
    pub m: Option<u32>,
    /// HNSW build candidate list (4..1000, at least 2·m, default 64).
    pub ef_construction: Option<u32>,
    /// HNSW query candidate list (1..1000, default 40, never below 2·k).
    pub ef_search: Option<u32>,
    /// IVFFlat clusters (default rows / 1000).
    pub lists: Option<u32>,
    /// IVFFlat clusters probed per query (default 10).
    pub probes: Option<u32>,
}

/// Which embeddings model embeds the collection's text (documents without an embedding, text
/// queries): a credential's server, or without `credential_id` the deployment's.
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields)]
pub struct EmbedderIn {
    /// An `openai` or `openai_compatible` credential of yours.
    pub credential_id: Option<String>,
    pub model: String,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct CollectionIn {
    /// A workflow of yours the collection belongs to (kept when the workflow is deleted).
    pub workflow_id: Option<Uuid>,
    /// Unique among your collections, 1 to 255 characters; any text (it never names a table).
    pub collection_name: String,
    /// Size of the vectors, 1..16000 (past 2,000 stored as half precision, indexable to 4,000).
    pub embedding_dimension: u32,
    /// Default `cosine`.
    pub distance_strategy: Option<DistanceStrategy>,
    /// Default `hnsw`.
    pub index_type: Option<IndexType>,
    pub index_params: Option<IndexParamsIn>,
    /// Without one, text is embedded by the deployment's embeddings server
    /// (`KAI_EMBEDDINGS_MODEL`).
    pub embedder: Option<EmbedderIn>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct CollectionOut {
    pub id: Uuid,
    pub workflow_id: Option<Uuid>,
    pub collection_name: String,
    pub embedding_dimension: u32,
    pub distance_strategy: String,
    pub index_type: String,
    pub index_params: Value,
    /// `{credential_id?, model}`, or absent: the deployment's embeddings server.
    pub embedder: Option<Value>,
    /// `deferred` (searched exactly until enough rows are loaded), `building`, `ready`, `none`.
    pub index_status: String,
    /// `vector`, or `halfvec` past 2,000 dimensions.
    pub storage: String,
    /// Chunks stored.
    pub chunk_count: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Collection> for CollectionOut {
    fn from(c: Collection) -> Self {
        Self {
            id: c.id,
            workflow_id: c.workflow_id,
            storage: c.storage().type_name().to_owned(),
            collection_name: c.name,
            embedding_dimension: c.dimension as u32,
            distance_strategy: c.distance.as_str().to_owned(),
            index_type: c.index.as_str().to_owned(),
            index_params: serde_json::to_value(c.params).unwrap_or_default(),
            embedder: c
                .embedder
                .map(|e| serde_json::to_value(e).unwrap_or_default()),
            index_status: c.index_status.as_str().to_owned(),
            chunk_count: c.chunk_count,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

#[derive(Debug, Object)]
pub struct CollectionList {
    pub collections: Vec<CollectionOut>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct CollectionStats {
    pub collection_id: Uuid,
    pub documents: i64,
    pub chunks: i64,
    pub table_bytes: i64,
    /// Every index of the table (key, metadata, approximate).
    pub index_bytes: i64,
    pub total_bytes: i64,
    /// The approximate index alone, once built.
    pub vector_index_bytes: Option<i64>,
    pub index_status: String,
    pub index_build_ms: Option<i64>,
    /// Served from the five-minute cache (any write refreshes it).
    pub cached: bool,
}

#[derive(ApiResponse)]
enum Created {
    #[oai(status = 201)]
    Created(Json<CollectionOut>),
}

#[derive(ApiResponse)]
enum Deleted {
    #[oai(status = 204)]
    Deleted,
}

#[OpenApi(tag = "ApiTags::Vectors")]
impl VectorCollectionsApi {
    /// Create a collection and its table: 422 naming a bad field, 409 when the name is taken.
    #[oai(
        path = "/api/v1/vectors/collections",
        method = "post",
        operation_id = "create_vector_collection"
    )]
    async fn create(&self, auth: UserAuth, body: Json<CollectionIn>) -> Result<Created, ApiError> {
        let body = body.0;
        let params = body
            .index_params
            .map_or_else(IndexParams::default, |p| IndexParams {
                m: p.m,
                ef_construction: p.ef_construction,
                lists: p.lists,
                ef_search: p.ef_search,
                probes: p.probes,
            });
        let spec = CollectionSpec {
            name: body.collection_name,
            dimension: body.embedding_dimension as usize,
            distance: body.distance_strategy.map_or(Distance::Cosine, Into::into),
            index: body.index_type.map_or(IndexKind::Hnsw, Into::into),
            params,
            embedder: body.embedder.map(|e| EmbedderSpec {
                credential_id: e.credential_id.filter(|id| !id.trim().is_empty()),
                model: e.model,
            }),
        };
        if let Some(credential) = spec
            .embedder
            .as_ref()
            .and_then(|e| e.credential_id.as_deref())
        {
            // Refused now rather than at the first write: the credential must be the owner's.
            self.state
                .credentials
                .open(auth.0.id, credential)
                .await
                .map_err(|_| {
                    ApiError::unprocessable(format!(
                        "embedder.credential_id: no credential `{credential}` of yours"
                    ))
                })?;
        }
        let collection =
            catalogue::create(&self.state.db, auth.0.id, body.workflow_id, &spec).await?;
        Ok(Created::Created(Json(collection.into())))
    }

    /// Your collections by name, optionally those of one workflow.
    #[oai(
        path = "/api/v1/vectors/collections",
        method = "get",
        operation_id = "list_vector_collections"
    )]
    async fn list(
        &self,
        auth: UserAuth,
        workflow_id: Query<Option<Uuid>>,
    ) -> Result<Json<CollectionList>, ApiError> {
        let collections = catalogue::list(&self.state.db, auth.0.id, workflow_id.0).await?;
        Ok(Json(CollectionList {
            collections: collections.into_iter().map(Into::into).collect(),
        }))
    }

    /// One of your collections.
    #[oai(
        path = "/api/v1/vectors/collections/:collection_id",
        method = "get",
        operation_id = "get_vector_collection"
    )]
    async fn get(
        &self,
        auth: UserAuth,
        collection_id: Path<Uuid>,
    ) -> Result<Json<CollectionOut>, ApiError> {
        let collection = catalogue::get(&self.state.db, auth.0.id, collection_id.0).await?;
        Ok(Json(collection.into()))
    }

    /// Delete a collection and drop its table with every chunk.
    #[oai(
        path = "/api/v1/vectors/collections/:collection_id",
        method = "delete",
        operation_id = "delete_vector_collection"
    )]
    async fn delete(&self, auth: UserAuth, collection_id: Path<Uuid>) -> Result<Deleted, ApiError> {
        catalogue::delete(&self.state.db, auth.0.id, collection_id.0).await?;
        Ok(Deleted::Deleted)
    }

    /// Documents, chunks, table and index sizes; cached for five minutes, refreshed by any
    /// write.
    #[oai(
        path = "/api/v1/vectors/collections/:collection_id/stats",
        method = "get",
        operation_id = "get_vector_collection_stats"
    )]
    async fn stats(
        &self,
        auth: UserAuth,
        collection_id: Path<Uuid>,
    ) -> Result<Json<CollectionStats>, ApiError> {
        let collection = catalogue::get(&self.state.db, auth.0.id, collection_id.0).await?;
        let (stats, cached) = vectors::stats::stats(
            &self.state.db,
            &self.state.redis,
            &self.state.redis_prefix,
            &collection,
        )
        .await?;
        Ok(Json(CollectionStats {
            collection_id: collection.id,
            documents: stats.documents,
            chunks: stats.chunks,
            table_bytes: stats.table_bytes,
            index_bytes: stats.index_bytes,
            total_bytes: stats.total_bytes,
            vector_index_bytes: stats.vector_index_bytes,
            index_status: collection.index_status.as_str().to_owned(),
            index_build_ms: stats.index_build_ms,
            cached,
        }))
    }
}
