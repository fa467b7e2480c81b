//! [`CliError`]: why a command failed, and the exit code that says so.

use eventkv::inspect::RecordError;
use eventkv::{EventStoreError, KvError, SnapshotStoreError};
use eventkv_backends::OpenError;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command was asked for something it cannot do as asked: exit code 2.
    #[error("{0}")]
    Usage(String),
    /// The work failed: exit code 1.
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    /// The process exit code: 2 for bad usage, 1 for a failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Failed(_) => 1,
        }
    }
}

impl From<OpenError> for CliError {
    fn from(error: OpenError) -> Self {
        match error {
            OpenError::UnknownScheme { .. }
            | OpenError::Malformed { .. }
            | OpenError::FeatureDisabled { .. }
            | OpenError::Missing { .. } => CliError::Usage(error.to_string()),
            other => CliError::Failed(other.to_string()),
        }
    }
}

macro_rules! failed_from {
    ($($error:ty),*) => {$(
        impl From<$error> for CliError {
            fn from(error: $error) -> Self {
                CliError::Failed(error.to_string())
            }
        }
    )*};
}

failed_from!(
    KvError,
    EventStoreError,
    SnapshotStoreError,
    RecordError,
    std::io::Error
);
