//! One error model for every layer: each error of eventkv says its [`ErrorKind`], whether
//! trying again can help ([`ErrorKind::is_retryable`]) and whether a write may have landed
//! ([`ErrorKind::Ambiguous`]), keeps its cause as its [`source`](std::error::Error::source),
//! and is `Clone` (causes are shared behind an `Arc`).

use std::sync::Arc;

/// The cause an error keeps: any error, shared so that the error can be cloned.
pub type SharedError = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong, in one word shared by every error of eventkv (and the `code` of the
/// JavaScript API's errors).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A precondition failed (an expected version, a check, another runner's checkpoint):
    /// nothing was written. Read again and decide again; the same request fails again.
    Conflict,
    /// What was asked for is not there (an aggregate without events, a store).
    NotFound,
    /// The request is invalid (a name, an event, an option, a URL): fix it.
    InvalidInput,
    /// Stored data does not follow the format, or contradicts itself.
    Corrupt,
    /// The engine cannot serve now (a lost connection, a busy database, a server that does
    /// not answer, a database another process holds): nothing was written; try again later.
    Unavailable,
    /// A write may or may not have landed (a lost commit acknowledgement): try again with
    /// the same event ids, which stores them once.
    Ambiguous,
    /// The storage is full (a disk, a quota): nothing of the write landed.
    StorageFull,
    /// Concurrent writers kept winning for the whole retry budget: nothing was written.
    Contended,
    /// The store was closed (or closed itself): open it again.
    Closed,
    /// Not supported here: an engine left out of this build, a codec or format version this
    /// eventkv does not know, a database made by something else.
    Unsupported,
    /// The engine refused the credentials or the operation.
    PermissionDenied,
    /// The application refused the command (its decision returned an error).
    Refused,
    /// An application callback failed (a projection's or a subscription's handler).
    Handler,
    /// The engine failed in a way eventkv cannot tell apart (an I/O error): see the source.
    Unexpected,
}

impl ErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: [ErrorKind; 14] = [
        ErrorKind::Conflict,
        ErrorKind::NotFound,
        ErrorKind::InvalidInput,
        ErrorKind::Corrupt,
        ErrorKind::Unavailable,
        ErrorKind::Ambiguous,
        ErrorKind::StorageFull,
        ErrorKind::Contended,
        ErrorKind::Closed,
        ErrorKind::Unsupported,
        ErrorKind::PermissionDenied,
        ErrorKind::Refused,
        ErrorKind::Handler,
        ErrorKind::Unexpected,
    ];

    /// Whether the same request may succeed if made again later: the engine was
    /// unavailable, writers contended, or a write may have landed (made again with the
    /// same event ids, it is stored once).
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::Unavailable | ErrorKind::Ambiguous | ErrorKind::Contended
        )
    }

    /// The kind's name, as the JavaScript API's `code`: `"Conflict"`, `"NotFound"`, …
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Conflict => "Conflict",
            ErrorKind::NotFound => "NotFound",
            ErrorKind::InvalidInput => "InvalidInput",
            ErrorKind::Corrupt => "Corrupt",
            ErrorKind::Unavailable => "Unavailable",
            ErrorKind::Ambiguous => "Ambiguous",
            ErrorKind::StorageFull => "StorageFull",
            ErrorKind::Contended => "Contended",
            ErrorKind::Closed => "Closed",
            ErrorKind::Unsupported => "Unsupported",
            ErrorKind::PermissionDenied => "PermissionDenied",
            ErrorKind::Refused => "Refused",
            ErrorKind::Handler => "Handler",
            ErrorKind::Unexpected => "Unexpected",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Gives an error type with a `kind()` method the two questions every error of eventkv
/// answers.
#[macro_export]
#[doc(hidden)]
macro_rules! __error_class {
    ($($error:ty),* $(,)?) => {$(
        impl $error {
            /// Whether the same request may succeed if made again later (see
            /// [`ErrorKind::is_retryable`](crate::ErrorKind::is_retryable)).
            pub fn is_retryable(&self) -> bool {
                self.kind().is_retryable()
            }

            /// Whether a write may have landed although it failed: made again with the
            /// same event ids, it is stored once.
            pub fn is_ambiguous(&self) -> bool {
                self.kind() == $crate::ErrorKind::Ambiguous
            }
        }
    )*};
}

/// An error with what was being done when it happened: `"{context}: {source}"`, the cause
/// kept as its [`source`](std::error::Error::source).
#[derive(Clone, Debug, thiserror::Error)]
#[error("{context}: {source}")]
pub struct ContextError {
    context: String,
    source: SharedError,
}

impl ContextError {
    /// `source`, with `context` (what was being done).
    pub fn new(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        ContextError {
            context: context.into(),
            source: shared(source),
        }
    }
}

/// `source` as a [`SharedError`].
pub fn shared(
    source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
) -> SharedError {
    Arc::from(source.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct_and_only_three_kinds_are_retryable() {
        let names: std::collections::HashSet<_> = ErrorKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(names.len(), ErrorKind::ALL.len());
        let retryable: Vec<_> = ErrorKind::ALL
            .into_iter()
            .filter(|kind| kind.is_retryable())
            .collect();
        assert_eq!(
            retryable,
            [
                ErrorKind::Unavailable,
                ErrorKind::Ambiguous,
                ErrorKind::Contended
            ]
        );
    }
}
