//! Models: versions, dry runs, diffs, activation jobs, and the challenger
//! compared with the active model on recorded outcomes.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use leadscore_core::model::Model;
use leadscore_store::{diff_models, now, Scope, StoreError};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::authorize;
use crate::error::{store_error, ApiError};
use crate::request::{params, parse_time, path, text_body};
use crate::worker::{read, read_heavy, stored, StoreHandle};
use crate::{AppState, Reopen};

/// `POST /api/v1/models/{version}/challenger` (admin): attaches a stored
/// version as the challenger of the active model.
pub(crate) async fn attach_challenger(
    State(handle): State<StoreHandle>,
    headers: HeaderMap,
    version: Result<Path<u32>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Admin).await?;
    let version = path(version)?;
    stored(&handle, move |store| store.set_challenger(Some(version))).await?;
    Ok(Json(json!({ "challenger": version })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CompareQuery {
    as_of_policy: Option<String>,
    positive: Option<String>,
    top_share: Option<f64>,
}

/// `GET /api/v1/models/compare` (read): the active model (champion) against
/// the attached challenger, both scored in shadow on the store's log at the
/// same point-in-time decision times, on the outcomes recorded through
/// `POST /api/v1/outcomes`. Computed on request.
pub(crate) async fn compare_models(
    State(handle): State<StoreHandle>,
    headers: HeaderMap,
    query: Result<Query<CompareQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    use leadscore_eval::evaluate::{compare, outcomes_by_contact, points, Policy, Settings};
    authorize(&handle, &headers, Scope::Read).await?;
    let q = params(query)?;
    let policy = Policy::parse(q.as_of_policy.as_deref().unwrap_or("before:7d"))
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    let positive: Vec<String> = q
        .positive
        .as_deref()
        .unwrap_or("converted,won")
        .split(',')
        .map(|p| p.trim().to_string())
        .collect();
    let top_share = q.top_share.unwrap_or(0.1);
    leadscore_eval::evaluate::check_top_share(top_share)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    // Only contacts with a recorded outcome are compared: their logs, not
    // the whole store's (a million contacts' events do not fit in memory).
    let at = now();
    let (champion, challenger, contacts, outcomes, unknown) = read_heavy(&handle, move |store| {
        let outcomes = store.outcomes()?;
        let mut logs = std::collections::BTreeMap::new();
        // Ids of outcomes that no contact holds (keyed by another id?).
        let mut unknown = std::collections::BTreeSet::new();
        for o in &outcomes {
            match store.contact_messages(&o.contact_id)? {
                Some(log) => {
                    logs.entry(log.contact.clone()).or_insert(log.messages);
                }
                None => {
                    unknown.insert(o.contact_id.clone());
                }
            }
        }
        let contacts: Vec<leadscore_core::batch::ContactLog> = logs
            .into_iter()
            .map(|(id, mut messages)| {
                messages.retain(|m| m.timestamp <= at);
                leadscore_core::batch::ContactLog {
                    id,
                    base_traits: None,
                    messages,
                }
            })
            .collect();
        Ok((
            store.active_model()?,
            store.challenger()?,
            contacts,
            outcomes,
            unknown.len(),
        ))
    })
    .await?;
    let Some((champion_version, champion)) = champion else {
        return Err(ApiError::new(StatusCode::CONFLICT, "no active model"));
    };
    let Some((challenger_version, challenger)) = challenger else {
        return Err(store_error(StoreError::NoChallenger));
    };
    let answer = tokio::task::spawn_blocking(move || -> Result<Value, String> {
        let known = outcomes_by_contact(
            outcomes
                .iter()
                .map(|o| (o.contact_id.as_str(), o.outcome.as_str(), o.at)),
            &positive,
        );
        let a = points(&champion, &contacts, &known, policy)?;
        let b = points(&challenger, &contacts, &known, policy)?;
        let c = compare(&a, &b, top_share, &Settings::default())?;
        let values = leadscore_eval::evaluate::outcome_values(
            outcomes.iter().map(|o| o.outcome.as_str()),
            &positive,
        );
        Ok(json!({
            "champion": champion_version,
            "challenger": challenger_version,
            "comparison": c,
            "outcomes": values,
            "unknown_contacts": unknown,
        }))
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    Ok(Json(answer))
}

pub(crate) async fn models(
    State(handle): State<StoreHandle>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Read).await?;
    let models = read(&handle, |store| store.models()).await?;
    Ok(Json(json!({ "models": models })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModelName {
    name: Option<String>,
}

pub(crate) async fn add_model(
    State(handle): State<StoreHandle>,
    headers: HeaderMap,
    query: Result<Query<ModelName>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    authorize(&handle, &headers, Scope::Admin).await?;
    let q = params(query)?;
    let source = text_body(body)?;
    let name = q.name.unwrap_or_else(|| "model.toml".into());
    let added = stored(&handle, move |store| store.add_model(&name, &source)).await?;
    Ok((StatusCode::CREATED, Json(json!({ "model": added }))))
}

/// `name` of the candidate (in its errors); `as_of`: when both models
/// score (default now).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DryRunQuery {
    name: Option<String>,
    as_of: Option<String>,
}

pub(crate) async fn dry_run(
    State(handle): State<StoreHandle>,
    headers: HeaderMap,
    query: Result<Query<DryRunQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Admin).await?;
    let q = params(query)?;
    let source = text_body(body)?;
    let at = parse_time(q.as_of.as_deref())?;
    let name = q.name.unwrap_or_else(|| "candidate.toml".into());
    let candidate = Model::from_toml(&name, &source)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    let report = read_heavy(&handle, move |store| {
        store.dry_run(&candidate, at, &mut |_, _| {})
    })
    .await?;
    Ok(Json(json!({ "dry_run": report })))
}

pub(crate) async fn diff(
    State(handle): State<StoreHandle>,
    headers: HeaderMap,
    versions: Result<Path<(u32, u32)>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Read).await?;
    let (old, new) = path(versions)?;
    let (a, b) = read(&handle, move |store| {
        Ok((store.model_source(old)?, store.model_source(new)?))
    })
    .await?;
    let changes = diff_models(&a, &b).map_err(store_error)?;
    Ok(Json(json!({ "old": old, "new": new, "changes": changes })))
}

/// `POST /api/v1/models/{version}/activate` (admin): rescoring runs on a
/// second connection in the background; 202 with the job's id.
pub(crate) async fn activate(
    State(state): State<AppState>,
    headers: HeaderMap,
    version: Result<Path<u32>, PathRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    authorize(&state.handle, &headers, Scope::Admin).await?;
    let version = path(version)?;
    let Some(reopen) = state.reopen.clone() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "background jobs are not available in this server",
        ));
    };
    stored(&state.handle, move |store| store.model_source(version)).await?;
    let job = stored(&state.handle, move |store| {
        store.add_job("activate", Some(version))
    })
    .await?;
    let id = job.id;
    std::thread::spawn(move || run_activation(reopen, id, version));
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"job": id, "status": format!("/api/v1/jobs/{id}")})),
    ))
}

/// Runs an activation job on connections of its own: one rescoring, one
/// recording the job's progress (at most once a second) and its end.
fn run_activation(reopen: Reopen, id: i64, version: u32) {
    let mut jobs = match reopen() {
        Ok(store) => store,
        Err(e) => {
            tracing::error!(job = id, error = %e, "cannot open a connection for the job");
            return;
        }
    };
    let mut reported = std::time::Instant::now();
    let result = reopen().and_then(|mut store| {
        store.activate(version, &mut |done, total| {
            metrics::gauge!("leadscore_rescore_contacts_done").set(done as f64);
            metrics::gauge!("leadscore_rescore_contacts_total").set(total as f64);
            if reported.elapsed() >= std::time::Duration::from_secs(1) {
                reported = std::time::Instant::now();
                let progress = leadscore_store::JobUpdate::Progress { done, total };
                if let Err(e) = jobs.update_job(id, &progress) {
                    tracing::warn!(job = id, error = %e, "cannot record the job's progress");
                }
            }
        })
    });
    let end = match result {
        Ok(report) => leadscore_store::JobUpdate::Done(json!(report)),
        Err(e) => leadscore_store::JobUpdate::Failed(e.to_string()),
    };
    if let Err(e) = jobs.update_job(id, &end) {
        tracing::error!(job = id, error = %e, "cannot record the job's end");
    }
}

/// `GET /api/v1/jobs/{id}` (admin): state and progress of a background job
/// (kept in the store: any process over it answers, after restarts too).
pub(crate) async fn job(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<leadscore_store::Job>, ApiError> {
    authorize(&state.handle, &headers, Scope::Admin).await?;
    let id = path(id)?;
    read(&state.handle, move |store| store.job(id))
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such job"))
}
