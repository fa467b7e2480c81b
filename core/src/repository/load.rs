//! Loading: the snapshot, if usable, then the events after it.

use std::marker::PhantomData;

use tracing::{Instrument, field};
use uuid::Uuid;

use super::metrics::bump;
use super::{
    Fold, ReplayError, ReplayOptions, Repository, RepositoryError, RepositoryFailure, SnapshotMiss,
    failed, replay,
};
use crate::aggregate::{Aggregate, AggregateHandle, LoadInfo};
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
