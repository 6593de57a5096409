//! Document processing jobs (`POST /api/v1/documents/sources/{id}/process`): each item of the
//! source read (a page scraped, a file or inline document), chunked, embedded and stored in the
//! source's collection. An item's chunks, its `done` mark and the job's progress commit in one
//! transaction, so a worker that dies mid-job loses at most the item in flight: the job's next
//! delivery carries on from the first item not done, and nothing stored is embedded again.
//! When every item is through, chunks this source stored in earlier runs for items it no longer
//! has are removed, so processing a source again replaces what it stored.

use std::sync::Arc;

use kai_common::documents::Document;
use kai_common::documents::chunking::{self, document_id};
use kai_common::documents::fetch::Fetcher;
use kai_common::documents::html;
use kai_common::documents::load::{ContentKind, document_of, load_url};
use kai_common::documents::sources::{self, DocumentJobMessage, SourceItem, SourceSpec};
use kai_common::nodes::NodeError;
use kai_common::nodes::capability::Embedder;
use kai_common::nodes::services::NodeServices;
use kai_common::nodes::web_scraper::ScrapeSettings;
use kai_common::vectors::write::{self, NewChunk};
use kai_common::vectors::{
    Collection, CollectionSpec, IndexKind, IndexParams, VectorError, catalogue, embedding,
};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::consumer::Outcome;

/// Runs (or resumes) the job `message` names.
pub async fn process(db: &PgPool, services: &NodeServices, message: DocumentJobMessage) -> Outcome {
    let DocumentJobMessage::DocumentsV1 {
        job_id,
        source_id,
        user_id,
    } = message;
    match run(db, services, job_id, source_id, user_id).await {
        Ok(outcome) => outcome,
        Err(Stop::Retry(reason)) => Outcome::Retry(reason),
        Err(Stop::Fail(reason)) => match finish(db, job_id, source_id, Some(&reason)).await {
            Ok(()) => Outcome::Completed,
            Err(e) => Outcome::Retry(format!("database: {e}")),
        },
    }
}

/// Why a job stopped before its end.
enum Stop {
    /// Transient (the database or the embeddings server): the next delivery carries on.
    Retry(String),
    /// It cannot succeed (its configuration, its collection): recorded as failed.
    Fail(String),
}

impl From<sqlx::Error> for Stop {
    fn from(e: sqlx::Error) -> Self {
        Stop::Retry(format!("database: {e}"))
    }
}

impl From<kai_common::vectors::VectorError> for Stop {
    fn from(e: kai_common::vectors::VectorError) -> Self {
        match e {
            kai_common::vectors::VectorError::Database(e) => Stop::Retry(format!("database: {e}")),
            other => Stop::Fail(other.to_string()),
        }
    }
}

fn from_node(error: NodeError) -> Stop {
    if error.is_retryable() {
        Stop::Retry(error.to_string())
    } else {
        Stop::Fail(error.to_string())
    }
}

async fn run(
    db: &PgPool,
    services: &NodeServices,
    job_id: Uuid,
    source_id: Uuid,
    owner: Uuid,
) -> Result<Outcome, Stop> {
    let job: Option<(String,)> = sqlx::query_as(
        "SELECT status FROM document_processing_jobs WHERE id = $1 AND user_id = $2",
    )
    .bind(job_id)
    .bind(owner)
    .fetch_optional(db)
    .await?;
    match job.as_ref().map(|(status,)| status.as_str()) {
        // Deleted with its source meanwhile, or already finished (a redelivery).
        None | Some("completed" | "failed") => return Ok(Outcome::Duplicate),
        _ => {}
    }
    let (source_type, config, url): (String, Value, Option<String>) = sqlx::query_as(
        "SELECT source_type, coalesce(source_config, '{}'::jsonb), source_url \
         FROM document_sources WHERE id = $1",
    )
    .bind(source_id)
    .fetch_one(db)
    .await?;
    let spec = sources::parse(&source_type, &config, url.as_deref()).map_err(Stop::Fail)?;
    sqlx::query(
        "UPDATE document_processing_jobs SET status = 'running', \
         started_at = coalesce(started_at, now()) WHERE id = $1",
    )
    .bind(job_id)
    .execute(db)
    .await?;
    sqlx::query("UPDATE document_sources SET processing_status = 'running', updated_at = now() WHERE id = $1")
        .bind(source_id)
        .execute(db)
        .await?;

    let embedder = embedding::embedder_for(
        spec.embedder.as_ref(),
        spec.embedding_dimension,
        owner,
        &format!("source {source_id}"),
        services,
    )
    .await
    .map_err(from_node)?;
    let collection = collection(db, owner, &spec, &embedder).await?;
    sqlx::query("UPDATE document_processing_jobs SET collection_id = $2 WHERE id = $1")
        .bind(job_id)
        .bind(collection.id)
        .execute(db)
        .await?;

    let scrape =
        ScrapeSettings::parse(&spec.config, &["urls"]).map_err(|e| Stop::Fail(e.to_string()))?;
    let fetcher = Fetcher::new(services.outbound.clone(), scrape.fetch.clone());
    let remove = html::selectors(&scrape.remove_selectors).ok().flatten();
    let pending: Vec<(i32,)> = sqlx::query_as(
        "SELECT position FROM document_job_items WHERE job_id = $1 AND status = 'pending' ORDER BY position",
    )
    .bind(job_id)
    .fetch_all(db)
    .await?;
    for (position,) in pending {
        let Some(item) = spec.items.get(position as usize) else {
            continue;
        };
        let loaded = match item {
            SourceItem::Url(url) => {
                load_url(
                    &fetcher,
                    url,
                    remove.as_ref(),
                    scrape.min_length,
                    &services.compute,
                )
                .await
            }
            SourceItem::Inline {
                id,
                content,
                metadata,
            } => {
                let mut metadata = metadata.clone();
                metadata.entry("source").or_insert_with(|| json!(id));
                metadata.insert("doc_id".into(), json!(id));
                Ok(Document::new(content.clone(), metadata))
            }
            SourceItem::File { name, bytes } => {
                let kind = ContentKind::detect(None, name, bytes);
                document_of(
                    bytes.clone(),
                    kind,
                    name,
                    remove.as_ref(),
                    &services.compute,
                )
                .await
            }
        };
        match loaded {
            Ok(document) => {
                let target = Target {
                    db,
                    services,
                    collection: &collection,
                    embedder: &embedder,
                    spec: &spec,
                    job_id,
                    source_id,
                };
                store(&target, document, position, item).await?
            }
            Err(error) => record_failure(db, job_id, position, &error).await?,
        }
    }
    services.vector_written(collection.id);
    finish(db, job_id, source_id, None).await?;
    Ok(Outcome::Completed)
}

/// The source's collection, created on first use with the source's embedder.
async fn collection(
    db: &PgPool,
    owner: Uuid,
    spec: &SourceSpec,
    embedder: &Arc<dyn Embedder>,
) -> Result<Collection, Stop> {
    // An existing collection keeps its size (each item's vectors are checked against it).
    if let Some(existing) = catalogue::find_by_name(db, owner, &spec.collection_name).await? {
        return Ok(existing);
    }
    let dimension = match spec.embedding_dimension {
        Some(dimension) => dimension,
        None => embedder.dimension().await.map_err(from_node)?,
    };
    let wanted = CollectionSpec {
        name: spec.collection_name.clone(),
        dimension,
        distance: spec.distance,
        index: IndexKind::Hnsw,
        params: IndexParams::default(),
        embedder: spec.embedder.clone(),
    };
    let collection = catalogue::find_or_create(db, owner, &wanted).await?;
    if collection.dimension != dimension {
        return Err(Stop::Fail(format!(
            "collection `{}` holds {} dimensions; the embedder `{}` gives {dimension}",
            collection.name,
            collection.dimension,
            embedder.model()
        )));
    }
    Ok(collection)
}

/// Where a job's items go.
struct Target<'a> {
    db: &'a PgPool,
    services: &'a NodeServices,
    collection: &'a Collection,
    embedder: &'a Arc<dyn Embedder>,
    spec: &'a SourceSpec,
    job_id: Uuid,
    source_id: Uuid,
}

/// Chunks, embeds and stores one item's document, marking the item done in the same commit.
async fn store(
    target: &Target<'_>,
    mut document: Document,
    position: i32,
    item: &SourceItem,
) -> Result<(), Stop> {
    let Target {
        db,
        services,
        collection,
        embedder,
        spec,
        job_id,
        source_id,
    } = *target;
    document
        .metadata
        .insert("source_id".into(), json!(source_id));
    document
        .metadata
        .insert("source_item".into(), json!(item.label()));
    document.metadata.insert("job_id".into(), json!(job_id));
    let doc_id = document_id(&document);
    let split = spec.split.clone();
    let (chunks, _) = services
        .compute
        .run(move || chunking::split(&[document], &split))
        .await;
    let texts: Vec<String> = chunks.iter().map(|c| c.page_content.clone()).collect();
    let vectors = embedder.embed(&texts).await.map_err(from_node)?;
    if let Some(wrong) = vectors.iter().find(|v| v.len() != collection.dimension) {
        return Err(Stop::Fail(format!(
            "the embedder `{}` returned {} dimensions; collection `{}` expects {}",
            embedder.model(),
            wrong.len(),
            collection.name,
            collection.dimension
        )));
    }
    let rows: Vec<NewChunk> = chunks
        .iter()
        .zip(vectors)
        .map(|(chunk, embedding)| NewChunk {
            document_id: doc_id.clone(),
            chunk_index: chunk.metadata["chunk_index"].as_i64().unwrap_or(0) as i32,
            content: chunk.page_content.clone(),
            metadata: Value::Object(chunk.metadata.clone()),
            embedding,
        })
        .collect();
    let mut tx = db.begin().await?;
    // Taken over by another delivery meanwhile: what it stored stands.
    let claimed = sqlx::query(
        "UPDATE document_job_items SET status = 'done', chunks = $3, document_id = $4, \
         finished_at = now() WHERE job_id = $1 AND position = $2 AND status = 'pending'",
    )
    .bind(job_id)
    .bind(position)
    .bind(rows.len() as i32)
    .bind(&doc_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if claimed == 0 {
        return Ok(());
    }
    write::replace_documents_in(&mut tx, collection, &rows, false).await?;
    progress(&mut tx, job_id, 1, 0, rows.len() as i32).await?;
    tx.commit().await?;
    Ok(())
}

async fn record_failure(db: &PgPool, job_id: Uuid, position: i32, error: &str) -> Result<(), Stop> {
    let mut tx = db.begin().await?;
    let claimed = sqlx::query(
        "UPDATE document_job_items SET status = 'failed', error = $3, finished_at = now() \
         WHERE job_id = $1 AND position = $2 AND status = 'pending'",
    )
    .bind(job_id)
    .bind(position)
    .bind(error)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if claimed > 0 {
        progress(&mut tx, job_id, 0, 1, 0).await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn progress(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    job_id: Uuid,
    processed: i32,
    failed: i32,
    chunks: i32,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE document_processing_jobs SET processed_items = processed_items + $2, \
         failed_items = failed_items + $3, chunks_stored = chunks_stored + $4, \
         progress_percentage = least(100, ((processed_items + $2 + failed_items + $3) * 100) \
            / greatest(coalesce(total_items, 1), 1)) \
         WHERE id = $1",
    )
    .bind(job_id)
    .bind(processed)
    .bind(failed)
    .bind(chunks)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Ends the job: stale chunks of earlier runs removed, its status and the source's set. With
/// `error`, the job failed as a whole.
async fn finish(
    db: &PgPool,
    job_id: Uuid,
    source_id: Uuid,
    error: Option<&str>,
) -> Result<(), sqlx::Error> {
    if error.is_none() {
        remove_stale(db, job_id, source_id).await?;
    }
    let mut tx = db.begin().await?;
    let (processed, failed): (i32, i32) = sqlx::query_as(
        "UPDATE document_processing_jobs SET \
           status = CASE WHEN $2::text IS NOT NULL OR (processed_items = 0 AND failed_items > 0) \
                         THEN 'failed' ELSE 'completed' END, \
           progress_percentage = CASE WHEN $2::text IS NULL THEN 100 ELSE progress_percentage END, \
           completed_at = now(), \
           error_details = CASE WHEN $2::text IS NULL THEN error_details \
                                ELSE jsonb_build_object('error', $2::text) END \
         WHERE id = $1 RETURNING processed_items, failed_items",
    )
    .bind(job_id)
    .bind(error)
    .fetch_one(&mut *tx)
    .await?;
    let status = if error.is_some() || (processed == 0 && failed > 0) {
        "failed"
    } else {
        "completed"
    };
    sqlx::query(
        "UPDATE document_sources SET processing_status = $2, last_processed = now(), \
         document_count = $3, error_message = $4, updated_at = now() WHERE id = $1",
    )
    .bind(source_id)
    .bind(status)
    .bind(processed)
    .bind(
        error
            .map(str::to_owned)
            .or_else(|| (failed > 0).then(|| format!("{failed} item(s) could not be processed"))),
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Chunks this source stored in earlier runs for items this run did not store again and did
/// not fail on (a page since removed from the source): deleted, through the metadata index.
async fn remove_stale(db: &PgPool, job_id: Uuid, source_id: Uuid) -> Result<(), sqlx::Error> {
    let collection: Option<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT collection_id, user_id FROM document_processing_jobs WHERE id = $1 AND collection_id IS NOT NULL",
    )
    .bind(job_id)
    .fetch_optional(db)
    .await?;
    let Some((collection_id, owner)) = collection else {
        return Ok(());
    };
    let Ok(collection) = catalogue::get(db, owner, collection_id).await else {
        return Ok(());
    };
    let failed: Vec<String> = sqlx::query_scalar(
        "SELECT item FROM document_job_items WHERE job_id = $1 AND status = 'failed'",
    )
    .bind(job_id)
    .fetch_all(db)
    .await?;
    let mut tx = db.begin().await?;
    let removed = write::delete_stale_source_chunks(
        &mut tx,
        &collection,
        &json!({"source_id": source_id}),
        &job_id.to_string(),
        &failed,
    )
    .await;
    match removed {
        Ok(_) => {}
        // Deleted meanwhile: nothing left to tidy.
        Err(VectorError::NotFound(_)) => return Ok(()),
        Err(VectorError::Database(e)) => return Err(e),
        Err(other) => return Err(sqlx::Error::Protocol(other.to_string())),
    }
    tx.commit().await?;
    Ok(())
}
