//! The server over a real socket on 127.0.0.1: ingestion as Segment's SDKs
//! send it, auth on every route, limits, group commit, graceful shutdown.

mod garbage;
mod harness;
mod schemas;
mod triggers;

use harness::{basic, bearer, signed, Server};
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

#[test]
fn leaderboard_summary_explanation_events_models_and_erasure() {
    let server = Server::start();
    let read = bearer(&server.read_key);
    let admin = bearer(&server.admin_key);
    for (i, user) in ["ann", "ben", "cid", "dee", "eve"].iter().enumerate() {
        for k in 0..=i {
            let m = json!({"userId": user, "event": "Form Submitted", "messageId": format!("{user}{k}"),
                           "timestamp": format!("2025-03-0{}T10:00:00Z", k + 1), "properties": {"form": "demo"}});
            assert_eq!(
                server.post("/v1/track", &basic(&server.write_key), &m).0,
                200
            );
        }
    }
    // Two pages of two, then one: every contact once, highest first, all
    // scored as of the first page's time (the events are from March 2025:
    // their points have decayed since, and the list shows them decayed).
    let mut seen = Vec::new();
    let mut as_of = None;
    let mut path = "/api/v1/scores?limit=2".to_string();
    loop {
        let (status, page) = server.get(&path, &read);
        assert_eq!(status, 200, "{page}");
        let time = page["as_of"].as_str().unwrap().to_string();
        assert_eq!(as_of.get_or_insert_with(|| time.clone()), &time, "{page}");
        for c in page["contacts"].as_array().unwrap() {
            let id = c["contact_id"].as_str().unwrap().to_string();
            let (_, then) = server.get(&format!("/api/v1/contacts/{id}/score?as_of={time}"), &read);
            assert_eq!(c["score"], then["score"], "{id}");
            seen.push((c["score"]["score"].as_f64().unwrap(), id));
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/scores?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0].0 >= w[1].0));
    let (_, stored) = server.get("/api/v1/contacts/eve/history", &read);
    let entries = stored["entries"].as_array().unwrap();
    // A span of the history: entries whose event time is in [from, to).
    let (from, to) = ("2025-03-02T10:00:00Z", "2025-03-04T10:00:00Z");
    let (status, span) = server.get(
        &format!("/api/v1/contacts/eve/history?from={from}&to={to}"),
        &read,
    );
    assert_eq!(status, 200, "{span}");
    let times: Vec<&str> = span["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["at"].as_str().unwrap())
        .collect();
    assert_eq!(
        times,
        ["2025-03-02T10:00:00Z", "2025-03-03T10:00:00Z"],
        "{span}"
    );
    // Dates work too (midnight UTC), as on the command line.
    let (_, by_date) = server.get(
        "/api/v1/contacts/eve/history?from=2025-03-02&to=2025-03-04",
        &read,
    );
    assert_eq!(by_date, span);
    let (status, bad) = server.get("/api/v1/contacts/eve/history?from=soon", &read);
    assert_eq!(status, 400, "{bad}");
    assert!(bad["error"].as_str().unwrap().starts_with("from:"), "{bad}");
    let at_last_event = entries.last().unwrap()["new"]["score"].as_f64().unwrap();
    let eve = seen.iter().find(|(_, id)| id == "eve").unwrap().0;
    assert!(
        eve < at_last_event,
        "eve: {eve} listed, {at_last_event} at her last event"
    );
    let (_, bad) = server.get("/api/v1/scores?order=sideways", &read);
    assert!(bad["error"].as_str().unwrap().contains("order"), "{bad}");
    for cursor in ["12~ann", "x~1~ann", "1~x~ann", "1~2"] {
        let (status, bad) = server.get(&format!("/api/v1/scores?cursor={cursor}"), &read);
        assert_eq!(status, 400, "{cursor}: {bad}");
    }
    let (_, summary) = server.get("/api/v1/segments/summary", &read);
    assert!(summary["as_of"].is_string(), "{summary}");
    let binned: u64 = summary["histogram"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["contacts"].as_u64().unwrap())
        .sum();
    assert_eq!(
        binned + summary["excluded"].as_u64().unwrap(),
        5,
        "{summary}"
    );
    let (_, explained) = server.get("/api/v1/contacts/eve/explanation", &read);
    assert!(
        !explained["explanation"]["rules"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{explained}"
    );
    let (_, events) = server.get("/api/v1/contacts/eve/events?limit=3", &read);
    assert_eq!(events["events"].as_array().unwrap().len(), 3);
    assert_eq!(events["next_cursor"], 3);
    let (_, past) = server.get(
        "/api/v1/contacts/eve/score?as_of=2025-03-01T12:00:00Z",
        &read,
    );
    let (_, now) = server.get("/api/v1/contacts/eve/score", &read);
    assert_ne!(past["score"], now["score"]);
    // Models: a bad one names its place; a good one becomes version 2.
    let (status, bad) = server.text(
        "POST",
        "/api/v1/models?name=bad.toml",
        &admin,
        "[model]\nname = \"x\"\n[[fit]]\nid = \"f\"\nwhen = 'traits.a =='\npoints = 1\n",
    );
    assert_eq!(status, 422, "{bad}");
    assert!(
        bad["error"].as_str().unwrap().contains("bad.toml:5:"),
        "{bad}"
    );
    let (status, added) = server.text(
        "POST",
        "/api/v1/models?name=email.toml",
        &admin,
        include_str!("../../../../examples/email.toml"),
    );
    assert_eq!(status, 201, "{added}");
    assert_eq!(added["model"]["version"], 2);
    let (_, diff) = server.get("/api/v1/models/1/diff/2", &read);
    assert!(!diff["changes"].as_array().unwrap().is_empty(), "{diff}");
    // A dry run scores both models as of the time asked (default now).
    let email = include_str!("../../../../examples/email.toml");
    let (status, dry) = server.text(
        "POST",
        "/api/v1/models/dry-run?as_of=2031-01-01",
        &admin,
        email,
    );
    assert_eq!(status, 200, "{dry}");
    assert_eq!(dry["dry_run"]["as_of"], "2031-01-01T00:00:00Z", "{dry}");
    let (status, bad) = server.text("POST", "/api/v1/models/dry-run?as_of=soon", &admin, email);
    assert_eq!(status, 400, "{bad}");
    assert!(bad["error"].as_str().unwrap().contains("as_of"), "{bad}");
    // GDPR.
    let (_, export) = server.get("/api/v1/contacts/ann/export", &admin);
    assert_eq!(export["events"].as_array().unwrap().len(), 1);
    assert_eq!(
        server
            .request("DELETE", "/api/v1/contacts/ann", &admin, None)
            .0,
        200
    );
    assert_eq!(server.get("/api/v1/contacts/ann", &read).0, 404);
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
fn metrics_count_requests_and_messages() {
    let server = Server::start();
    for i in 0..3 {
        server.post(
            "/v1/track",
            &basic(&server.write_key),
            &track("mo", &format!("m{i}"), "A"),
        );
    }
    assert_eq!(server.get("/metrics", "").0, 401);
    let (status, text) = server.get("/metrics", &bearer(&server.read_key));
    assert_eq!(status, 200);
    let text = text.as_str().unwrap().to_string();
    assert!(
        text.contains("leadscore_http_requests_total{route=\"/v1/track\",status=\"200\"}"),
        "{text}"
    );
    assert!(
        text.contains("leadscore_messages_total{outcome=\"accepted\"}"),
        "{text}"
    );
    assert!(text.contains("leadscore_ingest_commit_seconds"), "{text}");
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

#[test]
fn outcomes_are_recorded_for_evaluation() {
    let server = Server::start();
    let key = basic(&server.write_key);
    let (status, body) = server.post("/api/v1/outcomes", &key, &json!({"outcomes": [
        {"contact_id": "ann", "outcome": "won", "value": 5000.0, "at": "2025-04-01T00:00:00+02:00"},
        {"contact_id": "ben", "outcome": "disqualified"},
        {"contact_id": "dee", "outcome": "lost", "at": "2025-05-02"},
    ]}));
    assert_eq!(
        (status, body["recorded"].clone()),
        (201, json!(3)),
        "{body}"
    );
    let (status, body) = server.post(
        "/api/v1/outcomes",
        &key,
        &json!({"outcomes": [
        {"contact_id": "cid", "outcome": "won"}, {"contact_id": "", "outcome": "won"}]}),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().starts_with("outcomes[1]"),
        "{body}"
    );
    let (status, body) = server.post(
        "/api/v1/outcomes",
        &key,
        &json!({"contact_id": "x", "outcome": "won", "at": "soon"}),
    );
    assert_eq!(status, 400, "{body}");
    let store = server.stop();
    let recorded = store.outcomes().unwrap();
    assert_eq!(recorded.len(), 3, "a rejected request stores nothing");
    assert_eq!(recorded[0].at.to_string(), "2025-03-31T22:00:00Z");
    assert_eq!(recorded[1].outcome, "disqualified");
    assert_eq!(recorded[2].at.to_string(), "2025-05-02T00:00:00Z");
}

#[test]
fn a_model_is_activated_in_the_background_while_events_keep_coming() {
    let server = Server::start();
    let admin = bearer(&server.admin_key);
    for i in 0..40 {
        let m = track(&format!("c{i}"), &format!("e{i}"), "Email Opened");
        assert_eq!(
            server.post("/v1/track", &basic(&server.write_key), &m).0,
            200
        );
    }
    let (status, added) = server.text(
        "POST",
        "/api/v1/models?name=email.toml",
        &admin,
        include_str!("../../../../examples/email.toml"),
    );
    assert_eq!(status, 201, "{added}");
    let (status, started) = server.request("POST", "/api/v1/models/2/activate", &admin, None);
    assert_eq!(status, 202, "{started}");
    let job = started["job"].as_u64().unwrap();
    // Ingestion is not blocked meanwhile.
    assert_eq!(
        server
            .post(
                "/v1/track",
                &basic(&server.write_key),
                &track("late", "l1", "Email Opened")
            )
            .0,
        200
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let finished = loop {
        let (_, state) = server.get(&format!("/api/v1/jobs/{job}"), &admin);
        if state["state"] != "running" {
            break state;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "activation still running: {state}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(finished["state"], "done", "{finished}");
    assert!(
        finished["report"]["contacts"].as_u64().unwrap() >= 40,
        "{finished}"
    );
    let (_, models) = server.get("/api/v1/models", &admin);
    assert_eq!(models["models"][1]["active"], true, "{models}");
    assert_eq!(
        server
            .request("POST", "/api/v1/models/9/activate", &admin, None)
            .0,
        404
    );
    assert_eq!(server.get("/api/v1/jobs/99", &admin).0, 404);
    let store = server.stop();
    assert_eq!(store.contact("late").unwrap().unwrap().model_version, 2);
    // The job is kept in the store: a restarted or another process answers.
    let kept = store.job(job as i64).unwrap().unwrap();
    assert_eq!(kept.state, "done");
    assert_eq!(serde_json::to_value(&kept).unwrap(), finished);
}

#[test]
fn the_openapi_description_lists_exactly_the_routes_that_exist() {
    use leadscore_server::openapi::{Access, ROUTES};
    let server = Server::start();
    server.post(
        "/v1/track",
        &basic(&server.write_key),
        &track("u", "seed", "X"),
    );
    let (status, spec) = server.get("/openapi.json", "");
    assert_eq!(status, 200);
    assert!(
        spec["openapi"].as_str().unwrap().starts_with("3."),
        "{spec}"
    );
    // JSON request bodies are described by schemas in components.
    for route in ROUTES.iter().filter(|r| r.body == Some("application/json")) {
        let reference = &spec["paths"][route.path][route.method.to_lowercase()]["requestBody"]
            ["content"]["application/json"]["schema"]["$ref"];
        let name = reference
            .as_str()
            .and_then(|r| r.strip_prefix("#/components/schemas/"))
            .unwrap_or_else(|| panic!("{} {}: no body schema", route.method, route.path));
        assert!(spec["components"]["schemas"][name].is_object(), "{name}");
    }
    let message = &spec["components"]["schemas"]["Message"]["properties"];
    for field in [
        "type",
        "userId",
        "anonymousId",
        "event",
        "timestamp",
        "messageId",
    ] {
        assert!(message[field].is_object(), "Message.{field}");
    }
    for route in ROUTES {
        let item = &spec["paths"][route.path];
        assert!(
            item[route.method.to_lowercase()].is_object(),
            "{} {} missing from the description",
            route.method,
            route.path
        );
        let id = if route.path.starts_with("/api/v1/jobs") {
            "1"
        } else {
            "u"
        };
        let path = route
            .path
            .replace("{id}", id)
            .replace("{old}", "1")
            .replace("{new}", "1")
            .replace("{version}", "1");
        let auth = match route.access {
            Access::Ingest => basic(&server.write_key),
            Access::Read | Access::Admin => bearer(&server.admin_key),
            Access::Signed | Access::Public => String::new(),
        };
        let (status, body) = if path.contains("/stream/") {
            (server.status_line(&path, &auth), Value::Null) // never ends
        } else if route.body == Some("application/json") {
            server.request(route.method, &path, &auth, Some(&json!({})))
        } else {
            server.text(route.method, &path, &auth, "")
        };
        // Unknown routes get "no such route"; a known path with another
        // method gets 405.
        let unrouted = (status == 404
            && body["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("no such route")))
            || status == 405;
        assert!(
            !unrouted,
            "{} {} is described but not routed ({status})",
            route.method, route.path
        );
        // Every status a route can answer with is described.
        if status != 500 {
            let described = route.responses.iter().any(|(code, _)| *code == status);
            assert!(
                described,
                "{} {} answered {status}, which is not described",
                route.method, route.path
            );
        }
    }
    let (status, page) = server.get("/docs", "");
    assert_eq!(status, 200);
    let page = page.as_str().unwrap().to_string();
    assert!(ROUTES
        .iter()
        .all(|r| page.contains(&r.path.replace('&', "&amp;"))));
    assert!(!page.contains("<script"), "self-contained page");
}

#[test]
fn unknown_routes_and_methods_answer_json_and_health_checks_work() {
    let server = Server::start();
    let (status, body) = server.get("/v2/nothing", "");
    assert_eq!(
        (status, body["success"].clone()),
        (404, json!(false)),
        "{body}"
    );
    let (status, body) = server.get("/v1/track", &basic(&server.write_key));
    assert_eq!(
        (status, body["success"].clone()),
        (405, json!(false)),
        "{body}"
    );
    // Rejected paths and parameters answer JSON too, and only after the
    // key is checked.
    let (read, admin) = (bearer(&server.read_key), bearer(&server.admin_key));
    for (method, path, key) in [
        ("GET", "/api/v1/scores?min=abc", &read),
        ("GET", "/api/v1/scores?limit=-1", &read),
        // A misspelt filter must not answer the unfiltered list.
        ("GET", "/api/v1/scores?teir=hot", &read),
        // So must a tier the model does not have (an empty list would read
        // as "nobody is hot").
        ("GET", "/api/v1/scores?tier=Hot", &read),
        ("GET", "/api/v1/scores?min=NaN", &read),
        ("GET", "/api/v1/scores?min=50&max=10", &read),
        (
            "GET",
            "/api/v1/contacts/u/history?form=2025-01-01T00:00:00Z",
            &read,
        ),
        ("GET", "/api/v1/contacts/u/events?cursor=x", &read),
        ("GET", "/api/v1/jobs/x", &admin),
        ("POST", "/api/v1/models/abc/activate", &admin),
        ("GET", "/api/v1/models/1/diff/x", &read),
    ] {
        let (status, body) = server.request(method, path, key, None);
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
        let (status, body) = server.request(method, path, "", None);
        assert_eq!(status, 401, "{path}: {body}");
    }
    assert_eq!(server.get("/healthz", "").1["status"], "ok");
    let (status, ready) = server.get("/readyz", "");
    assert_eq!(
        (status, ready["active_model"].clone()),
        (200, json!(1)),
        "{ready}"
    );
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
fn score_changes_are_pushed_as_server_sent_events() {
    use std::io::{BufRead, BufReader, Write};
    let server = Server::start();
    let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /api/v1/stream/scores?contact=sse-anon HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\n\r\n",
        bearer(&server.read_key)
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    while !head.ends_with("\r\n\r\n") {
        reader.read_line(&mut head).unwrap();
    }
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_lowercase()
            .contains("content-type: text/event-stream"),
        "{head}"
    );
    // Another contact's change is filtered out; this one's arrives, under
    // its canonical id once identified.
    for (user, id) in [("someone-else", "s1"), ("sse-anon", "s2")] {
        let (status, _) = server.post(
            "/v1/track",
            &basic(&server.write_key),
            &json!({"anonymousId": user, "event": "Form Submitted", "messageId": id,
                    "timestamp": "2025-03-01T10:00:00Z", "properties": {"form": "demo"}}),
        );
        assert_eq!(status, 200);
    }
    let mut event = String::new();
    let data = loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "stream ended");
        // Chunked transfer: skip chunk sizes and blank lines.
        if line.starts_with("event:") {
            event = line.trim().to_string();
        } else if let Some(data) = line.strip_prefix("data:") {
            break data.trim().to_string();
        }
    };
    assert_eq!(event, "event: score");
    let change: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(change["contact"], "sse-anon");
    assert_eq!(change["cause"], "message s2");
    assert!(change["new"]["score"].as_f64().unwrap() > 0.0, "{change}");
    // Without a key: 401.
    let (status, _) = server.get("/api/v1/stream/scores", "");
    assert_eq!(status, 401);
    // Shutting down ends the open stream instead of waiting for it.
    server.stop();
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut reader, &mut rest);
}

#[test]
fn a_challenger_is_compared_in_shadow_on_recorded_outcomes() {
    let server = Server::start();
    let admin = bearer(&server.admin_key);
    let read = bearer(&server.read_key);
    let (status, body) = server.get("/api/v1/models/compare", &read);
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("no challenger"),
        "{body}"
    );
    // A challenger that ignores form submissions.
    let source = include_str!("../../../../examples/b2b.toml")
        .replace("points = 15\ncap = 30", "points = 0")
        .replace("nth = \"1\"\npoints = 20", "nth = \"1\"\npoints = 0");
    assert_ne!(source, include_str!("../../../../examples/b2b.toml"));
    let (status, added) = server.text("POST", "/api/v1/models?name=c.toml", &admin, &source);
    assert_eq!(status, 201, "{added}");
    let version = added["model"]["version"].as_u64().unwrap();
    let no_challenger = server.get("/api/v1/contacts/c0/explanation?model=challenger", &read);
    assert_eq!(no_challenger.0, 409, "{}", no_challenger.1);
    let (status, _) = server.post(
        &format!("/api/v1/models/{version}/challenger"),
        &admin,
        &json!({}),
    );
    assert_eq!(status, 200);
    for i in 0..12 {
        let user = format!("c{i}");
        let mut events = vec![
            json!({"type": "identify", "userId": user, "messageId": format!("{user}-i"),
            "timestamp": "2025-03-01T09:00:00Z", "traits": {"consent": true}}),
        ];
        if i % 2 == 0 {
            events.push(
                json!({"type": "track", "userId": user, "event": "Form Submitted",
                "messageId": format!("{user}-f"), "timestamp": "2025-03-01T10:00:00Z",
                "properties": {"form": "demo"}}),
            );
        }
        let (status, _) = server.post(
            "/v1/batch",
            &basic(&server.write_key),
            &json!({"batch": events}),
        );
        assert_eq!(status, 200);
        let outcome = json!({"contact_id": user, "outcome": if i % 2 == 0 { "won" } else { "lost" },
            "at": "2025-04-01T00:00:00Z"});
        let (status, _) = server.post("/api/v1/outcomes", &basic(&server.write_key), &outcome);
        assert_eq!(status, 201);
    }
    // Contacts without an outcome, and one whose outcome is recorded under
    // the anonymous id its identify linked.
    let mut others: Vec<Value> = (0..6)
        .map(|i| {
            json!({"type": "track", "userId": format!("n{i}"), "event": "Form Submitted",
            "messageId": format!("n{i}-f"), "timestamp": "2025-03-02T10:00:00Z",
            "properties": {"form": "demo"}})
        })
        .collect();
    others.push(
        json!({"type": "page", "anonymousId": "anon-s", "name": "Pricing",
        "messageId": "s-p", "timestamp": "2025-03-01T08:00:00Z"}),
    );
    others.push(
        json!({"type": "identify", "userId": "s", "anonymousId": "anon-s",
        "messageId": "s-i", "timestamp": "2025-03-01T09:00:00Z", "traits": {"consent": true}}),
    );
    let (status, _) = server.post(
        "/v1/batch",
        &basic(&server.write_key),
        &json!({"batch": others}),
    );
    assert_eq!(status, 200);
    let outcome = json!({"contact_id": "anon-s", "outcome": "won", "at": "2025-04-01T00:00:00Z"});
    assert_eq!(
        server
            .post("/api/v1/outcomes", &basic(&server.write_key), &outcome)
            .0,
        201
    );
    // One contact in shadow: the challenger gives no points for the form.
    let explained = |model: &str| {
        server.get(
            &format!("/api/v1/contacts/c0/explanation?as_of=2025-03-02T00:00:00Z{model}"),
            &read,
        )
    };
    let (status, active) = explained("");
    assert_eq!(status, 200, "{active}");
    let (status, shadow) = explained("&model=challenger");
    assert_eq!(status, 200, "{shadow}");
    assert_eq!(shadow["model_version"], version);
    assert_eq!(active["model_version"].as_u64().unwrap() + 1, version);
    let score = |v: &Value| v["score"]["score"].as_f64().unwrap();
    assert!(score(&shadow) < score(&active), "{shadow} {active}");
    let (status, same) = explained(&format!("&model={}", active["model_version"]));
    assert_eq!((status, score(&same)), (200, score(&active)));
    assert_eq!(explained("&model=newest").0, 400);
    assert_eq!(explained("&model=99").0, 404);
    let (status, bad) = server.get("/api/v1/models/compare?top_share=0", &read);
    assert_eq!(status, 400, "{bad}");
    let (status, c) = server.get("/api/v1/models/compare", &read);
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["challenger"], version);
    assert_eq!(c["comparison"]["contacts"], 13);
    assert!(
        c["comparison"]["champion_auc"].as_f64().unwrap()
            > c["comparison"]["challenger_auc"].as_f64().unwrap(),
        "{c}"
    );
    assert!(
        c["comparison"]["verdict"]
            .as_str()
            .unwrap()
            .starts_with("the champion"),
        "{c}"
    );
    // The same comparison as over the whole log, as `leadscore compare`
    // computes it (the server reads only the contacts with outcomes).
    let store = server.stop();
    use leadscore_eval::evaluate::{compare, outcomes_by_contact, points, Policy, Settings};
    let recorded = store.outcomes().unwrap();
    let known = outcomes_by_contact(
        recorded
            .iter()
            .map(|o| (o.contact_id.as_str(), o.outcome.as_str(), o.at)),
        &["converted".to_string(), "won".to_string()],
    );
    let contacts = leadscore_core::batch::contacts_as_of(
        store.messages().unwrap(),
        Vec::new(),
        leadscore_store::now(),
    );
    let policy = Policy::parse("before:7d").unwrap();
    let (_, champion) = store.active_model().unwrap().unwrap();
    let (_, challenger) = store.challenger().unwrap().unwrap();
    let a = points(&champion, &contacts, &known, policy).unwrap();
    let b = points(&challenger, &contacts, &known, policy).unwrap();
    let expected = compare(&a, &b, 0.1, &Settings::default()).unwrap();
    assert_eq!(c["comparison"], serde_json::to_value(expected).unwrap());
}
