//! Records webhook calls that were refused (bad token, malformed body...) in `webhook_events`.
//! Accepted calls are recorded by the worker in the execution's own transaction; refusals are
//! written off the request path by one background task, and dropped (and counted) rather than
//! queued without bound when the database cannot keep up, so an attack cannot exhaust memory.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::mpsc;

const QUEUE: usize = 4096;

#[derive(Debug)]
pub struct Rejection {
    pub webhook_id: String,
    pub status: u16,
    pub error: String,
    pub method: String,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub received_at: DateTime<Utc>,
}

#[derive(Clone)]
pub struct RejectionLog {
    sender: mpsc::Sender<Rejection>,
}

impl RejectionLog {
    /// Starts the writer task; it ends when every `RejectionLog` clone is dropped.
    pub fn start(db: PgPool) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(write_all(db, receiver));
        Self { sender }
    }

    pub fn record(&self, rejection: Rejection) {
        if self.sender.try_send(rejection).is_err() {
            metrics::counter!("kai_webhook_rejections_dropped_total").increment(1);
        }
    }
}

async fn write_all(db: PgPool, mut receiver: mpsc::Receiver<Rejection>) {
    while let Some(r) = receiver.recv().await {
        let result = sqlx::query(
            "INSERT INTO webhook_events (webhook_id, payload, source_ip, request_ip, user_agent, \
                request_method, response_status, error_message, created_at) \
             VALUES ($1, 'null'::jsonb, $2::inet, $2::inet, $3, $4, $5, $6, $7)",
        )
        .bind(&r.webhook_id)
        .bind(r.client_ip.as_deref())
        .bind(r.user_agent.as_deref())
        .bind(&r.method)
        .bind(i32::from(r.status))
        .bind(&r.error)
        .bind(r.received_at)
        .execute(&db)
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not record a refused webhook call");
        }
    }
}
