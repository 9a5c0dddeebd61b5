//! The server over a real socket on 127.0.0.1: ingestion as Segment's SDKs
//! send it, auth on every route, limits, group commit, graceful shutdown.

mod harness;

use harness::{basic, bearer, Server};
use leadscore_store::Store as _;
use serde_json::{json, Value};

fn track(user: &str, id: &str, event: &str) -> Value {
    json!({"userId": user, "event": event, "messageId": id, "timestamp": "2025-03-01T10:00:00Z",
           "properties": {"form": "demo"}})
}

/// A track call as a batch item (which carries its type).
fn typed(mut message: Value) -> Value {
    message["type"] = "track".into();
    message
}

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

#[test]
fn every_route_checks_its_key() {
    let server = Server::start();
    let routes: Vec<(&str, &str, Option<Value>)> = vec![
        ("POST", "/v1/track", Some(track("u", "a", "X"))),
        (
            "POST",
            "/v1/page",
            Some(json!({"userId": "u", "timestamp": "2025-01-01T00:00:00Z"})),
        ),
        (
            "POST",
            "/v1/screen",
            Some(json!({"userId": "u", "timestamp": "2025-01-01T00:00:00Z"})),
        ),
        (
            "POST",
            "/v1/identify",
            Some(json!({"userId": "u", "timestamp": "2025-01-01T00:00:00Z"})),
        ),
        (
            "POST",
            "/v1/group",
            Some(json!({"userId": "u", "groupId": "g", "timestamp": "2025-01-01T00:00:00Z"})),
        ),
        (
            "POST",
            "/v1/alias",
            Some(json!({"userId": "u", "previousId": "p", "timestamp": "2025-01-01T00:00:00Z"})),
        ),
        (
            "POST",
            "/v1/batch",
            Some(json!({"batch": [typed(track("u", "b", "X"))]})),
        ),
        (
            "POST",
            "/v1/import",
            Some(json!({"batch": [typed(track("u", "c", "X"))]})),
        ),
        ("GET", "/api/v1/contacts/u", None),
        ("GET", "/api/v1/contacts/u/history", None),
    ];
    for (method, path, body) in &routes {
        let ingest = path.starts_with("/v1/");
        let right = if ingest {
            basic(&server.write_key)
        } else {
            bearer(&server.read_key)
        };
        let wrong_scope = if ingest {
            basic(&server.read_key)
        } else {
            bearer(&server.write_key)
        };
        let cases = [
            (String::new(), 401),
            (basic("ls_ingest_not_a_key"), 401),
            (basic(&server.revoked_key), 401),
            (wrong_scope, 403),
            (right, 200),
        ];
        for (auth, expected) in cases {
            let (status, answer) = server.request(method, path, &auth, body.as_ref());
            assert_eq!(status, expected, "{method} {path} with {auth:?}: {answer}");
            if expected != 200 {
                assert_eq!(answer["success"], false, "{answer}");
            }
        }
    }
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
