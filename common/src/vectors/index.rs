//! Builds a collection's approximate index after its first large load, not during it: a table
//! loads many times faster without an index to maintain, and one build over the loaded rows
//! makes a better HNSW graph (and IVFFlat's clusters need the data to exist at all). Until
//! then searches are exact, which is also the right answer for small collections.
//!
//! After a write, the writing process waits until the collection has been quiet for
//! `KAI_VECTOR_INDEX_QUIET_MS`; then, if it holds at least `KAI_VECTOR_INDEX_AFTER_ROWS` chunks,
//! one process (an advisory lock) builds the index concurrently, writes and searches going on
//! meanwhile. A builder that died leaves the status `building` and an invalid index: the next
//! build drops it and starts over.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use sqlx::PgPool;
use uuid::Uuid;

use super::VectorError;
use super::catalogue::{self, IndexStatus};
use super::table;

/// When an index gets built.
#[derive(Debug, Clone, Args)]
pub struct IndexSettings {
    /// Chunks a collection holds before its approximate index is built (below, exact search is
    /// fast and exact).
    #[arg(
        long,
        env = "KAI_VECTOR_INDEX_AFTER_ROWS",
        value_name = "KAI_VECTOR_INDEX_AFTER_ROWS",
        default_value = "10000"
    )]
    pub after_rows: i64,

    /// How long a collection must go without writes before its index is built (milliseconds).
    #[arg(long, env = "KAI_VECTOR_INDEX_QUIET_MS", value_name = "KAI_VECTOR_INDEX_QUIET_MS",
          default_value = "3000", value_parser = parse_millis)]
    pub quiet: Duration,
}

impl Default for IndexSettings {
    fn default() -> Self {
        Self {
            after_rows: 10_000,
            quiet: Duration::from_secs(3),
        }
    }
}

fn parse_millis(text: &str) -> Result<Duration, String> {
    text.trim()
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|e| format!("milliseconds: {e}"))
}

/// The advisory-lock key space of index builds (the second key is derived from the id).
const LOCK_SPACE: i32 = 0x6b_6169; // "kai"

/// Watches this process's writes and builds indexes when they are due.
#[derive(Debug, Clone)]
pub struct IndexBuilder {
    db: PgPool,
    settings: IndexSettings,
    /// Collections with a wait under way in this process, and their latest write.
    waiting: Arc<Mutex<HashMap<Uuid, Instant>>>,
}

impl IndexBuilder {
    pub fn new(db: PgPool, settings: IndexSettings) -> Self {
        Self {
            db,
            settings,
            waiting: Arc::default(),
        }
    }

    /// Notes a write to `collection`: its index is considered once it has been quiet.
    pub fn touch(&self, collection: Uuid) {
        let mut waiting = self.waiting.lock().expect("index waits");
        let already = waiting.insert(collection, Instant::now()).is_some();
        drop(waiting);
        if already {
            return;
        }
        let builder = self.clone();
        tokio::spawn(async move {
            loop {
                let last = builder
                    .waiting
                    .lock()
                    .expect("index waits")
                    .get(&collection)
                    .copied();
                let Some(last) = last else { return };
                let quiet_for = last.elapsed();
                if quiet_for >= builder.settings.quiet {
                    break;
                }
                tokio::time::sleep(builder.settings.quiet - quiet_for).await;
            }
            builder
                .waiting
                .lock()
                .expect("index waits")
                .remove(&collection);
            if let Err(error) = builder.build_if_due(collection).await {
                tracing::warn!(%collection, %error, "building a collection's index failed");
            }
        });
    }

    /// Considers every collection still waiting for its index (after a restart).
    pub async fn resume(&self) -> Result<(), VectorError> {
        let due: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM vector_collections WHERE index_status IN ('deferred', 'building') \
             AND document_count >= $1",
        )
        .bind(self.settings.after_rows)
        .fetch_all(&self.db)
        .await?;
        for id in due {
            self.touch(id);
        }
        Ok(())
    }

    /// Builds `collection`'s index when it is due and nobody else is building it; answers
    /// whether this call built it.
    pub async fn build_if_due(&self, collection: Uuid) -> Result<bool, VectorError> {
        let mut conn = self.db.acquire().await?;
        let key = lock_key(collection);
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
            .bind(LOCK_SPACE)
            .bind(key)
            .fetch_one(&mut *conn)
            .await?;
        if !locked {
            return Ok(false);
        }
        let outcome = self.build_locked(&mut conn, collection).await;
        let _ = sqlx::query("SELECT pg_advisory_unlock($1, $2)")
            .bind(LOCK_SPACE)
            .bind(key)
            .execute(&mut *conn)
            .await;
        outcome
    }

    async fn build_locked(
        &self,
        conn: &mut sqlx::PgConnection,
        id: Uuid,
    ) -> Result<bool, VectorError> {
        let row: Option<(Uuid, i64, bool)> = sqlx::query_as(
            "SELECT user_id, document_count, updated_at < clock_timestamp() - make_interval(secs => $2) \
             FROM vector_collections WHERE id = $1",
        )
        .bind(id)
        .bind(self.settings.quiet.as_secs_f64())
        .fetch_optional(&mut *conn)
        .await?;
        let Some((owner, rows, quiet)) = row else {
            return Ok(false);
        };
        let collection = catalogue::get(&self.db, owner, id).await?;
        if !matches!(
            collection.index_status,
            IndexStatus::Deferred | IndexStatus::Building
        ) || rows < self.settings.after_rows
        {
            return Ok(false);
        }
        if !quiet {
            // Written to elsewhere meanwhile: that writer's own wait will come back to it.
            self.touch(id);
            return Ok(false);
        }
        let Some(create) = table::create_index_sql(&collection, rows) else {
            return Ok(false);
        };
        set_status(conn, id, IndexStatus::Building, None).await?;
        let index = format!("kai_vectors.{}", table::index_name(id));
        let started = Instant::now();
        let built = async {
            // A build that died earlier leaves an invalid index behind.
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP INDEX CONCURRENTLY IF EXISTS {index}"
            )))
            .execute(&mut *conn)
            .await?;
            sqlx::query("SET maintenance_work_mem = '256MB'")
                .execute(&mut *conn)
                .await?;
            let created = sqlx::query(sqlx::AssertSqlSafe(create))
                .execute(&mut *conn)
                .await;
            sqlx::query("RESET maintenance_work_mem")
                .execute(&mut *conn)
                .await?;
            created.map(drop)
        }
        .await;
        match built {
            Ok(()) => {
                let millis = started.elapsed().as_millis() as i64;
                // After a large load: the metadata index's pending inserts merged (a filter
                // would scan them all on every search until autovacuum does it) and the
                // planner's statistics current.
                let metadata = format!("kai_vectors.c_{}_metadata", id.simple());
                sqlx::query("SELECT gin_clean_pending_list($1::regclass)")
                    .bind(&metadata)
                    .execute(&mut *conn)
                    .await?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "ANALYZE {}",
                    collection.table()
                )))
                .execute(&mut *conn)
                .await?;
                set_status(conn, id, IndexStatus::Ready, Some(millis)).await?;
                tracing::info!(collection = %id, rows, millis, "collection index built");
                Ok(true)
            }
            Err(error) => {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP INDEX CONCURRENTLY IF EXISTS {index}"
                )))
                .execute(&mut *conn)
                .await;
                set_status(conn, id, IndexStatus::Deferred, None).await?;
                Err(error.into())
            }
        }
    }
}

async fn set_status(
    conn: &mut sqlx::PgConnection,
    id: Uuid,
    status: IndexStatus,
    build_millis: Option<i64>,
) -> Result<(), VectorError> {
    sqlx::query(
        "UPDATE vector_collections SET index_status = $2, \
         index_build_ms = coalesce($3, index_build_ms), \
         index_built_at = CASE WHEN $3 IS NULL THEN index_built_at ELSE now() END \
         WHERE id = $1",
    )
    .bind(id)
    .bind(status.as_str())
    .bind(build_millis)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The second advisory-lock key of `id`'s build.
fn lock_key(id: Uuid) -> i32 {
    let bytes = id.as_bytes();
    i32::from_be_bytes([bytes[12], bytes[13], bytes[14], bytes[15]])
}
