//! Error answers: a status and a JSON body, and how store errors map to them.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use leadscore_core::event::MessageError;
use leadscore_store::StoreError;
use serde_json::{json, Value};

/// An error answer: status and a JSON body `{"success": false, "error": …}`.
#[derive(Debug)]
pub struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
    /// Seconds a client should wait before sending again (`Retry-After`).
    pub(crate) retry_after: Option<u32>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError::with_body(status, json!({"success": false, "error": message.into()}))
    }

    /// An answer whose JSON body says more than its `error`.
    pub(crate) fn with_body(status: StatusCode, body: Value) -> ApiError {
        ApiError {
            status,
            body,
            retry_after: None,
        }
    }

    /// The writer is `queued` messages behind: send again in a second.
    pub(crate) fn overloaded(queued: usize) -> ApiError {
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "overloaded: {queued} messages are waiting to be written; nothing of this request was kept, send it again after Retry-After"
                ),
            )
        }
    }

    pub(crate) fn unavailable() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down",
        )
    }

    pub(crate) fn message(e: &MessageError) -> ApiError {
        ApiError::with_body(
            StatusCode::BAD_REQUEST,
            json!({"success": false, "error": e.message, "field": e.field}),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

pub(crate) fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::NoActiveModel | StoreError::NoChallenger => {
            ApiError::new(StatusCode::CONFLICT, e.to_string())
        }
        StoreError::NoSuchVersion(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
        StoreError::Model(_) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        other => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, other.to_string()),
    }
}

pub(crate) fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such contact")
}
