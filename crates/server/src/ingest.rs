//! Ingestion: the Segment HTTP tracking API (single messages, batches, the
//! beacon route) and outcomes pushed by CRMs.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use leadscore_core::event::{
    batch_from_text, batch_messages, Message, MessageError, MessageKind, Names,
};
use leadscore_core::time::{Duration, Timestamp};
use leadscore_store::{now, Incoming, Scope};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{authorize, authorize_ingest, IngestBody};
use crate::error::ApiError;
use crate::request::{json_body, params, time_param};
use crate::worker::{stored, StoreHandle};

/// [`crate::Config::max_future`]'s default: more than NTP-synchronised
/// clocks ever differ, less than any scoring window.
pub(crate) const DEFAULT_MAX_FUTURE: Duration = Duration::from_seconds(300);

/// How far ahead of the receive time a message's timestamp may be
/// ([`crate::Config::max_future`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct FutureLimit(pub Option<Duration>);

impl FutureLimit {
    /// Moves a timestamp more than the limit after `received` back to
    /// `received`, and says so. A message is never received before it
    /// happened: a later timestamp comes from a clock running ahead, and
    /// kept as sent it would count in scores and fire triggers ahead of
    /// time, and hold off inactivity until then.
    fn apply(self, message: &mut Message, received: Timestamp) -> Option<String> {
        let limit = self.0?;
        if message.timestamp <= received.plus(limit) {
            return None;
        }
        let sent = std::mem::replace(&mut message.timestamp, received);
        metrics::counter!("leadscore_messages_future_timestamps_total").increment(1);
        tracing::debug!(message_id = %message.message_id, timestamp = %sent, "timestamp ahead of the server's clock");
        Some(format!(
            "{sent} is more than {} after the server's clock: stored at its receive time {received}",
            limit
        ))
    }

    /// What to say about a message's timestamp: moved back to the receive
    /// time ([`FutureLimit::apply`]), or kept but implausibly old (before
    /// 2000: epoch seconds read as milliseconds land in January 1970,
    /// where every point has long decayed).
    fn check(self, message: &mut Message, received: Timestamp) -> Option<String> {
        if let Some(moved) = self.apply(message, received) {
            return Some(moved);
        }
        if message.timestamp >= leadscore_store::IMPLAUSIBLY_OLD {
            return None;
        }
        metrics::counter!("leadscore_messages_old_timestamps_total").increment(1);
        Some(format!(
            "{} is before 2000: stored as sent (a timestamp in seconds read as milliseconds?)",
            message.timestamp
        ))
    }
}

pub(crate) async fn single(
    kind: MessageKind,
    handle: StoreHandle,
    future: FutureLimit,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    handle.shed_when_full()?;
    let value = authorize_ingest(&handle, &headers, None, body)
        .await?
        .value()?;
    let received = now();
    let mut message =
        Message::from_json(value, Some(kind), Some(received)).map_err(|e| ApiError::message(&e))?;
    let warning = future.check(&mut message, received);
    handle.ingest_or_shed(vec![Incoming::new(message)]).await?;
    Ok(Json(match warning {
        None => json!({"success": true}),
        Some(w) => json!({"success": true, "warnings": [{"field": "timestamp", "warning": w}]}),
    }))
}

macro_rules! single_route {
    ($name:ident, $kind:expr) => {
        pub(crate) async fn $name(
            State(handle): State<StoreHandle>,
            State(future): State<FutureLimit>,
            headers: HeaderMap,
            body: Result<Bytes, BytesRejection>,
        ) -> Result<Json<Value>, ApiError> {
            single($kind, handle, future, headers, body).await
        }
    };
}

single_route!(track, MessageKind::Track);
single_route!(page, MessageKind::Page);
single_route!(screen, MessageKind::Screen);
single_route!(identify, MessageKind::Identify);
single_route!(group, MessageKind::Group);
single_route!(alias, MessageKind::Alias);

/// `{"batch": [...]}`: valid messages are kept even when others are not;
/// each invalid one is reported by its index (and field). All invalid: 400.
pub(crate) async fn batch(
    State(handle): State<StoreHandle>,
    State(future): State<FutureLimit>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    handle.shed_when_full()?;
    let body = authorize_ingest(&handle, &headers, None, body).await?;
    ingest_batch(&handle, future, body).await
}

/// `?writeKey=` of the beacon route (other parameters an SDK adds are
/// left alone: this route's only reader is an SDK, not a person typing).
#[derive(Deserialize)]
pub(crate) struct BeaconKey {
    #[serde(rename = "writeKey")]
    write_key: Option<String>,
}

/// `POST /beacon/v1/batch?writeKey=KEY`: a batch as RudderStack's browser
/// SDK sends it with `useBeacon` (`navigator.sendBeacon` cannot set an
/// Authorization header, so the write key is in the query string, as
/// RudderStack's own gateway takes it).
pub(crate) async fn beacon_batch(
    State(handle): State<StoreHandle>,
    State(future): State<FutureLimit>,
    headers: HeaderMap,
    query: Result<Query<BeaconKey>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let key = params(query)?.write_key;
    handle.shed_when_full()?;
    let body = authorize_ingest(&handle, &headers, key.as_deref(), body).await?;
    ingest_batch(&handle, future, body).await
}

/// Each message of a batch body read, in order, or why it is not one.
type Read = Vec<Result<Message, MessageError>>;

/// Validates and commits a batch body, keeping its valid messages.
async fn ingest_batch(
    handle: &StoreHandle,
    future: FutureLimit,
    body: IngestBody,
) -> Result<Json<Value>, ApiError> {
    let received = now();
    let read = match body {
        IngestBody::Raw(bytes) => match read_batch_text(&bytes, received) {
            Some(read) => read,
            None => read_batch(json_body(Ok(bytes))?, received)?,
        },
        IngestBody::Parsed(value) => read_batch(value, received)?,
    };
    let mut messages = Vec::with_capacity(read.len());
    let (mut errors, mut warnings) = (Vec::new(), Vec::new());
    for (index, item) in read.into_iter().enumerate() {
        match item {
            Ok(mut message) => {
                if let Some(w) = future.check(&mut message, received) {
                    warnings.push(json!({"index": index, "field": "timestamp", "warning": w}));
                }
                messages.push(Incoming::new(message));
            }
            Err(e) => errors.push(json!({"index": index, "field": e.field, "error": e.message})),
        }
    }
    if messages.is_empty() && !errors.is_empty() {
        return Err(ApiError::with_body(
            StatusCode::BAD_REQUEST,
            json!({"success": false, "error": "no valid message", "errors": errors}),
        ));
    }
    let accepted = messages.len();
    handle.ingest_or_shed(messages).await?;
    let mut answer = json!({"success": true});
    if !errors.is_empty() {
        answer["accepted"] = json!(accepted);
        answer["errors"] = json!(errors);
    }
    if !warnings.is_empty() {
        answer["warnings"] = json!(warnings);
    }
    Ok(Json(answer))
}

/// A batch body read as a JSON value ([`batch_messages`]).
fn read_batch(value: Value, received: Timestamp) -> Result<Read, ApiError> {
    let Value::Object(object) = value else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "expected {\"batch\": [messages]}",
        ));
    };
    batch_messages(object, Some(received))
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))
}

/// [`read_batch`] over the body's text, without a JSON tree of the whole
/// batch ([`batch_from_text`]); `None` when [`read_batch`] must decide.
/// Reading 100 messages into a tree, then each message out of it, was
/// most of the HTTP workers' time under `/v1/batch` load.
fn read_batch_text(body: &[u8], received: Timestamp) -> Option<Read> {
    batch_from_text(body, Some(received), &mut Names::default())
}

/// One outcome as posted; `at` defaults to now.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PostedOutcome {
    contact_id: String,
    outcome: String,
    value: Option<f64>,
    /// RFC 3339 or a date (midnight UTC), as in outcome files.
    at: Option<String>,
}

/// `POST /api/v1/outcomes` (ingest scope, as CRMs push them): one outcome
/// or `{"outcomes": [...]}`; all are checked before any is stored.
pub(crate) async fn outcomes(
    State(handle): State<StoreHandle>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    authorize(&handle, &headers, Scope::Ingest).await?;
    let mut value = json_body(body)?;
    let items = match value.get_mut("outcomes").map(Value::take) {
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "outcomes: expected an array",
            ))
        }
        None => vec![value],
    };
    let received = now();
    let mut parsed = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let o: PostedOutcome = serde_json::from_value(item).map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, format!("outcomes[{index}]: {e}"))
        })?;
        if o.contact_id.trim().is_empty() || o.outcome.trim().is_empty() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("outcomes[{index}]: contact_id and outcome must not be empty"),
            ));
        }
        let at =
            time_param(&format!("outcomes[{index}]: at"), o.at.as_deref())?.unwrap_or(received);
        parsed.push(leadscore_store::Outcome {
            contact_id: o.contact_id,
            outcome: o.outcome,
            value: o.value,
            at,
        });
    }
    let report = stored(&handle, move |store| store.add_outcomes(&parsed)).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"success": true, "recorded": report.added,
                    "duplicates": report.duplicates, "erased": report.erased})),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_seconds(seconds)
    }

    /// The batch's text read message by message gives what the JSON tree
    /// of the whole batch gives, message for message and error for error.
    #[test]
    fn a_batch_read_from_its_text_is_the_batch_read_from_a_tree() {
        let batch = json!({"sentAt": "2024-01-01T00:00:09Z", "writeKey": "ignored", "batch": [
            {"type": "track", "event": "Signed Up", "userId": 42, "messageId": "m1",
             "timestamp": "2024-01-01T01:00:00+01:00", "properties": {"plan": "pro", "n": 1e2}},
            {"type": "page", "anonymousId": "a", "name": "Pricing"},
            {"type": "identify", "userId": "u", "traits": {"email": "u@example.com"},
             "context": {"ip": "1.2.3.4"}, "originalTimestamp": "2024-01-01T00:00:00Z"},
            {"type": "track", "event": "No Id"},
            {"type": "teleport", "userId": "u"},
            3,
            {"type": "track", "event": "A", "userId": "u", "context": 3},
            {"type": "alias", "userId": "u", "previousId": "p", "timestamp": "2024-01-01T00:00:00Z"}
        ]});
        let text = batch.to_string();
        let fast = read_batch_text(text.as_bytes(), at(1_704_067_210)).expect("the text path");
        let tree = read_batch(batch, at(1_704_067_210)).unwrap();
        assert_eq!(fast.len(), 8);
        assert_eq!(fast.iter().filter(|m| m.is_err()).count(), 4, "{fast:?}");
        assert_eq!(fast, tree);
    }
}
