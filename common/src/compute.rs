//! A bounded pool for CPU-heavy node work (parsing a large answer, running user code): the work
//! runs on tokio's blocking threads, at most `threads` pieces at once, so it never holds an
//! async worker thread and one tenant's heavy run cannot stall other runs' I/O.

use std::sync::Arc;

use tokio::sync::Semaphore;

#[derive(Debug, Clone)]
pub struct ComputePool {
    permits: Arc<Semaphore>,
}

impl ComputePool {
    /// A pool running at most `threads` pieces of work at once.
    pub fn new(threads: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(threads.max(1))),
        }
    }

    /// Runs `work` in the pool once a slot is free. If the caller stops waiting (a node timed
    /// out), the work still holds its slot until it returns, so the bound stays true.
    pub async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> T {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the pool's semaphore is never closed");
        let task = tokio::task::spawn_blocking(move || {
            let _slot = permit;
            work()
        });
        match task.await {
            Ok(value) => value,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}

impl Default for ComputePool {
    /// Two slots per core, at least four: a few runs of heavy user code share the cores (the OS
    /// time-slices them) instead of queueing every other run's code behind them, while the
    /// async runtime's threads stay free either way.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Self::new((2 * cores).max(4))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn at_most_the_bound_runs_at_once() {
        let pool = ComputePool::new(2);
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (pool, running, most) = (pool.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    pool.run(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }
}
