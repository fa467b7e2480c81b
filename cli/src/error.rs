//! [`CliError`]: why a command failed, of what kind, and the exit code that says so.

use std::sync::Arc;

use eventkv::inspect::RecordError;
use eventkv::{BoxError, ErrorKind, EventStoreError, KvError, SharedError, SnapshotStoreError};
use eventkv_backends::OpenError;

/// Why a command failed: its kind, whether the command was asked for something it cannot
/// do as asked (exit code 2) or the work failed (exit code 1), and the cause, kept whole.
#[derive(Clone, Debug)]
pub struct CliError {
    kind: ErrorKind,
    usage: bool,
    source: SharedError,
}

impl CliError {
    /// Bad usage (exit code 2), saying what was wrong.
    pub fn usage(message: impl Into<String>) -> Self {
        CliError::new(ErrorKind::InvalidInput, true, message.into())
    }

    /// A failure of the work (exit code 1) of `kind`, caused by `source`.
    pub fn failed(kind: ErrorKind, source: impl Into<BoxError>) -> Self {
        CliError::new(kind, false, source)
    }

    fn new(kind: ErrorKind, usage: bool, source: impl Into<BoxError>) -> Self {
        CliError {
            kind,
            usage,
            source: Arc::from(source.into()),
        }
    }

    /// What kind of failure it is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether running the command again later may succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }

    /// Whether a write may have landed although the command failed.
    pub fn is_ambiguous(&self) -> bool {
        self.kind == ErrorKind::Ambiguous
    }

    /// The process exit code: 2 for bad usage, 1 for a failure.
    pub fn exit_code(&self) -> u8 {
        if self.usage { 2 } else { 1 }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.source.fmt(f)
    }
}

impl std::error::Error for CliError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.source()
    }
}

impl From<OpenError> for CliError {
    /// A URL that names no store this build can open, or no store at all, is bad usage.
    fn from(error: OpenError) -> Self {
        let usage = matches!(
            error,
            OpenError::UnknownScheme { .. }
                | OpenError::Malformed { .. }
                | OpenError::FeatureDisabled { .. }
                | OpenError::Missing { .. }
        );
        CliError::new(error.kind(), usage, error)
    }
}

macro_rules! failed_from {
    ($($error:ty),*) => {$(
        impl From<$error> for CliError {
            fn from(error: $error) -> Self {
                CliError::failed(error.kind(), error)
            }
        }
    )*};
}

failed_from!(KvError, EventStoreError, SnapshotStoreError);

impl From<RecordError> for CliError {
    fn from(error: RecordError) -> Self {
        CliError::failed(ErrorKind::Corrupt, error)
    }
}

impl From<std::io::Error> for CliError {
    fn from(error: std::io::Error) -> Self {
        let kind = match error.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
            std::io::ErrorKind::StorageFull => ErrorKind::StorageFull,
            _ => ErrorKind::Unexpected,
        };
        CliError::failed(kind, error)
    }
}
