//! The errors the JS API throws: a JS `Error` named `EventKvError` whose stable `code` is
//! the name of its [`ErrorKind`], as in Rust.

use eventkv::{ErrorKind, EventStoreError, KvError, SnapshotStoreError};
use wasm_bindgen::JsValue;

use crate::indexeddb::OpenError;

/// An error on its way to JavaScript.
#[derive(Debug)]
pub struct ApiError {
    kind: ErrorKind,
    message: String,
    /// The expected and actual versions of a conflict.
    versions: Option<(u64, u64)>,
}

impl ApiError {
    /// An error of `kind` saying `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
            versions: None,
        }
    }

    /// An invalid argument.
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(ErrorKind::InvalidInput, message)
    }

    /// What it says.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Its kind: its `code` in JavaScript.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The same error of another kind.
    pub fn with_kind(self, kind: ErrorKind) -> Self {
        ApiError { kind, ..self }
    }
}

eventkv::__error_class!(ApiError);

impl From<ApiError> for JsValue {
    fn from(error: ApiError) -> JsValue {
        let js = js_sys::Error::new(&error.message);
        js.set_name("EventKvError");
        let object: &JsValue = js.as_ref();
        let mut fields = vec![("code", JsValue::from_str(error.kind.name()))];
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
        ApiError::new(error.kind(), error.to_string())
    }
}

impl From<EventStoreError> for ApiError {
    fn from(error: EventStoreError) -> Self {
        let versions = match &error {
            EventStoreError::Conflict {
                expected, actual, ..
            } => Some((*expected, *actual)),
            _ => None,
        };
        ApiError {
            versions,
            ..ApiError::new(error.kind(), error.to_string())
        }
    }
}

impl From<SnapshotStoreError> for ApiError {
    fn from(error: SnapshotStoreError) -> Self {
        ApiError::new(error.kind(), error.to_string())
    }
}

impl From<OpenError> for ApiError {
    fn from(error: OpenError) -> Self {
        ApiError::new(error.kind(), error.to_string())
    }
}
