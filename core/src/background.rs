//! Background snapshot tasks: spawned on the runtime at hand, counted, and drained.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures_channel::oneshot;

use crate::kv::MaybeSend;

/// Runs `task` detached: on the current tokio runtime off wasm32, on the browser's event
/// loop on wasm32. Gives the task back when there is no runtime to run it on.
#[cfg_attr(target_arch = "wasm32", allow(clippy::unnecessary_wraps))] // always spawns there
pub(crate) fn spawn<F>(task: F) -> Result<(), F>
where
    F: Future<Output = ()> + MaybeSend + 'static,
{
    #[cfg(not(target_arch = "wasm32"))]
    {
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(task);
                Ok(())
            }
            Err(_) => Err(task),
        }
    }
    #[cfg(target_arch = "wasm32")]
    {
        wasm_bindgen_futures::spawn_local(task);
        Ok(())
    }
}

/// The background tasks still running, and a way to wait for them.
#[derive(Debug, Default)]
pub(crate) struct PendingTasks {
    running: AtomicUsize,
    done: Mutex<Vec<oneshot::Receiver<()>>>,
}

/// Held by a running task; dropping it (when the task ends, however) marks it done.
pub(crate) struct TaskGuard {
    tasks: Arc<PendingTasks>,
    _done: oneshot::Sender<()>,
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.tasks.running.fetch_sub(1, Ordering::AcqRel);
    }
}

impl PendingTasks {
    /// Counts a new task; the task keeps the guard until it ends.
    pub(crate) fn start(self: &Arc<Self>) -> TaskGuard {
        let (sender, receiver) = oneshot::channel();
        let mut done = self.done.lock().unwrap_or_else(PoisonError::into_inner);
        done.retain_mut(|receiver| matches!(receiver.try_recv(), Ok(None)));
        done.push(receiver);
        self.running.fetch_add(1, Ordering::AcqRel);
        TaskGuard {
            tasks: Arc::clone(self),
            _done: sender,
        }
    }

    /// How many tasks are running.
    pub(crate) fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    /// Waits until every task started before or during the wait has ended.
    pub(crate) async fn drain(&self) {
        loop {
            let waiting =
                std::mem::take(&mut *self.done.lock().unwrap_or_else(PoisonError::into_inner));
            if waiting.is_empty() {
                return;
            }
            for receiver in waiting {
                // Canceled means the sender was dropped: the task ended either way.
                let _ = receiver.await;
            }
        }
    }
}
