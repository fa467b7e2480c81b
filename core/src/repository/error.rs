//! [`RepositoryError`]: what failed, for which aggregate.

use crate::codec::CodecError;
use crate::error::ErrorKind;
use crate::event_store::EventStoreError;
use crate::snapshot::SnapshotStoreError;

/// An error of the repository: the aggregate it concerns and what failed.
#[derive(Clone, Debug)]
pub struct RepositoryError {
    aggregate_type: &'static str,
    aggregate_id: String,
    failure: RepositoryFailure,
}

/// What failed, in a [`RepositoryError`].
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepositoryFailure {
    /// The aggregate has no events.
    #[error("not found: it has no events")]
    NotFound,
    /// The snapshot store could not be read and the repository is configured with
    /// [`SnapshotReadFailure::FailLoad`](crate::SnapshotReadFailure::FailLoad).
    #[error("cannot read its snapshot: {0}")]
    SnapshotUnavailable(#[source] SnapshotStoreError),
    /// Another writer saved the aggregate first; reload and retry. Nothing was written.
    #[error(
        "concurrency conflict: expected version {expected}, actual version {actual}; nothing was written"
    )]
    Conflict {
        /// The version the handle was at.
        expected: u64,
        /// The stream's version.
        actual: u64,
    },
    /// A snapshot was asked of a handle with unsaved events.
    #[error("cannot snapshot it at version {version}: {count} events are not saved yet")]
    UncommittedEvents {
        /// The committed version.
        version: u64,
        /// How many events are pending.
        count: usize,
    },
    /// A snapshot was asked of an aggregate with no committed events.
    #[error("cannot snapshot it: it has no committed events")]
    NothingCommitted,
    /// An event could not be encoded; nothing was written.
    #[error("cannot encode an event: {0}")]
    EventEncode(#[source] CodecError),
    /// A stored event could not be decoded.
    #[error("cannot decode event {version} ({event_type}): {source}")]
    EventDecode {
        /// The event's version.
        version: u64,
        /// The event's type name.
        event_type: String,
        /// The codec error.
        source: CodecError,
    },
    /// A past version that the stream does not hold: 0, or above its head.
    #[error("version {version} is not in the stream: its versions are 1 to {head}")]
    VersionOutOfRange {
        /// The version asked for.
        version: u64,
        /// The stream's last version.
        head: u64,
    },
    /// The stream skips a version.
    #[error("its stream skips from version {previous} to {found}")]
    StreamGap {
        /// The last version applied.
        previous: u64,
        /// The version found next.
        found: u64,
    },
    /// The state could not be encoded for a snapshot.
    #[error("cannot encode a snapshot at version {version}: {source}")]
    SnapshotEncode {
        /// The version.
        version: u64,
        /// The codec error.
        source: CodecError,
    },
    /// The snapshot store failed.
    #[error("snapshot at version {version}: {source}")]
    SnapshotStore {
        /// The version.
        version: u64,
        /// The store's error.
        source: SnapshotStoreError,
    },
    /// The event store failed.
    #[error(transparent)]
    EventStore(EventStoreError),
}

impl From<EventStoreError> for RepositoryFailure {
    fn from(error: EventStoreError) -> Self {
        match error {
            EventStoreError::Conflict {
                expected, actual, ..
            } => RepositoryFailure::Conflict { expected, actual },
            other => RepositoryFailure::EventStore(other),
        }
    }
}

impl RepositoryFailure {
    /// What kind of failure it is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            RepositoryFailure::NotFound => ErrorKind::NotFound,
            RepositoryFailure::Conflict { .. } => ErrorKind::Conflict,
            RepositoryFailure::UncommittedEvents { .. }
            | RepositoryFailure::NothingCommitted
            | RepositoryFailure::VersionOutOfRange { .. } => ErrorKind::InvalidInput,
            RepositoryFailure::StreamGap { .. } => ErrorKind::Corrupt,
            RepositoryFailure::EventEncode(source)
            | RepositoryFailure::EventDecode { source, .. }
            | RepositoryFailure::SnapshotEncode { source, .. } => source.kind(),
            RepositoryFailure::SnapshotUnavailable(source)
            | RepositoryFailure::SnapshotStore { source, .. } => source.kind(),
            RepositoryFailure::EventStore(source) => source.kind(),
        }
    }
}

impl RepositoryError {
    /// The error of `failure` on aggregate `aggregate_id` of type `aggregate_type`.
    pub fn new(
        aggregate_type: &'static str,
        aggregate_id: impl Into<String>,
        failure: impl Into<RepositoryFailure>,
    ) -> Self {
        RepositoryError {
            aggregate_type,
            aggregate_id: aggregate_id.into(),
            failure: failure.into(),
        }
    }

    /// The aggregate type.
    pub fn aggregate_type(&self) -> &'static str {
        self.aggregate_type
    }

    /// The aggregate id.
    pub fn aggregate_id(&self) -> &str {
        &self.aggregate_id
    }

    /// What failed.
    pub fn failure(&self) -> &RepositoryFailure {
        &self.failure
    }

    /// What kind of failure it is. An ambiguous save (the engine could not confirm its
    /// commit) may be saved again as it is: its events keep their ids, and an append of
    /// events already stored writes nothing.
    pub fn kind(&self) -> ErrorKind {
        self.failure.kind()
    }
}

crate::__error_class!(RepositoryError, RepositoryFailure);

impl std::fmt::Display for RepositoryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {:?}: {}",
            self.aggregate_type, self.aggregate_id, self.failure
        )
    }
}

impl std::error::Error for RepositoryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.failure)
    }
}
