//! `eventkv snapshots list` and `eventkv snapshots prune`.

use bytes::Bytes;
use eventkv::inspect::{self, Record};
use eventkv::{DynKv, KvSnapshotStore, SnapshotStore, keys};
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
            each(SnapshotInfo {
                aggregate_type: snapshot.aggregate_type,
                aggregate_id: snapshot.aggregate_id,
                version: snapshot.version,
                schema_version: snapshot.schema_version,
                codec: snapshot.codec.name(),
                created_at: rfc3339(snapshot.created_at),
                state_bytes: snapshot.state.len(),
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
