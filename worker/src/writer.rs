//! Groups the finished runs of many jobs into one atomic write. Each job hands its run to the
//! writer and waits; a few writer tasks each take whatever runs are waiting (up to a batch) and
//! write them with one statement. Idle, a run is written alone and at once; under
//! load, batches grow by themselves, so throughput follows the database's rows per second, not
//! its commits per second. Batches are committed asynchronously (no disk flush to wait for);
//! a job acknowledges its message only after `durable` says its run is on disk.

use std::sync::Arc;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::durability::Durability;
use crate::outage::WRITE_TIMEOUT;
use crate::persist::{self, FinishedRun, PersistError, Written};

/// Why a run could not be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteFailure {
    /// Its workflow or owner was deleted: it can never be written.
    OwnerGone,
    /// The database failed; the job should be retried.
    Retry(String),
}

type Done = oneshot::Sender<(FinishedRun, Result<Written, WriteFailure>)>;

#[derive(Clone)]
pub struct RunWriter {
    sender: mpsc::Sender<(FinishedRun, Done)>,
    durability: Durability,
}

impl RunWriter {
    /// Starts `writers` tasks writing batches of at most `max_batch` runs, and of runs whose job
    /// messages come to `max_batch_bytes` (a batch stops taking runs once past it, so a batch
    /// of large payloads stays one statement of bounded size). They stop when every
    /// clone of the returned writer is dropped, after writing what was handed to them.
    /// The writers use `writers` connections of their own, with asynchronous commits; `db`
    /// (synchronous commits) makes their writes durable.
    pub fn start(db: PgPool, writers: usize, max_batch: usize, max_batch_bytes: usize) -> Self {
        let (sender, receiver) = mpsc::channel(writers * max_batch);
        let receiver = Arc::new(Mutex::new(receiver));
        let async_commits = async_commit_pool(&db, writers);
        for _ in 0..writers {
            tokio::spawn(write_batches(
                async_commits.clone(),
                receiver.clone(),
                max_batch,
                max_batch_bytes,
            ));
        }
        Self {
            sender,
            durability: Durability::start(db),
        }
    }

    /// Returns once every run this process wrote before the call is on disk: call it before
    /// acknowledging the job whose run was written.
    pub async fn durable(&self) -> Result<(), String> {
        self.durability.wait().await
    }

    /// Writes `run` and hands it back with the outcome.
    pub async fn write(
        &self,
        run: FinishedRun,
    ) -> (Option<FinishedRun>, Result<Written, WriteFailure>) {
        let (done, outcome) = oneshot::channel();
        if self.sender.send((run, done)).await.is_err() {
            return (
                None,
                Err(WriteFailure::Retry("the run writer has stopped".into())),
            );
        }
        match outcome.await {
            Ok((run, result)) => (Some(run), result),
            Err(_) => (
                None,
                Err(WriteFailure::Retry("the run writer has stopped".into())),
            ),
        }
    }
}

/// Connections like `db`'s whose commits return before the disk flush.
fn async_commit_pool(db: &PgPool, size: usize) -> PgPool {
    let options = (*db.connect_options())
        .clone()
        .options([("synchronous_commit", "off")]);
    let pool = PgPoolOptions::new()
        .max_connections(size as u32)
        .acquire_timeout(std::time::Duration::from_secs(5));
    kai_common::db::with_nodelay(pool, &options).connect_lazy_with(options)
}

async fn write_batches(
    db: PgPool,
    receiver: Arc<Mutex<mpsc::Receiver<(FinishedRun, Done)>>>,
    max_batch: usize,
    max_batch_bytes: usize,
) {
    loop {
        let batch = {
            let mut receiver = receiver.lock().await;
            let Some(first) = receiver.recv().await else {
                return;
            };
            take_batch(first, &mut receiver, max_batch, max_batch_bytes)
        };
        metrics::histogram!("kai_worker_write_batch_size").record(batch.len() as f64);
        write_batch(&db, batch).await;
    }
}

/// `first` and the runs waiting after it, up to `max_batch` of them and until their job
/// messages come to `max_batch_bytes` (the run that crosses it is the last taken).
fn take_batch(
    first: (FinishedRun, Done),
    receiver: &mut mpsc::Receiver<(FinishedRun, Done)>,
    max_batch: usize,
    max_batch_bytes: usize,
) -> Vec<(FinishedRun, Done)> {
    let mut bytes = first.0.job.message_bytes;
    let mut batch = vec![first];
    while batch.len() < max_batch && bytes < max_batch_bytes {
        match receiver.try_recv() {
            Ok(next) => {
                bytes += next.0.job.message_bytes;
                batch.push(next);
            }
            Err(_) => break,
        }
    }
    metrics::histogram!("kai_worker_write_batch_bytes").record(bytes as f64);
    batch
}

async fn write_batch(db: &PgPool, batch: Vec<(FinishedRun, Done)>) {
    let (runs, waiters): (Vec<FinishedRun>, Vec<Done>) = batch.into_iter().unzip();
    let started = std::time::Instant::now();
    let results = match write_runs(db, &runs).await {
        Ok(written) => written.into_iter().map(Ok).collect(),
        // One run's workflow is gone and the whole batch was refused: write them one by one so
        // the others are not held back by it.
        Err(PersistError::OwnerGone) if runs.len() > 1 => {
            let mut results = Vec::with_capacity(runs.len());
            for run in &runs {
                results.push(single(db, run).await);
            }
            results
        }
        Err(e) => vec![Err(failure(e)); runs.len()],
    };
    metrics::histogram!("kai_worker_persist_seconds").record(started.elapsed().as_secs_f64());
    for ((run, waiter), result) in runs.into_iter().zip(waiters).zip(results) {
        let _ = waiter.send((run, result));
    }
}

async fn single(db: &PgPool, run: &FinishedRun) -> Result<Written, WriteFailure> {
    write_runs(db, std::slice::from_ref(run))
        .await
        .map(|written| written[0])
        .map_err(failure)
}

/// `persist::write_runs`, given up after `WRITE_TIMEOUT` (the write may still commit later: a
/// retried write of the same runs is idempotent).
async fn write_runs(db: &PgPool, runs: &[FinishedRun]) -> Result<Vec<Written>, PersistError> {
    tokio::time::timeout(WRITE_TIMEOUT, persist::write_runs(db, runs))
        .await
        .unwrap_or(Err(PersistError::Unanswered(WRITE_TIMEOUT)))
}

fn failure(err: PersistError) -> WriteFailure {
    match err {
        PersistError::OwnerGone => WriteFailure::OwnerGone,
        PersistError::Database(e) => WriteFailure::Retry(format!("database: {e}")),
        e @ PersistError::Unanswered(_) => WriteFailure::Retry(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kai_common::jobs::ManualJobV1;

    fn run_of(bytes: usize) -> (FinishedRun, Done) {
        let mut job = crate::request::RunRequest::from(ManualJobV1 {
            execution_id: uuid::Uuid::now_v7(),
            workflow_id: uuid::Uuid::nil(),
            workflow_version: 1,
            user_id: uuid::Uuid::nil(),
            enqueued_at: chrono::Utc::now(),
            inputs: serde_json::Value::Null,
            reply_to: None,
        });
        job.message_bytes = bytes;
        let run = FinishedRun {
            job,
            record: crate::engine::failed("not run".into(), "test"),
            attempt: 1,
        };
        (run, oneshot::channel().0)
    }

    #[tokio::test]
    async fn a_batch_stops_at_its_byte_bound_as_well_as_its_count() {
        let (sender, mut receiver) = mpsc::channel(32);
        let sizes = |receiver: &mut mpsc::Receiver<_>, max_batch| {
            let first = receiver.try_recv().unwrap();
            take_batch(first, receiver, max_batch, 8 << 20).len()
        };
        for _ in 0..10 {
            sender.send(run_of(3 << 20)).await.unwrap();
        }
        // 3 + 3 + 3 MiB crosses 8 MiB: three runs a batch, not ten.
        let large: Vec<usize> = (0..4).map(|_| sizes(&mut receiver, 128)).collect();
        assert_eq!(large, [3, 3, 3, 1]);
        for _ in 0..10 {
            sender.send(run_of(100)).await.unwrap();
        }
        let small: Vec<usize> = (0..2).map(|_| sizes(&mut receiver, 6)).collect();
        assert_eq!(small, [6, 4]);
    }
}
