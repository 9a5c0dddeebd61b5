//! Whatever a client sends to the ingest routes, the server answers with a
//! JSON status it documents (never a 5xx, never a dropped connection) and
//! keeps serving: random bytes, truncated messages, JSON of any shape,
//! batches of anything, wrong content types and encodings.

use std::io::Write;

use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use serde_json::{json, Value};

use crate::harness::{basic, bearer, Server};

/// Any JSON value, a few levels deep.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,8}".prop_map(Value::from),
        prop_oneof![
            Just("track"),
            Just("identify"),
            Just("alias"),
            Just("group"),
            Just("page"),
            Just("userId"),
            Just("2024-01-01T00:00:00Z"),
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("type".to_string()),
                    Just("userId".to_string()),
                    Just("anonymousId".to_string()),
                    Just("event".to_string()),
                    Just("timestamp".to_string()),
                    Just("properties".to_string()),
                    Just("traits".to_string()),
                    Just("batch".to_string()),
                    Just("context".to_string()),
                    Just("messageId".to_string()),
                    Just("writeKey".to_string()),
                    "[a-z]{1,3}",
                ],
                inner,
                0..5,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A body as bytes and the headers it goes with.
fn arb_body() -> impl Strategy<Value = (Vec<u8>, Vec<(&'static str, &'static str)>)> {
    let valid = json!({"type": "track", "userId": "g1", "event": "Demo Requested",
                       "timestamp": "2024-01-01T00:00:00Z", "messageId": "g-1"})
    .to_string();
    let content_type = prop_oneof![
        Just(vec![]),
        Just(vec![("Content-Type", "text/plain")]),
        Just(vec![("Content-Type", "application/json; charset=utf-8")]),
        Just(vec![("Content-Type", "application/x-www-form-urlencoded")]),
        Just(vec![("Content-Encoding", "gzip")]),
        Just(vec![("Content-Encoding", "br")]),
    ];
    // Messages of the right shape with odd values, alone and in batches.
    let message = (
        prop_oneof![Just("track"), Just("identify"), Just("page"), Just("group"), Just("alias"), Just("shout")],
        "[a-c]{0,2}",
        prop_oneof![Just("2024-01-01T00:00:00Z"), Just("2024-01-01T00:00:00.123+02:00"), Just("yesterday")],
        arb_json(),
    )
        .prop_map(|(kind, id, at, extra)| {
            json!({"type": kind, "userId": id, "previousId": "p", "groupId": "g", "event": "Demo Requested",
                   "timestamp": at, "properties": extra, "traits": {"plan": "pro"}})
        })
        .boxed();
    let bytes = prop_oneof![
        3 => message.clone().prop_map(|m| m.to_string().into_bytes()),
        3 => prop::collection::vec(message, 0..6)
            .prop_map(|items| json!({"batch": items}).to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..64),
        1 => (0..valid.len()).prop_map(move |n| valid.as_bytes()[..n].to_vec()),
        1 => arb_json().prop_map(|v| v.to_string().into_bytes()),
        1 => (prop::collection::vec(arb_json(), 0..4), arb_json())
            .prop_map(|(items, context)| json!({"batch": items, "context": context}).to_string().into_bytes()),
    ];
    (bytes, content_type).prop_map(|(bytes, headers)| {
        // A gzip header gets a gzip body half of the time.
        if headers.contains(&("Content-Encoding", "gzip")) && bytes.len() % 2 == 0 {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&bytes).unwrap();
            return (gz.finish().unwrap(), headers);
        }
        (bytes, headers)
    })
}

#[test]
fn garbage_gets_a_documented_json_answer_and_the_server_keeps_serving() {
    let server = Server::start();
    let write = basic(&server.write_key);
    let paths = prop_oneof![
        Just("/v1/track"),
        Just("/v1/identify"),
        Just("/v1/alias"),
        Just("/v1/group"),
        Just("/v1/batch"),
        Just("/v1/import"),
        Just("/v1/b"),
        Just("/v1/t"),
        Just("/beacon/v1/batch"),
        Just("/api/v1/outcomes"),
    ];
    let mut runner = TestRunner::new(crate::harness::cases(512));
    let seen = std::cell::RefCell::new(std::collections::BTreeMap::new());
    runner
        .run(
            &(paths, arb_body(), prop::bool::weighted(0.8)),
            |(path, (body, headers), keyed)| {
                let auth = if keyed { write.as_str() } else { "" };
                let (status, answer) = server.raw("POST", path, auth, &body, &headers);
                *seen.borrow_mut().entry(status).or_insert(0u32) += 1;
                prop_assert!(
                    [200, 201, 400, 401, 413, 415, 422].contains(&status),
                    "{path} answered {status}: {answer}\nbody {:?}",
                    String::from_utf8_lossy(&body)
                );
                prop_assert!(answer.is_object(), "{path} {status}: not JSON: {answer}");
                if status >= 400 {
                    prop_assert!(answer["error"].is_string(), "{path} {status}: {answer}");
                }
                Ok(())
            },
        )
        .unwrap();
    // Most cases are refused, some accepted: both kinds were exercised.
    let seen = seen.into_inner();
    assert!(
        seen.keys().any(|s| *s >= 400) && seen.keys().any(|s| *s < 300),
        "{seen:?}"
    );
    eprintln!("answers: {seen:?}");
    // Still serving, and a plain event still lands.
    let event = json!({"userId": "after", "event": "Demo Requested", "messageId": "after-1"});
    assert_eq!(server.post("/v1/track", &write, &event).0, 200);
    let (status, contact) = server.get("/api/v1/contacts/after", &bearer(&server.read_key));
    assert_eq!(status, 200, "{contact}");
}
