//! Signed tracking links for email: an open pixel and click redirects that
//! record `Email Opened` / `Email Link Clicked` without JavaScript. The
//! parameters are signed (HMAC-SHA256), so nobody can forge events for
//! other contacts or use the redirect to send people elsewhere.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};
use leadscore_core::event::Message;
use leadscore_store::{now, Incoming};
use serde_json::{json, Map, Value};
use sha2::Sha256;

use crate::{ApiError, AppState};

/// The signature of a link: HMAC-SHA256 over the path and the parameters
/// (all but `sig`, sorted by name), hex.
pub fn sign_link(secret: &[u8], path: &str, params: &BTreeMap<String, String>) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any size");
    mac.update(path.as_bytes());
    for (name, value) in params.iter().filter(|(name, _)| name.as_str() != "sig") {
        mac.update(b"\n");
        mac.update(name.as_bytes());
        mac.update(b"=");
        mac.update(value.as_bytes());
    }
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Checks the signature (in constant time) and returns the parameters.
fn verified(
    state: &AppState,
    path: &str,
    params: &BTreeMap<String, String>,
) -> Result<(), ApiError> {
    let Some(secret) = &state.link_secret else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "tracking links are not configured (LEADSCORE_LINK_SECRET)",
        ));
    };
    let expected = sign_link(secret, path, params);
    let given = params.get("sig").map(String::as_bytes).unwrap_or_default();
    let same = given.len() == expected.len()
        && given
            .iter()
            .zip(expected.as_bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "invalid link signature",
        ))
    }
}

/// Whether a click link may redirect to `url`: http(s) only, so that a
/// signed link can never become a `javascript:` or `data:` redirect.
pub fn redirect_allowed(url: &str) -> bool {
    url.starts_with("https://") || url.starts_with("http://")
}

/// The event a link records: `u` (userId) or `a` (anonymousId), `c`
/// (campaign), and for clicks `url`.
fn event(name: &str, params: &BTreeMap<String, String>) -> Result<Message, ApiError> {
    let mut properties = Map::new();
    if let Some(campaign) = params.get("c") {
        properties.insert("campaign".into(), Value::from(campaign.as_str()));
    }
    if let Some(url) = params.get("url") {
        properties.insert("url".into(), Value::from(url.as_str()));
    }
    let value = json!({
        "type": "track",
        "event": name,
        "userId": params.get("u"),
        "anonymousId": params.get("a"),
        "properties": properties,
        "context": {"channel": "email"},
    });
    Message::from_json(value, None, Some(now())).map_err(|e| ApiError::message(&e))
}

/// A transparent 1×1 GIF.
const PIXEL: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// `GET /t/open.gif?u=…&c=…&sig=…`: records `Email Opened`, returns a pixel.
/// Neither link route sheds load ([`StoreHandle::ingest_or_shed`]): the
/// browser behind them does not send again, and a click must reach its page.
///
/// [`StoreHandle::ingest_or_shed`]: crate::StoreHandle::ingest_or_shed
pub(crate) async fn open(
    State(state): State<AppState>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    verified(&state, "/t/open.gif", &params)?;
    let message = event("Email Opened", &params)?;
    state.handle.ingest(vec![Incoming::new(message)]).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/gif"),
            (header::CACHE_CONTROL, "no-store, max-age=0"),
        ],
        PIXEL,
    )
        .into_response())
}

/// `GET /t/click?u=…&c=…&url=…&sig=…`: records `Email Link Clicked`, then
/// redirects to `url` (http or https only, and only when signed).
pub(crate) async fn click(
    State(state): State<AppState>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    verified(&state, "/t/click", &params)?;
    let url = params
        .get("url")
        .filter(|u| redirect_allowed(u))
        .cloned()
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "url: an http(s) URL is needed"))?;
    let message = event("Email Link Clicked", &params)?;
    state.handle.ingest(vec![Incoming::new(message)]).await?;
    Ok((StatusCode::FOUND, [(header::LOCATION, url)]).into_response())
}
