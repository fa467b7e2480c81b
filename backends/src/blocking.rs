//! Runs an engine's blocking call without blocking the async runtime's worker threads.

use std::time::{Duration, Instant};

use eventkv::{ErrorKind, KvError};
use tokio::runtime::{Handle, RuntimeFlavor};

use crate::error::OpenError;

/// A blocking call at least this long is followed by a yield to the scheduler.
const YIELD_AFTER: Duration = Duration::from_micros(200);

/// A blocking task that panicked or was cancelled.
pub(crate) struct BlockingFailed {
    engine: &'static str,
    message: String,
}

impl From<BlockingFailed> for KvError {
    fn from(failed: BlockingFailed) -> Self {
        KvError::engine(
            failed.engine,
            ErrorKind::Unexpected,
            format!("blocking task failed: {}", failed.message),
        )
    }
}

impl From<BlockingFailed> for OpenError {
    fn from(failed: BlockingFailed) -> Self {
        OpenError::engine(
            failed.engine,
            ErrorKind::Unexpected,
            format!("blocking task failed: {}", failed.message),
        )
    }
}

/// Runs `work` so that no async worker thread is blocked by it:
/// - on a multi-threaded tokio runtime, in place (`block_in_place`: the worker hands its
///   other tasks to another thread first), which saves two thread hops per call; then it
///   yields, so sibling futures of the caller's task are not frozen by a run of calls;
/// - on a current-thread runtime, on tokio's blocking pool;
/// - without a tokio runtime (another executor, or none), inline: no tokio worker exists
///   to block.
pub(crate) async fn run<T, E, F>(engine: &'static str, work: F) -> Result<T, E>
where
    F: FnOnce() -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: From<BlockingFailed> + Send + 'static,
{
    match Handle::try_current() {
        Ok(runtime) if runtime.runtime_flavor() == RuntimeFlavor::MultiThread => {
            in_place(work).await
        }
        Ok(runtime) => runtime.spawn_blocking(work).await.map_err(|error| {
            E::from(BlockingFailed {
                engine,
                message: error.to_string(),
            })
        })?,
        Err(_) => work(),
    }
}

/// Runs `work` as [`run`] does, handing it `build`, which may borrow from the caller. On
/// the blocking pool (a current-thread runtime), `build` stays on the caller's task: the
/// values `work` read are sent to it and the batch sent back. If the caller goes away
/// meanwhile, `work`'s build returns `None` (nothing is written).
#[cfg(feature = "sqlite")]
pub(crate) async fn run_building<T, F>(
    engine: &'static str,
    build: eventkv::raw::BuildBatch<'_>,
    work: F,
) -> Result<T, KvError>
where
    F: FnOnce(eventkv::raw::BuildBatch<'_>) -> Result<T, KvError> + Send + 'static,
    T: Send + 'static,
{
    match Handle::try_current() {
        Ok(runtime) if runtime.runtime_flavor() == RuntimeFlavor::MultiThread => {
            in_place(|| work(build)).await
        }
        Ok(runtime) => {
            use tokio::sync::oneshot;
            let (values_tx, values_rx) = oneshot::channel::<Vec<Option<bytes::Bytes>>>();
            let (batch_tx, batch_rx) = oneshot::channel();
            let relay: eventkv::raw::BuildBatch<'static> = Box::new(move |values: &[_]| {
                values_tx.send(values.to_vec()).ok()?;
                batch_rx.blocking_recv().ok().flatten()
            });
            let task = runtime.spawn_blocking(move || work(relay));
            if let Ok(values) = values_rx.await {
                // The task waits for this answer: it is gone only if the task is.
                let _ = batch_tx.send(build(&values));
            }
            task.await.map_err(|error| {
                KvError::from(BlockingFailed {
                    engine,
                    message: error.to_string(),
                })
            })?
        }
        Err(_) => work(build),
    }
}

/// Runs `work` with `block_in_place`, then yields: the call completed without the task
/// ever waiting, so sibling futures of the same task (a `join!`ed timer) and the
/// scheduler get a turn, at once after a long call, else once the task's cooperative
/// budget is spent.
async fn in_place<T>(work: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let result = tokio::task::block_in_place(work);
    if started.elapsed() >= YIELD_AFTER {
        tokio::task::yield_now().await;
    } else {
        tokio::task::consume_budget().await;
    }
    result
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use std::future::Future;
    use std::sync::mpsc;
    use std::task::{Context, Waker};

    use bytes::Bytes;
    use eventkv::WriteBatch;

    use super::*;

    #[allow(clippy::unnecessary_wraps)] // a builder's signature
    fn batch() -> Option<WriteBatch> {
        let mut batch = WriteBatch::new();
        batch.put(Bytes::from_static(b"k"), Bytes::from_static(b"v"));
        Some(batch)
    }

    /// On a current-thread runtime the blocking work gets the batch the caller's builder
    /// makes from the values the work read.
    #[tokio::test(flavor = "current_thread")]
    async fn the_builder_runs_on_the_callers_task() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
        let build_saw = seen.clone();
        let built = run_building(
            "test",
            Box::new(move |values: &[Option<Bytes>]| {
                *build_saw.lock().expect("lock") = Some(values.to_vec());
                batch()
            }),
            |build| Ok(build(&[Some(Bytes::from_static(b"read"))]).map(|b| b.into_parts().1.len())),
        )
        .await
        .expect("runs");
        assert_eq!(built, Some(1));
        assert_eq!(
            *seen.lock().expect("lock"),
            Some(vec![Some(Bytes::from_static(b"read"))])
        );
    }

    /// A caller that goes away before its batch is built leaves the work a `None`: the
    /// engine writes nothing.
    #[tokio::test(flavor = "current_thread")]
    async fn a_caller_gone_before_the_build_writes_nothing() {
        let (go, wait) = mpsc::channel::<()>();
        let (done, outcome) = mpsc::channel::<bool>();
        let write = run_building(
            "test",
            Box::new(|_: &[Option<Bytes>]| batch()),
            move |build| {
                wait.recv().ok();
                let built = build(&[]).is_some();
                done.send(built).ok();
                Ok(built)
            },
        );
        let mut write = Box::pin(write);
        let first = write.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        assert!(first.is_pending(), "the work waits on the blocking pool");
        drop(write);
        go.send(()).expect("the work waits");
        let built = tokio::task::spawn_blocking(move || outcome.recv().expect("the work ends"))
            .await
            .expect("join");
        assert!(!built, "no batch for a caller that went away");
    }
}
