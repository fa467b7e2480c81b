//! The work of the `eventkv` command, as functions (the binary is a thin layer over
//! them): copy a store between engines, verify it, count what it holds, list and prune
//! snapshots, export and import events as JSON lines, follow the global log, serve the
//! sync protocol.

mod copy;
mod error;
mod jsonl;
mod pages;
mod progress;
mod serve;
mod snapshots;
mod stats;
mod store;
mod verify;

pub use copy::{CopyReport, copy};
pub use error::CliError;
pub use eventkv_sync::protocol::rfc3339;
pub use jsonl::{EventLine, ImportReport, import, write_log};
pub use progress::Progress;
pub use serve::{ServeOptions, serve};
pub use snapshots::{
    SnapshotInfo, StaleAggregate, list as list_snapshots, prune as prune_snapshots,
    prune_history as prune_snapshot_history, stale as stale_snapshots,
};
pub use stats::{LONGEST, Stats, StreamLength, TypeStats, stats};
pub use store::{check_distinct, open, open_existing, open_lasting};
pub use verify::{Comparison, MAX_LISTED, Problem, VerifyReport, compare, verify};

use eventkv::inspect::{self, Record};
use eventkv::{DynKv, OrderedKv, keys};

/// The store's last global position (0 when empty): the number of events.
pub async fn head_position(kv: &DynKv) -> Result<u64, CliError> {
    let key = keys::global_head();
    match kv.get(&key).await? {
        None => Ok(0),
        Some(value) => match inspect::decode(&key, &value)? {
            Record::Head { position } => Ok(position),
            _ => Ok(0),
        },
    }
}
