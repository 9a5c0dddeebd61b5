//! Keys: every route checks its key and scope, revoked keys stop working.

use crate::harness::{basic, bearer, Server};
use crate::{track, typed};
use serde_json::{json, Value};

/// Which key a route needs.
#[derive(Clone, Copy, PartialEq)]
enum Needs {
    Ingest,
    Read,
    Admin,
}

#[test]
fn every_route_checks_its_key() {
    let server = Server::start();
    let t = "2025-01-01T00:00:00Z";
    // Something to read first.
    server.post(
        "/v1/track",
        &basic(&server.write_key),
        &track("u", "seed", "X"),
    );
    let model = include_str!("../../../../examples/email.toml");
    let routes: Vec<(&str, &str, Needs, Option<Value>)> = vec![
        (
            "POST",
            "/v1/track",
            Needs::Ingest,
            Some(track("u", "a", "X")),
        ),
        (
            "POST",
            "/v1/page",
            Needs::Ingest,
            Some(json!({"userId": "u", "timestamp": t})),
        ),
        (
            "POST",
            "/v1/screen",
            Needs::Ingest,
            Some(json!({"userId": "u", "timestamp": t})),
        ),
        (
            "POST",
            "/v1/identify",
            Needs::Ingest,
            Some(json!({"userId": "u", "timestamp": t})),
        ),
        (
            "POST",
            "/v1/group",
            Needs::Ingest,
            Some(json!({"userId": "u", "groupId": "g", "timestamp": t})),
        ),
        (
            "POST",
            "/v1/alias",
            Needs::Ingest,
            Some(json!({"userId": "u", "previousId": "p", "timestamp": t})),
        ),
        (
            "POST",
            "/v1/batch",
            Needs::Ingest,
            Some(json!({"batch": [typed(track("u", "b", "X"))]})),
        ),
        (
            "POST",
            "/v1/import",
            Needs::Ingest,
            Some(json!({"batch": [typed(track("u", "c", "X"))]})),
        ),
        ("POST", "/v1/t", Needs::Ingest, Some(track("u", "t1", "X"))),
        (
            "POST",
            "/v1/b",
            Needs::Ingest,
            Some(json!({"batch": [typed(track("u", "t2", "X"))]})),
        ),
        (
            "POST",
            "/beacon/v1/batch",
            Needs::Ingest,
            Some(json!({"batch": [typed(track("u", "t3", "X"))]})),
        ),
        (
            "POST",
            "/api/v1/outcomes",
            Needs::Ingest,
            Some(json!({"contact_id": "u", "outcome": "won", "value": 1200.0})),
        ),
        ("GET", "/api/v1/contacts/u", Needs::Read, None),
        ("GET", "/api/v1/contacts/u/history", Needs::Read, None),
        ("GET", "/api/v1/contacts/u/explanation", Needs::Read, None),
        (
            "GET",
            "/api/v1/contacts/u/score?as_of=2026-01-01T00:00:00Z",
            Needs::Read,
            None,
        ),
        ("GET", "/api/v1/contacts/u/events", Needs::Read, None),
        ("GET", "/api/v1/scores", Needs::Read, None),
        ("GET", "/api/v1/segments/summary", Needs::Read, None),
        ("GET", "/api/v1/models", Needs::Read, None),
        ("GET", "/api/v1/models/1/diff/1", Needs::Read, None),
        ("GET", "/api/v1/contacts/u/export", Needs::Admin, None),
        ("POST", "/api/v1/models/dry-run", Needs::Admin, None),
        (
            "POST",
            "/api/v1/models/1/activate",
            Needs::Admin,
            Some(json!({})),
        ),
        ("POST", "/api/v1/models?name=email.toml", Needs::Admin, None),
        ("GET", "/api/v1/jobs/1", Needs::Admin, None),
        ("DELETE", "/api/v1/contacts/p", Needs::Admin, None),
    ];
    for (method, path, needs, body) in &routes {
        let (right, wrong_scope) = match needs {
            Needs::Ingest => (basic(&server.write_key), basic(&server.read_key)),
            Needs::Read => (bearer(&server.read_key), bearer(&server.write_key)),
            Needs::Admin => (bearer(&server.admin_key), bearer(&server.read_key)),
        };
        let expected_ok = if path.starts_with("/api/v1/models?") || path.ends_with("/outcomes") {
            201
        } else if path.ends_with("/activate") {
            202
        } else {
            200
        };
        let cases = [
            (String::new(), 401),
            (basic("ls_ingest_not_a_key"), 401),
            (basic(&server.revoked_key), 401),
            (wrong_scope, 403),
            (right, expected_ok),
        ];
        for (auth, expected) in cases {
            let (status, answer) = match body {
                Some(body) => server.request(method, path, &auth, Some(body)),
                None if method == &"POST" => server.text(method, path, &auth, model),
                None => server.request(method, path, &auth, None),
            };
            assert_eq!(status, expected, "{method} {path} with {auth:?}: {answer}");
            if expected >= 400 {
                assert_eq!(answer["success"], false, "{answer}");
            }
        }
    }
}

/// Keys are kept for `Config::key_cache` (1 s by default) after being
/// read: a key revoked by another process stops working within that.
#[test]
fn a_key_revoked_while_serving_stops_working_within_the_key_cache_time() {
    let server = Server::start();
    let event = json!({"userId": "k1", "event": "Signed Up", "messageId": "rk-1"});
    let auth = basic(&server.write_key);
    assert_eq!(
        server.request("POST", "/v1/track", &auth, Some(&event)).0,
        200
    );
    server.revoke(&server.write_key);
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    let (status, answer) = server.request("POST", "/v1/track", &auth, Some(&event));
    assert_eq!(status, 401, "{answer}");
    assert_eq!(answer["error"], "revoked API key");
}
