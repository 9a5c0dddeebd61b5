//! Many contacts: the leaderboard, the segment summary and the stream of
//! score changes.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use leadscore_core::score::Status;
use leadscore_core::time::Timestamp;
use leadscore_store::{now, Scope, ScoreQuery};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::authorize;
use crate::error::ApiError;
use crate::request::{canonical, params, time_param};
use crate::worker::{read_heavy, StoreHandle};
use crate::AppState;

/// Leaderboard parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScoresParams {
    tier: Option<String>,
    grade: Option<String>,
    stage: Option<String>,
    status: Option<String>,
    min: Option<f64>,
    max: Option<f64>,
    order: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
    as_of: Option<String>,
}

pub(crate) async fn scores(
    State(handle): State<StoreHandle>,
    headers: HeaderMap,
    query: Result<Query<ScoresParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Read).await?;
    let p = params(query)?;
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, m);
    let status = match p.status.as_deref() {
        None => None,
        Some(s) => Some(
            Status::parse(s)
                .ok_or_else(|| bad(format!("status: expected active or excluded, found {s:?}")))?,
        ),
    };
    let ascending = match p.order.as_deref() {
        None | Some("score_desc") => false,
        Some("score_asc") => true,
        Some(o) => {
            return Err(bad(format!(
                "order: expected score_desc or score_asc, found {o:?}"
            )))
        }
    };
    // A cursor is `as_of~score~id`: the time the first page was scored at
    // (every page is scored as of it; `r` before it when that time was
    // asked for, a listing of the past, with `.N` after it when that
    // listing is kept as snapshot N) and the last row of the page before.
    let asked = time_param("as_of", p.as_of.as_deref())?;
    let (at, rewind, snapshot, after) = match p.cursor.as_deref() {
        None => (asked.unwrap_or_else(now), asked.is_some(), None, None),
        Some(c) => {
            let Cursor {
                at,
                rewind,
                snapshot,
                after,
            } = parse_cursor(c).ok_or_else(|| bad("cursor: malformed".into()))?;
            if asked.is_some_and(|asked| !rewind || asked != at) {
                return Err(bad(format!(
                    "as_of: the cursor continues a listing as of {}",
                    if rewind { at.to_string() } else { "now".into() }
                )));
            }
            (at, rewind, snapshot, Some(after))
        }
    };
    if let Some((name, _)) = [("min", p.min), ("max", p.max)]
        .into_iter()
        .find(|(_, v)| v.is_some_and(f64::is_nan))
    {
        return Err(bad(format!("{name}: a number is needed, found NaN")));
    }
    let limit = p.limit.unwrap_or(50).clamp(1, 1_000);
    let query = ScoreQuery {
        at: Some(at),
        rewind,
        tier: p.tier,
        grade: p.grade,
        stage: p.stage,
        status,
        min: p.min,
        max: p.max,
        ascending,
        after,
        limit,
    };
    let past = handle.past.clone();
    let (rows, snapshot) = read_heavy(&handle, move |store| {
        let active = store.active_model()?;
        if let Some((_, model)) = &active {
            if let Err(e) = query.check(model) {
                return Ok(Err(e));
            }
        }
        if !rewind {
            return Ok(Ok((store.scores(&query)?, None)));
        }
        // A listing of the past: the next pages are cut from the first
        // page's computation while it is kept (`past`).
        let version = active.map(|(v, _)| v);
        if let Some(rows) = snapshot.and_then(|n| past.get(n, &query, version)) {
            return Ok(Ok((query.page(&rows), snapshot)));
        }
        // Every row from the cursor on, up to one more than a kept listing
        // may hold (memory stays bounded on a large store): when they all
        // fit, they are kept for the next pages (which all come after).
        let mark = past.mark();
        let rest = ScoreQuery {
            limit: past.capacity() + 1,
            ..query.clone()
        };
        let rows = std::sync::Arc::new(store.scores(&rest)?);
        let page = query.page(&rows);
        Ok(Ok((page, past.put(&query, version, rows, mark))))
    })
    .await?
    .map_err(bad)?;
    let next = (rows.len() == limit)
        .then(|| {
            rows.last().map(|r| {
                let flag = if rewind { "r" } else { "" };
                let kept = snapshot.map(|n| format!(".{n}")).unwrap_or_default();
                format!("{flag}{}{kept}~{}~{}", at.0, r.score.score, r.id)
            })
        })
        .flatten();
    let contacts: Vec<Value> = rows
        .into_iter()
        .map(|r| json!({"contact_id": r.id, "score": r.score, "last_event": r.last_event}))
        .collect();
    Ok(Json(
        json!({"as_of": at, "contacts": contacts, "next_cursor": next}),
    ))
}

/// What a leaderboard's cursor says.
struct Cursor {
    /// The time every page is scored as of.
    at: Timestamp,
    /// Whether that time was asked for (a listing of the past).
    rewind: bool,
    /// The kept listing the pages are cut from ([`crate::past`]).
    snapshot: Option<u64>,
    /// The last row of the page before.
    after: (f64, String),
}

/// `[r]as_of[.snapshot]~score~id` (the id may itself hold `~`).
fn parse_cursor(cursor: &str) -> Option<Cursor> {
    let mut parts = cursor.splitn(3, '~');
    let first = parts.next()?;
    let (rewind, first) = match first.strip_prefix('r') {
        Some(rest) => (true, rest),
        None => (false, first),
    };
    let (at, snapshot) = match first.split_once('.') {
        Some((at, n)) if rewind => (at, Some(n.parse().ok()?)),
        Some(_) => return None,
        None => (first, None),
    };
    let at = Timestamp(at.parse().ok()?);
    let score = parts.next()?.parse().ok()?;
    Some(Cursor {
        at,
        rewind,
        snapshot,
        after: (score, parts.next()?.to_string()),
    })
}

/// Segment summary parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SummaryParams {
    as_of: Option<String>,
}

pub(crate) async fn summary(
    State(handle): State<StoreHandle>,
    headers: HeaderMap,
    query: Result<Query<SummaryParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Read).await?;
    let asked = time_param("as_of", params(query)?.as_of.as_deref())?;
    let at = asked.unwrap_or_else(now);
    let summary = read_heavy(&handle, move |store| {
        store.summary(Some(at), asked.is_some())
    })
    .await?;
    Ok(Json(
        serde_json::to_value(summary).expect("a summary serialises"),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StreamQuery {
    contact: Option<String>,
}

/// `GET /api/v1/stream/scores` (read): Server-Sent Events, one `score`
/// event per change as it is committed (the ledger entry as JSON);
/// `?contact=ID` keeps one contact's. A client too slow to keep up gets a
/// `lagged` event with the number of changes it missed.
pub(crate) async fn stream_scores(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use tokio::sync::broadcast::error::RecvError;
    let handle = state.handle.clone();
    authorize(&handle, &headers, Scope::Read).await?;
    let q = params(query)?;
    let contact = canonical(&handle, q.contact).await?;
    let receiver = handle.subscribe();
    let closing = state.closing.clone();
    let events = futures_util::stream::unfold(
        (receiver, std::collections::VecDeque::new(), closing),
        move |(mut receiver, mut pending, mut closing)| {
            let contact = contact.clone();
            async move {
                loop {
                    if let Some(event) = pending.pop_front() {
                        return Some((
                            Ok::<Event, std::convert::Infallible>(event),
                            (receiver, pending, closing),
                        ));
                    }
                    let next = tokio::select! {
                        next = receiver.recv() => next,
                        _ = closing.wait_for(|closing| *closing) => return None,
                    };
                    match next {
                        Ok(changes) => {
                            for change in changes.iter() {
                                if contact.as_ref().is_none_or(|c| *c == change.contact) {
                                    let data =
                                        serde_json::to_string(change).expect("entries serialise");
                                    pending.push_back(Event::default().event("score").data(data));
                                }
                            }
                        }
                        Err(RecvError::Lagged(n)) => {
                            pending.push_back(
                                Event::default()
                                    .event("lagged")
                                    .data(format!("{{\"missed_commits\":{n}}}")),
                            );
                        }
                        Err(RecvError::Closed) => return None,
                    }
                }
            }
        },
    );
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}
