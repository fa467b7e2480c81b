//! Projections: read models built from the global log and kept in the same engine as the
//! events. Each page of events is applied in one atomic batch with the projection's
//! checkpoint, so that a crash at any point neither applies an event twice nor loses one.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;

use futures_util::future::select;

use crate::error::{ErrorKind, SharedError};
use crate::event_store::{EventStoreError, KvEventStore};
use crate::keys;
use crate::kv::{BoxError, KvError, MaybeSend, MaybeSync, OrderedKv};
use crate::read_model::{ReadModel, read_model_is_empty};
use crate::recorded::RecordedEvent;
use crate::subscription::{LONGEST_RETRY_PAUSE, SubscribeOptions, retry_pauses};

/// A read model built from the events of the global log.
///
/// Its state lives under its own keys in the engine (`'p' | name | key`, see
/// `docs/format.md`); [`ProjectionRunner`] applies events to it in pages, each page
/// written together with the projection's checkpoint.
pub trait Projection: MaybeSend + MaybeSync {
    /// Its name: that of its checkpoint and of its read model's key space. Change it when
    /// the code changes what the read model holds, so it is rebuilt from the first event.
    fn name(&self) -> &str;

    /// Folds `event` into the read model, reading and changing it through `model`. An
    /// error stops the runner: nothing of the page is written, and the event is applied
    /// again on the next run.
    fn apply(
        &self,
        event: &RecordedEvent,
        model: &mut ReadModel<'_>,
    ) -> impl Future<Output = Result<(), BoxError>> + MaybeSend;
}

/// Why a projection stopped.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError {
    /// The projection's handler failed; nothing of the page was written.
    #[error(
        "projection {name:?}: the handler failed on the event at position {position}: {source}"
    )]
    Handler {
        /// The projection.
        name: String,
        /// The event's position.
        position: u64,
        /// The handler's error.
        source: SharedError,
    },
    /// Another runner of the same projection moved its checkpoint: run one at a time.
    #[error(
        "projection {name:?}: another runner moved its checkpoint (run one runner per projection)"
    )]
    Concurrent {
        /// The projection.
        name: String,
    },
    /// The read model holds data but the projection has no checkpoint: a delete of it was
    /// interrupted. Applying events to it would count them twice.
    #[error(
        "projection {name:?}: its read model holds data but it has no checkpoint; finish deleting it (delete_projection) before running it"
    )]
    Orphaned {
        /// The projection.
        name: String,
    },
    /// Reading or writing the store failed.
    #[error(transparent)]
    Store(#[from] EventStoreError),
}

impl ProjectionError {
    /// What kind of failure it is: [`ErrorKind::Handler`] when the handler failed,
    /// [`ErrorKind::Conflict`] when another runner (or an interrupted delete) is in the
    /// way, else the store's.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ProjectionError::Handler { .. } => ErrorKind::Handler,
            ProjectionError::Concurrent { .. } | ProjectionError::Orphaned { .. } => {
                ErrorKind::Conflict
            }
            ProjectionError::Store(error) => error.kind(),
        }
    }
}

crate::__error_class!(ProjectionError);

impl From<KvError> for ProjectionError {
    fn from(error: KvError) -> Self {
        ProjectionError::Store(error.into())
    }
}

/// Runs one [`Projection`] on a store: catches up from its checkpoint, then follows.
pub struct ProjectionRunner<'s, K, P> {
    store: &'s KvEventStore<K>,
    projection: P,
    options: SubscribeOptions,
}

impl<'s, K: OrderedKv, P: Projection> ProjectionRunner<'s, K, P> {
    /// A runner of `projection` on `store`, reading pages of 1,000 events and polling
    /// every 500 ms once caught up (see [`options`](Self::options)).
    pub fn new(store: &'s KvEventStore<K>, projection: P) -> Self {
        ProjectionRunner {
            store,
            projection,
            options: SubscribeOptions::default(),
        }
    }

    /// How it reads: page size, poll interval, and the aggregate type it wants (the events
    /// of other types are passed over, its checkpoint still moves past them).
    pub fn options(mut self, options: SubscribeOptions) -> Self {
        self.options = options;
        self
    }

    /// The projection.
    pub fn projection(&self) -> &P {
        &self.projection
    }

    /// Applies pages of events until none is left; returns the checkpoint reached.
    pub async fn catch_up(&self) -> Result<u64, ProjectionError> {
        loop {
            if let Some(position) = self.step().await? {
                return Ok(position);
            }
        }
    }

    /// Catches up, then applies new events as they are appended (woken by appends through
    /// the same store, polling for others), until the handler fails or another runner is
    /// found. A retryable failure ([`ProjectionError::is_retryable`]: the engine was
    /// unavailable, a write may have landed) is logged and tried again after a pause; any
    /// other error (a bad name, corrupt data, a full disk) ends the run at once.
    pub async fn run(&self) -> Result<Infallible, ProjectionError> {
        let mut retries = None;
        loop {
            let appended = self.store.appended().listen();
            match self.step().await {
                Ok(Some(_)) => {
                    retries = None;
                    let poll = futures_timer::Delay::new(self.options.poll_interval);
                    select(poll, appended).await;
                }
                Ok(None) => retries = None,
                Err(error) if error.is_retryable() => {
                    let pause = retries
                        .get_or_insert_with(retry_pauses)
                        .next()
                        .unwrap_or(LONGEST_RETRY_PAUSE);
                    tracing::warn!(
                        projection = self.projection.name(),
                        "projection paused {pause:?} after: {error}"
                    );
                    futures_timer::Delay::new(pause).await;
                }
                Err(other) => return Err(other),
            }
        }
    }

    /// Applies the next page of events with the checkpoint; `Some(checkpoint)` when there
    /// was none to apply.
    async fn step(&self) -> Result<Option<u64>, ProjectionError> {
        let name = self.projection.name();
        let prefix = keys::read_model(name).map_err(EventStoreError::from)?;
        let done = self.store.checkpoint(name).await?;
        let page = self.options.read(self.store, done + 1).await?;
        let Some(last) = page.read_through() else {
            return Ok(Some(done));
        };
        if done == 0 && !read_model_is_empty(self.store.kv(), &prefix).await? {
            return Err(ProjectionError::Orphaned { name: name.into() });
        }
        let mut model = ReadModel {
            kv: self.store.kv(),
            prefix,
            changes: BTreeMap::new(),
        };
        for event in page.iter() {
            let event = RecordedEvent::from(event);
            self.projection
                .apply(&event, &mut model)
                .await
                .map_err(|source| ProjectionError::Handler {
                    name: name.into(),
                    position: event.position,
                    source: source.into(),
                })?;
        }
        let committed = self
            .store
            .write_read_model(name, done, last, model.changes)
            .await;
        match committed {
            Ok(()) => Ok(None),
            Err(EventStoreError::Kv(KvError::Conflict { key }))
                if keys::checkpoint_name(&key) == Some(name) =>
            {
                Err(ProjectionError::Concurrent { name: name.into() })
            }
            Err(error) => Err(error.into()),
        }
    }
}
