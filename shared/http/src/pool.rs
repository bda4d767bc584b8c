//! A small, bounded pool for CPU-bound work (parsing and validating
//! artifacts) that must not run on the async worker threads: a large
//! artifact takes a while, and while it runs the probes and every other
//! request must still be answered.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use thiserror::Error;
use tokio::sync::Semaphore;

use crate::ApiError;

/// Runs closures on tokio's blocking threads, at most `workers` at a time,
/// with at most `queue` more waiting for a worker. Work offered beyond that
/// waits for admission up to the admission wait (10 s by default), then is
/// refused ([`PoolError::Busy`], answered 503 with `Retry-After`): a burst
/// of clients is served in turn, and an overload is told to come back
/// instead of queueing without end. (What waits has its request body
/// already read, which the listeners' connection cap and body limits
/// bound.)
///
/// Once started, a closure runs to its end even if its caller goes away
/// (blocking work cannot be interrupted); its slot is released only then,
/// so the bound holds. The work it runs must itself be bounded (the
/// artifact caps of `artisync_synapse::LIMITS` see to that), and shutdown
/// never waits for it longer than the server's grace period.
#[derive(Clone, Debug)]
pub struct ParsePool {
    /// Slots for running and waiting work: `workers + queue` permits.
    admitted: Arc<Semaphore>,
    /// Slots for running work: `workers` permits.
    running: Arc<Semaphore>,
    workers: usize,
    /// How long work waits to be admitted before it is refused.
    admission_wait: Duration,
}

/// How long [`ParsePool::run`] waits for admission by default.
pub const ADMISSION_WAIT: Duration = Duration::from_secs(10);

/// Why the pool did not run a piece of work.
#[derive(Debug, Clone, Copy, Error, PartialEq, Eq)]
pub enum PoolError {
    /// Every worker is busy and the queue is full.
    #[error("the server is busy validating other artifacts; retry shortly")]
    Busy,
    /// The work panicked (a bug): the process keeps running.
    #[error("validating the artifact failed unexpectedly")]
    Failed,
}

/// Seconds a refused caller is told to wait.
const BUSY_RETRY_AFTER_SECONDS: u64 = 1;

impl ParsePool {
    /// `workers` (at least 1) run at once; `queue` more wait.
    pub fn new(workers: usize, queue: usize) -> Self {
        let workers = workers.max(1);
        ParsePool {
            admitted: Arc::new(Semaphore::new(workers + queue)),
            running: Arc::new(Semaphore::new(workers)),
            workers,
            admission_wait: ADMISSION_WAIT,
        }
    }

    /// Waits at most `wait` for admission (zero: refuses at once when full).
    pub fn with_admission_wait(mut self, wait: Duration) -> Self {
        self.admission_wait = wait;
        self
    }

    /// One worker per core, leaving the async threads room; four waiting per
    /// worker.
    pub fn for_cores() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self::new(cores, 4 * cores)
    }

    /// How many closures run at once at most.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Runs `work` on a blocking thread when a worker is free; refuses it
    /// with [`PoolError::Busy`] when the queue stays full for the admission
    /// wait.
    pub async fn run<T, F>(&self, work: F) -> Result<T, PoolError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let admission = Arc::clone(&self.admitted).acquire_owned();
        let admitted = match tokio::time::timeout(self.admission_wait, admission).await {
            Ok(Ok(admitted)) => admitted,
            _ => return Err(PoolError::Busy),
        };
        self.start(admitted, work).await
    }

    /// Runs `work` on a blocking thread, waiting as long as it takes for a
    /// slot (for background work that has no caller to refuse, such as a
    /// gateway deploying what it fetched; its own concurrency bounds the
    /// wait).
    pub async fn run_waiting<T, F>(&self, work: F) -> Result<T, PoolError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let admitted = Arc::clone(&self.admitted)
            .acquire_owned()
            .await
            .map_err(|_| PoolError::Busy)?;
        self.start(admitted, work).await
    }

    async fn start<T, F>(
        &self,
        admitted: tokio::sync::OwnedSemaphorePermit,
        work: F,
    ) -> Result<T, PoolError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let running = Arc::clone(&self.running)
            .acquire_owned()
            .await
            .map_err(|_| PoolError::Busy)?;
        tokio::task::spawn_blocking(move || {
            // Held until the work ends, even if the caller is gone.
            let _slots = (admitted, running);
            work()
        })
        .await
        .map_err(|_| PoolError::Failed)
    }
}

impl From<PoolError> for ApiError {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::Busy => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
                .with_retry_after(BUSY_RETRY_AFTER_SECONDS),
            PoolError::Failed => {
                tracing::error!("artifact validation panicked");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Work that holds a worker until `release` is sent, started.
    async fn occupy(
        pool: &ParsePool,
    ) -> (
        tokio::task::JoinHandle<Result<bool, PoolError>>,
        std::sync::mpsc::Sender<()>,
    ) {
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn({
            let pool = pool.clone();
            async move {
                pool.run(move || {
                    let _ = started_tx.send(());
                    wait.recv().is_ok()
                })
                .await
            }
        });
        started.await.expect("the first work starts");
        (running, release)
    }

    #[tokio::test]
    async fn a_full_pool_refuses_and_frees_its_slots_when_work_ends() {
        let pool = ParsePool::new(1, 1).with_admission_wait(Duration::ZERO);
        let (running, release) = occupy(&pool).await;
        // One running, one waiting: the third is refused.
        let queued = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(|| 2).await }
        });
        // Wait (with a deadline) until the second holds the queue's slot.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while pool.admitted.available_permits() > 0 {
            assert!(tokio::time::Instant::now() < deadline, "never queued");
            tokio::task::yield_now().await;
        }
        assert_eq!(pool.run(|| 3).await, Err(PoolError::Busy));
        let answer = ApiError::from(PoolError::Busy);
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answer.retry_after, Some(1));
        release.send(()).expect("the work waits");
        assert_eq!(running.await.expect("joined"), Ok(true));
        assert_eq!(queued.await.expect("joined"), Ok(2));
        assert_eq!(pool.run(|| 4).await, Ok(4));
    }

    #[tokio::test]
    async fn work_beyond_the_queue_waits_for_admission_within_the_wait() {
        let pool = ParsePool::new(1, 0).with_admission_wait(Duration::from_secs(60));
        let (running, release) = occupy(&pool).await;
        // The pool is full: the next is not refused, it waits ...
        let early = tokio::time::timeout(Duration::from_millis(100), pool.run(|| 1)).await;
        assert!(early.is_err(), "answered instead of waiting: {early:?}");
        // ... and runs once the first is done.
        let waiting = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(|| 2).await }
        });
        release.send(()).expect("the work waits");
        assert_eq!(running.await.expect("joined"), Ok(true));
        assert_eq!(waiting.await.expect("joined"), Ok(2));
    }

    #[tokio::test]
    async fn a_panic_is_an_error_not_a_crash() {
        let pool = ParsePool::new(1, 0);
        let result: Result<(), PoolError> = pool.run(|| panic!("bug")).await;
        assert_eq!(result, Err(PoolError::Failed));
        assert_eq!(pool.run(|| 1).await, Ok(1));
    }
}
