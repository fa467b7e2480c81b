//! The errors the JS API throws: a JS `Error` named `EventKvError` with a stable `code`.

use eventkv::{EventStoreError, KvError, SnapshotStoreError};
use wasm_bindgen::JsValue;

use crate::indexeddb::OpenError;

/// The stable `code` of a thrown error. The TypeScript type `ErrorCode` lists the same names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// The stream was not at the expected version; `expected` and `actual` say where.
    Conflict,
    /// The aggregate has no events.
    NotFound,
    /// An argument is invalid: a name, a number, an event or a snapshot.
    InvalidInput,
    /// A stored value does not follow the format, or its JSON does not parse.
    Corrupt,
    /// A stored value is encoded with a codec JavaScript cannot read (bincode).
    UnsupportedCodec,
    /// The database name is used by another application or another schema version.
    IncompatibleDatabase,
    /// IndexedDB is missing or refused (Node, some private modes, sandboxed frames).
    Unavailable,
    /// The origin's storage quota is full; nothing of the write landed.
    QuotaExceeded,
    /// A subscription's `onEvents` threw or rejected: the subscription stopped.
    Handler,
    /// The store was closed, or closed itself so that another tab could delete or upgrade
    /// the database: open it again.
    Closed,
    /// Concurrent writers kept winning; nothing was written.
    Contended,
    /// IndexedDB failed in another way.
    Engine,
}

impl ErrorCode {
    /// The code as JavaScript sees it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Conflict => "Conflict",
            ErrorCode::NotFound => "NotFound",
            ErrorCode::InvalidInput => "InvalidInput",
            ErrorCode::Corrupt => "Corrupt",
            ErrorCode::UnsupportedCodec => "UnsupportedCodec",
            ErrorCode::IncompatibleDatabase => "IncompatibleDatabase",
            ErrorCode::Unavailable => "Unavailable",
            ErrorCode::QuotaExceeded => "QuotaExceeded",
            ErrorCode::Closed => "Closed",
            ErrorCode::Contended => "Contended",
            ErrorCode::Engine => "Engine",
            ErrorCode::Handler => "Handler",
        }
    }
}

/// An error on its way to JavaScript.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
    /// The expected and actual versions of a conflict.
    versions: Option<(u64, u64)>,
}

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            versions: None,
        }
    }

    /// An invalid argument.
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::InvalidInput, message)
    }

    /// Its code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The same error under another code.
    pub fn with_code(self, code: ErrorCode) -> Self {
        ApiError { code, ..self }
    }
}

impl From<ApiError> for JsValue {
    fn from(error: ApiError) -> JsValue {
        let js = js_sys::Error::new(&error.message);
        js.set_name("EventKvError");
        let object: &JsValue = js.as_ref();
        let mut fields = vec![("code", JsValue::from_str(error.code.as_str()))];
        if let Some((expected, actual)) = error.versions {
            // Versions stay far below 2^53, where JS numbers are exact.
            fields.push(("expected", JsValue::from_f64(expected as f64)));
            fields.push(("actual", JsValue::from_f64(actual as f64)));
        }
        for (field, value) in fields {
            // Setting a property on a fresh Error object cannot fail.
            let _ = js_sys::Reflect::set(object, &JsValue::from_str(field), &value);
        }
        js.into()
    }
}

impl From<KvError> for ApiError {
    fn from(error: KvError) -> Self {
        let code = match &error {
            KvError::InvalidInput(_) => ErrorCode::InvalidInput,
            KvError::StorageFull { .. } => ErrorCode::QuotaExceeded,
            KvError::Conflict { .. } => ErrorCode::Contended,
            _ => ErrorCode::Engine,
        };
        ApiError::new(code, error.to_string())
    }
}

impl From<EventStoreError> for ApiError {
    fn from(error: EventStoreError) -> Self {
        let message = error.to_string();
        match error {
            EventStoreError::Conflict {
                expected, actual, ..
            } => ApiError {
                code: ErrorCode::Conflict,
                message,
                versions: Some((expected, actual)),
            },
            EventStoreError::InvalidName(_) | EventStoreError::InvalidInput(_) => {
                ApiError::invalid(message)
            }
            EventStoreError::Corrupt { .. } => ApiError::new(ErrorCode::Corrupt, message),
            EventStoreError::Contended { .. } => ApiError::new(ErrorCode::Contended, message),
            EventStoreError::Kv(error) => error.into(),
            _ => ApiError::new(ErrorCode::Engine, message),
        }
    }
}

impl From<SnapshotStoreError> for ApiError {
    fn from(error: SnapshotStoreError) -> Self {
        let message = error.to_string();
        match error {
            SnapshotStoreError::InvalidName(_) | SnapshotStoreError::VersionZero { .. } => {
                ApiError::invalid(message)
            }
            SnapshotStoreError::UnknownCodec { .. } => {
                ApiError::new(ErrorCode::UnsupportedCodec, message)
            }
            SnapshotStoreError::Corrupt { .. } => ApiError::new(ErrorCode::Corrupt, message),
            SnapshotStoreError::Contended { .. } => ApiError::new(ErrorCode::Contended, message),
            SnapshotStoreError::Kv(error) => error.into(),
            _ => ApiError::new(ErrorCode::Engine, message),
        }
    }
}

impl From<OpenError> for ApiError {
    fn from(error: OpenError) -> Self {
        let code = match &error {
            OpenError::Unavailable(_) => ErrorCode::Unavailable,
            OpenError::Incompatible { .. } => ErrorCode::IncompatibleDatabase,
            OpenError::Engine(_) => ErrorCode::Engine,
        };
        ApiError::new(code, error.to_string())
    }
}
