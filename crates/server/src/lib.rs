//! leadscore's HTTP server: the Segment HTTP tracking API for ingestion, the
//! REST API, signed tracking links and operations routes, over any
//! [`Store`].
//!
//! The store is synchronous and owned by one worker thread (`worker`);
//! handlers send it jobs. Ingest requests that arrive while a transaction is
//! running are committed together in the next one (group commit), and every
//! request is answered only after the transaction holding its messages has
//! committed. Reads go to a pool of other connections beside it.
//!
//! One module per group of routes: `ingest`, `contacts`, `scores`,
//! `models`, `outbox`, `links`, `ops`; requests are parsed by
//! `request` and errors answered by `error`.

#![deny(missing_docs)]

use std::future::Future;
use std::net::SocketAddr;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use leadscore_store::Store;

mod auth;
mod contacts;
pub mod delivery;
mod error;
mod ingest;
mod links;
mod models;
pub mod openapi;
mod ops;
mod outbox;
mod past;
mod request;
mod scores;
mod worker;

pub use error::ApiError;
pub use links::{redirect_allowed, sign_link};
pub use worker::StoreHandle;

/// Opens another connection to the same store (for background jobs such as
/// a model activation, which must not hold up ingestion).
pub type Reopen = std::sync::Arc<dyn Fn() -> leadscore_store::Result<Box<dyn Store>> + Send + Sync>;

/// [`Config::max_queued_events`]'s default: about a second of the
/// writer's work at its peak (at 90k events/s offered to 100k contacts,
/// p99 1.7 s for what is taken and 371 MB peak RSS: `docs/performance.md`).
pub const DEFAULT_MAX_QUEUED_EVENTS: usize = 50_000;

/// Server settings.
#[derive(Clone)]
pub struct Config {
    /// Largest request body accepted, in bytes (after gzip decoding).
    /// Segment's limit is 500 KB per request.
    pub body_limit: usize,
    /// Secret of the signed tracking links (`/t/open.gif`, `/t/click`);
    /// without one those routes answer 503.
    pub link_secret: Option<Vec<u8>>,
    /// Origins browsers may send events from (`*` for any); none: no CORS
    /// headers.
    pub cors_origins: Vec<String>,
    /// How to open a second connection for background jobs; without it
    /// `POST /api/v1/models/{v}/activate` answers 503.
    pub reopen: Option<Reopen>,
    /// Trigger evaluation at due times and outbox delivery (`None`: this
    /// process does neither; another one must).
    pub delivery: Option<delivery::DeliveryConfig>,
    /// Connections (opened with `reopen`) that serve reads beside the
    /// writer; 0 or no `reopen`: reads take turns with writes.
    pub read_connections: usize,
    /// How long a key's scope and revocation are trusted after reading them
    /// (zero: every request reads its key).
    pub key_cache: std::time::Duration,
    /// How far after its receive time an ingested message's timestamp may
    /// be; a later one (a client clock running ahead) is stored at the
    /// receive time, with a warning in the answer (`None`: kept as sent).
    pub max_future: Option<leadscore_core::time::Duration>,
    /// Messages that may wait for the writer: beyond them the Segment
    /// routes answer 503 with `Retry-After: 1` (SDKs send again later)
    /// instead of queueing without bound; the link routes never refuse.
    pub max_queued_events: usize,
    /// Contacts whose live state the writer keeps between batches (at
    /// least the last this many written, at most twice as many; 0: none):
    /// a contact written again within them is neither read nor decoded.
    /// Also the most updated live rows the writer keeps unwritten before
    /// writing the oldest ones early (`docs/storage.md`).
    pub writer_cache_contacts: usize,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("body_limit", &self.body_limit)
            .field("link_secret", &self.link_secret.as_ref().map(|_| "…"))
            .field("cors_origins", &self.cors_origins)
            .field("reopen", &self.reopen.is_some())
            .field("delivery", &self.delivery)
            .field("read_connections", &self.read_connections)
            .field("key_cache", &self.key_cache)
            .field("max_future", &self.max_future)
            .field("max_queued_events", &self.max_queued_events)
            .field("writer_cache_contacts", &self.writer_cache_contacts)
            .finish()
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            body_limit: 500 * 1024,
            link_secret: None,
            cors_origins: Vec::new(),
            reopen: None,
            delivery: Some(delivery::DeliveryConfig::default()),
            read_connections: 4,
            key_cache: std::time::Duration::from_secs(1),
            max_future: Some(ingest::DEFAULT_MAX_FUTURE),
            max_queued_events: DEFAULT_MAX_QUEUED_EVENTS,
            writer_cache_contacts: leadscore_store::DEFAULT_LIVE_CONTACTS,
        }
    }
}

/// What handlers share, cloned for every request as [`StoreHandle`] is:
/// one shared count.
#[derive(Clone)]
pub struct AppState(std::sync::Arc<AppShared>);

/// What every clone of an [`AppState`] shares.
pub struct AppShared {
    handle: StoreHandle,
    link_secret: Option<std::sync::Arc<[u8]>>,
    reopen: Option<Reopen>,
    future: ingest::FutureLimit,
    /// Turns true when the server starts shutting down (ends streams, which
    /// graceful shutdown would otherwise wait for forever).
    closing: tokio::sync::watch::Receiver<bool>,
    _closer: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
}

impl std::ops::Deref for AppState {
    type Target = AppShared;

    fn deref(&self) -> &AppShared {
        &self.0
    }
}

impl axum::extract::FromRef<AppState> for StoreHandle {
    fn from_ref(state: &AppState) -> StoreHandle {
        state.handle.clone()
    }
}

impl axum::extract::FromRef<AppState> for ingest::FutureLimit {
    fn from_ref(state: &AppState) -> ingest::FutureLimit {
        state.future
    }
}

/// Serves until `shutdown` completes, then finishes the requests in flight,
/// commits everything acknowledged and returns.
pub async fn run(
    listener: tokio::net::TcpListener,
    store: Box<dyn Store>,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Some(bad) = config
        .cors_origins
        .iter()
        .find_map(|o| check_cors_origin(o).err())
    {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, bad));
    }
    ops::prometheus();
    let (handle, worker) = StoreHandle::start_caching(store, config.writer_cache_contacts);
    // The writer starts by deriving again the live rows a killed server
    // kept in memory (`Store::defer_durability`): nothing is served before,
    // so no read sees a stored row older than the log.
    handle.call(|_| ()).await.map_err(|e| {
        let why = e.body["error"].as_str().unwrap_or("it stopped").to_string();
        std::io::Error::other(format!("the store's writer did not start: {why}"))
    })?;
    let handle = match &config.reopen {
        Some(open) => handle.with_readers(open.clone(), config.read_connections),
        None => handle,
    }
    .with_key_cache(config.key_cache)
    .with_queue_limit(config.max_queued_events);
    let (stop_delivery, stopped) = tokio::sync::watch::channel(false);
    let deliverer = match config.delivery.clone() {
        Some(settings) => {
            let deliverer = delivery::Deliverer::new(handle.clone(), settings)
                .map_err(std::io::Error::other)?;
            Some(tokio::spawn(deliverer.run(stopped)))
        }
        None => None,
    };
    let closer = std::sync::Arc::new(tokio::sync::watch::channel(false).0);
    let app = router_closing(handle, &config, closer.clone());
    let shutdown = async move {
        shutdown.await;
        let _ = closer.send(true);
    };
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(addr = %addr, body_limit = config.body_limit, "listening");
    }
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    let _ = stop_delivery.send(true);
    if let Some(task) = deliverer {
        let _ = task.await;
    }
    // The router (and every handle) is gone: the worker drains its queue.
    tracing::info!("shutting down: finishing queued work");
    worker
        .join()
        .map_err(|_| std::io::Error::other("the store worker panicked"))?;
    tracing::info!("stopped: every acknowledged event is committed");
    Ok(())
}

/// The routes, for tests that call the router without a socket.
pub fn router(handle: StoreHandle, config: &Config) -> Router {
    router_closing(
        handle,
        config,
        std::sync::Arc::new(tokio::sync::watch::channel(false).0),
    )
}

/// [`router`] whose streams end when `closer` sends `true`.
fn router_closing(
    handle: StoreHandle,
    config: &Config,
    closer: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
) -> Router {
    let ingest = Router::new()
        .route("/v1/track", post(ingest::track))
        .route("/v1/page", post(ingest::page))
        .route("/v1/screen", post(ingest::screen))
        .route("/v1/identify", post(ingest::identify))
        .route("/v1/group", post(ingest::group))
        .route("/v1/alias", post(ingest::alias))
        .route("/v1/batch", post(ingest::batch))
        .route("/v1/import", post(ingest::batch))
        // analytics.js's paths: the type's first letter, `b` for batches.
        .route("/v1/t", post(ingest::track))
        .route("/v1/p", post(ingest::page))
        .route("/v1/s", post(ingest::screen))
        .route("/v1/i", post(ingest::identify))
        .route("/v1/g", post(ingest::group))
        .route("/v1/a", post(ingest::alias))
        .route("/v1/b", post(ingest::batch))
        .route("/beacon/v1/batch", post(ingest::beacon_batch))
        .route("/api/v1/outcomes", post(ingest::outcomes));
    let api = Router::new()
        .route(
            "/api/v1/contacts/{id}",
            get(contacts::contact).delete(contacts::erase),
        )
        .route("/api/v1/contacts/{id}/history", get(contacts::history))
        .route(
            "/api/v1/contacts/{id}/explanation",
            get(contacts::explanation),
        )
        .route("/api/v1/contacts/{id}/score", get(contacts::score_as_of))
        .route("/api/v1/contacts/{id}/events", get(contacts::events))
        .route("/api/v1/contacts/{id}/export", get(contacts::export))
        .route("/api/v1/scores", get(scores::scores))
        .route("/api/v1/segments/summary", get(scores::summary))
        .route(
            "/api/v1/models",
            get(models::models).post(models::add_model),
        )
        .route("/api/v1/models/dry-run", post(models::dry_run))
        .route("/api/v1/models/compare", get(models::compare_models))
        .route(
            "/api/v1/models/{version}/challenger",
            post(models::attach_challenger),
        )
        .route("/api/v1/models/{version}/activate", post(models::activate))
        .route("/api/v1/jobs/{id}", get(models::job))
        .route("/api/v1/models/{old}/diff/{new}", get(models::diff))
        .route("/api/v1/firings", get(outbox::firings))
        .route("/api/v1/outbox", get(outbox::outbox))
        .route("/api/v1/outbox/retry", post(outbox::outbox_retry))
        .route("/api/v1/outbox/purge", post(outbox::outbox_purge))
        .route(
            "/api/v1/campaigns/{name}/members",
            get(outbox::campaign_members),
        )
        .route("/api/v1/stream/scores", get(scores::stream_scores));
    let ingest = match cors(&config.cors_origins) {
        Some(layer) => ingest.layer(layer),
        None => ingest,
    };
    let links = Router::new()
        .route("/t/open.gif", get(links::open))
        .route("/t/click", get(links::click));
    let metrics = Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi_json))
        .route("/docs", get(ops::docs));
    ingest
        .merge(api)
        .merge(links)
        .merge(metrics)
        .fallback(ops::unknown_route)
        .layer(DefaultBodyLimit::max(config.body_limit))
        .layer(tower_http::decompression::RequestDecompressionLayer::new())
        .layer(axum::middleware::from_fn(ops::count_requests))
        .with_state(AppState(std::sync::Arc::new(AppShared {
            handle,
            link_secret: config.link_secret.as_deref().map(std::sync::Arc::from),
            reopen: config.reopen.clone(),
            future: ingest::FutureLimit(config.max_future),
            closing: closer.subscribe(),
            _closer: closer,
        })))
}

/// Checks a CORS origin as browsers send it in `Origin`: `*`, or
/// `scheme://host[:port]` with nothing after it. A trailing slash or a path
/// would never equal a browser's `Origin` and would silently allow nothing.
pub fn check_cors_origin(origin: &str) -> Result<(), String> {
    if origin == "*" {
        return Ok(());
    }
    let problem = match origin.parse::<axum::http::Uri>() {
        Err(e) => Some(e.to_string()),
        Ok(uri) if uri.scheme().is_none() || uri.authority().is_none() => {
            Some("expected scheme://host[:port], e.g. https://www.example.com".into())
        }
        Ok(_) if origin.contains('@') => Some("an origin has no user name".into()),
        Ok(uri) if uri.path() != "/" || uri.query().is_some() || origin.ends_with('/') => {
            Some("an origin has no path, not even a trailing `/`".into())
        }
        Ok(_) => None,
    };
    match problem {
        None => Ok(()),
        Some(why) => Err(format!("CORS origin {origin:?}: {why}")),
    }
}

/// CORS for the ingest routes (RudderStack's browser SDK sends an
/// Authorization header, so preflights must allow it; analytics.js sends
/// `text/plain` without one, which needs no preflight).
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{header, HeaderName, HeaderValue, Method};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        // `run` refused origins that are not header values.
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::POST, Method::OPTIONS])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("content-encoding"),
            ]),
    )
}

#[cfg(test)]
mod tests {
    use super::check_cors_origin;

    #[test]
    fn cors_origins_are_checked_as_browsers_send_them() {
        for good in [
            "*",
            "https://www.example.com",
            "http://127.0.0.1:3000",
            "https://[::1]:8443",
        ] {
            assert_eq!(check_cors_origin(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("https://www.example.com/", "no path"),
            ("https://www.example.com/shop", "no path"),
            ("https://www.example.com?a=1", "no path"),
            ("www.example.com", "scheme://host"),
            ("https://user@www.example.com", "no user name"),
            ("https://exa mple.com", "invalid"),
            ("", "empty"),
        ] {
            let err = check_cors_origin(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
