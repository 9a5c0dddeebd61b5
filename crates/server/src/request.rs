//! What handlers take from a request: the body, query and path parameters,
//! times and page sizes, each a 400 naming what is wrong.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use leadscore_core::time::Timestamp;
use leadscore_store::now;
use serde_json::Value;

use crate::error::ApiError;
use crate::worker::{read, StoreHandle};

/// The request body's bytes, or the error to answer (a 413 when it is
/// larger than the limit).
pub(crate) fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        let status = e.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "request body too large".to_string()
        } else {
            e.body_text()
        };
        ApiError::new(status, message)
    })
}

/// The request body as JSON, or the error to answer.
pub(crate) fn json_body(body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let body = body_bytes(body)?;
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("malformed JSON: {e}")))
}

/// Query parameters, or a 400 naming what is wrong with them (handlers
/// take the query as a `Result` and call this after checking the key).
pub(crate) fn params<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query
        .map(|Query(q)| q)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))
}

/// A typed path parameter, or the 400 to answer; as [`params`], so that
/// the key is checked first (an extractor that fails would answer before
/// the handler runs).
pub(crate) fn path<T>(path: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    path.map(|Path(p)| p)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))
}

/// The canonical id of `id` when the store knows it (firings and score
/// changes are recorded under it), else `id` as given.
pub(crate) async fn canonical(
    handle: &StoreHandle,
    id: Option<String>,
) -> Result<Option<String>, ApiError> {
    match id {
        None => Ok(None),
        Some(id) => Ok(Some(
            read(handle, move |store| {
                Ok(store.contact(&id)?.map(|c| c.id).unwrap_or(id))
            })
            .await?,
        )),
    }
}

/// `limit` of a page: 100 by default, within 1..=1000.
pub(crate) fn page_limit(limit: Option<usize>) -> usize {
    limit.unwrap_or(100).clamp(1, 1_000)
}

pub(crate) fn parse_time(text: Option<&str>) -> Result<Timestamp, ApiError> {
    Ok(time_param("as_of", text)?.unwrap_or_else(now))
}

/// An optional time parameter (RFC 3339 or a date, midnight UTC), or a 400
/// naming it.
pub(crate) fn time_param(name: &str, text: Option<&str>) -> Result<Option<Timestamp>, ApiError> {
    text.map(|t| {
        Timestamp::parse_date_or_time(t)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("{name}: {e}")))
    })
    .transpose()
}

/// The request body as UTF-8 text (a model's TOML).
pub(crate) fn text_body(body: Result<Bytes, BytesRejection>) -> Result<String, ApiError> {
    let body = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "the model is not UTF-8 text"))
}
