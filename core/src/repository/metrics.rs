//! What a repository counts: loads, snapshot misses by reason, snapshot writes.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why `load` ignored a snapshot and replayed every event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SnapshotMiss {
    /// The snapshot's schema version is not the aggregate's `SCHEMA_VERSION`.
    SchemaMismatch,
    /// The snapshot names a codec this eventkv does not know.
    UnknownCodec,
    /// The snapshot's envelope or state does not decode.
    Undecodable,
    /// The snapshot's version is past the last event of the stream. It is deleted.
    AheadOfStream,
    /// The stream's event at the snapshot's version is not the one the snapshot was taken
    /// at: the snapshot belongs to another history (a restored backup, another store). It
    /// is deleted.
    ForeignHistory,
    /// The snapshot's checksum does not match: a byte changed after it was written.
    ChecksumMismatch,
    /// The snapshot store failed to read it (I/O, connection). Counted apart from bad
    /// data; [`SnapshotReadFailure::FailLoad`](super::SnapshotReadFailure::FailLoad) fails the load instead.
    Unreadable,
}

impl SnapshotMiss {
    /// The reason's name: `"SchemaMismatch"`, `"UnknownCodec"`, … (the browser's
    /// `snapshotMiss`).
    pub fn name(self) -> &'static str {
        match self {
            SnapshotMiss::SchemaMismatch => "SchemaMismatch",
            SnapshotMiss::UnknownCodec => "UnknownCodec",
            SnapshotMiss::Undecodable => "Undecodable",
            SnapshotMiss::AheadOfStream => "AheadOfStream",
            SnapshotMiss::ForeignHistory => "ForeignHistory",
            SnapshotMiss::ChecksumMismatch => "ChecksumMismatch",
            SnapshotMiss::Unreadable => "Unreadable",
        }
    }
}

/// Counters of one repository (and its clones), since it was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RepositoryMetrics {
    /// Loads that started from a snapshot.
    pub loads_from_snapshot: u64,
    /// Loads that replayed every event.
    pub full_replays: u64,
    /// Snapshots ignored because of their schema version.
    pub miss_schema_mismatch: u64,
    /// Snapshots ignored because of an unknown codec.
    pub miss_unknown_codec: u64,
    /// Snapshots ignored because they did not decode.
    pub miss_undecodable: u64,
    /// Snapshots ignored because they were ahead of the stream.
    pub miss_ahead_of_stream: u64,
    /// Snapshots ignored because they were taken from another history.
    pub miss_foreign_history: u64,
    /// Snapshots ignored because their checksum did not match.
    pub miss_checksum_mismatch: u64,
    /// Snapshots ignored because the store failed to read them.
    pub miss_unreadable: u64,
    /// Snapshots stored.
    pub snapshots_written: u64,
    /// Snapshots not stored because a newer one was there.
    pub snapshots_superseded: u64,
    /// Snapshots that failed to encode or store.
    pub snapshot_failures: u64,
    /// Snapshots stored because a load replayed more events than
    /// [`with_snapshot_after_replay`](crate::Repository::with_snapshot_after_replay) allows.
    pub load_snapshots: u64,
}

impl RepositoryMetrics {
    /// How many loads ignored a snapshot for `reason`.
    pub fn misses(&self, reason: SnapshotMiss) -> u64 {
        match reason {
            SnapshotMiss::SchemaMismatch => self.miss_schema_mismatch,
            SnapshotMiss::UnknownCodec => self.miss_unknown_codec,
            SnapshotMiss::Undecodable => self.miss_undecodable,
            SnapshotMiss::AheadOfStream => self.miss_ahead_of_stream,
            SnapshotMiss::ForeignHistory => self.miss_foreign_history,
            SnapshotMiss::ChecksumMismatch => self.miss_checksum_mismatch,
            SnapshotMiss::Unreadable => self.miss_unreadable,
        }
    }
}

/// The counters behind [`RepositoryMetrics`], shared by a repository's clones.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) loads_from_snapshot: AtomicU64,
    pub(super) full_replays: AtomicU64,
    pub(super) miss_schema_mismatch: AtomicU64,
    pub(super) miss_unknown_codec: AtomicU64,
    pub(super) miss_undecodable: AtomicU64,
    pub(super) miss_ahead_of_stream: AtomicU64,
    pub(super) miss_foreign_history: AtomicU64,
    pub(super) miss_checksum_mismatch: AtomicU64,
    pub(super) miss_unreadable: AtomicU64,
    pub(super) snapshots_written: AtomicU64,
    pub(super) snapshots_superseded: AtomicU64,
    pub(super) snapshot_failures: AtomicU64,
    pub(super) load_snapshots: AtomicU64,
}

pub(super) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    /// Counts a snapshot `load` could not use.
    pub(super) fn miss(&self, reason: SnapshotMiss) {
        bump(match reason {
            SnapshotMiss::SchemaMismatch => &self.miss_schema_mismatch,
            SnapshotMiss::UnknownCodec => &self.miss_unknown_codec,
            SnapshotMiss::Undecodable => &self.miss_undecodable,
            SnapshotMiss::AheadOfStream => &self.miss_ahead_of_stream,
            SnapshotMiss::ForeignHistory => &self.miss_foreign_history,
            SnapshotMiss::ChecksumMismatch => &self.miss_checksum_mismatch,
            SnapshotMiss::Unreadable => &self.miss_unreadable,
        });
    }

    /// The counts now.
    pub(super) fn read(&self) -> RepositoryMetrics {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        RepositoryMetrics {
            loads_from_snapshot: get(&self.loads_from_snapshot),
            full_replays: get(&self.full_replays),
            miss_schema_mismatch: get(&self.miss_schema_mismatch),
            miss_unknown_codec: get(&self.miss_unknown_codec),
            miss_undecodable: get(&self.miss_undecodable),
            miss_ahead_of_stream: get(&self.miss_ahead_of_stream),
            miss_foreign_history: get(&self.miss_foreign_history),
            miss_checksum_mismatch: get(&self.miss_checksum_mismatch),
            miss_unreadable: get(&self.miss_unreadable),
            snapshots_written: get(&self.snapshots_written),
            snapshots_superseded: get(&self.snapshots_superseded),
            snapshot_failures: get(&self.snapshot_failures),
            load_snapshots: get(&self.load_snapshots),
        }
    }
}
