//! API keys: which key a request presents, whether it may do what it asks,
//! and a short-lived cache of what the store said about each key.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use leadscore_store::{key_hash, Scope};
use serde_json::Value;

use crate::request::{body_bytes, json_body};
use crate::worker::read;
use crate::{ApiError, StoreHandle};

/// Most keys kept; beyond it the cache starts over (a few keys are normal,
/// thousands would be someone trying keys — unknown keys are not kept).
const MOST_KEYS: usize = 4_096;

/// What the store said about a key that exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Known {
    scope: Scope,
    revoked: bool,
}

/// Keys found in the store, by hash, each with the time it was read. An
/// ingest request would otherwise hand a read to another thread and wait
/// for it before its own write; a key revoked with `leadscore keys revoke`
/// stops working once its entry is older than `ttl`.
pub(crate) struct KeyCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Known)>>,
}

impl KeyCache {
    /// A cache keeping entries for `ttl` (zero: keeps nothing).
    pub(crate) fn new(ttl: Duration) -> KeyCache {
        KeyCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, hash: &str, now: Instant) -> Option<Known> {
        let entries = self.entries.lock().ok()?;
        let (read_at, known) = entries.get(hash)?;
        (now.duration_since(*read_at) < self.ttl).then_some(*known)
    }

    fn put(&self, hash: String, known: Known, now: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MOST_KEYS {
                entries.clear();
            }
            entries.insert(hash, (now, known));
        }
    }
}

/// The key of a request: HTTP Basic with the key as user name (as
/// Segment's and RudderStack's SDKs send their write key), or a Bearer token.
fn presented_key(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("authorization")?.to_str().ok()?;
    if let Some(token) = value.strip_prefix("Bearer ") {
        return Some(token.trim().to_string());
    }
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let user = text.split(':').next().unwrap_or_default();
    (!user.is_empty()).then(|| user.to_string())
}

fn missing() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "missing API key")
}

/// Checks the request's key against `needed`.
pub(crate) async fn authorize(
    handle: &StoreHandle,
    headers: &HeaderMap,
    needed: Scope,
) -> Result<(), ApiError> {
    let key = presented_key(headers).ok_or_else(missing)?;
    check(handle, &key, needed).await
}

/// An ingest request's body once its key is checked.
pub(crate) enum IngestBody {
    /// The key came from the Authorization header or the query string:
    /// the body is still its bytes, for the route to read as it reads best.
    Raw(Bytes),
    /// The key was the body's `writeKey`: the body was read to find it.
    Parsed(Value),
}

impl IngestBody {
    /// The body as a JSON value (a 400 when it is not JSON).
    pub(crate) fn value(self) -> Result<Value, ApiError> {
        match self {
            IngestBody::Raw(bytes) => json_body(Ok(bytes)),
            IngestBody::Parsed(value) => Ok(value),
        }
    }
}

/// The ingest routes' check, which also returns the body: the key
/// of the Authorization header; without one, `query_key` (the beacon
/// route's `?writeKey=`, as RudderStack's SDK sends it with
/// `navigator.sendBeacon`, which cannot set headers); else the body's
/// `writeKey`, as analytics.js sends it (its requests carry no header, so
/// that browsers send them without a CORS preflight). An unreadable body
/// without a key elsewhere is a 401, a body too large a 413.
pub(crate) async fn authorize_ingest(
    handle: &StoreHandle,
    headers: &HeaderMap,
    query_key: Option<&str>,
    body: Result<Bytes, BytesRejection>,
) -> Result<IngestBody, ApiError> {
    let presented = presented_key(headers).or_else(|| query_key.map(str::to_string));
    if let Some(key) = presented.filter(|k| !k.is_empty()) {
        check(handle, &key, Scope::Ingest).await?;
        return body_bytes(body).map(IngestBody::Raw);
    }
    let value = json_body(body).map_err(|e| {
        if e.status == StatusCode::PAYLOAD_TOO_LARGE {
            e
        } else {
            missing()
        }
    })?;
    match value.get("writeKey") {
        Some(Value::String(key)) if !key.is_empty() => check(handle, key, Scope::Ingest).await?,
        _ => return Err(missing()),
    }
    Ok(IngestBody::Parsed(value))
}

/// Checks a presented key against `needed`.
async fn check(handle: &StoreHandle, key: &str, needed: Scope) -> Result<(), ApiError> {
    let hash = key_hash(key);
    let started = Instant::now();
    let known = match handle.keys.get(&hash, started) {
        Some(known) => Some(known),
        None => {
            let lookup = hash.clone();
            let found = read(handle, move |store| store.key_by_hash(&lookup)).await?;
            let known = found.map(|key| Known {
                scope: key.scope,
                revoked: key.revoked,
            });
            if let Some(known) = known {
                handle.keys.put(hash, known, started);
            }
            known
        }
    };
    match known {
        None => Err(ApiError::new(StatusCode::UNAUTHORIZED, "unknown API key")),
        Some(key) if key.revoked => Err(ApiError::new(StatusCode::UNAUTHORIZED, "revoked API key")),
        Some(key) if !key.scope.allows(needed) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "this key's scope is {}; {} is needed",
                key.scope.as_str(),
                needed.as_str()
            ),
        )),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_after_the_ttl_and_a_zero_ttl_keeps_nothing() {
        let t0 = Instant::now();
        let known = Known {
            scope: Scope::Ingest,
            revoked: false,
        };
        let cache = KeyCache::new(Duration::from_secs(1));
        cache.put("h".into(), known, t0);
        assert_eq!(cache.get("h", t0 + Duration::from_millis(999)), Some(known));
        assert_eq!(cache.get("h", t0 + Duration::from_secs(1)), None);
        assert_eq!(cache.get("other", t0), None);
        let off = KeyCache::new(Duration::ZERO);
        off.put("h".into(), known, t0);
        assert_eq!(off.get("h", t0), None);
    }

    #[test]
    fn the_cache_is_bounded() {
        let t0 = Instant::now();
        let cache = KeyCache::new(Duration::from_secs(60));
        let known = Known {
            scope: Scope::Read,
            revoked: true,
        };
        for i in 0..MOST_KEYS + 10 {
            cache.put(i.to_string(), known, t0);
        }
        assert!(cache.entries.lock().unwrap().len() <= MOST_KEYS);
    }
}
