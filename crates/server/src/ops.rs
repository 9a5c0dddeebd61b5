//! Operations: Prometheus metrics, health and readiness, the OpenAPI
//! document and its page, and the layers every answer passes through (JSON
//! error bodies, request counting).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use leadscore_store::Scope;
use serde_json::{json, Value};

use crate::auth::authorize;
use crate::error::ApiError;
use crate::worker::{read, stored, StoreHandle};

/// The process's Prometheus recorder (installed once, shared by servers).
pub(crate) fn prometheus() -> &'static metrics_exporter_prometheus::PrometheusHandle {
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

/// The target of the access log: a line per request (route, status,
/// microseconds in the server) at `debug`, or at `warn` for a 5xx answer.
/// `LEADSCORE_LOG=info,leadscore_server::access=debug` turns it on.
const ACCESS: &str = "leadscore_server::access";

/// Counts requests by route and status (the outermost layer: it sees every
/// answer, the decompression layer's too) and logs them ([`ACCESS`]).
pub(crate) async fn count_requests(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let started = std::time::Instant::now();
    let response = with_json_body(next.run(request).await).await;
    let status = response.status().as_u16().to_string();
    let micros = started.elapsed().as_micros() as u64;
    if response.status().is_server_error() {
        tracing::warn!(target: ACCESS, route = %route, status = %status, micros, "request");
    } else {
        tracing::debug!(target: ACCESS, route = %route, status = %status, micros, "request");
    }
    metrics::counter!("leadscore_http_requests_total", "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("leadscore_http_request_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// `GET /metrics` (read scope): Prometheus text format.
pub(crate) async fn metrics(
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

/// The OpenAPI document, built on first request.
static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// `GET /openapi.json`.
pub(crate) async fn openapi_json() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        DOCUMENT
            .get_or_init(|| {
                serde_json::to_string_pretty(&crate::openapi::document())
                    .expect("the description serialises")
            })
            .clone(),
    )
        .into_response()
}

/// `GET /docs`.
pub(crate) async fn docs() -> axum::response::Html<String> {
    axum::response::Html(crate::openapi::page())
}

/// `GET /healthz`: the process answers.
pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: the store answers (its migrations ran when it opened).
pub(crate) async fn readyz(State(handle): State<StoreHandle>) -> Result<Json<Value>, ApiError> {
    let version = stored(&handle, |store| {
        store.active_model().map(|m| m.map(|(v, _)| v))
    })
    .await?;
    Ok(Json(json!({"status": "ready", "active_model": version})))
}

/// Unknown routes: a JSON 404 like every other error.
pub(crate) async fn unknown_route() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such route (see /docs)")
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use axum::body::Body;
    use axum::http::Request;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt as _;
    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    /// Log lines written to memory.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Lines {
        type Writer = Lines;
        fn make_writer(&'a self) -> Lines {
            self.clone()
        }
    }

    /// The access log lines of a 200 and a 500 answer under `filter`.
    fn logged(filter: &str) -> String {
        let lines = Lines::default();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(lines.clone())
            .with_ansi(false)
            .finish();
        let app = Router::new()
            .route("/fine", get(|| async { "fine" }))
            .route(
                "/broken",
                get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
            )
            .layer(axum::middleware::from_fn(count_requests));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        tracing::subscriber::with_default(subscriber, || {
            runtime.block_on(async {
                for uri in ["/fine", "/broken"] {
                    let request = Request::get(uri).body(Body::empty()).unwrap();
                    app.clone().oneshot(request).await.unwrap();
                }
            })
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        text
    }

    /// At the default level only answers with a server error are logged;
    /// the access log's target at `debug` logs every request.
    #[test]
    fn the_access_log_keeps_server_errors_at_info_and_every_request_at_debug() {
        let info = logged("info");
        assert!(info.contains("route=/broken status=500"), "{info}");
        assert!(info.contains("WARN"), "{info}");
        assert!(!info.contains("/fine"), "{info}");
        let debug = logged("info,leadscore_server::access=debug");
        assert!(debug.contains("route=/fine status=200"), "{debug}");
        assert!(debug.contains("route=/broken status=500"), "{debug}");
    }
}
