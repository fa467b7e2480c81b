//! Error answers: a stable code, an HTTP status, one line of text.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use eventkv::{ErrorKind, EventStoreError};

use crate::protocol::{ErrorBody, ErrorCode, ErrorResponse};

/// An error answer of the sync server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// The stable code.
    pub code: ErrorCode,
    /// One line, for people.
    pub message: String,
}

impl ApiError {
    /// An answer of `code` saying `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }

    /// The answer to a failure of the store that is not the request's fault.
    pub fn store(error: &EventStoreError) -> Self {
        let code = match error.kind() {
            ErrorKind::Ambiguous => ErrorCode::Ambiguous,
            kind if kind.is_retryable() || kind == ErrorKind::StorageFull => ErrorCode::Unavailable,
            ErrorKind::Closed => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        };
        ApiError::new(code, format!("the store failed: {error}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::warn!(code = ?self.code, "{}", self.message);
        } else {
            tracing::debug!(code = ?self.code, "{}", self.message);
        }
        let body = ErrorResponse {
            error: ErrorBody {
                code: self.code,
                message: self.message,
                retryable: self.code.is_retryable(),
            },
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"eventkv\""),
            );
        }
        response
    }
}
