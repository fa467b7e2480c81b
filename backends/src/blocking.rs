//! Runs an engine's blocking call off the async runtime's worker threads.

use eventkv::KvError;

/// Runs `work` on tokio's blocking pool (inline when there is no runtime: then no async
/// worker can be blocked).
pub(crate) async fn run<T, F>(engine: &'static str, work: F) -> Result<T, KvError>
where
    F: FnOnce() -> Result<T, KvError> + Send + 'static,
    T: Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => runtime
            .spawn_blocking(work)
            .await
            .map_err(|error| KvError::engine(engine, format!("blocking task failed: {error}")))?,
        Err(_) => work(),
    }
}
