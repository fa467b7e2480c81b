//! Maintenance: snapshot every aggregate of a type whose snapshot fell behind.

use std::time::Duration;

use super::{Repository, RepositoryError, failed};
use crate::aggregate::Aggregate;
use crate::event_store::{EventStoreError, KvEventStore};
use crate::keys::{self, StreamKeys};
use crate::kv::{Direction, KeyRange, OrderedKv};
use crate::snapshot::SnapshotStore;
use crate::timestamp::Timestamp;

/// Which aggregates [`Repository::snapshot_stale`] snapshots: those whose head is more than
/// `events_behind` events past their newest snapshot (or that have none), and, when
/// `older_than` is set, also those whose snapshot was taken longer ago than that and is
/// behind their head at all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Staleness {
    /// How many events past its snapshot an aggregate may be.
    pub events_behind: u64,
    /// How old a snapshot behind its head may be.
    pub older_than: Option<Duration>,
}

/// What a maintenance run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Aggregates looked at.
    pub aggregates: u64,
    /// Snapshots stored.
    pub snapshots: u64,
}

impl<A, K, S> Repository<A, KvEventStore<K>, S>
where
    A: Aggregate,
    K: OrderedKv + 'static,
    S: SnapshotStore + 'static,
{
    /// Snapshots every aggregate of type `A` that is `stale`: loads it (from its snapshot,
    /// if usable) and stores its state at its head, whatever the snapshot mode. Reads one
    /// aggregate at a time, newest id last; an aggregate saved meanwhile keeps the newer
    /// snapshot (the store never replaces a newer one).
    pub async fn snapshot_stale(
        &self,
        stale: Staleness,
    ) -> Result<MaintenanceReport, RepositoryError> {
        let kv = self.inner.events.kv();
        let error = |source: EventStoreError| failed::<A>("", source);
        let streams = keys::streams_of_type(A::TYPE).map_err(|e| error(e.into()))?;
        let (start, _) = streams.as_slices();
        let std::ops::Bound::Included(start) = start else {
            return Ok(MaintenanceReport::default());
        };
        let start = bytes::Bytes::copy_from_slice(start);
        let mut report = MaintenanceReport::default();
        let mut range = streams.clone();
        let now = Timestamp::now().as_micros();
        loop {
            // The last event of the last stream left: its id and head.
            let last = kv
                .scan(&range, Direction::Reverse, 1)
                .await
                .map_err(|e| error(e.into()))?;
            let Some(key) = last.last_key() else {
                return Ok(report);
            };
            let Some((stream, head)) = StreamKeys::from_event_key(key) else {
                return Err(error(crate::event_store::corrupt(key, "not an event key")));
            };
            let Some((_, id)) = stream.names() else {
                return Err(error(crate::event_store::corrupt(key, "not an event key")));
            };
            let id = id.to_owned();
            range = KeyRange::between(start.clone(), stream.start());
            report.aggregates += 1;
            let snapshot = self
                .inner
                .snapshots
                .get_snapshot(A::TYPE, &id)
                .await
                .ok()
                .flatten();
            let (version, created) =
                snapshot.map_or((0, i64::MIN), |s| (s.version, s.created_at.as_micros()));
            let behind = head.saturating_sub(version);
            let aged = stale.older_than.is_some_and(|age| {
                let age = i64::try_from(age.as_micros()).unwrap_or(i64::MAX);
                behind > 0 && now.saturating_sub(created) > age
            });
            if behind > stale.events_behind || aged {
                let handle = self.load(&id).await?;
                if self.create_snapshot(&handle).await? {
                    report.snapshots += 1;
                }
            }
        }
    }
}
