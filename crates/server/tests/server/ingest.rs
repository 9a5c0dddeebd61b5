//! Ingestion as Segment's and RudderStack's SDKs send it: single calls,
//! batches, gzip, limits, group commit, resends, signed links, CORS.

use crate::harness::{self, basic, bearer, signed, Server};
use crate::{track, typed};
use leadscore_store::Store as _;
use serde_json::{json, Value};

#[test]
fn a_tracked_event_is_committed_and_scored() {
    let server = Server::start();
    let (status, body) = server.post(
        "/v1/track",
        &basic(&server.write_key),
        &track("alice", "m1", "Form Submitted"),
    );
    assert_eq!(
        (status, body["success"].clone()),
        (200, json!(true)),
        "{body}"
    );
    let (status, body) = server.post("/v1/identify", &basic(&server.write_key),
        &json!({"userId": "alice", "traits": {"email": "a@x.io", "consent": true}, "timestamp": "2025-03-01T09:00:00Z", "messageId": "i1"}));
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.get("/api/v1/contacts/alice", &bearer(&server.read_key));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["contact_id"], "alice");
    assert_eq!(body["traits"]["email"], "a@x.io");
    // The score the server holds is the batch score of the same messages.
    let store = server.stop();
    let expected = harness::batch_score(
        "alice",
        &[
            track("alice", "m1", "Form Submitted"),
            json!({"type": "identify", "userId": "alice", "traits": {"email": "a@x.io", "consent": true}, "timestamp": "2025-03-01T09:00:00Z", "messageId": "i1"}),
        ],
    );
    let live = store.contact("alice").unwrap().unwrap();
    assert_eq!(live.score, expected);
}

/// analytics.js (Segment's browser SDK) sends no Authorization header: its
/// write key is in the body, the body is `text/plain` (no CORS preflight),
/// and the paths are the type's first letter (`/v1/t`, …, `/v1/b`).
#[test]
fn analytics_js_requests_work_unchanged() {
    let server = Server::start();
    let send = |path: &str, body: Value| {
        let bytes = serde_json::to_vec(&body).unwrap();
        server.raw("POST", path, "", &bytes, &[("Content-Type", "text/plain")])
    };
    let at = "2025-01-01T00:00:00Z";
    let key = server.write_key.as_str();
    for (path, body) in [
        (
            "/v1/t",
            json!({"type": "track", "event": "Signed Up", "userId": "js", "messageId": "j1"}),
        ),
        (
            "/v1/p",
            json!({"type": "page", "name": "Pricing", "anonymousId": "ajs", "messageId": "j2"}),
        ),
        (
            "/v1/s",
            json!({"type": "screen", "name": "Home", "userId": "js", "messageId": "j3"}),
        ),
        (
            "/v1/i",
            json!({"type": "identify", "userId": "js", "anonymousId": "ajs", "traits": {"plan": "pro"}, "messageId": "j4"}),
        ),
        (
            "/v1/g",
            json!({"type": "group", "userId": "js", "groupId": "acme", "traits": {}, "messageId": "j5"}),
        ),
        (
            "/v1/a",
            json!({"type": "alias", "userId": "js", "previousId": "old-js", "messageId": "j6"}),
        ),
        (
            "/v1/b",
            json!({"batch": [
            {"type": "track", "event": "A", "userId": "js", "messageId": "j7", "timestamp": at, "writeKey": key},
            {"type": "track", "event": "B", "userId": "js", "messageId": "j8", "timestamp": at, "writeKey": key},
        ], "sentAt": at}),
        ),
    ] {
        let mut body = body;
        body["writeKey"] = json!(key);
        body["sentAt"] = json!(at);
        body["_metadata"] = json!({"bundled": ["Segment.io"]});
        if body.get("batch").is_none() {
            body["timestamp"] = json!(at);
        }
        let (status, answer) = send(path, body);
        assert_eq!(status, 200, "{path}: {answer}");
    }
    let (_, events) = server.get("/api/v1/contacts/js/events", &bearer(&server.read_key));
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 8, "{events:?}");
    // The key is not kept with the events.
    assert!(!serde_json::to_string(events).unwrap().contains(key));
    let track = json!({"type": "track", "event": "A", "userId": "js", "timestamp": at});
    for (write_key, expected) in [
        (json!(null), 401),
        (json!(""), 401),
        (json!("ls_ingest_not_a_key"), 401),
        (json!(server.read_key), 403),
    ] {
        let mut body = track.clone();
        body["writeKey"] = write_key;
        assert_eq!(send("/v1/t", body).0, expected);
    }
    // Unreadable without a header: nothing says who sends it.
    let (status, _) = server.raw(
        "POST",
        "/v1/t",
        "",
        b"{not json",
        &[("Content-Type", "text/plain")],
    );
    assert_eq!(status, 401);
    // With a header, the header's key decides.
    let mut body = track.clone();
    body["writeKey"] = json!(server.write_key);
    assert_eq!(server.post("/v1/t", &basic(&server.read_key), &body).0, 403);
}

/// RudderStack's browser SDK with `useBeacon`: `navigator.sendBeacon`
/// posts `{"batch": [...]}` to `/beacon/v1/batch?writeKey=KEY`, with no
/// header to carry the key.
#[test]
fn rudderstack_beacon_requests_work_unchanged() {
    let server = Server::start();
    let body = json!({"batch": [
        {"type": "track", "event": "A", "userId": "rs", "messageId": "r1", "timestamp": "2025-01-01T00:00:00Z"},
        {"type": "page", "name": "Home", "anonymousId": "ars", "messageId": "r2", "timestamp": "2025-01-01T00:00:01Z"},
    ], "sentAt": "2025-01-01T00:00:02Z"});
    let bytes = serde_json::to_vec(&body).unwrap();
    let send = |query: &str| {
        let path = format!("/beacon/v1/batch{query}");
        server.raw(
            "POST",
            &path,
            "",
            &bytes,
            &[("Content-Type", "text/plain;charset=UTF-8")],
        )
    };
    let (status, answer) = send(&format!("?writeKey={}&v=3", server.write_key));
    assert_eq!(status, 200, "{answer}");
    let (_, events) = server.get("/api/v1/contacts/rs/events", &bearer(&server.read_key));
    assert_eq!(events["events"].as_array().unwrap().len(), 1, "{events}");
    for (query, expected) in [
        (String::new(), 401),
        ("?writeKey=".to_string(), 401),
        ("?writeKey=ls_ingest_not_a_key".to_string(), 401),
        (format!("?writeKey={}", server.revoked_key), 401),
        (format!("?writeKey={}", server.read_key), 403),
    ] {
        assert_eq!(send(&query).0, expected, "{query}");
    }
}

/// Segment's batch call: the batch's `context` applies to every message,
/// under the message's own.
#[test]
fn a_batch_context_reaches_every_message() {
    let server = Server::start();
    let batch = json!({"context": {"ip": "1.2.3.4", "locale": "de"}, "batch": [
        {"type": "track", "userId": "cat", "event": "A", "messageId": "c1", "timestamp": "2025-01-01T00:00:00Z"},
        {"type": "track", "userId": "cat", "event": "A", "messageId": "c2", "timestamp": "2025-01-02T00:00:00Z",
         "context": {"locale": "fr"}},
    ]});
    let (status, body) = server.post("/v1/batch", &basic(&server.write_key), &batch);
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.get("/api/v1/contacts/cat/events", &bearer(&server.read_key));
    assert_eq!(status, 200, "{body}");
    let contexts: Vec<&Value> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["context"])
        .collect();
    assert_eq!(
        contexts,
        [
            &json!({"ip": "1.2.3.4", "locale": "de"}),
            &json!({"ip": "1.2.3.4", "locale": "fr"})
        ]
    );
    let (status, body) = server.post(
        "/v1/batch",
        &basic(&server.write_key),
        &json!({"batch": [], "context": 3}),
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (
            400,
            Some("field `context`: expected an object, found a number")
        )
    );
}

#[test]
fn a_batch_keeps_valid_messages_and_reports_invalid_ones_by_index() {
    let server = Server::start();
    let batch = json!({"batch": [
        {"type": "track", "userId": "bob", "event": "A", "messageId": "b1", "timestamp": "2025-01-01T00:00:00Z"},
        {"type": "track", "userId": "bob", "messageId": "b2", "timestamp": "2025-01-01T00:00:00Z"},
        {"type": "track", "userId": "bob", "event": "A", "messageId": "b3", "timestamp": "yesterday"},
    ]});
    let (status, body) = server.post("/v1/batch", &basic(&server.write_key), &batch);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 1);
    assert_eq!(body["errors"][0]["index"], 1);
    assert_eq!(body["errors"][0]["field"], "event");
    assert_eq!(body["errors"][1]["index"], 2);
    assert_eq!(body["errors"][1]["field"], "timestamp");
    let (status, body) = server.post(
        "/v1/batch",
        &basic(&server.write_key),
        &json!({"batch": [{"type": "nope"}]}),
    );
    assert_eq!(status, 400, "{body}");
    let (status, body) = server.raw(
        "POST",
        "/v1/track",
        &basic(&server.write_key),
        b"{not json",
        &[],
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("malformed JSON"),
        "{body}"
    );
    let store = server.stop();
    assert_eq!(store.stats().unwrap().events, 1);
}

#[test]
fn gzip_bodies_are_accepted_and_oversized_ones_refused_with_json() {
    use std::io::Write;
    let server = Server::start();
    let body = serde_json::to_vec(&track("carol", "g1", "A")).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&body).unwrap();
    let gz = gz.finish().unwrap();
    let (status, answer) = server.raw(
        "POST",
        "/v1/track",
        &basic(&server.write_key),
        &gz,
        &[("Content-Encoding", "gzip")],
    );
    assert_eq!(status, 200, "{answer}");
    let big = json!({"userId": "carol", "event": "A", "timestamp": "2025-01-01T00:00:00Z",
                     "properties": {"blob": "x".repeat(600 * 1024)}});
    let (status, answer) = server.post("/v1/track", &basic(&server.write_key), &big);
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["success"], false);
    let store = server.stop();
    assert_eq!(store.stats().unwrap().events, 1);
}

#[test]
fn concurrent_requests_are_all_committed_before_they_are_acknowledged() {
    let server = Server::start();
    std::thread::scope(|scope| {
        for t in 0..8 {
            let server = &server;
            scope.spawn(move || {
                for i in 0..25 {
                    let (status, body) = server.post(
                        "/v1/track",
                        &basic(&server.write_key),
                        &track(&format!("u{t}"), &format!("{t}-{i}"), "A"),
                    );
                    assert_eq!(status, 200, "{body}");
                }
            });
        }
    });
    // Shut down right after the last answer: every acknowledged message is there.
    let store = server.stop();
    assert_eq!(store.stats().unwrap().events, 200);
}

#[test]
fn resending_a_batch_changes_nothing_and_live_scores_equal_the_batch() {
    let server = Server::start();
    let key = basic(&server.write_key);
    let messages: Vec<Value> = (0..60)
        .map(|i| {
            typed(json!({"userId": format!("r{}", i % 6), "event": if i % 3 == 0 { "Form Submitted" } else { "Email Link Clicked" },
                "messageId": format!("r-{i}"), "timestamp": format!("2025-04-{:02}T10:00:00Z", 1 + i % 28),
                "properties": {"form": "demo"}}))
        })
        .collect();
    // Out of order, in chunks, from several clients at once, then all again.
    std::thread::scope(|scope| {
        for chunk in messages.chunks(10).rev() {
            let (server, key) = (&server, &key);
            scope.spawn(move || {
                let (status, body) = server.post("/v1/batch", key, &json!({ "batch": chunk }));
                assert_eq!(status, 200, "{body}");
            });
        }
    });
    let (status, body) = server.post("/v1/batch", &key, &json!({ "batch": messages }));
    assert_eq!(status, 200, "{body}");
    let store = server.stop();
    assert_eq!(store.stats().unwrap().events, 60);
    for c in 0..6 {
        let id = format!("r{c}");
        let mine: Vec<Value> = messages
            .iter()
            .filter(|m| m["userId"] == id.as_str())
            .cloned()
            .collect();
        let expected = harness::batch_score(&id, &mine);
        assert_eq!(store.contact(&id).unwrap().unwrap().score, expected, "{id}");
    }
}

#[test]
fn signed_links_record_opens_and_clicks_and_cannot_be_forged() {
    let server = Server::start();
    let open = signed("/t/open.gif", &[("u", "dana"), ("c", "spring")]);
    let (status, _) = server.raw("GET", &open, "", b"", &[]);
    assert_eq!(status, 200);
    let click = signed(
        "/t/click",
        &[
            ("u", "dana"),
            ("c", "spring"),
            ("url", "https://example.com/offer?x=1&y=2"),
        ],
    );
    let (status, _) = server.raw("GET", &click, "", b"", &[]);
    assert_eq!(status, 302);
    // Tampering with any parameter breaks the signature: no event, no redirect.
    let forged_user = open.replace("u=dana", "u=eve");
    assert_eq!(server.raw("GET", &forged_user, "", b"", &[]).0, 403);
    let elsewhere = click.replace("example.com", "evil.example");
    assert_eq!(server.raw("GET", &elsewhere, "", b"", &[]).0, 403);
    assert_eq!(
        server
            .raw(
                "GET",
                "/t/click?u=dana&url=https%3A%2F%2Fevil.example",
                "",
                b"",
                &[]
            )
            .0,
        403
    );
    let not_web = signed("/t/click", &[("u", "dana"), ("url", "javascript:alert(1)")]);
    assert_eq!(server.raw("GET", &not_web, "", b"", &[]).0, 400);
    let store = server.stop();
    let log = store.contact_messages("dana").unwrap().unwrap();
    let names: Vec<_> = log
        .messages
        .iter()
        .map(|m| m.rule_name().unwrap().to_string())
        .collect();
    assert_eq!(names, ["Email Opened", "Email Link Clicked"]);
    assert_eq!(
        log.messages[1].properties.get()["url"],
        "https://example.com/offer?x=1&y=2"
    );
    assert_eq!(log.messages[0].properties.get()["campaign"], "spring");
}

#[test]
fn browsers_may_send_events_from_allowed_origins_only() {
    let server = Server::start_with(vec!["https://shop.example".into()]);
    let preflight = |origin: &str| {
        server.head(
            "OPTIONS",
            "/v1/track",
            &[
                ("Origin", origin),
                ("Access-Control-Request-Method", "POST"),
                (
                    "Access-Control-Request-Headers",
                    "authorization,content-type",
                ),
            ],
        )
    };
    let allowed = preflight("https://shop.example");
    assert!(
        allowed.contains("access-control-allow-origin: https://shop.example"),
        "{allowed}"
    );
    assert!(allowed.contains("authorization"), "{allowed}");
    let other = preflight("https://evil.example");
    assert!(!other.contains("access-control-allow-origin"), "{other}");
    // Without configured origins there are no CORS headers at all.
    let plain = Server::start();
    let none = plain.head(
        "OPTIONS",
        "/v1/track",
        &[
            ("Origin", "https://shop.example"),
            ("Access-Control-Request-Method", "POST"),
        ],
    );
    assert!(!none.contains("access-control-allow-origin"), "{none}");
}

/// A timestamp ahead of the server's clock by more than `max_future` (5
/// minutes by default) comes from a clock running ahead: it is stored at
/// the receive time and the answer says so; one within the limit is kept,
/// and one before 2000 is kept with a warning.
#[test]
fn timestamps_ahead_of_the_servers_clock_are_stored_at_receive_time() {
    use leadscore_core::time::{Duration, Timestamp};
    let server = Server::start();
    let before = leadscore_store::now();
    let ahead = |seconds| before.plus(Duration::from_seconds(seconds)).to_string();
    let mut message = track("carol", "f1", "Form Submitted");
    message["timestamp"] = ahead(86_400).into();
    let (status, body) = server.post("/v1/track", &basic(&server.write_key), &message);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["warnings"][0]["field"], "timestamp", "{body}");
    let warning = body["warnings"][0]["warning"].as_str().unwrap();
    assert!(
        warning.contains("more than 5m after the server's clock"),
        "{warning}"
    );
    let batch = json!({"batch": [
        typed(track("carol", "f2", "Form Submitted")),
        {"type": "track", "userId": "carol", "event": "A", "messageId": "f3", "timestamp": ahead(60)},
        {"type": "track", "userId": "carol", "event": "A", "messageId": "f4", "timestamp": ahead(3_600)},
        {"type": "track", "userId": "carol", "event": "A", "messageId": "f5", "timestamp": "1970-01-21T03:33:20Z"},
    ]});
    let (status, body) = server.post("/v1/batch", &basic(&server.write_key), &batch);
    assert_eq!(status, 200, "{body}");
    let indexes: Vec<&Value> = body["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| &w["index"])
        .collect();
    assert_eq!(indexes, [&json!(2), &json!(3)], "{body}");
    let old = body["warnings"][1]["warning"].as_str().unwrap();
    assert!(
        old.starts_with("1970-01-21T03:33:20Z is before 2000: stored as sent"),
        "{old}"
    );
    assert!(body.get("errors").is_none(), "{body}");
    let after = leadscore_store::now();
    let store = server.stop();
    let log = store.contact_messages("carol").unwrap().unwrap().messages;
    let at = |id: &str| log.iter().find(|m| m.message_id == id).unwrap().timestamp;
    for id in ["f1", "f4"] {
        assert!(before <= at(id) && at(id) <= after, "{id} at {}", at(id));
    }
    assert_eq!(at("f2"), Timestamp::parse("2025-03-01T10:00:00Z").unwrap());
    assert_eq!(at("f5").to_string(), "1970-01-21T03:33:20Z", "old: kept");
    assert_eq!(
        at("f3").to_string(),
        ahead(60),
        "within the limit: kept as sent"
    );
}

/// With the writer held up and its queue at the limit, a Segment route
/// answers 503 with `Retry-After` before reading the body or checking the
/// key, keeps nothing of the request, and takes requests again once the
/// queue drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_with_retry_after() {
    use leadscore_store::{Admin as _, Scope, SqliteStore};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let mut store = SqliteStore::open(&path).unwrap();
    let key = leadscore_store::new_key(Scope::Ingest).unwrap();
    store
        .add_key(&leadscore_store::key_hash(&key), Scope::Ingest, "test")
        .unwrap();
    let (handle, worker) = leadscore_server::StoreHandle::start(Box::new(store));
    // Keys are read beside the held writer, as `serve` does.
    let open: leadscore_server::Reopen = std::sync::Arc::new(move || {
        Ok(Box::new(SqliteStore::open(&path)?) as Box<dyn leadscore_store::Store>)
    });
    let handle = handle.with_readers(open, 1).with_queue_limit(1);
    let app = leadscore_server::router(handle.clone(), &leadscore_server::Config::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stopped.await;
        })
        .await
    });
    // The writer is held until `release`.
    let (release, held) = std::sync::mpsc::channel::<()>();
    let (started, running) = tokio::sync::oneshot::channel();
    let busy = tokio::spawn({
        let handle = handle.clone();
        async move {
            handle
                .call(move |_| {
                    let _ = started.send(());
                    held.recv().ok()
                })
                .await
        }
    });
    running.await.unwrap();
    let client = reqwest::Client::new();
    let post = |key: &str, body: String| {
        client
            .post(format!("http://{addr}/v1/batch"))
            .basic_auth(key, Some(""))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let batch = |ids: &[&str]| {
        let items: Vec<Value> = ids
            .iter()
            .map(|id| typed(track("alice", id, "Form Submitted")))
            .collect();
        json!({ "batch": items }).to_string()
    };
    // An empty queue takes the first request, which then waits.
    let first = tokio::spawn(post(&key, batch(&["q1", "q2"])));
    // Until that request is queued, a body that is not JSON is a 400; then
    // it is refused before it is read.
    let refused = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            let answer = post(&key, "{not json".into()).await.unwrap();
            match answer.status().as_u16() {
                400 => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
                _ => break answer,
            }
        }
    })
    .await
    .expect("the queue never refused a request");
    assert_eq!(refused.status().as_u16(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["success"], false);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("overloaded: 2 messages"),
        "{body}"
    );
    for key in [key.as_str(), "no-such-key"] {
        let refused = post(key, batch(&["r1"])).await.unwrap();
        assert_eq!(refused.status().as_u16(), 503);
    }
    release.send(()).unwrap();
    busy.await.unwrap().unwrap();
    assert_eq!(first.await.unwrap().unwrap().status().as_u16(), 200);
    let again = post(&key, batch(&["a1"])).await.unwrap();
    assert_eq!(again.status().as_u16(), 200);
    // What was taken is stored; the refused message is not.
    let stats = handle.call(|store| store.stats()).await.unwrap().unwrap();
    assert_eq!(stats.events, 3);
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    drop(handle);
    worker.join().unwrap();
}
