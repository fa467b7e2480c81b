//! Loading: the snapshot, if usable, then the events after it.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, PoisonError};

use tracing::{Instrument, field};
use uuid::Uuid;

use super::metrics::bump;
use super::replay::replay_until;
use super::{
    Fold, ReplayError, ReplayOptions, Repository, RepositoryError, RepositoryFailure, SnapshotMiss,
    SnapshotMode, failed,
};
use crate::aggregate::{Aggregate, AggregateHandle, LoadInfo};
use crate::background::spawn;
use crate::event_store::{EventStore, StoredEvent};
use crate::snapshot::{Snapshot, SnapshotStore};

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
            let rebuilt = self.rebuild(id, None).await?;
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
            let handle = AggregateHandle::from_parts(
                id.to_owned(),
                rebuilt.version,
                rebuilt.last_event_id,
                rebuilt.state,
                rebuilt.info,
            );
            self.snapshot_after_replay(&handle).await;
            Ok(handle)
        }
        .instrument(span)
        .await
    }

    /// The aggregate as it was at `version`: from the newest snapshot at or below it (the
    /// snapshot store's history included, see
    /// [`KvSnapshotStore::with_history`](crate::KvSnapshotStore::with_history)) and the
    /// events up to it. A version the stream does not hold (0, or above its head) is
    /// [`RepositoryFailure::VersionOutOfRange`] (`InvalidInput`); an aggregate without
    /// events is `NotFound`. It only reads: a snapshot it cannot use is left in place. The
    /// handle shows the past; saving it conflicts with the events after it.
    pub async fn load_at(
        &self,
        id: &str,
        version: u64,
    ) -> Result<AggregateHandle<A>, RepositoryError> {
        let span = tracing::debug_span!(
            "load_at",
            aggregate_type = A::TYPE,
            aggregate_id = id,
            version,
            events_replayed = field::Empty,
        );
        async {
            if version == 0 {
                return Err(self.out_of_range(id, version).await);
            }
            // Read up to `version`: a stream that ends before it is too short.
            let rebuilt = self.rebuild(id, Some(version)).await?;
            if rebuilt.version == 0 {
                return Err(failed::<A>(id, RepositoryFailure::NotFound));
            }
            if rebuilt.version < version {
                let head = rebuilt.version;
                return Err(failed::<A>(
                    id,
                    RepositoryFailure::VersionOutOfRange { version, head },
                ));
            }
            tracing::Span::current().record("events_replayed", rebuilt.info.events_replayed);
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

    /// The error of `load_at` a version the stream does not hold (`NotFound` without
    /// events).
    async fn out_of_range(&self, id: &str, version: u64) -> RepositoryError {
        match self.inner.events.current_version(A::TYPE, id).await {
            Ok(0) => failed::<A>(id, RepositoryFailure::NotFound),
            Ok(head) => failed::<A>(id, RepositoryFailure::VersionOutOfRange { version, head }),
            Err(error) => failed::<A>(id, error),
        }
    }

    /// The load-time snapshot: after a load that replayed more events than the trigger
    /// allows, once per aggregate and version however many loads run at once.
    async fn snapshot_after_replay(&self, handle: &AggregateHandle<A>) {
        let Some(trigger) = self.replay_trigger else {
            return;
        };
        if handle.load_info().events_replayed <= trigger.get() || self.mode == SnapshotMode::Manual
        {
            return;
        }
        let (id, version) = (handle.id().to_owned(), handle.version());
        let Some(claim) = LoadSnapshotClaim::take(&self.inner.load_snapshots, &id, version) else {
            return;
        };
        let repository = self.clone();
        let (anchor, state) = (handle.last_event_id(), handle.state().clone());
        let write = async move {
            // A save (or another load) may have stored this version or a newer one since.
            let current = repository.inner.snapshots.get_snapshot(A::TYPE, &id).await;
            if matches!(current, Ok(Some(ref stored)) if stored.version >= version) {
                return;
            }
            match repository
                .write_snapshot(&id, version, anchor, &state)
                .await
            {
                Ok(true) => bump(&repository.inner.counters.load_snapshots),
                Ok(false) => {}
                Err(error) => tracing::warn!(
                    aggregate_type = A::TYPE,
                    aggregate_id = %id,
                    version,
                    "load-time snapshot failed: {error}"
                ),
            }
            drop(claim);
        };
        if self.mode == SnapshotMode::Background {
            let guard = self.inner.pending.start();
            let task = async move {
                write.await;
                drop(guard);
            };
            match spawn(task.instrument(tracing::debug_span!("load_time_snapshot"))) {
                Ok(()) => return,
                Err(task) => return task.await,
            }
        }
        write.await;
    }

    async fn rebuild(&self, id: &str, until: Option<u64>) -> Result<Rebuilt<A>, RepositoryError> {
        let options = ReplayOptions {
            aggregate_type: A::TYPE,
            aggregate_id: id,
            schema_version: A::SCHEMA_VERSION,
            page: self.replay_page,
            read_failure: self.read_failure,
        };
        let fold = AggregateFold::<A>(PhantomData);
        let replayed = replay_until(
            &self.inner.events,
            &self.inner.snapshots,
            options,
            &fold,
            until,
        )
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
}

fn decode_event<A: Aggregate>(stored: &StoredEvent) -> Result<A::Event, RepositoryFailure> {
    stored
        .decode_once()
        .map_err(|source| RepositoryFailure::EventDecode {
            version: stored.version(),
            event_type: stored.event_type().to_string(),
            source,
        })
}

/// A load's claim to write the load-time snapshot of one aggregate at one version: one
/// claim at a time per aggregate, released when dropped (written, failed or cancelled).
struct LoadSnapshotClaim {
    claims: Arc<Mutex<HashMap<String, u64>>>,
    id: String,
    version: u64,
}

impl LoadSnapshotClaim {
    /// The claim, unless a claim of this aggregate at this version or a newer one is held.
    fn take(claims: &Arc<Mutex<HashMap<String, u64>>>, id: &str, version: u64) -> Option<Self> {
        let mut held = claims.lock().unwrap_or_else(PoisonError::into_inner);
        if held.get(id).is_some_and(|&at| at >= version) {
            return None;
        }
        held.insert(id.to_owned(), version);
        Some(LoadSnapshotClaim {
            claims: Arc::clone(claims),
            id: id.to_owned(),
            version,
        })
    }
}

impl Drop for LoadSnapshotClaim {
    fn drop(&mut self) {
        let mut held = self.claims.lock().unwrap_or_else(PoisonError::into_inner);
        if held.get(&self.id) == Some(&self.version) {
            held.remove(&self.id);
        }
    }
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
