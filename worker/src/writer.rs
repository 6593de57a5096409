//! Groups the finished runs of many jobs into one atomic write. Each job hands its run to the
//! writer and waits; a few writer tasks each take whatever runs are waiting (up to a batch) and
//! write them with one statement. Idle, a run is written alone and at once; under
//! load, batches grow by themselves, so throughput follows the database's rows per second, not
//! its commits per second. Batches are committed asynchronously (no disk flush to wait for);
//! a job acknowledges its message only after `durable` says its run is on disk.
//!
//! Only full batches are written side by side. A batch with room left waits for the write in
//! flight to end, taking the runs that arrive meanwhile: at a steady rate one statement of a few
//! runs costs the database far less than as many statements of one run competing for it, and
//! the runs wait no longer (measured in docs/decisions/0004-synchronous-answers.md). A backlog
//! fills every batch at once, so draining one still uses every writer.

use std::sync::Arc;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::sync::{Mutex, mpsc, oneshot, watch};

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
        let queue = Arc::new(Queue {
            receiver: Mutex::new(receiver),
            writing: watch::Sender::new(0),
            max_batch,
            max_batch_bytes,
        });
        let async_commits = async_commit_pool(&db, writers);
        for _ in 0..writers {
            tokio::spawn(write_batches(async_commits.clone(), queue.clone()));
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

/// The runs waiting to be written, shared by the writer tasks.
struct Queue {
    receiver: Mutex<mpsc::Receiver<(FinishedRun, Done)>>,
    /// Batches being written now.
    writing: watch::Sender<usize>,
    max_batch: usize,
    max_batch_bytes: usize,
}

async fn write_batches(db: PgPool, queue: Arc<Queue>) {
    while let Some(batch) = next_batch(&queue).await {
        metrics::histogram!("kai_worker_write_batch_size").record(batch.runs.len() as f64);
        metrics::histogram!("kai_worker_write_batch_bytes").record(batch.bytes as f64);
        // Counted off however the write ends: a writer lost to a panic must not leave every
        // later partial batch waiting for a write that will never end.
        let _written = WriteEnds(&queue.writing);
        write_batch(&db, batch.runs).await;
    }
}

/// Takes one batch off the count of batches being written when dropped.
struct WriteEnds<'a>(&'a watch::Sender<usize>);

impl Drop for WriteEnds<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

/// The next batch: the runs waiting now and, while another batch is being written and this one
/// has room, those arriving until that write ends. It is counted as being written before the
/// queue is let go, so the next writer cannot take it for idle. `None` once every sender is
/// gone and nothing is left.
async fn next_batch(queue: &Queue) -> Option<Batch> {
    let mut receiver = queue.receiver.lock().await;
    let first = receiver.recv().await?;
    let mut batch = Batch::of(first, queue.max_batch, queue.max_batch_bytes);
    batch.take_waiting(&mut receiver);
    let mut writing = queue.writing.subscribe();
    while !batch.is_full() {
        tokio::select! {
            biased;
            ended = writing.wait_for(|n| *n == 0) => {
                // The sender lives in `queue`: waiting cannot fail while it is borrowed.
                debug_assert!(ended.is_ok());
                break;
            }
            next = receiver.recv() => match next {
                Some(next) => {
                    batch.push(next);
                    batch.take_waiting(&mut receiver);
                }
                None => break,
            },
        }
    }
    queue.writing.send_modify(|n| *n += 1);
    Some(batch)
}

/// Runs taken for one statement, bounded by count and by the bytes of their job messages (the
/// run that crosses the byte bound is the last taken).
struct Batch {
    runs: Vec<(FinishedRun, Done)>,
    bytes: usize,
    max_runs: usize,
    max_bytes: usize,
}

impl Batch {
    fn of(first: (FinishedRun, Done), max_runs: usize, max_bytes: usize) -> Self {
        let mut batch = Self {
            runs: Vec::new(),
            bytes: 0,
            max_runs,
            max_bytes,
        };
        batch.push(first);
        batch
    }

    fn push(&mut self, run: (FinishedRun, Done)) {
        self.bytes += run.0.job.message_bytes;
        self.runs.push(run);
    }

    fn is_full(&self) -> bool {
        self.runs.len() >= self.max_runs || self.bytes >= self.max_bytes
    }

    /// Adds the runs already waiting, until full.
    fn take_waiting(&mut self, receiver: &mut mpsc::Receiver<(FinishedRun, Done)>) {
        while !self.is_full() {
            match receiver.try_recv() {
                Ok(next) => self.push(next),
                Err(_) => break,
            }
        }
    }
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

    fn queue(max_batch: usize) -> (mpsc::Sender<(FinishedRun, Done)>, Queue) {
        let (sender, receiver) = mpsc::channel(64);
        let queue = Queue {
            receiver: Mutex::new(receiver),
            writing: watch::Sender::new(0),
            max_batch,
            max_batch_bytes: 8 << 20,
        };
        (sender, queue)
    }

    #[tokio::test]
    async fn a_batch_stops_at_its_byte_bound_as_well_as_its_count() {
        let (sender, queue) = queue(128);
        let sizes = |queue: &Queue| {
            let mut receiver = queue.receiver.try_lock().unwrap();
            let first = receiver.try_recv().unwrap();
            let mut batch = Batch::of(first, queue.max_batch, queue.max_batch_bytes);
            batch.take_waiting(&mut receiver);
            batch.runs.len()
        };
        for _ in 0..10 {
            sender.send(run_of(3 << 20)).await.unwrap();
        }
        // 3 + 3 + 3 MiB crosses 8 MiB: three runs a batch, not ten.
        let large: Vec<usize> = (0..4).map(|_| sizes(&queue)).collect();
        assert_eq!(large, [3, 3, 3, 1]);
        let (sender, queue) = self::queue(6);
        for _ in 0..10 {
            sender.send(run_of(100)).await.unwrap();
        }
        let small: Vec<usize> = (0..2).map(|_| sizes(&queue)).collect();
        assert_eq!(small, [6, 4]);
    }

    #[tokio::test]
    async fn a_batch_with_room_waits_for_the_write_in_flight_and_takes_what_arrives() {
        let (sender, queue) = queue(4);
        let queue = Arc::new(queue);
        // Nothing is being written: one run is a batch at once, counted as being written.
        sender.send(run_of(100)).await.unwrap();
        let alone = next_batch(&queue).await.unwrap();
        assert_eq!(alone.runs.len(), 1);
        assert_eq!(*queue.writing.borrow(), 1);

        // While it is written, the next batch gathers the runs that arrive...
        sender.send(run_of(100)).await.unwrap();
        let gathering = tokio::spawn({
            let queue = queue.clone();
            async move { next_batch(&queue).await.unwrap().runs.len() }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        sender.send(run_of(100)).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(
            !gathering.is_finished(),
            "a partial batch left before the write ended"
        );
        // ...until that write ends.
        queue.writing.send_modify(|n| *n -= 1);
        assert_eq!(gathering.await.unwrap(), 2);

        // A full batch does not wait for the write in flight.
        for _ in 0..4 {
            sender.send(run_of(100)).await.unwrap();
        }
        let full = tokio::time::timeout(std::time::Duration::from_secs(5), next_batch(&queue))
            .await
            .expect("a full batch waited for the write in flight");
        assert_eq!(full.unwrap().runs.len(), 4);
        assert_eq!(*queue.writing.borrow(), 2);
    }
}
