//! The `vector_collections` rows and the table each one owns: created together in one
//! transaction, dropped together, always read for their owner (another owner's collection is
//! simply not found).

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgPool, Postgres, Row, Transaction};
use uuid::Uuid;

use super::VectorError;
use super::spec::{CollectionSpec, Distance, EmbedderSpec, IndexKind, IndexParams, Storage};
use super::table;

/// Where the collection's approximate index stands. Small collections are searched exactly; the
/// index is built once a collection holds enough rows and its writes pause (see `index`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexStatus {
    /// No approximate index yet: searches are exact.
    Deferred,
    Building,
    Ready,
    /// `index_type: none`.
    None,
}

impl IndexStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            IndexStatus::Deferred => "deferred",
            IndexStatus::Building => "building",
            IndexStatus::Ready => "ready",
            IndexStatus::None => "none",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "building" => IndexStatus::Building,
            "ready" => IndexStatus::Ready,
            "none" => IndexStatus::None,
            _ => IndexStatus::Deferred,
        }
    }
}

/// A stored collection.
#[derive(Debug, Clone)]
pub struct Collection {
    pub id: Uuid,
    pub owner: Uuid,
    pub workflow_id: Option<Uuid>,
    pub name: String,
    pub dimension: usize,
    pub distance: Distance,
    pub index: IndexKind,
    pub params: IndexParams,
    pub embedder: Option<EmbedderSpec>,
    pub index_status: IndexStatus,
    /// Chunks stored (rows of its table).
    pub chunk_count: i64,
    pub created_at: DateTime<Utc>,
    /// Moves with every write: stats cached under it are stale once it moves.
    pub updated_at: DateTime<Utc>,
}

impl Collection {
    /// Its table, named from its id alone: user text never reaches DDL.
    pub fn table(&self) -> String {
        table::name(self.id)
    }

    /// Its documents' table (one row per document, see `table::documents_name`).
    pub fn documents_table(&self) -> String {
        table::documents_name(self.id)
    }

    pub fn storage(&self) -> Storage {
        Storage::for_dimension(self.dimension)
    }

    fn from_row(row: &sqlx::postgres::PgRow) -> Result<Self, VectorError> {
        let distance: String = row.try_get("distance_strategy")?;
        let index: String = row.try_get("index_type")?;
        let params: Option<Value> = row.try_get("index_params")?;
        let embedder: Option<Value> = row.try_get("embedder")?;
        let status: String = row.try_get("index_status")?;
        let dimension: i32 = row.try_get("embedding_dimension")?;
        Ok(Self {
            id: row.try_get("id")?,
            owner: row.try_get("user_id")?,
            workflow_id: row.try_get("workflow_id")?,
            name: row.try_get("collection_name")?,
            dimension: dimension as usize,
            distance: Distance::parse(&distance).unwrap_or(Distance::Cosine),
            index: IndexKind::parse(&index).unwrap_or(IndexKind::Hnsw),
            params: params
                .and_then(|p| serde_json::from_value(p).ok())
                .unwrap_or_default(),
            embedder: embedder.and_then(|e| serde_json::from_value(e).ok()),
            index_status: IndexStatus::parse(&status),
            chunk_count: row.try_get("document_count")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

const COLUMNS: &str = "id, user_id, workflow_id, collection_name, embedding_dimension, \
    distance_strategy, index_type, index_params, embedder, index_status, document_count, \
    created_at, updated_at";

/// Creates the collection and its table. A name the owner already uses is a conflict; a
/// workflow that is not the owner's is not found.
pub async fn create(
    db: &PgPool,
    owner: Uuid,
    workflow_id: Option<Uuid>,
    spec: &CollectionSpec,
) -> Result<Collection, VectorError> {
    spec.check()?;
    let mut tx = db.begin().await?;
    if let Some(workflow) = workflow_id {
        let owned: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM workflows WHERE id = $1 AND user_id = $2")
                .bind(workflow)
                .bind(owner)
                .fetch_optional(&mut *tx)
                .await?;
        if owned.is_none() {
            return Err(VectorError::Invalid(format!(
                "workflow_id {workflow}: no such workflow"
            )));
        }
    }
    let status = if spec.index == IndexKind::None {
        IndexStatus::None
    } else {
        IndexStatus::Deferred
    };
    let inserted = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO vector_collections (user_id, workflow_id, collection_name, \
         embedding_dimension, distance_strategy, index_type, index_params, embedder, index_status) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (user_id, collection_name) DO NOTHING RETURNING {COLUMNS}"
    )))
    .bind(owner)
    .bind(workflow_id)
    .bind(spec.name.trim())
    .bind(spec.dimension as i32)
    .bind(spec.distance.as_str())
    .bind(spec.index.as_str())
    .bind(serde_json::to_value(spec.params).expect("parameters serialise"))
    .bind(
        spec.embedder
            .as_ref()
            .map(|e| serde_json::to_value(e).expect("serialises")),
    )
    .bind(status.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = inserted else {
        return Err(VectorError::Conflict(format!(
            "a collection named `{}` already exists",
            spec.name.trim()
        )));
    };
    let collection = Collection::from_row(&row)?;
    table::create(&mut tx, &collection).await?;
    tx.commit().await?;
    Ok(collection)
}

/// The owner's collection `id`.
pub async fn get(db: &PgPool, owner: Uuid, id: Uuid) -> Result<Collection, VectorError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM vector_collections WHERE id = $1 AND user_id = $2"
    )))
    .bind(id)
    .bind(owner)
    .fetch_optional(db)
    .await?;
    match row {
        Some(row) => Collection::from_row(&row),
        None => Err(VectorError::NotFound(format!("collection {id}"))),
    }
}

/// The owner's collection named `name`, if any.
pub async fn find_by_name(
    db: &PgPool,
    owner: Uuid,
    name: &str,
) -> Result<Option<Collection>, VectorError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM vector_collections WHERE user_id = $1 AND collection_name = $2"
    )))
    .bind(owner)
    .bind(name.trim())
    .fetch_optional(db)
    .await?;
    row.as_ref().map(Collection::from_row).transpose()
}

/// The owner's collection named `name`, created with `spec` when it does not exist yet (two
/// writers racing to create it both end with the same one).
pub async fn find_or_create(
    db: &PgPool,
    owner: Uuid,
    spec: &CollectionSpec,
) -> Result<Collection, VectorError> {
    if let Some(found) = find_by_name(db, owner, &spec.name).await? {
        return Ok(found);
    }
    match create(db, owner, None, spec).await {
        Err(VectorError::Conflict(_)) => find_by_name(db, owner, &spec.name)
            .await?
            .ok_or_else(|| VectorError::NotFound(format!("collection `{}`", spec.name))),
        other => other,
    }
}

/// The owner's collections by name, optionally those of one workflow.
pub async fn list(
    db: &PgPool,
    owner: Uuid,
    workflow_id: Option<Uuid>,
) -> Result<Vec<Collection>, VectorError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM vector_collections WHERE user_id = $1 \
         AND ($2::uuid IS NULL OR workflow_id = $2) ORDER BY collection_name"
    )))
    .bind(owner)
    .bind(workflow_id)
    .fetch_all(db)
    .await?;
    rows.iter().map(Collection::from_row).collect()
}

/// Deletes the owner's collection and drops its table.
pub async fn delete(db: &PgPool, owner: Uuid, id: Uuid) -> Result<(), VectorError> {
    let mut tx = db.begin().await?;
    let deleted: Option<Uuid> = sqlx::query_scalar(
        "DELETE FROM vector_collections WHERE id = $1 AND user_id = $2 RETURNING id",
    )
    .bind(id)
    .bind(owner)
    .fetch_optional(&mut *tx)
    .await?;
    if deleted.is_none() {
        return Err(VectorError::NotFound(format!("collection {id}")));
    }
    table::drop(&mut tx, id).await?;
    tx.commit().await?;
    Ok(())
}

/// How a write holds its collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteLock {
    /// Alongside other writers: each then locks the documents it writes (their rows in the
    /// documents table), so only writers of one document take turns.
    Shared,
    /// Alone: for writes that touch chunks by something other than their document (clearing
    /// the collection, a source's stale chunks).
    Exclusive,
}

/// Locks the collection's row for a write and reads it again: a collection deleted meanwhile is
/// not found instead of failing on its dropped table, and its deletion waits for the writes
/// under way. `Shared` takes `FOR KEY SHARE`, which the count's update at the end of every
/// write (`FOR NO KEY UPDATE`) does not conflict with; `Exclusive` takes `FOR UPDATE`, which
/// conflicts with both.
pub async fn lock(
    tx: &mut Transaction<'_, Postgres>,
    collection: &Collection,
    mode: WriteLock,
) -> Result<Collection, VectorError> {
    let strength = match mode {
        WriteLock::Shared => "KEY SHARE",
        WriteLock::Exclusive => "UPDATE",
    };
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM vector_collections WHERE id = $1 FOR {strength}"
    )))
    .bind(collection.id)
    .fetch_optional(&mut **tx)
    .await?;
    match row {
        Some(row) => Collection::from_row(&row),
        None => Err(VectorError::NotFound(format!(
            "collection {}",
            collection.id
        ))),
    }
}

/// Records a write: the chunk count moves by `delta` and `updated_at` moves on.
pub async fn record_write(
    tx: &mut Transaction<'_, Postgres>,
    id: Uuid,
    delta: i64,
) -> Result<(), VectorError> {
    sqlx::query(
        "UPDATE vector_collections SET document_count = greatest(document_count + $2, 0), \
         updated_at = clock_timestamp() WHERE id = $1",
    )
    .bind(id)
    .bind(delta)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
