//! Document sources, `/api/v1/documents/sources`: what to ingest (web pages, documents given
//! inline, a file) into which collection, with how to chunk and embed it. `POST .../process`
//! queues a job the worker runs item by item (scrape → chunk → embed → store); `GET
//! .../status` shows its progress, counts and each failed item's error. Owner-scoped.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use kai_common::documents::sources::{self, DocumentJobMessage, SOURCE_TYPES};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::{Value, json};
use uuid::Uuid;

use super::ApiTags;
use crate::auth::UserAuth;
use crate::enqueue;
use crate::error::ApiError;
use crate::state::AppState;

pub struct DocumentSourcesApi {
    pub state: Arc<AppState>,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct SourceIn {
    /// A workflow of yours the source belongs to.
    pub workflow_id: Option<Uuid>,
    pub name: Option<String>,
    /// `web_scraper` (`source_config.urls`), `api` (`source_config.documents: [{id?, content,
    /// metadata?}]`) or `file_upload` (`source_config.file_name`, `content_base64`).
    pub source_type: String,
    /// One more URL for `web_scraper`.
    pub source_url: Option<String>,
    /// Besides the items: `collection_name` (required), `embedder {credential_id?, model}`,
    /// `embedding_dimension`, `distance_strategy`, `split_strategy`, `chunk_size`,
    /// `chunk_overlap`, and WebScraper's settings (`remove_selectors`, `min_content_length`,
    /// `respect_robots`, `user_agent`, `timeout`, `retries`).
    pub source_config: Value,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SourceOut {
    pub id: Uuid,
    pub workflow_id: Option<Uuid>,
    pub name: Option<String>,
    pub source_type: String,
    pub source_url: Option<String>,
    /// As given, a file's content left out.
    pub source_config: Value,
    /// `pending`, `queued`, `running`, `completed` or `failed`.
    pub processing_status: String,
    pub last_processed: Option<DateTime<Utc>>,
    /// Items stored by the last run.
    pub document_count: i32,
    pub error_message: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct SourceRow {
    id: Uuid,
    workflow_id: Option<Uuid>,
    name: Option<String>,
    source_type: String,
    source_url: Option<String>,
    source_config: Option<Value>,
    processing_status: String,
    last_processed: Option<DateTime<Utc>>,
    document_count: i32,
    error_message: Option<String>,
    created_at: DateTime<Utc>,
}

macro_rules! columns {
    () => {
        "id, workflow_id, name, source_type, source_url, source_config, processing_status, \
         last_processed, document_count, error_message, created_at"
    };
}

impl From<SourceRow> for SourceOut {
    fn from(row: SourceRow) -> Self {
        let mut config = row.source_config.unwrap_or_else(|| json!({}));
        if let Some(encoded) = config.get("content_base64").and_then(Value::as_str) {
            let size = encoded.len() * 3 / 4;
            config["content_base64"] = json!(format!("({size} bytes, not shown)"));
        }
        Self {
            id: row.id,
            workflow_id: row.workflow_id,
            name: row.name,
            source_type: row.source_type,
            source_url: row.source_url,
            source_config: config,
            processing_status: row.processing_status,
            last_processed: row.last_processed,
            document_count: row.document_count,
            error_message: row.error_message,
            created_at: row.created_at,
        }
    }
}

#[derive(Debug, Object)]
pub struct SourceList {
    pub sources: Vec<SourceOut>,
}

#[derive(Debug, Object)]
pub struct JobStarted {
    pub job_id: Uuid,
    pub source_id: Uuid,
    pub status: String,
    pub total_items: i32,
}

#[derive(Debug, Object)]
pub struct ItemError {
    /// The item's URL or name.
    pub item: String,
    pub error: String,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct JobStatus {
    pub job_id: Uuid,
    /// `queued`, `running`, `completed` or `failed`.
    pub status: String,
    pub progress_percentage: i32,
    pub total_items: i32,
    pub processed_items: i32,
    pub failed_items: i32,
    pub chunks_stored: i32,
    pub collection_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// Why the job as a whole failed.
    pub error: Option<String>,
    /// Each item that could not be processed.
    pub errors: Vec<ItemError>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SourceStatus {
    pub source_id: Uuid,
    pub processing_status: String,
    pub last_processed: Option<DateTime<Utc>>,
    pub document_count: i32,
    /// The latest job, if the source was ever processed.
    pub job: Option<JobStatus>,
}

#[derive(ApiResponse)]
enum Created {
    #[oai(status = 201)]
    Created(Json<SourceOut>),
}

#[derive(ApiResponse)]
enum Queued {
    #[oai(status = 202)]
    Accepted(Json<JobStarted>),
}

#[derive(ApiResponse)]
enum Deleted {
    #[oai(status = 204)]
    Deleted,
}

#[OpenApi(tag = "ApiTags::Vectors")]
impl DocumentSourcesApi {
    /// Create a source: 422 naming what is wrong in it (nothing to process, a bad URL, a
    /// chunk overlap not smaller than the size...).
    #[oai(
        path = "/api/v1/documents/sources",
        method = "post",
        operation_id = "create_document_source"
    )]
    async fn create(&self, auth: UserAuth, body: Json<SourceIn>) -> Result<Created, ApiError> {
        let body = body.0;
        sources::parse(
            &body.source_type,
            &body.source_config,
            body.source_url.as_deref(),
        )
        .map_err(ApiError::unprocessable)?;
        if let Some(name) = &body.name
            && (name.trim().is_empty() || name.chars().count() > 255)
        {
            return Err(ApiError::unprocessable("name must be 1 to 255 characters"));
        }
        if let Some(workflow) = body.workflow_id {
            let owned: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM workflows WHERE id = $1 AND user_id = $2")
                    .bind(workflow)
                    .bind(auth.0.id)
                    .fetch_optional(&self.state.db)
                    .await?;
            if owned.is_none() {
                return Err(ApiError::unprocessable(format!(
                    "workflow_id {workflow}: no such workflow"
                )));
            }
        }
        let row = sqlx::query_as::<_, SourceRow>(concat!(
            "INSERT INTO document_sources (user_id, workflow_id, name, source_type, source_url, \
             source_config) VALUES ($1, $2, $3, $4, $5, $6) RETURNING ",
            columns!()
        ))
        .bind(auth.0.id)
        .bind(body.workflow_id)
        .bind(body.name.as_deref().map(str::trim))
        .bind(&body.source_type)
        .bind(&body.source_url)
        .bind(&body.source_config)
        .fetch_one(&self.state.db)
        .await?;
        Ok(Created::Created(Json(row.into())))
    }

    /// Your sources, newest first, optionally of one workflow or type.
    #[oai(
        path = "/api/v1/documents/sources",
        method = "get",
        operation_id = "list_document_sources"
    )]
    async fn list(
        &self,
        auth: UserAuth,
        workflow_id: Query<Option<Uuid>>,
        #[oai(name = "type")] source_type: Query<Option<String>>,
    ) -> Result<Json<SourceList>, ApiError> {
        if let Some(kind) = &source_type.0
            && !SOURCE_TYPES.contains(&kind.as_str())
        {
            return Err(ApiError::unprocessable(format!(
                "type must be one of {}",
                SOURCE_TYPES.join(", ")
            )));
        }
        let rows = sqlx::query_as::<_, SourceRow>(concat!(
            "SELECT ",
            columns!(),
            " FROM document_sources WHERE user_id = $1 \
              AND ($2::uuid IS NULL OR workflow_id = $2) AND ($3::text IS NULL OR source_type = $3) \
              ORDER BY created_at DESC LIMIT 1000"
        ))
        .bind(auth.0.id)
        .bind(workflow_id.0)
        .bind(source_type.0)
        .fetch_all(&self.state.db)
        .await?;
        Ok(Json(SourceList {
            sources: rows.into_iter().map(Into::into).collect(),
        }))
    }

    /// One of your sources.
    #[oai(
        path = "/api/v1/documents/sources/:source_id",
        method = "get",
        operation_id = "get_document_source"
    )]
    async fn get(
        &self,
        auth: UserAuth,
        source_id: Path<Uuid>,
    ) -> Result<Json<SourceOut>, ApiError> {
        Ok(Json(self.source(auth.0.id, source_id.0).await?.into()))
    }

    /// Delete a source and its jobs (what it stored stays in its collection).
    #[oai(
        path = "/api/v1/documents/sources/:source_id",
        method = "delete",
        operation_id = "delete_document_source"
    )]
    async fn delete(&self, auth: UserAuth, source_id: Path<Uuid>) -> Result<Deleted, ApiError> {
        let deleted = sqlx::query("DELETE FROM document_sources WHERE id = $1 AND user_id = $2")
            .bind(source_id.0)
            .bind(auth.0.id)
            .execute(&self.state.db)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(ApiError::not_found("document source"));
        }
        Ok(Deleted::Deleted)
    }

    /// Process the source: 202 with the queued job; 409 while another job of it is queued or
    /// running. Processing again replaces what the source stored before.
    #[oai(
        path = "/api/v1/documents/sources/:source_id/process",
        method = "post",
        operation_id = "process_document_source"
    )]
    async fn process(&self, auth: UserAuth, source_id: Path<Uuid>) -> Result<Queued, ApiError> {
        let owner = auth.0.id;
        let source = self.source(owner, source_id.0).await?;
        let spec = sources::parse(
            &source.source_type,
            source.source_config.as_ref().unwrap_or(&json!({})),
            source.source_url.as_deref(),
        )
        .map_err(ApiError::unprocessable)?;
        let mut tx = self.state.db.begin().await?;
        // One job at a time per source: the source row is the lock.
        sqlx::query("SELECT 1 FROM document_sources WHERE id = $1 FOR UPDATE")
            .bind(source.id)
            .execute(&mut *tx)
            .await?;
        let active: Option<Uuid> = sqlx::query_scalar(
            "SELECT id FROM document_processing_jobs WHERE source_id = $1 \
             AND status IN ('queued', 'running') LIMIT 1",
        )
        .bind(source.id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(job) = active {
            return Err(ApiError::conflict(format!(
                "the source is being processed already (job {job})"
            )));
        }
        let job_id = Uuid::new_v4();
        let total = spec.items.len() as i32;
        sqlx::query(
            "INSERT INTO document_processing_jobs (id, source_id, user_id, job_type, status, \
             total_items) VALUES ($1, $2, $3, 'ingestion', 'queued', $4)",
        )
        .bind(job_id)
        .bind(source.id)
        .bind(owner)
        .bind(total)
        .execute(&mut *tx)
        .await?;
        let labels: Vec<String> = spec.items.iter().map(|i| i.label().to_owned()).collect();
        sqlx::query(
            "INSERT INTO document_job_items (job_id, position, item) \
             SELECT $1, position - 1, item FROM unnest($2::text[]) WITH ORDINALITY AS t(item, position)",
        )
        .bind(job_id)
        .bind(&labels)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE document_sources SET processing_status = 'queued', error_message = NULL, \
             updated_at = now() WHERE id = $1",
        )
        .bind(source.id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        // Published after the rows exist: the worker reads the job from them.
        let message = DocumentJobMessage::DocumentsV1 {
            job_id,
            source_id: source.id,
            user_id: owner,
        };
        if let Err(error) = enqueue::publish_encoded(
            &self.state,
            DocumentJobMessage::SUBJECT_KIND,
            &job_id.to_string(),
            message.encode(),
        )
        .await
        {
            // Not queued: not left looking queued.
            let _ = sqlx::query("DELETE FROM document_processing_jobs WHERE id = $1")
                .bind(job_id)
                .execute(&self.state.db)
                .await;
            let _ = sqlx::query("UPDATE document_sources SET processing_status = $2 WHERE id = $1")
                .bind(source.id)
                .bind(&source.processing_status)
                .execute(&self.state.db)
                .await;
            return Err(error.into());
        }
        Ok(Queued::Accepted(Json(JobStarted {
            job_id,
            source_id: source.id,
            status: "queued".into(),
            total_items: total,
        })))
    }

    /// The source's latest job: progress, counts, and each failed item's error.
    #[oai(
        path = "/api/v1/documents/sources/:source_id/status",
        method = "get",
        operation_id = "get_document_source_status"
    )]
    async fn status(
        &self,
        auth: UserAuth,
        source_id: Path<Uuid>,
    ) -> Result<Json<SourceStatus>, ApiError> {
        let source = self.source(auth.0.id, source_id.0).await?;
        #[allow(clippy::type_complexity)]
        let job: Option<(
            Uuid,
            String,
            i32,
            Option<i32>,
            i32,
            i32,
            i32,
            Option<Uuid>,
            DateTime<Utc>,
            Option<DateTime<Utc>>,
            Option<DateTime<Utc>>,
            Option<Value>,
        )> = sqlx::query_as(
            "SELECT id, status, progress_percentage, total_items, processed_items, failed_items, \
             chunks_stored, collection_id, created_at, started_at, completed_at, error_details \
             FROM document_processing_jobs WHERE source_id = $1 ORDER BY created_at DESC LIMIT 1",
        )
        .bind(source.id)
        .fetch_optional(&self.state.db)
        .await?;
        let job = match job {
            None => None,
            Some((
                id,
                status,
                progress,
                total,
                processed,
                failed,
                chunks,
                collection_id,
                created_at,
                started_at,
                completed_at,
                details,
            )) => {
                let errors: Vec<(String, Option<String>)> = sqlx::query_as(
                    "SELECT item, error FROM document_job_items WHERE job_id = $1 \
                     AND status = 'failed' ORDER BY position LIMIT 1000",
                )
                .bind(id)
                .fetch_all(&self.state.db)
                .await?;
                Some(JobStatus {
                    job_id: id,
                    status,
                    progress_percentage: progress,
                    total_items: total.unwrap_or(0),
                    processed_items: processed,
                    failed_items: failed,
                    chunks_stored: chunks,
                    collection_id,
                    created_at,
                    started_at,
                    completed_at,
                    error: details.and_then(|d| d["error"].as_str().map(str::to_owned)),
                    errors: errors
                        .into_iter()
                        .map(|(item, error)| ItemError {
                            item: if item.starts_with("http") {
                                kai_common::documents::fetch::display_url(&item)
                            } else {
                                item
                            },
                            error: error.unwrap_or_default(),
                        })
                        .collect(),
                })
            }
        };
        Ok(Json(SourceStatus {
            source_id: source.id,
            processing_status: source.processing_status,
            last_processed: source.last_processed,
            document_count: source.document_count,
            job,
        }))
    }
}

impl DocumentSourcesApi {
    async fn source(&self, owner: Uuid, id: Uuid) -> Result<SourceRow, ApiError> {
        sqlx::query_as::<_, SourceRow>(concat!(
            "SELECT ",
            columns!(),
            " FROM document_sources WHERE id = $1 AND user_id = $2"
        ))
        .bind(id)
        .bind(owner)
        .fetch_optional(&self.state.db)
        .await?
        .ok_or_else(|| ApiError::not_found("document source"))
    }
}
