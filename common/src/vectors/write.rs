//! Writing a collection: a document's chunks replace whatever that document had (re-ingesting
//! never duplicates, a shorter version leaves no stale tail), in one transaction with the
//! collection's count, loaded with multi-row inserts of binary vectors; and deleting documents
//! through the `(document_id, chunk_index)` key's index.

use std::collections::HashSet;

use pgvector::Vector;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::VectorError;
use super::catalogue::{self, Collection};
use sqlx::{PgPool, Postgres, Transaction};

/// Rows per INSERT statement: large enough to amortise the round trip, small enough that one
/// statement's parameters stay a few megabytes at 1,536 dimensions.
const ROWS_PER_STATEMENT: usize = 500;

/// One chunk to store.
#[derive(Debug, Clone)]
pub struct NewChunk {
    pub document_id: String,
    pub chunk_index: i32,
    pub content: String,
    pub metadata: Value,
    pub embedding: Vec<f32>,
}

/// What a write did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteSummary {
    /// The documents written, in the order first seen.
    pub document_ids: Vec<String>,
    pub chunks_written: u64,
    /// Chunks those documents had before (replaced), or every chunk when the collection was
    /// cleared first.
    pub chunks_replaced: u64,
}

/// The id of a document given without one: its content's hash, so the same text stored twice is
/// one document.
pub fn content_id(content: &str) -> String {
    let digest = Sha256::digest(content.as_bytes());
    format!("sha256-{}", hex::encode(&digest[..16]))
}

/// Checks `chunks` against `collection` before anything is written: every vector's size, and
/// no `(document_id, chunk_index)` twice.
pub fn check(collection: &Collection, chunks: &[NewChunk]) -> Result<(), VectorError> {
    let mut seen = HashSet::with_capacity(chunks.len());
    for (position, chunk) in chunks.iter().enumerate() {
        if chunk.embedding.len() != collection.dimension {
            return Err(VectorError::Dimension {
                position,
                expected: collection.dimension,
                got: chunk.embedding.len(),
            });
        }
        if chunk.embedding.iter().any(|x| !x.is_finite()) {
            return Err(VectorError::Invalid(format!(
                "documents[{position}].embedding holds a value that is not a finite number"
            )));
        }
        if chunk.document_id.is_empty() || chunk.document_id.len() > 512 {
            return Err(VectorError::Invalid(format!(
                "documents[{position}].id must be 1 to 512 characters"
            )));
        }
        if !seen.insert((chunk.document_id.as_str(), chunk.chunk_index)) {
            return Err(VectorError::Invalid(format!(
                "documents[{position}]: document `{}` chunk {} appears twice",
                chunk.document_id, chunk.chunk_index
            )));
        }
    }
    Ok(())
}

/// Stores `chunks`, replacing every chunk their documents had; with `clear_first` the whole
/// collection is emptied in the same transaction (a node's `pre_delete_collection`).
pub async fn replace_documents(
    db: &PgPool,
    collection: &Collection,
    chunks: &[NewChunk],
    clear_first: bool,
) -> Result<WriteSummary, VectorError> {
    let mut tx = db.begin().await?;
    let summary = replace_documents_in(&mut tx, collection, chunks, clear_first).await?;
    tx.commit().await?;
    Ok(summary)
}

/// `replace_documents` inside the caller's transaction, so that what else the caller records
/// (a processing job's progress) commits with the chunks or not at all.
pub async fn replace_documents_in(
    tx: &mut Transaction<'_, Postgres>,
    collection: &Collection,
    chunks: &[NewChunk],
    clear_first: bool,
) -> Result<WriteSummary, VectorError> {
    check(collection, chunks)?;
    let mut document_ids: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    for chunk in chunks {
        if seen.insert(chunk.document_id.as_str()) {
            document_ids.push(chunk.document_id.clone());
        }
    }
    let collection = catalogue::lock(tx, collection).await?;
    let table = collection.table();
    let replaced = if clear_first {
        sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}")))
            .execute(&mut **tx)
            .await?
            .rows_affected()
    } else {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE document_id = ANY($1)"
        )))
        .bind(&document_ids)
        .execute(&mut **tx)
        .await?
        .rows_affected()
    };
    let cast = collection.storage().type_name();
    let insert = format!(
        "INSERT INTO {table} (document_id, chunk_index, content, metadata, embedding) \
         SELECT d, i, c, m, e::{cast} FROM unnest($1::text[], $2::int4[], $3::text[], \
         $4::jsonb[], $5::vector[]) AS rows(d, i, c, m, e)"
    );
    for batch in chunks.chunks(ROWS_PER_STATEMENT) {
        let ids: Vec<&str> = batch.iter().map(|c| c.document_id.as_str()).collect();
        let indexes: Vec<i32> = batch.iter().map(|c| c.chunk_index).collect();
        let contents: Vec<&str> = batch.iter().map(|c| c.content.as_str()).collect();
        let metadata: Vec<sqlx::types::Json<&Value>> = batch
            .iter()
            .map(|c| sqlx::types::Json(&c.metadata))
            .collect();
        let vectors: Vec<Vector> = batch
            .iter()
            .map(|c| Vector::from(c.embedding.clone()))
            .collect();
        sqlx::query(sqlx::AssertSqlSafe(insert.clone()))
            .bind(ids)
            .bind(indexes)
            .bind(contents)
            .bind(metadata)
            .bind(vectors)
            .execute(&mut **tx)
            .await?;
    }
    let written = chunks.len() as u64;
    catalogue::record_write(tx, collection.id, written as i64 - replaced as i64).await?;
    Ok(WriteSummary {
        document_ids,
        chunks_written: written,
        chunks_replaced: replaced,
    })
}

/// Deletes every chunk of `document_ids`; answers how many chunks went.
pub async fn delete_documents(
    db: &PgPool,
    collection: &Collection,
    document_ids: &[String],
) -> Result<u64, VectorError> {
    let mut tx = db.begin().await?;
    let collection = catalogue::lock(&mut tx, collection).await?;
    let deleted = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM {} WHERE document_id = ANY($1)",
        collection.table()
    )))
    .bind(document_ids)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    catalogue::record_write(&mut tx, collection.id, -(deleted as i64)).await?;
    tx.commit().await?;
    Ok(deleted)
}
