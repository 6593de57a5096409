//! `http_request_logs`: one row per outbound call a workflow made, already redacted, written by
//! a background task in multi-row batches so a node never waits for the database to log. The
//! log is for people reading what happened; when the writer falls behind by `CAPACITY` rows,
//! further rows are dropped and counted (`kai_http_request_logs_dropped_total`) rather than
//! slowing runs.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgPool, Postgres, QueryBuilder};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// Rows waiting for the writer at most.
const CAPACITY: usize = 10_000;
/// Rows per insert at most.
const BATCH: usize = 500;

/// One call, redacted.
#[derive(Debug, Clone)]
pub struct HttpLogEntry {
    pub user_id: Uuid,
    pub workflow_id: Option<Uuid>,
    pub execution_id: Option<Uuid>,
    pub node_id: String,
    pub method: String,
    pub url: String,
    pub request_headers: Value,
    pub request_body: Value,
    pub response_status: Option<i32>,
    pub response_headers: Value,
    pub response_body: Value,
    pub duration_ms: i32,
    pub request_bytes: i64,
    pub response_bytes: Option<i64>,
    pub error: Option<String>,
    pub retry_count: i32,
    pub created_at: DateTime<Utc>,
}

/// Where nodes hand their log rows.
#[derive(Debug, Clone, Default)]
pub struct HttpLogSink {
    sender: Option<mpsc::Sender<HttpLogEntry>>,
}

/// The writer task behind a sink; `finish` writes what is queued and stops it.
pub struct HttpLogWriter {
    task: JoinHandle<()>,
}

impl HttpLogSink {
    /// A sink whose rows go to `db`, and its writer.
    pub fn start(db: PgPool) -> (Self, HttpLogWriter) {
        let (sender, receiver) = mpsc::channel(CAPACITY);
        let task = tokio::spawn(write_batches(db, receiver));
        (
            Self {
                sender: Some(sender),
            },
            HttpLogWriter { task },
        )
    }

    /// A sink that keeps nothing (unit tests).
    pub fn discard() -> Self {
        Self { sender: None }
    }

    /// Queues a row; never waits.
    pub fn record(&self, entry: HttpLogEntry) {
        let Some(sender) = &self.sender else { return };
        if sender.try_send(entry).is_err() {
            metrics::counter!("kai_http_request_logs_dropped_total").increment(1);
        }
    }
}

impl HttpLogWriter {
    /// Waits (at most `limit`) for the rows queued so far to be written, once every sink is
    /// dropped.
    pub async fn finish(self, limit: Duration) {
        if tokio::time::timeout(limit, self.task).await.is_err() {
            tracing::warn!("HTTP request logs still unwritten at shutdown were dropped");
        }
    }
}

async fn write_batches(db: PgPool, mut receiver: mpsc::Receiver<HttpLogEntry>) {
    let mut batch = Vec::with_capacity(BATCH);
    while receiver.recv_many(&mut batch, BATCH).await > 0 {
        if let Err(e) = insert(&db, &batch).await {
            metrics::counter!("kai_http_request_logs_dropped_total").increment(batch.len() as u64);
            tracing::warn!(error = %e, rows = batch.len(), "could not write HTTP request logs");
        }
        batch.clear();
    }
}

async fn insert(db: &PgPool, rows: &[HttpLogEntry]) -> sqlx::Result<()> {
    let mut query: QueryBuilder<Postgres> = QueryBuilder::new(
        "INSERT INTO http_request_logs (user_id, workflow_id, workflow_execution_id, node_id, \
         request_method, request_url, request_headers, request_body, response_status, \
         response_headers, response_body, execution_time_ms, request_bytes, response_bytes, \
         error_message, retry_count, created_at) ",
    );
    query.push_values(rows, |mut row, entry| {
        row.push_bind(entry.user_id)
            .push_bind(entry.workflow_id)
            .push_bind(entry.execution_id)
            .push_bind(&entry.node_id)
            .push_bind(&entry.method)
            .push_bind(&entry.url)
            .push_bind(present(&entry.request_headers))
            .push_bind(present(&entry.request_body))
            .push_bind(entry.response_status)
            .push_bind(present(&entry.response_headers))
            .push_bind(present(&entry.response_body))
            .push_bind(entry.duration_ms)
            .push_bind(entry.request_bytes)
            .push_bind(entry.response_bytes)
            .push_bind(&entry.error)
            .push_bind(entry.retry_count)
            .push_bind(entry.created_at);
    });
    query.build().execute(db).await?;
    Ok(())
}

/// SQL NULL for a JSON null (nothing was sent or received).
fn present(value: &Value) -> Option<&Value> {
    (!value.is_null()).then_some(value)
}
