//! Trigger firings, the delivery outbox and its dead letters, and campaign
//! members.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use leadscore_store::{now, Scope};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::authorize;
use crate::error::ApiError;
use crate::request::{canonical, page_limit, params, time_param};
use crate::worker::{read, stored, StoreHandle};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FiringsQuery {
    trigger: Option<String>,
    contact: Option<String>,
    after: Option<i64>,
    limit: Option<usize>,
}

pub(crate) async fn firings(
    State(handle): State<StoreHandle>,
    headers: HeaderMap,
    query: Result<Query<FiringsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Read).await?;
    let q = params(query)?;
    let limit = page_limit(q.limit);
    let contact = canonical(&handle, q.contact).await?;
    let query = leadscore_store::FiringQuery {
        trigger: q.trigger,
        contact,
        after: q.after,
        limit,
    };
    let firings = read(&handle, move |store| store.firings(&query)).await?;
    let next = (firings.len() == limit)
        .then(|| firings.last().map(|f| f.seq))
        .flatten();
    Ok(Json(json!({ "firings": firings, "next_after": next })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OutboxQuery {
    status: Option<String>,
    limit: Option<usize>,
}

pub(crate) async fn outbox(
    State(handle): State<StoreHandle>,
    headers: HeaderMap,
    query: Result<Query<OutboxQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Admin).await?;
    let q = params(query)?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(leadscore_store::DeliveryStatus::parse(s).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("status must be pending, delivered or dead, found {s:?}"),
            )
        })?),
    };
    let limit = page_limit(q.limit);
    let (rows, counts) = read(&handle, move |store| {
        Ok((store.outbox(status, limit)?, store.outbox_counts()?))
    })
    .await?;
    Ok(Json(json!({ "rows": rows, "counts": counts })))
}

/// Which dead letters: `id=N` or `all=true`, as the CLI's `--id`/`--all`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IdQuery {
    id: Option<i64>,
    #[serde(default)]
    all: bool,
}

impl IdQuery {
    /// One dead letter (`Some`) or all of them (`None`).
    fn which(self) -> Result<Option<i64>, ApiError> {
        match (self.id, self.all) {
            (Some(id), false) => Ok(Some(id)),
            (None, true) => Ok(None),
            _ => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "give either id=N (one dead letter) or all=true (every one)",
            )),
        }
    }
}

pub(crate) async fn outbox_retry(
    State(handle): State<StoreHandle>,
    headers: HeaderMap,
    query: Result<Query<IdQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Admin).await?;
    let which = params(query)?.which()?;
    let n = stored(&handle, move |store| store.retry_dead(which, now())).await?;
    Ok(Json(json!({ "requeued": n })))
}

pub(crate) async fn outbox_purge(
    State(handle): State<StoreHandle>,
    headers: HeaderMap,
    query: Result<Query<IdQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Admin).await?;
    let which = params(query)?.which()?;
    let n = stored(&handle, move |store| store.purge_dead(which)).await?;
    Ok(Json(json!({ "purged": n })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MembersQuery {
    since: Option<String>,
    limit: Option<usize>,
}

pub(crate) async fn campaign_members(
    State(handle): State<StoreHandle>,
    headers: HeaderMap,
    Path(name): Path<String>,
    query: Result<Query<MembersQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Read).await?;
    let q = params(query)?;
    let since = time_param("since", q.since.as_deref())?;
    let limit = page_limit(q.limit);
    let campaign = name.clone();
    let members = read(&handle, move |store| {
        store.campaign_members(&campaign, since, limit)
    })
    .await?;
    let next = (members.len() == limit)
        .then(|| members.last().map(|m| m.enrolled_at))
        .flatten();
    Ok(Json(
        json!({ "campaign": name, "members": members, "next_since": next }),
    ))
}
