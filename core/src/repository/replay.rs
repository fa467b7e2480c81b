//! Loading an aggregate: its snapshot, when it can be used, then the events after it, page
//! by page. One routine for every front end: the [`Repository`](crate::Repository) folds
//! events into its aggregate, the browser's `load` into JSON for JavaScript.

use uuid::Uuid;

use crate::envelope::FormatError;
use crate::event_store::{EventPage, EventStore, EventStoreError, StoredEvent};
use crate::repository::{SnapshotMiss, SnapshotReadFailure};
use crate::snapshot::{Snapshot, SnapshotStore, SnapshotStoreError};

/// How a front end turns a snapshot and events into its state.
pub trait Fold {
    /// What the events fold into.
    type State;
    /// Why an event could not be applied.
    type Error;

    /// The state before any event.
    fn initial(&self) -> Self::State;

    /// The state `snapshot` holds (its schema version already matches), or why it cannot
    /// be used: [`SnapshotMiss::UnknownCodec`] or [`SnapshotMiss::Undecodable`], with what
    /// to log.
    fn snapshot_state(&self, snapshot: &Snapshot) -> Result<Self::State, (SnapshotMiss, String)>;

    /// Applies `events`, the next ones of the stream in version order (a page at a time).
    fn apply(&self, state: &mut Self::State, events: &[StoredEvent<'_>])
    -> Result<(), Self::Error>;
}

/// What to load and how.
#[derive(Clone, Copy, Debug)]
pub struct ReplayOptions<'a> {
    /// The aggregate type.
    pub aggregate_type: &'a str,
    /// The aggregate id.
    pub aggregate_id: &'a str,
    /// The schema version a usable snapshot has.
    pub schema_version: u32,
    /// How many events one read asks for.
    pub page: usize,
    /// What an unreadable snapshot store does to the load.
    pub read_failure: SnapshotReadFailure,
}

/// A loaded aggregate.
#[derive(Debug)]
pub struct Replayed<S> {
    /// The folded state.
    pub state: S,
    /// The version of the last event applied (0: the aggregate has no events).
    pub version: u64,
    /// The id of the event at `version`.
    pub last_event_id: Option<Uuid>,
    /// The version of the snapshot the load started from, if it used one.
    pub snapshot_version: Option<u64>,
    /// How many stored events were replayed (before upcasting, which may drop or split
    /// them).
    pub events_applied: u64,
    /// Why a stored snapshot was not used, and what to log about it.
    pub miss: Option<(SnapshotMiss, String)>,
}

/// Why a load failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ReplayError<E> {
    /// Reading the events failed (or a name cannot be stored).
    Events(EventStoreError),
    /// The snapshot store failed and the options say [`SnapshotReadFailure::FailLoad`].
    SnapshotUnavailable(SnapshotStoreError),
    /// The stream skips a version.
    Gap {
        /// The last version applied.
        previous: u64,
        /// The version found next.
        found: u64,
    },
    /// The fold refused an event.
    Fold(E),
}

/// Loads an aggregate through `fold`: its snapshot, when it is usable (schema version,
/// codec, checksum, and anchored: the stream's event at its version exists and is the one
/// it was taken at), then every event after it. A snapshot that cannot be used is never a
/// failure: the miss is returned with its reason and every event is replayed; one that is
/// ahead of the stream or of another history is deleted, so that it neither blocks later
/// snapshots nor is applied once the stream reaches its version.
pub async fn replay<F: Fold, E: EventStore, S: SnapshotStore>(
    events: &E,
    snapshots: &S,
    options: ReplayOptions<'_>,
    fold: &F,
) -> Result<Replayed<F::State>, ReplayError<F::Error>> {
    replay_until(events, snapshots, options, fold, None).await
}

/// [`replay`] up to `until` (every event when `None`): from the newest snapshot at or
/// below it (the snapshot store's history included). A replay up to a version reads only:
/// a snapshot it cannot use is left where it is.
pub(crate) async fn replay_until<F: Fold, E: EventStore, S: SnapshotStore>(
    events: &E,
    snapshots: &S,
    options: ReplayOptions<'_>,
    fold: &F,
    until: Option<u64>,
) -> Result<Replayed<F::State>, ReplayError<F::Error>> {
    let (usable, mut miss) = usable_snapshot(snapshots, options, fold, until).await?;
    if let Some((snapshot, state)) = usable {
        // From the snapshot's own event, which must exist and be the one it was taken at.
        let page = read(events, options, snapshot.version, until).await?;
        match anchored(&page, &snapshot) {
            Ok(anchor) => {
                let start = Start {
                    state,
                    version: snapshot.version,
                    event_id: Some(anchor),
                };
                return fold_pages(events, options, fold, start, page, until).await;
            }
            Err(unusable) if until.is_some() => miss = Some(unusable),
            Err(unusable) => {
                if let Err(error) = snapshots.discard_snapshot(&snapshot).await {
                    tracing::warn!(
                        aggregate_type = options.aggregate_type,
                        aggregate_id = options.aggregate_id,
                        "could not delete an unusable snapshot: {error}"
                    );
                }
                miss = Some(unusable);
            }
        }
    }
    let page = read(events, options, 1, until).await?;
    let start = Start {
        state: fold.initial(),
        version: 0,
        event_id: None,
    };
    let mut replayed = fold_pages(events, options, fold, start, page, until).await?;
    replayed.miss = miss;
    Ok(replayed)
}

/// Why a snapshot was not used, and what to log about it.
type Miss = (SnapshotMiss, String);

/// The stored snapshot and its state when it can be used; else why not.
async fn usable_snapshot<F: Fold, S: SnapshotStore>(
    snapshots: &S,
    options: ReplayOptions<'_>,
    fold: &F,
    until: Option<u64>,
) -> Result<(Option<(Snapshot, F::State)>, Option<Miss>), ReplayError<F::Error>> {
    let (aggregate_type, aggregate_id) = (options.aggregate_type, options.aggregate_id);
    let found = match until {
        None => snapshots.get_snapshot(aggregate_type, aggregate_id).await,
        Some(version) => {
            snapshots
                .get_snapshot_at(aggregate_type, aggregate_id, version)
                .await
        }
    };
    let snapshot = match found {
        Ok(Some(snapshot)) => snapshot,
        Ok(None) => return Ok((None, None)),
        Err(error) => {
            let reason = match &error {
                // A name that cannot be stored is the caller's error, not a snapshot miss.
                SnapshotStoreError::InvalidName(invalid) => {
                    return Err(ReplayError::Events(EventStoreError::InvalidName(
                        invalid.clone(),
                    )));
                }
                SnapshotStoreError::UnknownCodec { .. } => SnapshotMiss::UnknownCodec,
                SnapshotStoreError::Corrupt {
                    source: FormatError::ChecksumMismatch { .. },
                    ..
                } => SnapshotMiss::ChecksumMismatch,
                SnapshotStoreError::Corrupt { .. } => SnapshotMiss::Undecodable,
                _ if options.read_failure == SnapshotReadFailure::FailLoad => {
                    return Err(ReplayError::SnapshotUnavailable(error));
                }
                _ => SnapshotMiss::Unreadable,
            };
            return Ok((None, Some((reason, error.to_string()))));
        }
    };
    if snapshot.schema_version != options.schema_version {
        let why = format!(
            "its schema version is {}, the aggregate's is {}",
            snapshot.schema_version, options.schema_version
        );
        return Ok((None, Some((SnapshotMiss::SchemaMismatch, why))));
    }
    match fold.snapshot_state(&snapshot) {
        Ok(state) => Ok((Some((snapshot, state)), None)),
        Err(miss) => Ok((None, Some(miss))),
    }
}

/// The id of the event `snapshot` was taken at, the first of `page`; else why the
/// snapshot cannot be used for this stream.
fn anchored(page: &EventPage, snapshot: &Snapshot) -> Result<Uuid, Miss> {
    match page.stored().next() {
        Some(found) if found.version() == snapshot.version => match snapshot.anchor_event_id {
            Some(anchor) if anchor != found.event_id() => Err((
                SnapshotMiss::ForeignHistory,
                format!(
                    "it was taken at event {anchor}, the stream holds event {} at its version",
                    found.event_id()
                ),
            )),
            _ => Ok(found.event_id()),
        },
        _ => Err((
            SnapshotMiss::AheadOfStream,
            "it is ahead of the stream".to_owned(),
        )),
    }
}

/// Where a fold starts: the state at `version` (0: before any event).
struct Start<S> {
    state: S,
    version: u64,
    event_id: Option<Uuid>,
}

async fn read<E: EventStore, X>(
    events: &E,
    options: ReplayOptions<'_>,
    from: u64,
    until: Option<u64>,
) -> Result<EventPage, ReplayError<X>> {
    events
        .read_stream(
            options.aggregate_type,
            options.aggregate_id,
            from,
            until.unwrap_or(u64::MAX),
            options.page,
        )
        .await
        .map_err(ReplayError::Events)
}

/// Folds the events after `start` into its state, from `page` on, reading the pages after
/// it.
async fn fold_pages<F: Fold, E: EventStore>(
    events: &E,
    options: ReplayOptions<'_>,
    fold: &F,
    start: Start<F::State>,
    mut page: EventPage,
    until: Option<u64>,
) -> Result<Replayed<F::State>, ReplayError<F::Error>> {
    let Start {
        mut state,
        version: from,
        event_id: mut last_event_id,
    } = start;
    let mut version = from;
    let mut applied = 0;
    loop {
        // The stored events keep the count; upcasting may drop or split them.
        for event in page.stored().filter(|event| event.version() > from) {
            if Some(event.version()) != version.checked_add(1) {
                return Err(ReplayError::Gap {
                    previous: version,
                    found: event.version(),
                });
            }
            version = event.version();
            last_event_id = Some(event.event_id());
            applied += 1;
        }
        let after: Vec<StoredEvent<'_>> =
            page.iter().filter(|event| event.version() > from).collect();
        fold.apply(&mut state, &after).map_err(ReplayError::Fold)?;
        let next = match page.last_stored_version() {
            Some(last) if page.may_have_more() => last.saturating_add(1),
            _ => break,
        };
        drop(after);
        page = read(events, options, next, until).await?;
    }
    Ok(Replayed {
        state,
        version,
        last_event_id,
        snapshot_version: (from > 0).then_some(from),
        events_applied: applied,
        miss: None,
    })
}
