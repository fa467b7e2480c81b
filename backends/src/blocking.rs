//! Runs an engine's blocking call without blocking the async runtime's worker threads.

use eventkv::KvError;
use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `work` so that no async worker thread is blocked by it:
/// - on a multi-threaded tokio runtime, in place (`block_in_place`: the worker hands its
///   other tasks to another thread first), which saves two thread hops per call;
/// - on a current-thread runtime, on tokio's blocking pool;
/// - without a runtime, inline (no async worker exists to block).
pub(crate) async fn run<T, F>(engine: &'static str, work: F) -> Result<T, KvError>
where
    F: FnOnce() -> Result<T, KvError> + Send + 'static,
    T: Send + 'static,
{
    match Handle::try_current() {
        Ok(runtime) if runtime.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        Ok(runtime) => runtime
            .spawn_blocking(work)
            .await
            .map_err(|error| KvError::engine(engine, format!("blocking task failed: {error}")))?,
        Err(_) => work(),
    }
}
