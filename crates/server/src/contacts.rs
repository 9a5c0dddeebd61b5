//! One contact: its score now and as of a time, explanation, history,
//! events, export and erasure.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use leadscore_core::score::Status;
use leadscore_core::time::Timestamp;
use leadscore_store::{now, ContactAt, Scope, Under};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::auth::authorize;
use crate::error::{not_found, store_error, ApiError};
use crate::request::{page_limit, params, parse_time, time_param};
use crate::worker::{read, read_point, stored, StoreHandle};

pub(crate) async fn contact(
    State(handle): State<StoreHandle>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&handle, &headers, Scope::Read).await?;
    let t = now();
    let found = read_point(&handle, move |store| store.contact_at(&id, t)).await?;
    let found = found.ok_or_else(not_found)?;
    Ok(Json(ContactNow::of(&found, t)).into_response())
}

/// The answer of `GET /contacts/{id}`, written from the contact read
/// without a copy into a JSON tree first. Its fields are in the order of
/// their names, as the JSON object of the other routes has them.
#[derive(Serialize)]
struct ContactNow<'a> {
    as_of: Timestamp,
    company: Option<&'a Map<String, Value>>,
    contact_id: &'a str,
    engagement: f64,
    fit: f64,
    grade: &'a str,
    last_event: Option<Timestamp>,
    raw: f64,
    reasons: &'a [String],
    score: f64,
    stage: &'a str,
    status: Status,
    tier: &'a str,
    traits: Option<&'a Map<String, Value>>,
}

impl<'a> ContactNow<'a> {
    fn of(found: &'a ContactAt, t: Timestamp) -> ContactNow<'a> {
        let (score, record) = (&found.score, found.record.as_ref());
        ContactNow {
            as_of: t,
            company: record.map(|r| &r.company),
            contact_id: &found.id,
            engagement: score.engagement,
            fit: score.fit,
            grade: &score.grade,
            last_event: record.and_then(|r| r.last_event),
            raw: score.raw,
            reasons: &score.reasons,
            score: score.score,
            stage: &score.stage,
            status: score.status,
            tier: &score.tier,
            traits: record.map(|r| &r.traits),
        }
    }
}

/// `from` and `to` of a history request (RFC 3339).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Span {
    from: Option<String>,
    to: Option<String>,
}

pub(crate) async fn history(
    State(handle): State<StoreHandle>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<Span>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Read).await?;
    let span = params(query)?;
    let from = time_param("from", span.from.as_deref())?;
    let to = time_param("to", span.to.as_deref())?;
    let entries = read(&handle, move |store| store.history(&id)).await?;
    if entries.is_empty() {
        return Err(not_found());
    }
    // An entry's time is the event time its score is as of, else (a merge
    // away, an erasure) when it was recorded; `from` <= time < `to`.
    let entries: Vec<_> = entries
        .into_iter()
        .filter(|e| {
            let time = e.at.unwrap_or(e.recorded_at);
            from.is_none_or(|f| time >= f) && to.is_none_or(|t| time < t)
        })
        .collect();
    Ok(Json(json!({ "entries": entries })))
}

/// `as_of`: RFC 3339; default now.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AsOf {
    as_of: Option<String>,
}

/// `as_of` as above; `model`: `active` (default), `challenger` (scored in
/// shadow) or a stored version number.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Explain {
    as_of: Option<String>,
    model: Option<String>,
}

pub(crate) async fn score_as_of(
    State(handle): State<StoreHandle>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<AsOf>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Read).await?;
    let q = params(query)?;
    let t = parse_time(q.as_of.as_deref())?;
    let found = read(&handle, move |store| store.score_at(&id, t)).await?;
    let (contact, score) = found.ok_or_else(not_found)?;
    Ok(Json(
        json!({"contact_id": contact, "as_of": t, "score": score}),
    ))
}

pub(crate) async fn explanation(
    State(handle): State<StoreHandle>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<Explain>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Read).await?;
    let q = params(query)?;
    let t = parse_time(q.as_of.as_deref())?;
    let under: Under = q
        .model
        .as_deref()
        .unwrap_or("active")
        .parse()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("model: {e}")))?;
    let found = read(&handle, move |store| {
        let (version, model) = leadscore_store::model_under(store, under)?;
        let found = leadscore_store::explain_at(store, &id, t, &model)?;
        Ok(found.map(|found| (version, found)))
    })
    .await?;
    let found = found.map(|(version, (contact, score, explanation))| {
        json!({"contact_id": contact, "as_of": t, "model_version": version, "score": score, "explanation": explanation})
    });
    found.map(Json).ok_or_else(not_found)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Page {
    cursor: Option<usize>,
    limit: Option<usize>,
}

pub(crate) async fn events(
    State(handle): State<StoreHandle>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<Page>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Read).await?;
    let page = params(query)?;
    let log = read(&handle, move |store| store.contact_messages(&id))
        .await?
        .ok_or_else(not_found)?;
    let start = page.cursor.unwrap_or(0).min(log.messages.len());
    let limit = page_limit(page.limit);
    let end = (start + limit).min(log.messages.len());
    let events = log.messages[start..end]
        .iter()
        .map(leadscore_store::message_json)
        .collect::<Result<Vec<_>, _>>()
        .map_err(store_error)?;
    Ok(Json(json!({
        "contact_id": log.contact,
        "events": events,
        "next_cursor": (end < log.messages.len()).then_some(end),
    })))
}

pub(crate) async fn export(
    State(handle): State<StoreHandle>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Admin).await?;
    let found = read(&handle, move |store| {
        leadscore_store::export_contact(store, &id)
    })
    .await?;
    found.map(Json).ok_or_else(not_found)
}

pub(crate) async fn erase(
    State(handle): State<StoreHandle>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Admin).await?;
    let report = stored(&handle, move |store| store.erase(&id))
        .await?
        .ok_or_else(not_found)?;
    handle.past.clear();
    Ok(Json(json!({"success": true, "erased": report})))
}

#[cfg(test)]
mod tests {
    use leadscore_core::score::Score;
    use leadscore_store::ContactRecord;

    use super::*;

    /// The answer as the handler wrote it before: a JSON tree, whose
    /// object keys serde_json keeps in the order of their names.
    fn as_a_tree(found: &ContactAt, t: Timestamp) -> String {
        let (score, record) = (&found.score, found.record.as_ref());
        json!({
            "contact_id": found.id,
            "as_of": t,
            "score": score.score,
            "raw": score.raw,
            "fit": score.fit,
            "engagement": score.engagement,
            "tier": score.tier,
            "grade": score.grade,
            "stage": score.stage,
            "status": score.status,
            "reasons": score.reasons,
            "last_event": record.and_then(|r| r.last_event),
            "traits": record.map(|r| &r.traits),
            "company": record.map(|r| &r.company),
        })
        .to_string()
    }

    /// `GET /contacts/{id}` writes the same bytes as the JSON tree it
    /// replaced, with a record and without, for an excluded contact with
    /// reasons and traits that need escaping.
    #[test]
    fn a_contact_is_written_as_the_json_tree_was() {
        let t = Timestamp::parse("2026-12-07T11:00:00.123456Z").unwrap();
        let score = Score {
            score: 42.5,
            raw: 57.25,
            fit: 20.0,
            engagement: 37.25,
            tier: "hot".into(),
            grade: "A".into(),
            stage: "mql".into(),
            status: Status::Excluded,
            reasons: vec!["competitor".into(), "said \"no\"".into()],
        };
        let traits = json!({"email": "a@b.c", "title": "VP\nSales", "n": 3, "x": null});
        let company = json!({"name": "Acme", "size": 250.5});
        let record = ContactRecord {
            id: "u1".into(),
            model_version: 2,
            last_event: Some(Timestamp::parse("2026-12-01T08:00:00Z").unwrap()),
            score: score.clone(),
            traits: traits.as_object().unwrap().clone(),
            company: company.as_object().unwrap().clone(),
            state_bytes: 100,
        };
        for record in [Some(record), None] {
            let found = ContactAt {
                id: "u1".into(),
                score: score.clone(),
                record,
            };
            let written = serde_json::to_string(&ContactNow::of(&found, t)).unwrap();
            assert_eq!(written, as_a_tree(&found, t));
        }
    }
}
