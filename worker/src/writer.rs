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
    /// Starts `writers` tasks writing batches of at most `max_batch` runs. They stop when every
    /// clone of the returned writer is dropped, after writing what was handed to them.
    /// The writers use `writers` connections of their own, with asynchronous commits; `db`
    /// (synchronous commits) makes their writes durable.
    pub fn start(db: PgPool, writers: usize, max_batch: usize) -> Self {
        let (sender, receiver) = mpsc::channel(writers * max_batch);
        let receiver = Arc::new(Mutex::new(receiver));
        let async_commits = async_commit_pool(&db, writers);
        for _ in 0..writers {
            tokio::spawn(write_batches(
                async_commits.clone(),
                receiver.clone(),
                max_batch,
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
    PgPoolOptions::new()
        .max_connections(size as u32)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect_lazy_with(options)
}

async fn write_batches(
    db: PgPool,
    receiver: Arc<Mutex<mpsc::Receiver<(FinishedRun, Done)>>>,
    max_batch: usize,
) {
    loop {
        let batch = {
            let mut receiver = receiver.lock().await;
            let Some(first) = receiver.recv().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < max_batch {
                match receiver.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            batch
        };
        metrics::histogram!("kai_worker_write_batch_size").record(batch.len() as f64);
        write_batch(&db, batch).await;
    }
}

async fn write_batch(db: &PgPool, batch: Vec<(FinishedRun, Done)>) {
    let (runs, waiters): (Vec<FinishedRun>, Vec<Done>) = batch.into_iter().unzip();
    let started = std::time::Instant::now();
    let results = match persist::write_runs(db, &runs).await {
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
    persist::write_runs(db, std::slice::from_ref(run))
        .await
        .map(|written| written[0])
        .map_err(failure)
}

fn failure(err: PersistError) -> WriteFailure {
    match err {
        PersistError::OwnerGone => WriteFailure::OwnerGone,
        PersistError::Database(e) => WriteFailure::Retry(format!("database: {e}")),
    }
}
