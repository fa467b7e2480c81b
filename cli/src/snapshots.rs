//! `eventkv snapshots list`, `prune` and `stale`.

use bytes::Bytes;
use eventkv::inspect::{self, Record};
use eventkv::{DynKv, KvEventStore, KvSnapshotStore, SnapshotStore, Staleness, Timestamp, keys};
use serde::Serialize;

use crate::CliError;
use crate::pages::Pages;
use eventkv_sync::protocol::rfc3339;

/// One stored snapshot, described.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SnapshotInfo {
    /// The aggregate type.
    pub aggregate_type: String,
    /// The aggregate id.
    pub aggregate_id: String,
    /// The version of the last event in it.
    pub version: u64,
    /// The aggregate's schema version when it was made.
    pub schema_version: u32,
    /// `json` or `bincode`.
    pub codec: &'static str,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// The size of the encoded state.
    pub state_bytes: usize,
    /// Whether it is the aggregate's latest snapshot (else one kept as history).
    pub latest: bool,
}

/// Calls `each` with every snapshot (of `aggregate_type`, if given), in key order.
pub async fn list(
    kv: &DynKv,
    aggregate_type: Option<&str>,
    mut each: impl FnMut(SnapshotInfo) -> Result<(), CliError>,
) -> Result<u64, CliError> {
    let range = match aggregate_type {
        Some(name) => keys::snapshots_of_type(name)
            .map_err(|error| CliError::usage(format!("--type: {error}")))?,
        None => keys::all_snapshots(),
    };
    let mut pages = Pages::new(range);
    let mut listed = 0;
    while let Some(page) = pages.next(kv).await? {
        for (key, value) in page.iter() {
            let Record::Snapshot(snapshot) = inspect::decode(key, &Bytes::copy_from_slice(value))?
            else {
                continue;
            };
            let latest = keys::snapshot_parts(key).is_some_and(|(_, _, older)| older.is_none());
            each(SnapshotInfo {
                aggregate_type: snapshot.aggregate_type,
                aggregate_id: snapshot.aggregate_id,
                version: snapshot.version,
                schema_version: snapshot.schema_version,
                codec: snapshot.codec.name(),
                created_at: rfc3339(snapshot.created_at),
                state_bytes: snapshot.state.len(),
                latest,
            })?;
            listed += 1;
        }
    }
    Ok(listed)
}

/// Deletes the snapshots of `aggregate_type` whose schema version is below
/// `schema_below`, or all of them with `None`. Returns how many were deleted. Loads fall
/// back to replaying events until new snapshots are made.
pub async fn prune(
    kv: &DynKv,
    aggregate_type: &str,
    schema_below: Option<u32>,
) -> Result<u64, CliError> {
    keys::snapshots_of_type(aggregate_type)
        .map_err(|error| CliError::usage(format!("--type: {error}")))?;
    let store = KvSnapshotStore::new(kv.clone());
    Ok(store
        .delete_snapshots_by_type(aggregate_type, schema_below)
        .await?)
}

/// Deletes the older snapshots of every aggregate (of `aggregate_type`, if given) beyond
/// the newest `keep`, the latest counting as one. Returns how many were deleted.
pub async fn prune_history(
    kv: &DynKv,
    aggregate_type: Option<&str>,
    keep: usize,
) -> Result<u64, CliError> {
    if let Some(name) = aggregate_type {
        keys::snapshots_of_type(name)
            .map_err(|error| CliError::usage(format!("--type: {error}")))?;
    }
    let store = KvSnapshotStore::new(kv.clone());
    Ok(store.prune_history(aggregate_type, keep).await?)
}

/// An aggregate whose snapshot is behind its head.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StaleAggregate {
    /// The aggregate id.
    pub aggregate_id: String,
    /// The version of its last event.
    pub head: u64,
    /// The version of its latest snapshot (0: none).
    pub snapshot_version: u64,
}

/// Calls `each` with every aggregate of `aggregate_type` whose latest snapshot is more
/// than `events_behind` events behind its head (or that has none and more events), in
/// descending id order: those `Repository::snapshot_stale` would snapshot. The command
/// cannot snapshot them itself: that takes the aggregate's code.
pub async fn stale(
    kv: &DynKv,
    aggregate_type: &str,
    events_behind: u64,
    mut each: impl FnMut(StaleAggregate) -> Result<(), CliError>,
) -> Result<u64, CliError> {
    keys::snapshots_of_type(aggregate_type)
        .map_err(|error| CliError::usage(format!("--type: {error}")))?;
    let events = KvEventStore::new(kv.clone());
    let snapshots = KvSnapshotStore::new(kv.clone());
    let stale = Staleness {
        events_behind,
        older_than: None,
    };
    let now = Timestamp::now();
    let mut before: Option<String> = None;
    let mut found = 0;
    loop {
        let heads = events
            .aggregate_heads(aggregate_type, before.as_deref(), 256)
            .await?;
        let Some((last, _)) = heads.last() else {
            return Ok(found);
        };
        before = Some(last.clone());
        for (aggregate_id, head) in heads {
            // A snapshot that cannot be read is as good as none.
            let snapshot = snapshots.get_snapshot(aggregate_type, &aggregate_id).await;
            let snapshot = snapshot.ok().flatten();
            if stale.is_stale(head, snapshot.as_ref(), now) {
                let snapshot_version = snapshot.map_or(0, |s| s.version);
                found += 1;
                each(StaleAggregate {
                    aggregate_id,
                    head,
                    snapshot_version,
                })?;
            }
        }
    }
}
