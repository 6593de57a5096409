//! A collection's statistics (documents, chunks, table and index sizes), cached in Redis for five
//! minutes. The cache key carries the collection's last write time and index status, so any
//! write, from any process, makes the cached figures unreachable at once: nothing has to
//! remember to delete them. Redis unreachable only means computing them every time.

use std::time::Duration;

use deadpool_redis::redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use super::VectorError;
use super::catalogue::Collection;
use sqlx::PgPool;

pub const CACHE_TTL: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub documents: i64,
    pub chunks: i64,
    pub table_bytes: i64,
    pub index_bytes: i64,
    pub total_bytes: i64,
    /// The approximate index's own size, once built.
    pub vector_index_bytes: Option<i64>,
    /// How long building it took.
    pub index_build_ms: Option<i64>,
}

/// `collection`'s statistics and whether they came from the cache.
pub async fn stats(
    db: &PgPool,
    redis: &deadpool_redis::Pool,
    key_prefix: &str,
    collection: &Collection,
) -> Result<(Stats, bool), VectorError> {
    let key = format!(
        "{key_prefix}vector_stats:{}:{}:{}",
        collection.id,
        collection.updated_at.timestamp_micros(),
        collection.index_status.as_str()
    );
    if let Some(cached) = cached(redis, &key).await {
        return Ok((cached, true));
    }
    let fresh = compute(db, collection).await?;
    if let Ok(mut conn) = redis.get().await {
        let text = serde_json::to_string(&fresh).expect("stats serialise");
        let _: Result<(), _> = conn.set_ex(&key, text, CACHE_TTL.as_secs()).await;
    }
    Ok((fresh, false))
}

async fn cached(redis: &deadpool_redis::Pool, key: &str) -> Option<Stats> {
    let mut conn = tokio::time::timeout(Duration::from_millis(500), redis.get())
        .await
        .ok()?
        .ok()?;
    let text: Option<String> = conn.get(key).await.ok()?;
    serde_json::from_str(&text?).ok()
}

async fn compute(db: &PgPool, collection: &Collection) -> Result<Stats, VectorError> {
    let table = collection.table();
    let (documents, chunks): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT (SELECT count(*) FROM {}), (SELECT count(*) FROM {table})",
        collection.documents_table()
    )))
    .fetch_one(db)
    .await?;
    let (table_bytes, index_bytes, total_bytes, vector_index_bytes, index_build_ms): (
        i64,
        i64,
        i64,
        Option<i64>,
        Option<i64>,
    ) = sqlx::query_as(
        "SELECT pg_table_size($1::regclass), pg_indexes_size($1::regclass), \
         pg_total_relation_size($1::regclass), \
         (SELECT pg_relation_size(i.indexrelid) FROM pg_index i \
           WHERE i.indrelid = $1::regclass AND i.indisvalid \
             AND i.indexrelid = to_regclass($2)), \
         (SELECT index_build_ms FROM vector_collections WHERE id = $3)",
    )
    .bind(&table)
    .bind(format!(
        "kai_vectors.{}",
        super::table::index_name(collection.id)
    ))
    .bind(collection.id)
    .fetch_one(db)
    .await?;
    Ok(Stats {
        documents,
        chunks,
        table_bytes,
        index_bytes,
        total_bytes,
        vector_index_bytes,
        index_build_ms,
    })
}
