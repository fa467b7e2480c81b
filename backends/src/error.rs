//! [`OpenError`]: why an engine could not be opened.

use std::path::PathBuf;

use eventkv::{ErrorKind, SharedError};

use crate::engines::accepted_urls;

/// Why an engine could not be opened.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The URL names no engine this crate knows.
    #[error("unknown engine URL {url:?}: accepted forms are {}", accepted_urls())]
    UnknownScheme {
        /// The URL given.
        url: String,
    },
    /// The URL names an engine but is malformed.
    #[error(
        "malformed engine URL {url:?}: {reason}; accepted forms are {}",
        accepted_urls()
    )]
    Malformed {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The engine's cargo feature is off in this build.
    #[error(
        "engine {engine} is not compiled in: enable the cargo feature \"{feature}\" of eventkv-backends"
    )]
    FeatureDisabled {
        /// The engine.
        engine: &'static str,
        /// The feature that compiles it in.
        feature: &'static str,
    },
    /// Another process holds the database.
    #[error("{engine} database {} is already opened by another process: {source}", path.display())]
    Locked {
        /// The engine.
        engine: &'static str,
        /// The database's path.
        path: PathBuf,
        /// The engine's own error.
        source: SharedError,
    },
    /// This process already has the database open: open it once and share the handle
    /// (its clones share the database).
    #[error(
        "{engine} database {} is already open in this process: open it once and share the handle (clones of it share the database)",
        path.display()
    )]
    OpenInThisProcess {
        /// The engine.
        engine: &'static str,
        /// The database's path.
        path: PathBuf,
    },
    /// The path exists but is not a database of this engine (or is damaged).
    #[error("{} is not a {engine} database (or it is damaged): {source}", path.display())]
    NotADatabase {
        /// The engine.
        engine: &'static str,
        /// The path.
        path: PathBuf,
        /// The engine's own error.
        source: SharedError,
    },
    /// The database server could not be reached.
    #[error("cannot reach the {engine} server at {host}:{port}: {source}")]
    Unreachable {
        /// The engine.
        engine: &'static str,
        /// The host.
        host: String,
        /// The port.
        port: u16,
        /// The driver's error.
        source: SharedError,
    },
    /// [`open_existing`](crate::open_existing) found no store where the URL points, and
    /// created none.
    #[error("there is no {engine} store at {location}: check the URL (nothing was created)")]
    Missing {
        /// The engine.
        engine: &'static str,
        /// Where the store was looked for.
        location: String,
    },
    /// The engine failed otherwise.
    #[error("{engine}: {source}")]
    Engine {
        /// The engine.
        engine: &'static str,
        /// What kind of failure it is.
        kind: ErrorKind,
        /// The engine's own error.
        source: SharedError,
    },
}

impl OpenError {
    /// What kind of failure it is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            OpenError::UnknownScheme { .. }
            | OpenError::Malformed { .. }
            | OpenError::OpenInThisProcess { .. } => ErrorKind::InvalidInput,
            OpenError::FeatureDisabled { .. } => ErrorKind::Unsupported,
            OpenError::Locked { .. } | OpenError::Unreachable { .. } => ErrorKind::Unavailable,
            OpenError::NotADatabase { .. } => ErrorKind::Corrupt,
            OpenError::Missing { .. } => ErrorKind::NotFound,
            OpenError::Engine { kind, .. } => *kind,
        }
    }

    /// A failure of `engine` of `kind`, caused by `source`.
    #[allow(
        dead_code,
        reason = "a helper of the engines, any of which may be compiled out"
    )]
    pub(crate) fn engine(
        engine: &'static str,
        kind: ErrorKind,
        source: impl Into<eventkv::BoxError>,
    ) -> Self {
        OpenError::Engine {
            engine,
            kind,
            source: shared(source),
        }
    }
}

/// `source`, shared.
#[allow(
    dead_code,
    reason = "a helper of the engines, any of which may be compiled out"
)]
pub(crate) fn shared(source: impl Into<eventkv::BoxError>) -> SharedError {
    std::sync::Arc::from(source.into())
}

eventkv::__error_class!(OpenError);
