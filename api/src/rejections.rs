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

/// Refusals written by one statement at most.
const BATCH: usize = 512;

async fn write_all(db: PgPool, mut receiver: mpsc::Receiver<Rejection>) {
    let mut batch = Vec::with_capacity(BATCH);
    // Whatever queued while the previous batch was written goes in the next one.
    while receiver.recv_many(&mut batch, BATCH).await > 0 {
        if let Err(e) = write(&db, &batch).await {
            tracing::warn!(error = %e, calls = batch.len(), "could not record refused webhook calls");
        }
        batch.clear();
    }
}

/// Records each refusal in `webhook_events` and as an error in the webhook's counters.
async fn write(db: &PgPool, batch: &[Rejection]) -> Result<(), sqlx::Error> {
    let column = |f: fn(&Rejection) -> Option<String>| batch.iter().map(f).collect::<Vec<_>>();
    sqlx::query(
        "WITH calls AS ( \
            SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int4[], \
                $6::text[], $7::timestamptz[]) \
            AS c(webhook_id, ip, agent, method, status, error, received_at) \
         ), events AS ( \
            INSERT INTO webhook_events (webhook_id, payload, source_ip, request_ip, user_agent, \
                request_method, response_status, error_message, created_at) \
            SELECT webhook_id, 'null'::jsonb, ip::inet, ip::inet, agent, method, status, error, \
                received_at FROM calls \
         ) \
         INSERT INTO webhook_trigger_deltas (webhook_id, triggered_at, failed, triggered) \
         SELECT webhook_id, received_at, true, false FROM calls",
    )
    .bind(column(|r| Some(r.webhook_id.clone())))
    .bind(column(|r| r.client_ip.clone()))
    .bind(column(|r| r.user_agent.clone()))
    .bind(column(|r| Some(r.method.clone())))
    .bind(
        batch
            .iter()
            .map(|r| i32::from(r.status))
            .collect::<Vec<_>>(),
    )
    .bind(column(|r| Some(r.error.clone())))
    .bind(batch.iter().map(|r| r.received_at).collect::<Vec<_>>())
    .execute(db)
    .await?;
    Ok(())
}
