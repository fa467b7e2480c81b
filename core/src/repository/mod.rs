//! The snapshot-aware repository: load = snapshot + the events after it; save = append,
//! then a snapshot when the save crosses a multiple of the threshold.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::num::NonZeroU64;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use crate::aggregate::{Aggregate, AggregateHandle, LoadInfo};
use crate::background::PendingTasks;
use crate::codec::Codec;
use crate::event_store::{EventStore, KvEventStore};
use crate::kv::{DynKv, OrderedKv};
use crate::snapshot::{KvSnapshotStore, Snapshot, SnapshotStore, SnapshotStoreError};

mod error;
mod load;
mod maintenance;
mod metrics;
mod replay;
mod save;

pub use error::{RepositoryError, RepositoryFailure};
pub use maintenance::{MaintenanceReport, Staleness};
use metrics::{Counters, bump};
pub use metrics::{RepositoryMetrics, SnapshotMiss};
pub use replay::{Fold, ReplayError, ReplayOptions, Replayed, replay};

/// When the repository writes snapshots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SnapshotMode {
    /// `save` returns after the snapshot is stored.
    #[default]
    Sync,
    /// `save` returns at once; the snapshot is written by a task.
    /// [`Repository::await_pending_snapshots`] waits for those tasks.
    Background,
    /// Only [`Repository::create_snapshot`] writes snapshots.
    Manual,
}

/// What a load does when the snapshot store cannot be read (I/O or connection errors).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SnapshotReadFailure {
    /// Replay every event, log a warning and count [`SnapshotMiss::Unreadable`]. The
    /// default: the snapshot store is a cache.
    #[default]
    Replay,
    /// Fail the load with [`RepositoryFailure::SnapshotUnavailable`]: for deployments where
    /// a full replay would overload the event store.
    FailLoad,
}

/// What happened to the snapshot of a save.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SnapshotOutcome {
    /// No snapshot was due (no threshold crossed, or manual mode).
    NotDue,
    /// The snapshot was stored.
    Stored,
    /// A newer snapshot was already stored, so this one was not.
    Superseded,
    /// A background task will write it.
    Scheduled,
    /// The events were committed, but the snapshot failed (logged and counted).
    Failed(String),
}

/// What a save did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaveOutcome {
    /// The aggregate's version after the save.
    pub version: u64,
    /// The snapshot, if one was due.
    pub snapshot: SnapshotOutcome,
}

struct Inner<E, S> {
    events: E,
    snapshots: S,
    counters: Counters,
    pending: Arc<PendingTasks>,
    /// Set once bincode proved unable to encode the state type.
    json_fallback: AtomicBool,
    /// The aggregates whose load-time snapshot is being written, and at which version.
    load_snapshots: Arc<Mutex<HashMap<String, u64>>>,
}

impl<E, S: SnapshotStore> Inner<E, S> {
    /// Stores `snapshot`, counting the outcome.
    async fn store(&self, snapshot: &Snapshot) -> Result<bool, SnapshotStoreError> {
        let result = self.snapshots.save_snapshot(snapshot).await;
        match &result {
            Ok(true) => bump(&self.counters.snapshots_written),
            Ok(false) => bump(&self.counters.snapshots_superseded),
            Err(_) => bump(&self.counters.snapshot_failures),
        }
        result
    }
}

/// The default number of events read per page while replaying.
pub const DEFAULT_REPLAY_PAGE: usize = 2048;

/// Loads and saves aggregates of type `A`: events in `E`, snapshots in `S` (which may
/// live on different engines). Cloning is cheap and shares stores, counters and tasks.
pub struct Repository<A, E, S> {
    inner: Arc<Inner<E, S>>,
    threshold: Option<NonZeroU64>,
    mode: SnapshotMode,
    event_codec: Codec,
    snapshot_codec: Codec,
    replay_page: usize,
    read_failure: SnapshotReadFailure,
    /// Snapshot after a load that replayed more than this many events.
    replay_trigger: Option<NonZeroU64>,
    aggregate: PhantomData<fn() -> A>,
}

impl<A, E, S> Clone for Repository<A, E, S> {
    fn clone(&self) -> Self {
        Repository {
            inner: Arc::clone(&self.inner),
            threshold: self.threshold,
            mode: self.mode,
            event_codec: self.event_codec,
            snapshot_codec: self.snapshot_codec,
            replay_page: self.replay_page,
            read_failure: self.read_failure,
            replay_trigger: self.replay_trigger,
            aggregate: PhantomData,
        }
    }
}

/// A repository whose events and snapshots live in one engine (any engine chosen at run
/// time by default): `KvRepository<Account>` rather than
/// `Repository<Account, KvEventStore<DynKv>, KvSnapshotStore<DynKv>>`.
pub type KvRepository<A, K = DynKv> = Repository<A, KvEventStore<K>, KvSnapshotStore<K>>;

impl<A: Aggregate, K: OrderedKv + Clone + 'static>
    Repository<A, KvEventStore<K>, KvSnapshotStore<K>>
{
    /// A repository of events and snapshots on `kv`, configured as [`Repository::new`].
    pub fn on(kv: K) -> Self {
        Repository::new(KvEventStore::new(kv.clone()), KvSnapshotStore::new(kv))
    }
}

impl<A, E, S> Repository<A, E, S>
where
    A: Aggregate,
    E: EventStore + 'static,
    S: SnapshotStore + 'static,
{
    /// A repository with no automatic snapshots (no threshold), sync mode, JSON events
    /// and bincode snapshots.
    pub fn new(events: E, snapshots: S) -> Self {
        Repository {
            inner: Arc::new(Inner {
                events,
                snapshots,
                counters: Counters::default(),
                pending: Arc::default(),
                json_fallback: AtomicBool::new(false),
                load_snapshots: Arc::default(),
            }),
            threshold: None,
            mode: SnapshotMode::Sync,
            event_codec: Codec::Json,
            snapshot_codec: Codec::Bincode,
            replay_page: DEFAULT_REPLAY_PAGE,
            read_failure: SnapshotReadFailure::Replay,
            replay_trigger: None,
            aggregate: PhantomData,
        }
    }

    /// Snapshots when a save crosses a multiple of `threshold` events; 0 turns automatic
    /// snapshots off.
    pub fn with_snapshot_threshold(mut self, threshold: u64) -> Self {
        self.threshold = NonZeroU64::new(threshold);
        self
    }

    /// When snapshots are written.
    pub fn with_snapshot_mode(mut self, mode: SnapshotMode) -> Self {
        self.mode = mode;
        self
    }

    /// The codec of new events (default JSON).
    pub fn with_event_codec(mut self, codec: Codec) -> Self {
        self.event_codec = codec;
        self
    }

    /// The codec of new snapshots (default bincode, falling back to JSON for state types
    /// bincode cannot round-trip).
    pub fn with_snapshot_codec(mut self, codec: Codec) -> Self {
        self.snapshot_codec = codec;
        self
    }

    /// How many events a replay reads per page (at least 1): memory stays bounded by it.
    pub fn with_replay_page_size(mut self, events: usize) -> Self {
        self.replay_page = events.max(1);
        self
    }

    /// Snapshots after a load that had to replay more than `events` events (Axon's
    /// load-time trigger; 0 turns it off): in sync mode before the load returns, in
    /// background mode on a background task (the load does not wait), never in manual
    /// mode. Concurrent loads of one aggregate write one snapshot, and a load-time snapshot
    /// never replaces a newer one a save wrote meanwhile (the store is monotonic).
    pub fn with_snapshot_after_replay(mut self, events: u64) -> Self {
        self.replay_trigger = NonZeroU64::new(events);
        self
    }

    /// What a load does when the snapshot store cannot be read (default: replay).
    pub fn with_snapshot_read_failure(mut self, on_failure: SnapshotReadFailure) -> Self {
        self.read_failure = on_failure;
        self
    }

    /// The snapshot threshold, if automatic snapshots are on.
    pub fn snapshot_threshold(&self) -> Option<u64> {
        self.threshold.map(NonZeroU64::get)
    }

    /// The snapshot mode.
    pub fn snapshot_mode(&self) -> SnapshotMode {
        self.mode
    }

    /// The event store.
    pub fn event_store(&self) -> &E {
        &self.inner.events
    }

    /// The snapshot store.
    pub fn snapshot_store(&self) -> &S {
        &self.inner.snapshots
    }

    /// The counters so far.
    pub fn metrics(&self) -> RepositoryMetrics {
        self.inner.counters.read()
    }

    /// A new aggregate at version 0. Nothing is read or written until `save`, which
    /// fails with a conflict if the id already has events.
    pub fn create_new(&self, id: impl Into<String>) -> AggregateHandle<A> {
        AggregateHandle::from_parts(id.into(), 0, None, A::default(), LoadInfo::default())
    }
}

/// The error of `failure` on aggregate `id` of type `A`.
fn failed<A: Aggregate>(id: &str, failure: impl Into<RepositoryFailure>) -> RepositoryError {
    RepositoryError::new(A::TYPE, id, failure)
}
