//! Saving: the append, then a snapshot when the save crosses a multiple of the threshold.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use tracing::{Instrument, field};
use uuid::Uuid;

use super::metrics::bump;
use super::{
    Repository, RepositoryError, RepositoryFailure, SaveOutcome, SnapshotMode, SnapshotOutcome,
    failed,
};
use crate::aggregate::{Aggregate, AggregateHandle, DomainEvent};
use crate::background::spawn;
use crate::codec::{Codec, CodecError};
use crate::envelope::EventMetadata;
use crate::event_store::{EventStore, NewEvent};
use crate::snapshot::{Snapshot, SnapshotStore};
use crate::timestamp::Timestamp;

impl<A, E, S> Repository<A, E, S>
where
    A: Aggregate,
    E: EventStore + 'static,
    S: SnapshotStore + 'static,
{
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
                    .map(|new| {
                        new.with_metadata(metadata)
                            .with_shape_version(event.shape_version())
                    })
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

    pub(super) async fn write_snapshot(
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
