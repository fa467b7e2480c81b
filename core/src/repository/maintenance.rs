//! Maintenance: snapshot every aggregate of a type whose snapshot fell behind.

use std::time::Duration;

use super::{Repository, RepositoryError, failed};
use crate::aggregate::Aggregate;
use crate::event_store::KvEventStore;
use crate::kv::OrderedKv;
use crate::snapshot::{Snapshot, SnapshotStore};
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

impl Staleness {
    /// Whether an aggregate whose last event is at `head` and whose latest snapshot is
    /// `snapshot` (if any) is stale at `now` (microseconds since the Unix epoch).
    pub fn is_stale(&self, head: u64, snapshot: Option<&Snapshot>, now: Timestamp) -> bool {
        let (version, created) =
            snapshot.map_or((0, i64::MIN), |s| (s.version, s.created_at.as_micros()));
        let behind = head.saturating_sub(version);
        let aged = self.older_than.is_some_and(|age| {
            let age = i64::try_from(age.as_micros()).unwrap_or(i64::MAX);
            behind > 0 && now.as_micros().saturating_sub(created) > age
        });
        behind > self.events_behind || aged
    }
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
    /// if usable) and stores its state at its head, whatever the snapshot mode. Goes through
    /// the aggregates one at a time, in descending id order; an aggregate saved meanwhile keeps the newer
    /// snapshot (the store never replaces a newer one).
    pub async fn snapshot_stale(
        &self,
        stale: Staleness,
    ) -> Result<MaintenanceReport, RepositoryError> {
        let mut report = MaintenanceReport::default();
        let now = Timestamp::now();
        let mut before: Option<String> = None;
        loop {
            let heads = self
                .inner
                .events
                .aggregate_heads(A::TYPE, before.as_deref(), PAGE)
                .await
                .map_err(|error| failed::<A>(before.as_deref().unwrap_or_default(), error))?;
            let Some((last, _)) = heads.last() else {
                return Ok(report);
            };
            before = Some(last.clone());
            for (id, head) in heads {
                self.snapshot_if_stale(&id, head, stale, now, &mut report)
                    .await?;
            }
        }
    }

    async fn snapshot_if_stale(
        &self,
        id: &str,
        head: u64,
        stale: Staleness,
        now: Timestamp,
        report: &mut MaintenanceReport,
    ) -> Result<(), RepositoryError> {
        report.aggregates += 1;
        let snapshot = self
            .inner
            .snapshots
            .get_snapshot(A::TYPE, id)
            .await
            .ok()
            .flatten();
        if stale.is_stale(head, snapshot.as_ref(), now) {
            let handle = self.load(id).await?;
            if self.create_snapshot(&handle).await? {
                report.snapshots += 1;
            }
        }
        Ok(())
    }
}

/// How many aggregates one read of their heads covers.
const PAGE: usize = 256;
