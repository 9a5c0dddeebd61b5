//! leadscore's HTTP server: the Segment HTTP tracking API for ingestion and
//! the first REST reads, over any [`Store`].
//!
//! The store is synchronous and owned by one worker thread; handlers send it
//! jobs. Ingest requests that arrive while a transaction is running are
//! committed together in the next one (group commit), and every request is
//! answered only after the transaction holding its messages has committed.

#![deny(missing_docs)]

use std::future::Future;
use std::net::SocketAddr;
use std::thread::JoinHandle;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use leadscore_core::event::{batch_items, Message, MessageError, MessageKind};
use leadscore_core::model::Model;
use leadscore_core::score::Status;
use leadscore_core::time::Timestamp;
use leadscore_store::{
    diff_models, now, Incoming, IngestReport, Scope, ScoreQuery, Store, StoreError, Under,
};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

mod auth;
use auth::{authorize, authorize_ingest};
pub mod delivery;
mod links;
pub mod openapi;

pub use links::{redirect_allowed, sign_link};

/// Opens another connection to the same store (for background jobs such as
/// a model activation, which must not hold up ingestion).
pub type Reopen = std::sync::Arc<dyn Fn() -> leadscore_store::Result<Box<dyn Store>> + Send + Sync>;

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
        }
    }
}

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    handle: StoreHandle,
    link_secret: Option<std::sync::Arc<[u8]>>,
    reopen: Option<Reopen>,
    /// Turns true when the server starts shutting down (ends streams, which
    /// graceful shutdown would otherwise wait for forever).
    closing: tokio::sync::watch::Receiver<bool>,
    _closer: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
}

impl axum::extract::FromRef<AppState> for StoreHandle {
    fn from_ref(state: &AppState) -> StoreHandle {
        state.handle.clone()
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
    prometheus();
    let (handle, worker) = StoreHandle::start(store);
    let handle = match &config.reopen {
        Some(open) => handle.with_readers(open.clone(), config.read_connections),
        None => handle,
    }
    .with_key_cache(config.key_cache);
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
        .route("/v1/track", post(track))
        .route("/v1/page", post(page))
        .route("/v1/screen", post(screen))
        .route("/v1/identify", post(identify))
        .route("/v1/group", post(group))
        .route("/v1/alias", post(alias))
        .route("/v1/batch", post(batch))
        .route("/v1/import", post(batch))
        // analytics.js's paths: the type's first letter, `b` for batches.
        .route("/v1/t", post(track))
        .route("/v1/p", post(page))
        .route("/v1/s", post(screen))
        .route("/v1/i", post(identify))
        .route("/v1/g", post(group))
        .route("/v1/a", post(alias))
        .route("/v1/b", post(batch))
        .route("/beacon/v1/batch", post(beacon_batch))
        .route("/api/v1/outcomes", post(outcomes));
    let api = Router::new()
        .route("/api/v1/contacts/{id}", get(contact).delete(erase))
        .route("/api/v1/contacts/{id}/history", get(history))
        .route("/api/v1/contacts/{id}/explanation", get(explanation))
        .route("/api/v1/contacts/{id}/score", get(score_as_of))
        .route("/api/v1/contacts/{id}/events", get(events))
        .route("/api/v1/contacts/{id}/export", get(export))
        .route("/api/v1/scores", get(scores))
        .route("/api/v1/segments/summary", get(summary))
        .route("/api/v1/models", get(models).post(add_model))
        .route("/api/v1/models/dry-run", post(dry_run))
        .route("/api/v1/models/compare", get(compare_models))
        .route(
            "/api/v1/models/{version}/challenger",
            post(attach_challenger),
        )
        .route("/api/v1/models/{version}/activate", post(activate))
        .route("/api/v1/jobs/{id}", get(job))
        .route("/api/v1/models/{old}/diff/{new}", get(diff))
        .route("/api/v1/firings", get(firings))
        .route("/api/v1/outbox", get(outbox))
        .route("/api/v1/outbox/retry", post(outbox_retry))
        .route("/api/v1/outbox/purge", post(outbox_purge))
        .route("/api/v1/campaigns/{name}/members", get(campaign_members))
        .route("/api/v1/stream/scores", get(stream_scores));
    let ingest = match cors(&config.cors_origins) {
        Some(layer) => ingest.layer(layer),
        None => ingest,
    };
    let links = Router::new()
        .route("/t/open.gif", get(links::open))
        .route("/t/click", get(links::click));
    let metrics = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi_json))
        .route("/docs", get(docs));
    ingest
        .merge(api)
        .merge(links)
        .merge(metrics)
        .fallback(unknown_route)
        .layer(DefaultBodyLimit::max(config.body_limit))
        .layer(tower_http::decompression::RequestDecompressionLayer::new())
        .layer(axum::middleware::from_fn(count_requests))
        .with_state(AppState {
            handle,
            link_secret: config.link_secret.as_deref().map(std::sync::Arc::from),
            reopen: config.reopen.clone(),
            closing: closer.subscribe(),
            _closer: closer,
        })
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

/// The process's Prometheus recorder (installed once, shared by servers).
fn prometheus() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (an embedding program):
        // then our counters go there and /metrics shows what this one has.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Errors that axum or a layer answer in plain text or with an empty body
/// (axum's path, query and body rejections; 405 for a known route and
/// another method; the decompression layer's 415 for an encoding it does
/// not know) get the JSON error body every other error has, their text as
/// its message, with their `allow` or `accept-encoding` header kept.
async fn with_json_body(response: Response) -> Response {
    use axum::http::header::{ACCEPT_ENCODING, ALLOW, CONTENT_TYPE};
    let status = response.status();
    let plain = response
        .headers()
        .get(CONTENT_TYPE)
        .is_none_or(|t| t.as_bytes().starts_with(b"text/plain"));
    if !(status.is_client_error() || status.is_server_error()) || !plain {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let message = match status {
        _ if !text.trim().is_empty() => text.trim(),
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed on this route (see /docs)",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported Content-Encoding (accepted: gzip)",
        _ => status.canonical_reason().unwrap_or("error"),
    };
    let mut answer = ApiError::new(status, message).into_response();
    for name in [ALLOW, ACCEPT_ENCODING] {
        if let Some(value) = parts.headers.get(&name) {
            answer.headers_mut().insert(name, value.clone());
        }
    }
    answer
}

/// Counts requests by route and status (the outermost layer: it sees every
/// answer, the decompression layer's too).
async fn count_requests(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let started = std::time::Instant::now();
    let response = with_json_body(next.run(request).await).await;
    let status = response.status().as_u16().to_string();
    tracing::info!(
        route = %route,
        status = %status,
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    metrics::counter!("leadscore_http_requests_total", "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("leadscore_http_request_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// `GET /metrics` (read scope): Prometheus text format.
async fn metrics(
    State(handle): State<StoreHandle>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&handle, &headers, Scope::Read).await?;
    let counts = read(&handle, |store| store.outbox_counts()).await?;
    metrics::gauge!("leadscore_outbox_pending").set(counts.pending as f64);
    metrics::gauge!("leadscore_outbox_dead").set(counts.dead as f64);
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        prometheus().render(),
    )
        .into_response())
}

/// What answers a commit once its durability is known: `Err` when the
/// flush failed (the commit is then visible but not known to be on disk).
type Ack = Box<dyn FnOnce(Result<(), String>) + Send>;

/// A job on the store; it returns how to answer once its commit is durable.
type Job = Box<dyn FnOnce(&mut dyn Store) -> Ack + Send>;

/// One group commit on the worker, with its metrics.
fn commit(store: &mut dyn Store, messages: Vec<Incoming>) -> Result<IngestReport, String> {
    let count = messages.len() as u64;
    let started = std::time::Instant::now();
    metrics::histogram!("leadscore_ingest_batch_messages").record(count as f64);
    let result = store.ingest(messages).map_err(|e| e.to_string());
    metrics::histogram!("leadscore_ingest_commit_seconds").record(started.elapsed().as_secs_f64());
    metrics::counter!("leadscore_ingest_transactions_total").increment(1);
    match &result {
        Ok(report) => {
            tracing::debug!(
                accepted = report.accepted,
                duplicates = report.duplicates,
                "ingest committed"
            );
            metrics::counter!("leadscore_score_updates_total")
                .increment(report.changes.len() as u64);
            metrics::counter!("leadscore_messages_total", "outcome" => "accepted")
                .increment(report.accepted);
            metrics::counter!("leadscore_messages_total", "outcome" => "duplicate")
                .increment(report.duplicates);
            for (trigger, n) in &report.firings_by_trigger {
                metrics::counter!("leadscore_trigger_firings_total", "trigger" => trigger.clone())
                    .increment(*n);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "ingest failed");
            metrics::counter!("leadscore_messages_total", "outcome" => "failed").increment(count);
        }
    }
    result
}

/// The thread that flushes commits and then answers them, in commit order.
struct Acks {
    queue: std::sync::mpsc::Sender<Ack>,
    thread: JoinHandle<()>,
}

impl Acks {
    fn start(mut flush: Box<dyn leadscore_store::Flush>) -> Acks {
        let (queue, waiting) = std::sync::mpsc::channel::<Ack>();
        let thread = std::thread::Builder::new()
            .name("leadscore-flush".into())
            .spawn(move || {
                while let Ok(first) = waiting.recv() {
                    // One flush for every commit made since the last one.
                    let acks: Vec<Ack> = std::iter::once(first).chain(waiting.try_iter()).collect();
                    let started = std::time::Instant::now();
                    let durable = flush
                        .flush()
                        .map_err(|e| format!("the commit is not confirmed durable: {e}"));
                    metrics::histogram!("leadscore_ingest_flush_seconds")
                        .record(started.elapsed().as_secs_f64());
                    if let Err(e) = &durable {
                        tracing::error!(error = %e, "flush failed");
                    }
                    for ack in acks {
                        ack(durable.clone());
                    }
                }
            })
            .expect("the OS starts the flush thread");
        Acks { queue, thread }
    }

    fn push(&self, ack: Ack) {
        // The thread lives until `finish`; were it gone, answer unflushed
        // rather than never.
        if let Err(std::sync::mpsc::SendError(ack)) = self.queue.send(ack) {
            ack(Err("the flush thread stopped".into()));
        }
    }

    /// Flushes and answers what is queued, then stops the thread.
    fn finish(self) {
        drop(self.queue);
        let _ = self.thread.join();
    }
}

enum Work {
    Ingest(Vec<Incoming>, oneshot::Sender<Result<IngestReport, String>>),
    Run(Job),
}

/// Sends work to the thread that owns the store.
#[derive(Clone)]
pub struct StoreHandle {
    work: mpsc::UnboundedSender<Work>,
    /// Signalled when a commit recorded trigger firings (wakes delivery).
    fired: std::sync::Arc<tokio::sync::Notify>,
    /// Score changes of each commit (for `GET /stream/scores`).
    changes: tokio::sync::broadcast::Sender<std::sync::Arc<Vec<leadscore_store::LedgerEntry>>>,
    /// Connections for reads (see [`StoreHandle::with_readers`]).
    readers: Option<std::sync::Arc<ReadPool>>,
    /// API keys read recently (see [`StoreHandle::with_key_cache`]).
    keys: std::sync::Arc<auth::KeyCache>,
}

/// Connections for reads beside the worker's, opened on demand up to a
/// limit and kept.
struct ReadPool {
    open: Reopen,
    idle: std::sync::Mutex<Vec<Box<dyn Store>>>,
    permits: std::sync::Arc<tokio::sync::Semaphore>,
}

impl StoreHandle {
    /// Starts the worker thread that owns `store`.
    ///
    /// When the store can defer durability ([`Store::defer_durability`]),
    /// the worker commits and goes on with the next transaction while a
    /// second thread flushes the commits to disk and only then answers
    /// them: the wait for the disk overlaps the next transaction instead of
    /// stalling the writer, and one flush covers every commit before it.
    pub fn start(mut store: Box<dyn Store>) -> (StoreHandle, JoinHandle<()>) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Work>();
        let fired = std::sync::Arc::new(tokio::sync::Notify::new());
        let notify = fired.clone();
        let (changes, _) = tokio::sync::broadcast::channel(1_024);
        let publish = changes.clone();
        // Named so a profiler or `top -H` shows the writer's share.
        let worker = std::thread::Builder::new()
            .name("leadscore-writer".into())
            .spawn(move || {
                let flush = store.defer_durability().unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "commits wait for the disk one by one");
                    None
                });
                let acks = flush.map(Acks::start);
                let answer = |ack: Ack| match &acks {
                    Some(acks) => acks.push(ack),
                    None => ack(Ok(())),
                };
                let mut next = rx.blocking_recv();
                while let Some(work) = next.take() {
                    match work {
                        Work::Run(job) => answer(job(store.as_mut())),
                        Work::Ingest(messages, reply) => {
                            // Group commit: every ingest already waiting joins
                            // this transaction.
                            let mut messages = messages;
                            let mut replies = vec![reply];
                            loop {
                                match rx.try_recv() {
                                    Ok(Work::Ingest(more, reply)) => {
                                        messages.extend(more);
                                        replies.push(reply);
                                    }
                                    Ok(other) => {
                                        next = Some(other);
                                        break;
                                    }
                                    Err(_) => break,
                                }
                            }
                            let result = commit(store.as_mut(), messages);
                            let (publish, notify) = (publish.clone(), notify.clone());
                            answer(Box::new(move |durable| {
                                let result = durable.and(result).map(|mut report| {
                                    let changes = std::mem::take(&mut report.changes);
                                    if !changes.is_empty() && publish.receiver_count() > 0 {
                                        let _ = publish.send(std::sync::Arc::new(changes));
                                    }
                                    if report.firings > 0 {
                                        notify.notify_one();
                                    }
                                    report
                                });
                                for reply in replies {
                                    let _ = reply.send(result.clone());
                                }
                            }));
                        }
                    }
                    if next.is_none() {
                        next = rx.blocking_recv();
                    }
                }
                // Every commit is answered before the worker ends.
                if let Some(acks) = acks {
                    acks.finish();
                }
            })
            .expect("the OS starts the writer thread");
        (
            StoreHandle {
                work: tx,
                fired,
                changes,
                readers: None,
                keys: std::sync::Arc::new(auth::KeyCache::new(std::time::Duration::ZERO)),
            },
            worker,
        )
    }

    /// Serves reads from up to `connections` more connections opened with
    /// `open` (0: reads run on the worker, between writes).
    pub fn with_readers(mut self, open: Reopen, connections: usize) -> StoreHandle {
        self.readers = (connections > 0).then(|| {
            std::sync::Arc::new(ReadPool {
                open,
                idle: std::sync::Mutex::new(Vec::new()),
                permits: std::sync::Arc::new(tokio::sync::Semaphore::new(connections)),
            })
        });
        self
    }

    /// Keeps each API key's scope and revocation for `ttl` after reading it,
    /// so requests do not each wait for a read (zero: every request reads).
    pub fn with_key_cache(mut self, ttl: std::time::Duration) -> StoreHandle {
        self.keys = std::sync::Arc::new(auth::KeyCache::new(ttl));
        self
    }

    /// Score changes of every commit from now on.
    pub fn subscribe(
        &self,
    ) -> tokio::sync::broadcast::Receiver<std::sync::Arc<Vec<leadscore_store::LedgerEntry>>> {
        self.changes.subscribe()
    }

    /// Completes when a commit has recorded trigger firings since the last
    /// time it completed.
    pub async fn fired(&self) {
        self.fired.notified().await
    }

    /// Runs `f` on the store (in the worker thread) and returns its result.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Store) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |store| {
            let value = f(store);
            Box::new(move |durable: Result<(), String>| {
                let _ = reply.send(durable.map(|()| value));
            })
        });
        self.work
            .send(Work::Run(job))
            .map_err(|_| ApiError::unavailable())?;
        answer
            .await
            .map_err(|_| ApiError::unavailable())?
            .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e))
    }

    /// Commits messages (with whatever else is waiting) and returns once
    /// they are durable.
    async fn ingest(&self, messages: Vec<Incoming>) -> Result<IngestReport, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.work
            .send(Work::Ingest(messages, reply))
            .map_err(|_| ApiError::unavailable())?;
        answer
            .await
            .map_err(|_| ApiError::unavailable())?
            .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e))
    }
}

/// An error answer: status and a JSON body `{"success": false, "error": …}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: Value,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: json!({"success": false, "error": message.into()}),
        }
    }

    fn unavailable() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down",
        )
    }

    fn message(e: &MessageError) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            body: json!({"success": false, "error": e.message, "field": e.field}),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// The request body as JSON, or the error to answer.
pub(crate) fn json_body(body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let body = body.map_err(|e| {
        let status = e.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "request body too large".to_string()
        } else {
            e.body_text()
        };
        ApiError::new(status, message)
    })?;
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("malformed JSON: {e}")))
}

async fn single(
    kind: MessageKind,
    handle: StoreHandle,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let value = authorize_ingest(&handle, &headers, None, body).await?;
    let message =
        Message::from_json(value, Some(kind), Some(now())).map_err(|e| ApiError::message(&e))?;
    handle.ingest(vec![Incoming::new(message)]).await?;
    Ok(Json(json!({"success": true})))
}

macro_rules! single_route {
    ($name:ident, $kind:expr) => {
        async fn $name(
            State(handle): State<StoreHandle>,
            headers: HeaderMap,
            body: Result<Bytes, BytesRejection>,
        ) -> Result<Json<Value>, ApiError> {
            single($kind, handle, headers, body).await
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
async fn batch(
    State(handle): State<StoreHandle>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let value = authorize_ingest(&handle, &headers, None, body).await?;
    ingest_batch(&handle, value).await
}

/// `?writeKey=` of the beacon route (other parameters an SDK adds are
/// left alone: this route's only reader is an SDK, not a person typing).
#[derive(Deserialize)]
struct BeaconKey {
    #[serde(rename = "writeKey")]
    write_key: Option<String>,
}

/// `POST /beacon/v1/batch?writeKey=KEY`: a batch as RudderStack's browser
/// SDK sends it with `useBeacon` (`navigator.sendBeacon` cannot set an
/// Authorization header, so the write key is in the query string, as
/// RudderStack's own gateway takes it).
async fn beacon_batch(
    State(handle): State<StoreHandle>,
    headers: HeaderMap,
    query: Result<Query<BeaconKey>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let key = params(query)?.write_key;
    let value = authorize_ingest(&handle, &headers, key.as_deref(), body).await?;
    ingest_batch(&handle, value).await
}

/// Validates and commits a batch body, keeping its valid messages.
async fn ingest_batch(handle: &StoreHandle, value: Value) -> Result<Json<Value>, ApiError> {
    let Value::Object(object) = value else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "expected {\"batch\": [messages]}",
        ));
    };
    let items =
        batch_items(object).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let received = now();
    let mut messages = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        match Message::from_json(item, None, Some(received)) {
            Ok(message) => messages.push(Incoming::new(message)),
            Err(e) => errors.push(json!({"index": index, "field": e.field, "error": e.message})),
        }
    }
    if messages.is_empty() && !errors.is_empty() {
        return Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            body: json!({"success": false, "error": "no valid message", "errors": errors}),
        });
    }
    let accepted = messages.len();
    handle.ingest(messages).await?;
    Ok(Json(if errors.is_empty() {
        json!({"success": true})
    } else {
        json!({"success": true, "accepted": accepted, "errors": errors})
    }))
}

async fn contact(
    State(handle): State<StoreHandle>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Read).await?;
    let t = now();
    let found = read(
        &handle,
        move |store| -> leadscore_store::Result<Option<Value>> {
            let Some((canonical, score)) = store.score_at(&id, t)? else {
                return Ok(None);
            };
            let record = store.contact(&canonical)?;
            Ok(Some(json!({
                "contact_id": canonical,
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
                "last_event": record.as_ref().and_then(|r| r.last_event),
                "traits": record.as_ref().map(|r| &r.traits),
                "company": record.as_ref().map(|r| &r.company),
            })))
        },
    )
    .await?;
    found
        .map(Json)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such contact"))
}

/// `from` and `to` of a history request (RFC 3339).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Span {
    from: Option<String>,
    to: Option<String>,
}

async fn history(
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
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such contact"));
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FiringsQuery {
    trigger: Option<String>,
    contact: Option<String>,
    after: Option<i64>,
    limit: Option<usize>,
}

async fn firings(
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
struct OutboxQuery {
    status: Option<String>,
    limit: Option<usize>,
}

async fn outbox(
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
struct IdQuery {
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

async fn outbox_retry(
    State(handle): State<StoreHandle>,
    headers: HeaderMap,
    query: Result<Query<IdQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Admin).await?;
    let which = params(query)?.which()?;
    let n = stored(&handle, move |store| store.retry_dead(which, now())).await?;
    Ok(Json(json!({ "requeued": n })))
}

async fn outbox_purge(
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
struct MembersQuery {
    since: Option<String>,
    limit: Option<usize>,
}

async fn campaign_members(
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamQuery {
    contact: Option<String>,
}

/// `GET /api/v1/stream/scores` (read): Server-Sent Events, one `score`
/// event per change as it is committed (the ledger entry as JSON);
/// `?contact=ID` keeps one contact's. A client too slow to keep up gets a
/// `lagged` event with the number of changes it missed.
async fn stream_scores(
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

/// `POST /api/v1/models/{version}/challenger` (admin): attaches a stored
/// version as the challenger of the active model.
async fn attach_challenger(
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
struct CompareQuery {
    as_of_policy: Option<String>,
    positive: Option<String>,
    top_share: Option<f64>,
}

/// `GET /api/v1/models/compare` (read): the active model (champion) against
/// the attached challenger, both scored in shadow on the store's log at the
/// same point-in-time decision times, on the outcomes recorded through
/// `POST /api/v1/outcomes`. Computed on request.
async fn compare_models(
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
    let (champion, challenger, contacts, outcomes) = read(&handle, move |store| {
        let outcomes = store.outcomes()?;
        let mut logs = std::collections::BTreeMap::new();
        for o in &outcomes {
            if let Some(log) = store.contact_messages(&o.contact_id)? {
                logs.entry(log.contact.clone()).or_insert(log.messages);
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
        Ok(json!({
            "champion": champion_version,
            "challenger": challenger_version,
            "comparison": c,
        }))
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    Ok(Json(answer))
}

/// Query parameters, or a 400 naming what is wrong with them (handlers
/// take the query as a `Result` and call this after checking the key).
fn params<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query
        .map(|Query(q)| q)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))
}

/// A typed path parameter, or the 400 to answer; as [`params`], so that
/// the key is checked first (an extractor that fails would answer before
/// the handler runs).
fn path<T>(path: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    path.map(|Path(p)| p)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))
}

/// The canonical id of `id` when the store knows it (firings and score
/// changes are recorded under it), else `id` as given.
async fn canonical(handle: &StoreHandle, id: Option<String>) -> Result<Option<String>, ApiError> {
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
fn page_limit(limit: Option<usize>) -> usize {
    limit.unwrap_or(100).clamp(1, 1_000)
}

/// Runs a store call whose own errors become 503s (a 404 is the caller's).
async fn stored<T: Send + 'static>(
    handle: &StoreHandle,
    f: impl FnOnce(&mut dyn Store) -> leadscore_store::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    handle.call(f).await?.map_err(store_error)
}

/// Runs a read on a connection of the read pool (beside the worker, so
/// reads neither wait for nor delay ingestion), or on the worker when the
/// server has no pool. Every committed write is visible to it: SQLite WAL
/// readers and PostgreSQL connections see what was committed before the
/// read began.
async fn read<T: Send + 'static>(
    handle: &StoreHandle,
    f: impl FnOnce(&mut dyn Store) -> leadscore_store::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    let Some(pool) = handle.readers.clone() else {
        return stored(handle, f).await;
    };
    let permit = pool
        .permits
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| ApiError::unavailable())?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let idle = pool.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut conn = match idle {
            Some(conn) => conn,
            None => (pool.open)()?,
        };
        let result = f(conn.as_mut());
        // A connection whose database failed is dropped, not reused.
        if !matches!(result, Err(StoreError::Database(_))) {
            if let Ok(mut idle) = pool.idle.lock() {
                idle.push(conn);
            }
        }
        result
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(store_error)
}

fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::NoActiveModel | StoreError::NoChallenger => {
            ApiError::new(StatusCode::CONFLICT, e.to_string())
        }
        StoreError::NoSuchVersion(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
        StoreError::Model(_) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        other => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, other.to_string()),
    }
}

fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such contact")
}

/// `as_of`: RFC 3339; default now.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AsOf {
    as_of: Option<String>,
}

/// `as_of` as above; `model`: `active` (default), `challenger` (scored in
/// shadow) or a stored version number.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Explain {
    as_of: Option<String>,
    model: Option<String>,
}

fn parse_time(text: Option<&str>) -> Result<Timestamp, ApiError> {
    Ok(time_param("as_of", text)?.unwrap_or_else(now))
}

/// An optional time parameter (RFC 3339 or a date, midnight UTC), or a 400
/// naming it.
fn time_param(name: &str, text: Option<&str>) -> Result<Option<Timestamp>, ApiError> {
    text.map(|t| {
        Timestamp::parse_date_or_time(t)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("{name}: {e}")))
    })
    .transpose()
}

async fn score_as_of(
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

async fn explanation(
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
struct Page {
    cursor: Option<usize>,
    limit: Option<usize>,
}

async fn events(
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

async fn export(
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

async fn erase(
    State(handle): State<StoreHandle>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Admin).await?;
    let report = stored(&handle, move |store| store.erase(&id))
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(json!({"success": true, "erased": report})))
}

/// Leaderboard parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScoresParams {
    tier: Option<String>,
    grade: Option<String>,
    stage: Option<String>,
    status: Option<String>,
    min: Option<f64>,
    max: Option<f64>,
    order: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

async fn scores(
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
    // (every page is scored as of it) and the last row of the page before.
    let (at, after) = match p.cursor.as_deref() {
        None => (now(), None),
        Some(c) => parse_cursor(c).ok_or_else(|| bad("cursor: malformed".into()))?,
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
    let rows = read(&handle, move |store| {
        if let Some((_, model)) = store.active_model()? {
            if let Err(e) = query.check(&model) {
                return Ok(Err(e));
            }
        }
        Ok(Ok(store.scores(&query)?))
    })
    .await?
    .map_err(bad)?;
    let next = (rows.len() == limit)
        .then(|| {
            rows.last()
                .map(|r| format!("{}~{}~{}", at.0, r.score.score, r.id))
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

/// `as_of~score~id` (the id may itself hold `~`).
fn parse_cursor(cursor: &str) -> Option<(Timestamp, Option<(f64, String)>)> {
    let mut parts = cursor.splitn(3, '~');
    let at = Timestamp(parts.next()?.parse().ok()?);
    let score = parts.next()?.parse().ok()?;
    Some((at, Some((score, parts.next()?.to_string()))))
}

async fn summary(
    State(handle): State<StoreHandle>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Read).await?;
    let at = now();
    let summary = read(&handle, move |store| store.summary(Some(at))).await?;
    Ok(Json(
        serde_json::to_value(summary).expect("a summary serialises"),
    ))
}

async fn models(
    State(handle): State<StoreHandle>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Read).await?;
    let models = read(&handle, |store| store.models()).await?;
    Ok(Json(json!({ "models": models })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelName {
    name: Option<String>,
}

/// The request body as UTF-8 text (a model's TOML).
fn text_body(body: Result<Bytes, BytesRejection>) -> Result<String, ApiError> {
    let body = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "the model is not UTF-8 text"))
}

async fn add_model(
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

async fn dry_run(
    State(handle): State<StoreHandle>,
    headers: HeaderMap,
    query: Result<Query<ModelName>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    authorize(&handle, &headers, Scope::Admin).await?;
    let q = params(query)?;
    let source = text_body(body)?;
    let name = q.name.unwrap_or_else(|| "candidate.toml".into());
    let candidate = Model::from_toml(&name, &source)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    let report = read(&handle, move |store| {
        store.dry_run(&candidate, &mut |_, _| {})
    })
    .await?;
    Ok(Json(json!({ "dry_run": report })))
}

async fn diff(
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
async fn outcomes(
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
    let count = parsed.len();
    stored(&handle, move |store| store.add_outcomes(&parsed)).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"success": true, "recorded": count})),
    ))
}

/// `POST /api/v1/models/{version}/activate` (admin): rescoring runs on a
/// second connection in the background; 202 with the job's id.
async fn activate(
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
async fn job(
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

/// The OpenAPI document, built on first request.
static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// `GET /openapi.json`.
async fn openapi_json() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        DOCUMENT
            .get_or_init(|| {
                serde_json::to_string_pretty(&openapi::document())
                    .expect("the description serialises")
            })
            .clone(),
    )
        .into_response()
}

/// `GET /docs`.
async fn docs() -> axum::response::Html<String> {
    axum::response::Html(openapi::page())
}

/// `GET /healthz`: the process answers.
async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: the store answers (its migrations ran when it opened).
async fn readyz(State(handle): State<StoreHandle>) -> Result<Json<Value>, ApiError> {
    let version = stored(&handle, |store| {
        store.active_model().map(|m| m.map(|(v, _)| v))
    })
    .await?;
    Ok(Json(json!({"status": "ready", "active_model": version})))
}

/// Unknown routes: a JSON 404 like every other error.
async fn unknown_route() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such route (see /docs)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadscore_store::SqliteStore;

    /// A flush that counts its calls, failing when told to.
    struct Counted(std::sync::Arc<std::sync::atomic::AtomicUsize>, bool);

    impl leadscore_store::Flush for Counted {
        fn flush(&mut self) -> leadscore_store::Result<()> {
            std::thread::sleep(std::time::Duration::from_millis(20));
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if self.1 {
                return Err(leadscore_store::StoreError::Database("disk gone".into()));
            }
            Ok(())
        }
    }

    /// Each commit is answered only after a flush that began after it, in
    /// commit order, with the flush's error when it fails; stopping answers
    /// everything queued.
    #[test]
    fn commits_are_answered_after_their_flush() {
        for fails in [false, true] {
            let flushes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let acks = Acks::start(Box::new(Counted(flushes.clone(), fails)));
            let (answered, answers) = std::sync::mpsc::channel();
            for i in 0..5 {
                let (flushes, answered) = (flushes.clone(), answered.clone());
                let flushed_before = flushes.load(std::sync::atomic::Ordering::SeqCst);
                acks.push(Box::new(move |durable| {
                    let now = flushes.load(std::sync::atomic::Ordering::SeqCst);
                    let _ = answered.send((i, now > flushed_before, durable));
                }));
            }
            acks.finish();
            let got: Vec<_> = answers.try_iter().collect();
            assert_eq!(got.len(), 5);
            for (n, (i, flushed, durable)) in got.into_iter().enumerate() {
                assert_eq!(i, n, "answered in commit order");
                assert!(flushed, "answer {i} came before a flush after its commit");
                match durable {
                    Ok(()) => assert!(!fails),
                    Err(e) => assert!(fails && e.contains("not confirmed durable"), "{e}"),
                }
            }
        }
    }

    /// A read is answered by the pool while the worker is busy (here:
    /// blocked until the read has returned, which would deadlock if the
    /// read queued behind it), and sees what the worker committed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_do_not_queue_behind_the_worker() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut store = SqliteStore::open(&path).unwrap();
        let hash = leadscore_store::key_hash("k");
        store.add_key(&hash, Scope::Read, "test").unwrap();
        let open: Reopen =
            std::sync::Arc::new(move || Ok(Box::new(SqliteStore::open(&path)?) as Box<dyn Store>));
        let (handle, worker) = StoreHandle::start(Box::new(store));
        let handle = handle.with_readers(open, 2);
        let (release, blocked) = std::sync::mpsc::channel::<()>();
        let (started, running) = tokio::sync::oneshot::channel();
        let worker_handle = handle.clone();
        let busy = tokio::spawn(async move {
            worker_handle
                .call(move |_| {
                    let _ = started.send(());
                    blocked.recv().ok()
                })
                .await
                .map_err(|_| "worker gone")
        });
        running.await.unwrap();
        let found = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            read(&handle, move |store| store.key_by_hash(&hash)),
        )
        .await
        .expect("the read waited for the busy worker");
        assert_eq!(found.unwrap().unwrap().scope, Scope::Read);
        release.send(()).unwrap();
        busy.await.unwrap().unwrap();
        drop(handle);
        worker.join().unwrap();
    }
}
