//! Makes asynchronously committed execution records durable before their jobs are acknowledged.
//! The run writer commits with `synchronous_commit = off` (the caller waiting for a result gets
//! it without a disk flush per batch); a job that wants to acknowledge its message waits here.
//! One task groups every waiting job into one synchronously committed update of
//! `kai_durability_barrier`: PostgreSQL flushes the WAL up to that commit, which includes every
//! commit before it. If PostgreSQL crashes first, the unacknowledged jobs are redelivered and
//! their records written again: nothing acknowledged is ever lost.

use sqlx::PgPool;

use crate::outage::WRITE_TIMEOUT;
use tokio::sync::{mpsc, oneshot};

type Waiter = oneshot::Sender<Result<(), String>>;

#[derive(Clone)]
pub struct Durability {
    waiters: mpsc::Sender<Waiter>,
}

/// Jobs waiting for one barrier at most (more wait for the next).
const MAX_GROUP: usize = 4096;

impl Durability {
    /// Starts the barrier task on `db`, whose commits are synchronous.
    pub fn start(db: PgPool) -> Self {
        let (waiters, receiver) = mpsc::channel(MAX_GROUP);
        tokio::spawn(run(db, receiver));
        Self { waiters }
    }

    /// Returns once everything this process committed before the call is on disk.
    pub async fn wait(&self) -> Result<(), String> {
        let (waiter, flushed) = oneshot::channel();
        self.waiters
            .send(waiter)
            .await
            .map_err(|_| "the durability barrier has stopped".to_owned())?;
        flushed
            .await
            .map_err(|_| "the durability barrier has stopped".to_owned())?
    }
}

async fn run(db: PgPool, mut receiver: mpsc::Receiver<Waiter>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    // Whoever registered before the barrier commit starts is covered by it.
    while receiver.recv_many(&mut group, MAX_GROUP).await > 0 {
        let started = std::time::Instant::now();
        let barrier = sqlx::query(
            "UPDATE kai_durability_barrier SET flushed_at = clock_timestamp() WHERE id = 1",
        )
        .execute(&db);
        // Bounded, so a silent link fails the waiting jobs (held until the database answers)
        // instead of stalling every later barrier behind this one.
        let result = match tokio::time::timeout(WRITE_TIMEOUT, barrier).await {
            Ok(done) => done.map(|_| ()).map_err(|e| format!("database: {e}")),
            Err(_) => Err(format!(
                "database: no answer within {} s",
                WRITE_TIMEOUT.as_secs()
            )),
        };
        metrics::histogram!("kai_worker_durability_barrier_seconds")
            .record(started.elapsed().as_secs_f64());
        metrics::histogram!("kai_worker_durability_group_size").record(group.len() as f64);
        for waiter in group.drain(..) {
            let _ = waiter.send(result.clone());
        }
    }
}
