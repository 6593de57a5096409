//! Writing a collection: a document's chunks replace whatever that document had (re-ingesting
//! never duplicates, a shorter version leaves no stale tail), in one transaction with the
//! collection's count, loaded with multi-row inserts of binary vectors; and deleting documents
//! through the `(document_id, chunk_index)` key's index. Writers of different documents run side
//! by side; writers of one document take turns on its row in the documents table.

use std::collections::{HashMap, HashSet};

use pgvector::Vector;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::VectorError;
use super::catalogue::{self, Collection, WriteLock};
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
    let mut chunks_per_document: Vec<(&str, i32)> = Vec::new();
    let mut position: HashMap<&str, usize> = HashMap::new();
    for chunk in chunks {
        let id = chunk.document_id.as_str();
        match position.get(id) {
            Some(&at) => chunks_per_document[at].1 += 1,
            None => {
                position.insert(id, chunks_per_document.len());
                chunks_per_document.push((id, 1));
            }
        }
    }
    let document_ids: Vec<String> = chunks_per_document
        .iter()
        .map(|(id, _)| (*id).to_owned())
        .collect();
    let mode = if clear_first {
        WriteLock::Exclusive
    } else {
        WriteLock::Shared
    };
    let collection = catalogue::lock(tx, collection, mode).await?;
    let (table, documents) = (collection.table(), collection.documents_table());
    if clear_first {
        sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {documents}")))
            .execute(&mut **tx)
            .await?;
    }
    // Claim the documents: each one's row stays locked until this transaction ends, so the
    // DELETE below sees every chunk an earlier writer of the same document committed. Rows are
    // claimed in one order so that two writers sharing documents cannot deadlock.
    let (ids, counts): (Vec<&str>, Vec<i32>) = chunks_per_document.iter().copied().unzip();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {documents} (document_id, chunks) \
         SELECT d, n FROM unnest($1::text[], $2::int4[]) AS rows(d, n) ORDER BY d \
         ON CONFLICT (document_id) DO UPDATE SET chunks = EXCLUDED.chunks, updated_at = now()"
    )))
    .bind(&ids)
    .bind(&counts)
    .execute(&mut **tx)
    .await?;
    let delete = if clear_first {
        format!("DELETE FROM {table}")
    } else {
        format!("DELETE FROM {table} WHERE document_id = ANY($1)")
    };
    let mut delete = sqlx::query(sqlx::AssertSqlSafe(delete));
    if !clear_first {
        delete = delete.bind(&ids);
    }
    let replaced = delete.execute(&mut **tx).await?.rows_affected();
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

/// Deletes every chunk of `document_ids`; answers how many chunks went. Each document's row is
/// locked first, so a write of the same document under way finishes before (and its chunks go
/// too).
pub async fn delete_documents(
    db: &PgPool,
    collection: &Collection,
    document_ids: &[String],
) -> Result<u64, VectorError> {
    let mut tx = db.begin().await?;
    let collection = catalogue::lock(&mut tx, collection, WriteLock::Shared).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM {} WHERE document_id = ANY($1)",
        collection.documents_table()
    )))
    .bind(document_ids)
    .execute(&mut *tx)
    .await?;
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

/// Deletes the chunks whose metadata contains `source` but that this `job_id` did not write,
/// except those of `kept_items` (`source_item` values): a document source's pages that a later
/// run no longer found. Alone on the collection (chunks are chosen by metadata, not by
/// document), the documents left without chunks forgotten too. Answers how many chunks went.
pub async fn delete_stale_source_chunks(
    tx: &mut Transaction<'_, Postgres>,
    collection: &Collection,
    source: &Value,
    job_id: &str,
    kept_items: &[String],
) -> Result<u64, VectorError> {
    let collection = catalogue::lock(tx, collection, WriteLock::Exclusive).await?;
    let (table, documents) = (collection.table(), collection.documents_table());
    let emptied: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "DELETE FROM {table} WHERE metadata @> $1 AND metadata->>'job_id' <> $2 \
         AND NOT (metadata->>'source_item' = ANY($3)) RETURNING document_id"
    )))
    .bind(source)
    .bind(job_id)
    .bind(kept_items)
    .fetch_all(&mut **tx)
    .await?;
    let removed = emptied.len() as u64;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM {documents} d WHERE d.document_id = ANY($1) \
         AND NOT EXISTS (SELECT 1 FROM {table} c WHERE c.document_id = d.document_id)"
    )))
    .bind(&emptied)
    .execute(&mut **tx)
    .await?;
    catalogue::record_write(tx, collection.id, -(removed as i64)).await?;
    Ok(removed)
}
