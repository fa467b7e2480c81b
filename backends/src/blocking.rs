//! Runs an engine's blocking call without blocking the async runtime's worker threads.

use std::time::{Duration, Instant};

use eventkv::KvError;
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
            format!("blocking task failed: {}", failed.message),
        )
    }
}

impl From<BlockingFailed> for OpenError {
    fn from(failed: BlockingFailed) -> Self {
        OpenError::Engine {
            engine: failed.engine,
            message: format!("blocking task failed: {}", failed.message),
        }
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
pub(crate) async fn run_building<'a, T, F>(
    engine: &'static str,
    build: eventkv::BuildBatch<'a>,
    work: F,
) -> Result<T, KvError>
where
    F: FnOnce(eventkv::BuildBatch<'_>) -> Result<T, KvError> + Send + 'static,
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
            let relay: eventkv::BuildBatch<'static> = Box::new(move |values: &[_]| {
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
