//! [`KvError`]: how an engine fails.

use bytes::Bytes;

use super::{BoxError, DisplayKey};
use crate::error::{ErrorKind, SharedError, shared};

/// An error of a key-value engine.
///
/// After [`KvError::Ambiguous`] the batch may have been applied; after any other error of
/// [`OrderedKv::write`](super::OrderedKv::write), nothing of it was.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    /// A check of the batch failed; nothing of the batch was applied.
    #[error("conflict: a check on key {} failed, nothing of the batch was applied", DisplayKey(.key))]
    Conflict {
        /// The key whose check failed (the first failing check in batch order).
        key: Bytes,
    },
    /// The engine failed (I/O, connection, corruption inside the engine, ...); nothing
    /// of the batch was applied.
    #[error("{engine}: {source}")]
    Engine {
        /// The engine's name, e.g. `"sled"`.
        engine: &'static str,
        /// What kind of failure it is: [`ErrorKind::Unavailable`] when the same call may
        /// succeed later (a dropped connection, a busy database), else the permanent kind
        /// that fits best ([`ErrorKind::Unexpected`] when none does).
        kind: ErrorKind,
        /// The engine's own error.
        #[source]
        source: SharedError,
    },
    /// The batch may or may not have been applied: the engine failed after the point
    /// where it could still promise that nothing landed (a commit whose acknowledgement
    /// was lost, a flush that failed after the transaction was visible). Read again, or
    /// retry: appends of the same events are idempotent.
    #[error("{engine}: {what}; the batch may have been applied: {source}")]
    Ambiguous {
        /// The engine's name.
        engine: &'static str,
        /// What was not confirmed.
        what: &'static str,
        /// The engine's own error.
        #[source]
        source: SharedError,
    },
    /// The request itself is invalid (e.g. a key the engine cannot store).
    #[error("invalid request: {0}")]
    InvalidInput(String),
    /// The batch is larger than the engine applies in one write ([`WriteLimits`]);
    /// nothing of it was applied.
    ///
    /// [`WriteLimits`]: super::WriteLimits
    #[error("{engine}: the batch is too large for one write: {what}; nothing of it was applied")]
    TooLarge {
        /// The engine's name.
        engine: &'static str,
        /// Which limit it exceeds, and by how much.
        what: String,
    },
    /// The engine's storage is full (a full disk, a browser's quota). A write that fails
    /// with it applied nothing of its batch.
    #[error("{engine}: storage full: {source}")]
    StorageFull {
        /// The engine's name, e.g. `"indexeddb"`.
        engine: &'static str,
        /// The engine's own error.
        #[source]
        source: SharedError,
    },
}

impl KvError {
    /// An engine failure of `kind`, caused by `source`.
    pub fn engine(engine: &'static str, kind: ErrorKind, source: impl Into<BoxError>) -> Self {
        KvError::Engine {
            engine,
            kind,
            source: shared(source),
        }
    }

    /// A write that may or may not have been applied: `what` was not confirmed.
    pub fn ambiguous(
        engine: &'static str,
        what: &'static str,
        source: impl Into<BoxError>,
    ) -> Self {
        KvError::Ambiguous {
            engine,
            what,
            source: shared(source),
        }
    }

    /// Full storage, as the engine said it in `source`.
    pub fn storage_full(engine: &'static str, source: impl Into<BoxError>) -> Self {
        KvError::StorageFull {
            engine,
            source: shared(source),
        }
    }

    /// The error of a commit that failed after the engine began making it durable: an
    /// engine failure becomes [`KvError::Ambiguous`] (`what` was not confirmed); a full
    /// disk, which engines refuse before anything lands, and other errors stay as they are.
    pub fn unconfirmed(self, what: &'static str) -> Self {
        match self {
            KvError::Engine { engine, source, .. } => KvError::Ambiguous {
                engine,
                what,
                source,
            },
            other => other,
        }
    }

    /// What kind of failure it is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            KvError::Conflict { .. } => ErrorKind::Conflict,
            KvError::Engine { kind, .. } => *kind,
            KvError::Ambiguous { .. } => ErrorKind::Ambiguous,
            KvError::InvalidInput(_) | KvError::TooLarge { .. } => ErrorKind::InvalidInput,
            KvError::StorageFull { .. } => ErrorKind::StorageFull,
        }
    }
}

crate::__error_class!(KvError);
