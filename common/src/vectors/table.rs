//! The table behind a collection, in the `kai_vectors` schema and named from the collection's
//! id: one row per chunk, keyed by `(document_id, chunk_index)` so writing a document again
//! replaces its chunks (no surrogate key: nothing reads one, and a random UUID's index costs
//! every insert a random page), metadata searchable by containment (GIN), and the approximate
//! index built later with the operator class of the collection's distance; beside it, one row
//! per document that writers of that document lock.

use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::VectorError;
use super::catalogue::Collection;
use super::spec::{IndexKind, IndexParams};

/// `kai_vectors.c_<id without dashes>`: only hex digits come from the id, so no quoting or
/// escaping can be got wrong.
pub fn name(id: Uuid) -> String {
    format!("kai_vectors.c_{}", id.simple())
}

/// `kai_vectors.c_<id>_documents`: one row per document, locked by whoever writes or deletes
/// that document, so writers of one document take turns while writers of different documents
/// run side by side.
pub fn documents_name(id: Uuid) -> String {
    format!("kai_vectors.c_{}_documents", id.simple())
}

/// The name of the approximate index on `id`'s table (without the schema).
pub fn index_name(id: Uuid) -> String {
    format!("c_{}_embedding", id.simple())
}

pub async fn create(
    tx: &mut Transaction<'_, Postgres>,
    collection: &Collection,
) -> Result<(), VectorError> {
    let table = collection.table();
    let column = format!(
        "{}({})",
        collection.storage().type_name(),
        collection.dimension
    );
    let simple = collection.id.simple();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {table} (
            document_id TEXT NOT NULL,
            chunk_index INTEGER NOT NULL,
            content TEXT NOT NULL,
            metadata JSONB NOT NULL DEFAULT '{{}}',
            embedding {column} NOT NULL,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            CONSTRAINT c_{simple}_chunk PRIMARY KEY (document_id, chunk_index)
        )"
    )))
    .execute(&mut **tx)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE INDEX c_{simple}_metadata ON {table} USING gin (metadata jsonb_path_ops)"
    )))
    .execute(&mut **tx)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {} (
            document_id TEXT PRIMARY KEY,
            chunks INTEGER NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )",
        documents_name(collection.id)
    )))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn drop(tx: &mut Transaction<'_, Postgres>, id: Uuid) -> Result<(), VectorError> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP TABLE IF EXISTS {}, {}",
        name(id),
        documents_name(id)
    )))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// `CREATE INDEX CONCURRENTLY` of the collection's approximate index: writes go on while it
/// builds. `rows` sizes IVFFlat's lists when the collection did not fix them (rows / 1000, as
/// pgvector advises up to a million rows).
pub fn create_index_sql(collection: &Collection, rows: i64) -> Option<String> {
    let opclass = collection.distance.operator_class(collection.storage());
    let params = collection.params;
    let with = match collection.index {
        IndexKind::None => return None,
        IndexKind::Hnsw => format!(
            "hnsw (embedding {opclass}) WITH (m = {}, ef_construction = {})",
            params.m.unwrap_or(IndexParams::DEFAULT_M),
            params
                .ef_construction
                .unwrap_or(IndexParams::DEFAULT_EF_CONSTRUCTION)
        ),
        IndexKind::Ivfflat => format!(
            "ivfflat (embedding {opclass}) WITH (lists = {})",
            params
                .lists
                .unwrap_or_else(|| (rows / 1000).clamp(1, 32_768) as u32)
        ),
    };
    Some(format!(
        "CREATE INDEX CONCURRENTLY {} ON {} USING {with}",
        index_name(collection.id),
        collection.table()
    ))
}
