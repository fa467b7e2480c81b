//! The snapshot-aware repository: load = snapshot + the events after it; save = append,
//! then a snapshot when the save crosses a multiple of the threshold.

use std::marker::PhantomData;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use tracing::{Instrument, field};

use crate::aggregate::{Aggregate, AggregateHandle, DomainEvent, LoadInfo};
use crate::background::{PendingTasks, spawn};
use crate::codec::{Codec, CodecError};
use crate::envelope::EventMetadata;
use crate::event_store::{EventStore, KvEventStore, NewEvent, StoredEvent};
use crate::kv::{DynKv, OrderedKv};
use crate::snapshot::{KvSnapshotStore, Snapshot, SnapshotStore, SnapshotStoreError};
use crate::timestamp::Timestamp;
use uuid::Uuid;

mod error;
mod metrics;
mod replay;

pub use error::{RepositoryError, RepositoryFailure};
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

/// The state at a version, and how it was rebuilt.
struct Rebuilt<A> {
    state: A,
    version: u64,
    /// The id of the event at `version`.
    last_event_id: Option<Uuid>,
    info: LoadInfo,
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
            }),
            threshold: None,
            mode: SnapshotMode::Sync,
            event_codec: Codec::Json,
            snapshot_codec: Codec::Bincode,
            replay_page: DEFAULT_REPLAY_PAGE,
            read_failure: SnapshotReadFailure::Replay,
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

    /// Loads the aggregate: its snapshot, if usable, then the events after it. A snapshot
    /// that cannot be used is ignored (logged and counted) and every event is replayed.
    pub async fn load(&self, id: &str) -> Result<AggregateHandle<A>, RepositoryError> {
        let span = tracing::debug_span!(
            "load",
            aggregate_type = A::TYPE,
            aggregate_id = id,
            version = field::Empty,
            events_replayed = field::Empty,
            snapshot_used = field::Empty,
        );
        async {
            let rebuilt = self.rebuild(id).await?;
            let span = tracing::Span::current();
            span.record("version", rebuilt.version);
            span.record("events_replayed", rebuilt.info.events_replayed);
            span.record("snapshot_used", rebuilt.info.snapshot_version.is_some());
            if rebuilt.version == 0 {
                return Err(failed::<A>(id, RepositoryFailure::NotFound));
            }
            let counter = match rebuilt.info.snapshot_version {
                Some(_) => &self.inner.counters.loads_from_snapshot,
                None => &self.inner.counters.full_replays,
            };
            bump(counter);
            Ok(AggregateHandle::from_parts(
                id.to_owned(),
                rebuilt.version,
                rebuilt.last_event_id,
                rebuilt.state,
                rebuilt.info,
            ))
        }
        .instrument(span)
        .await
    }

    async fn rebuild(&self, id: &str) -> Result<Rebuilt<A>, RepositoryError> {
        let options = ReplayOptions {
            aggregate_type: A::TYPE,
            aggregate_id: id,
            schema_version: A::SCHEMA_VERSION,
            page: self.replay_page,
            read_failure: self.read_failure,
        };
        let fold = AggregateFold::<A>(PhantomData);
        let replayed = replay(&self.inner.events, &self.inner.snapshots, options, &fold)
            .await
            .map_err(|error| {
                let failure = match error {
                    ReplayError::Events(error) => error.into(),
                    ReplayError::SnapshotUnavailable(error) => {
                        RepositoryFailure::SnapshotUnavailable(error)
                    }
                    ReplayError::Gap { previous, found } => {
                        RepositoryFailure::StreamGap { previous, found }
                    }
                    ReplayError::Fold(failure) => failure,
                };
                failed::<A>(id, failure)
            })?;
        if let Some((reason, why)) = &replayed.miss {
            tracing::warn!(
                aggregate_type = A::TYPE,
                aggregate_id = id,
                ?reason,
                "ignoring snapshot and replaying every event: {why}"
            );
            self.inner.counters.miss(*reason);
        }
        Ok(Rebuilt {
            state: replayed.state,
            version: replayed.version,
            last_event_id: replayed.last_event_id,
            info: LoadInfo {
                snapshot_version: replayed.snapshot_version,
                events_replayed: replayed.events_applied,
            },
        })
    }

    /// Appends the handle's pending events. When the save crosses a multiple of the
    /// threshold, snapshots the committed state as the mode says.
    pub async fn save(
        &self,
        handle: &mut AggregateHandle<A>,
    ) -> Result<SaveOutcome, RepositoryError> {
        self.save_with_metadata(handle, EventMetadata::default())
            .await
    }

    /// [`Repository::save`], with correlation and causation ids on every event.
    pub async fn save_with_metadata(
        &self,
        handle: &mut AggregateHandle<A>,
        metadata: EventMetadata,
    ) -> Result<SaveOutcome, RepositoryError> {
        let span = tracing::debug_span!(
            "save",
            aggregate_type = A::TYPE,
            aggregate_id = handle.id(),
            expected_version = handle.version(),
            events = handle.pending().len(),
            version = field::Empty,
        );
        async {
            let old_version = handle.version();
            if handle.pending().is_empty() {
                return Ok(SaveOutcome {
                    version: old_version,
                    snapshot: SnapshotOutcome::NotDue,
                });
            }
            let events = self.encode_events(handle, metadata)?;
            let appended = self
                .inner
                .events
                .append(A::TYPE, handle.id(), old_version, &events)
                .await
                .map_err(|error| failed::<A>(handle.id(), error))?;
            handle.commit(appended.last_version);
            tracing::Span::current().record("version", appended.last_version);
            let snapshot = if self.snapshot_due(old_version, appended.last_version) {
                self.auto_snapshot(handle).await
            } else {
                SnapshotOutcome::NotDue
            };
            Ok(SaveOutcome {
                version: appended.last_version,
                snapshot,
            })
        }
        .instrument(span)
        .await
    }

    fn encode_events(
        &self,
        handle: &AggregateHandle<A>,
        metadata: EventMetadata,
    ) -> Result<Vec<NewEvent>, RepositoryError> {
        handle
            .pending()
            .iter()
            .zip(handle.pending_ids())
            .map(|(event, &event_id)| {
                NewEvent::encode_with_id(event_id, event.event_type(), event, self.event_codec)
                    .map(|new| new.with_metadata(metadata))
                    .map_err(|source| {
                        failed::<A>(handle.id(), RepositoryFailure::EventEncode(source))
                    })
            })
            .collect()
    }

    /// Whether going from `old` to `new` crosses a multiple of the threshold.
    fn snapshot_due(&self, old: u64, new: u64) -> bool {
        match (self.threshold, self.mode) {
            (Some(threshold), SnapshotMode::Sync | SnapshotMode::Background) => {
                old / threshold.get() < new / threshold.get()
            }
            _ => false,
        }
    }

    /// The automatic snapshot of a save: the handle has just been committed.
    async fn auto_snapshot(&self, handle: &AggregateHandle<A>) -> SnapshotOutcome {
        let id = handle.id().to_owned();
        let version = handle.version();
        let anchor = handle.last_event_id();
        if self.mode == SnapshotMode::Background {
            let state = handle.state().clone();
            let repository = self.clone();
            let guard = self.inner.pending.start();
            let task_id = id.clone();
            let task = async move {
                let id = task_id;
                if let Err(error) = repository
                    .write_snapshot(&id, version, anchor, &state)
                    .await
                {
                    tracing::error!(aggregate_type = A::TYPE, aggregate_id = %id, version, "background snapshot failed: {error}");
                }
                drop(guard);
            };
            if spawn(task.instrument(tracing::debug_span!("background_snapshot"))).is_ok() {
                return SnapshotOutcome::Scheduled;
            }
            tracing::debug!("no async runtime to spawn a background snapshot on: writing it now");
        }
        match self
            .write_snapshot(&id, version, anchor, handle.state())
            .await
        {
            Ok(true) => SnapshotOutcome::Stored,
            Ok(false) => SnapshotOutcome::Superseded,
            Err(error) => {
                tracing::error!(aggregate_type = A::TYPE, aggregate_id = %id, version, "snapshot failed after the events were committed: {error}");
                SnapshotOutcome::Failed(error.to_string())
            }
        }
    }

    /// Snapshots the handle's committed state now, whatever the mode. Returns whether it
    /// was stored (`false`: a newer snapshot was there).
    pub async fn create_snapshot(
        &self,
        handle: &AggregateHandle<A>,
    ) -> Result<bool, RepositoryError> {
        if !handle.pending().is_empty() {
            let uncommitted = RepositoryFailure::UncommittedEvents {
                version: handle.version(),
                count: handle.pending().len(),
            };
            return Err(failed::<A>(handle.id(), uncommitted));
        }
        if handle.version() == 0 {
            return Err(failed::<A>(
                handle.id(),
                RepositoryFailure::NothingCommitted,
            ));
        }
        self.write_snapshot(
            handle.id(),
            handle.version(),
            handle.last_event_id(),
            handle.state(),
        )
        .await
    }

    async fn write_snapshot(
        &self,
        id: &str,
        version: u64,
        anchor: Option<Uuid>,
        state: &A,
    ) -> Result<bool, RepositoryError> {
        let span = tracing::debug_span!(
            "snapshot",
            aggregate_type = A::TYPE,
            aggregate_id = id,
            version,
            codec = field::Empty
        );
        async {
            let (codec, bytes) = self.encode_state(state).map_err(|source| {
                bump(&self.inner.counters.snapshot_failures);
                failed::<A>(id, RepositoryFailure::SnapshotEncode { version, source })
            })?;
            tracing::Span::current().record("codec", codec.name());
            let snapshot = Snapshot {
                aggregate_id: id.to_owned(),
                aggregate_type: A::TYPE.to_owned(),
                version,
                anchor_event_id: anchor,
                schema_version: A::SCHEMA_VERSION,
                codec,
                state: Bytes::from(bytes),
                created_at: Timestamp::now(),
            };
            self.inner.store(&snapshot).await.map_err(|source| {
                failed::<A>(id, RepositoryFailure::SnapshotStore { version, source })
            })
        }
        .instrument(span)
        .await
    }

    /// Encodes the state with the snapshot codec. bincode output is checked to decode back
    /// to the same bytes; when it does not, this repository uses JSON from then on.
    fn encode_state(&self, state: &A) -> Result<(Codec, Vec<u8>), CodecError> {
        if self.snapshot_codec == Codec::Bincode
            && !self.inner.json_fallback.load(Ordering::Relaxed)
        {
            match bincode_round_trip(state) {
                Ok(bytes) => return Ok((Codec::Bincode, bytes)),
                Err(error) => {
                    if !self.inner.json_fallback.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            aggregate_type = A::TYPE,
                            "bincode cannot round-trip this state type ({error}); its snapshots use JSON from now on"
                        );
                    }
                }
            }
        }
        Ok((Codec::Json, Codec::Json.encode(state)?))
    }

    /// How many background snapshots are still being written.
    pub fn pending_snapshot_count(&self) -> usize {
        self.inner.pending.running()
    }

    /// Waits until every background snapshot started so far has been written (or failed).
    pub async fn await_pending_snapshots(&self) {
        self.inner.pending.drain().await;
    }
}

fn bincode_round_trip<A: Aggregate>(state: &A) -> Result<Vec<u8>, CodecError> {
    let bytes = Codec::Bincode.encode(state)?;
    let decoded: A = Codec::Bincode.decode(&bytes)?;
    if Codec::Bincode.encode(&decoded)? == bytes {
        Ok(bytes)
    } else {
        Err(CodecError::Decode {
            codec: Codec::Bincode,
            source: std::sync::Arc::from(Box::<dyn std::error::Error + Send + Sync>::from(
                "the state decodes to a different value",
            )),
        })
    }
}

fn decode_event<A: Aggregate>(stored: &StoredEvent) -> Result<A::Event, RepositoryFailure> {
    stored
        .decode()
        .map_err(|source| RepositoryFailure::EventDecode {
            version: stored.version(),
            event_type: stored.event_type().to_string(),
            source,
        })
}

/// The error of `failure` on aggregate `id` of type `A`.
fn failed<A: Aggregate>(id: &str, failure: impl Into<RepositoryFailure>) -> RepositoryError {
    RepositoryError::new(A::TYPE, id, failure)
}

/// Folds events into an aggregate of type `A`.
struct AggregateFold<A>(PhantomData<A>);

impl<A: Aggregate> Fold for AggregateFold<A> {
    type State = A;
    type Error = RepositoryFailure;

    fn initial(&self) -> A {
        A::default()
    }

    fn snapshot_state(&self, snapshot: &Snapshot) -> Result<A, (SnapshotMiss, String)> {
        snapshot
            .codec
            .decode::<A>(&snapshot.state)
            .map_err(|error| (SnapshotMiss::Undecodable, error.to_string()))
    }

    fn apply(&self, state: &mut A, events: &[StoredEvent<'_>]) -> Result<(), RepositoryFailure> {
        for stored in events {
            state.apply(&decode_event::<A>(stored)?);
        }
        Ok(())
    }
}
