//! Unit tests of messages: parsing paths, errors by field, batches, canonical forms.

use super::*;
use proptest::prelude::{prop_oneof, BoxedStrategy, Just, Strategy};
use serde_json::json;

fn parse(value: Value) -> Result<Message, MessageError> {
    Message::from_json(value, None, None)
}

#[test]
fn emptiness_of_raw_objects_is_known_without_parsing() {
    let with = |text: &str| {
        LazyObject::from_raw(serde_json::value::RawValue::from_string(text.into()).unwrap())
    };
    assert!(with("{}").is_empty() && with("{ \n }").is_empty());
    let full = with(r#"{"ip": "1.2.3.4"}"#);
    assert!(!full.is_empty());
    assert!(full.parsed.get().is_none(), "not parsed to answer");
    assert!(LazyObject::default().is_empty());
    assert!(!LazyObject::from_map(Map::from_iter([("a".to_string(), Value::from(1))])).is_empty());
}

#[test]
fn stored_json_reads_back_the_same_message() {
    for value in [
        json!({"type": "track", "event": "Order Completed", "userId": "u1", "anonymousId": "a",
            "timestamp": "2024-01-01T01:00:00.123456789+01:00", "messageId": "m1",
            "properties": {"total": 12.5, "items": [1, 2]}, "context": {"ip": "1.2.3.4"}}),
        json!({"type": "identify", "userId": "u1", "timestamp": "2024-01-01T00:00:00Z",
            "traits": {"email": "x@y.z", "n": 3}}),
        json!({"type": "group", "userId": "u1", "groupId": "g", "timestamp": "2024-01-01T00:00:00Z",
            "messageId": "g1", "traits": {"employees": 300}}),
        json!({"type": "alias", "previousId": "old", "userId": "new", "timestamp": "2024-01-01T00:00:00Z"}),
        json!({"type": "page", "anonymousId": "a", "timestamp": "2024-01-01T00:00:00Z", "messageId": "p"}),
    ] {
        let m = parse(value).unwrap();
        let back = Message::from_json_text(m.stored_json().as_bytes(), None).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.stored_json(), m.stored_json());
        // Without the two members a store keeps apart, given back.
        let mut members = String::from(",\"messageId\":");
        crate::json::push_string(&mut members, &m.message_id);
        members.push_str(&format!(",\"timestamp\":\"{}\"", m.timestamp));
        let whole = m.stored_json();
        let compact = whole.replacen(&members, "", 1);
        assert_eq!(compact.len(), whole.len() - members.len());
        let (id, at) = (&m.message_id, m.timestamp);
        let names = &mut Names::default();
        assert_eq!(
            Message::from_stored_parts(&compact, id, at, names),
            Some(m.clone())
        );
        assert_eq!(Message::from_stored_parts(&whole, id, at, names), None);
        assert_eq!(Message::from_stored_parts(&compact, "", at, names), None);
    }
}

#[test]
fn track_message() {
    let m = parse(
        json!({"type": "track", "event": "Product Viewed", "userId": "u1",
        "timestamp": "2024-01-01T00:00:00Z", "messageId": "m1", "properties": {"sku": "A"}}),
    )
    .unwrap();
    assert_eq!(m.rule_name(), Some("Product Viewed"));
    assert_eq!(m.own_id(), "u1");
    assert_eq!(m.properties.get()["sku"], "A");
    assert_eq!(m.link(), None);
}

#[test]
fn page_and_alias_links() {
    let m = parse(
        json!({"type": "page", "name": "Pricing", "userId": "u1", "anonymousId": "a1",
        "timestamp": "2024-01-01T00:00:00Z", "messageId": "m1"}),
    )
    .unwrap();
    assert_eq!(m.rule_name(), Some("$page"));
    assert_eq!(m.link(), Some(("a1", "u1")));
    let a = parse(
        json!({"type": "alias", "previousId": "old", "userId": "new",
        "timestamp": "2024-01-01T00:00:00Z"}),
    )
    .unwrap();
    assert_eq!(a.link(), Some(("old", "new")));
    assert!(a.message_id.starts_with("derived-"));
}

/// The canonical text (which derived message ids hash) is `serde_json`'s
/// for this build's sorted maps, escapes included: ids derived by earlier
/// versions stay the same.
#[test]
fn canonical_text_is_serde_jsons_with_sorted_keys() {
    let value = json!({
        "z\"q": ["a\\b", "line\nbreak\u{1}", 1.5, null, true],
        "a": {"ünï": "🙂", "tab\t": {"y": "\u{7f}", "x": -2}},
        "": ""
    });
    let mut out = String::new();
    write_canonical(&value, &mut out);
    assert_eq!(out, value.to_string());
}

#[test]
fn derived_ids_ignore_key_order_and_transport_fields() {
    let a = parse(
        json!({"type": "track", "event": "X", "userId": "u", "sentAt": "1",
        "timestamp": "2024-01-01T01:00:00+01:00", "properties": {"a": 1, "b": 2}}),
    )
    .unwrap();
    let b = parse(
        json!({"properties": {"b": 2, "a": 1}, "timestamp": "2024-01-01T00:00:00Z",
        "userId": "u", "event": "X", "type": "track"}),
    )
    .unwrap();
    assert_eq!(a.message_id, b.message_id);
}

#[test]
fn fast_and_general_paths_agree() {
    let cases = [
        json!({"type": "track", "event": "A\"q", "userId": 42, "timestamp": "2024-01-01T01:00:00+01:00", "properties": {"x": [1, {"y": null}]}, "context": {"ip": "1"}}),
        json!({"type": "page", "anonymousId": "a", "originalTimestamp": "2024-01-01T00:00:00Z", "messageId": "m"}),
        json!({"type": "identify", "userId": "u", "anonymousId": "", "timestamp": "2024-01-01T00:00:00Z", "traits": {"a": 1}, "properties": {"ignored": true}}),
        json!({"type": "group", "userId": "u", "groupId": 7, "timestamp": "2024-01-01T00:00:00Z", "traits": {"n": "x"}}),
        json!({"type": "alias", "userId": "u", "previousId": "p", "timestamp": "2024-01-01T00:00:00Z"}),
        json!({"type": "track", "event": "", "userId": "u", "timestamp": "2024-01-01T00:00:00Z"}),
        json!({"type": "track", "event": "A", "userId": "u", "timestamp": "2024-01-01T00:00:00Z", "context": 3}),
        json!({"type": "screen", "userId": "u", "timestamp": "2024-01-01T00:00:00Z", "properties": []}),
    ];
    for value in cases {
        let text = value.to_string();
        assert_eq!(
            Message::from_json_text(text.as_bytes(), None),
            parse(value.clone()),
            "{text}"
        );
    }
    assert!(Message::from_json_text(b"{\"type\":", None)
        .unwrap_err()
        .message
        .starts_with("malformed JSON"));
}

/// A field's value: the right shape most of the time, else anything
/// an SDK or a hand-written client might send.
fn arb_field(good: BoxedStrategy<Value>) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        6 => good.prop_map(Some),
        1 => Just(None),
        1 => prop_oneof![
            Just(Value::Null),
            Just(json!("")),
            Just(json!(7)),
            Just(json!(-1.5e300)),
            Just(json!(true)),
            Just(json!([1, "a"])),
            Just(json!({"k": {"n": null}})),
            "[ -~]{0,6}".prop_map(Value::from),
        ]
        .prop_map(Some),
    ]
}

fn arb_text() -> BoxedStrategy<Value> {
    prop_oneof![
        "[a-z]{1,4}".prop_map(Value::from),
        Just(json!("é\"\\\u{1F600}\n")),
        Just(json!(42)),
    ]
    .boxed()
}

fn arb_time() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(json!("2024-01-01T00:00:00Z")),
        Just(json!("2024-02-29T23:59:59.123456789+05:30")),
        Just(json!("2024-01-01T00:00:00.5-08:00")),
        Just(json!("2024-01-01")),
        Just(json!("2024-13-01T00:00:00Z")),
    ]
    .boxed()
}

fn arb_object() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(json!({})),
        Just(json!({"form": "demo", "n": 3, "deep": {"a": [1, {"b": null}]}})),
        Just(json!({"plan": "pro", "email": "a@b.example"})),
    ]
    .boxed()
}

proptest::proptest! {
    /// The typed fast path over the text and the general path over the
    /// parsed value agree on every message, valid or not, in any key
    /// order: same message, or both an error (the fast path hands every
    /// case it does not take to the general one).
    #[test]
    fn the_fast_path_agrees_with_the_general_one_on_any_message(
        kind in arb_field(prop_oneof![
            Just(json!("track")), Just(json!("page")), Just(json!("screen")),
            Just(json!("identify")), Just(json!("group")), Just(json!("alias")),
            Just(json!("batch")), Just(json!("Track")),
        ].boxed()),
        fields in (
            arb_field(arb_text()), arb_field(arb_text()), arb_field(arb_text()),
            arb_field(arb_text()), arb_field(arb_text()), arb_field(arb_text()),
            arb_field(arb_time()), arb_field(arb_time()),
            arb_field(arb_object()), arb_field(arb_object()), arb_field(arb_object()),
        ),
        received in proptest::option::of(0i64..2_000_000_000),
        order in proptest::collection::vec(proptest::num::usize::ANY, 12),
    ) {
        let (user, anonymous, event, name, previous, group, timestamp, original,
             properties, traits, context) = fields;
        let keys = ["type", "userId", "anonymousId", "event", "name", "previousId",
                    "groupId", "timestamp", "originalTimestamp", "properties", "traits",
                    "context"];
        let values = [kind, user, anonymous, event, name, previous, group, timestamp,
                      original, properties, traits, context];
        let mut members: Vec<(usize, String)> = keys
            .iter()
            .zip(values)
            .enumerate()
            .filter_map(|(i, (k, v))| v.map(|v| (order[i], format!("{}:{v}", json!(k)))))
            .collect();
        members.sort();
        let text = format!(
            "{{{}}}",
            members.into_iter().map(|(_, m)| m).collect::<Vec<_>>().join(",")
        );
        let received = received.map(Timestamp::from_seconds);
        let value: Value = serde_json::from_str(&text).unwrap();
        let general = Message::from_json(value, None, received);
        let fast = Message::from_json_text(text.as_bytes(), received);
        match (&fast, &general) {
            (Ok(a), Ok(b)) => proptest::prop_assert_eq!(a, b, "{}", text),
            (Err(_), Err(_)) => {}
            _ => proptest::prop_assert!(false, "{text}\nfast {fast:?}\ngeneral {general:?}"),
        }
    }
}

#[test]
fn errors_name_the_field() {
    let cases = [
        (
            json!({"type": "track", "userId": "u", "timestamp": "2024-01-01T00:00:00Z"}),
            "event",
        ),
        (
            json!({"type": "track", "event": "X", "userId": "u"}),
            "timestamp",
        ),
        (
            json!({"type": "track", "event": "X", "userId": "u", "timestamp": "soon"}),
            "timestamp",
        ),
        (
            json!({"type": "track", "event": "X", "timestamp": "2024-01-01T00:00:00Z"}),
            "userId",
        ),
        (json!({"type": "shout", "userId": "u"}), "type"),
        (
            json!({"type": "group", "userId": "u", "timestamp": "2024-01-01T00:00:00Z"}),
            "groupId",
        ),
        (
            json!({"type": "identify", "userId": "u", "timestamp": "2024-01-01T00:00:00Z", "traits": 3}),
            "traits",
        ),
    ];
    for (value, field) in cases {
        let err = parse(value.clone()).unwrap_err();
        assert_eq!(err.field.as_deref(), Some(field), "{value}: {err}");
    }
    assert!(parse(json!([1])).unwrap_err().field.is_none());
}

#[test]
fn original_timestamp_and_received_at_fallbacks() {
    let m = parse(
        json!({"type": "identify", "userId": "u", "originalTimestamp": "2024-01-01T00:00:00Z"}),
    )
    .unwrap();
    assert_eq!(
        m.timestamp,
        Timestamp::parse("2024-01-01T00:00:00Z").unwrap()
    );
    let now = Timestamp::from_seconds(42);
    let m = Message::from_json(
        json!({"userId": "u"}),
        Some(MessageKind::Identify),
        Some(now),
    )
    .unwrap();
    assert_eq!(m.timestamp, now);
}

#[test]
fn a_batch_context_applies_to_every_item_under_its_own() {
    let batch = json!({"context": {"ip": "1.2.3.4", "locale": "de"}, "batch": [
        {"type": "track", "event": "A", "userId": "u"},
        {"type": "track", "event": "A", "userId": "u", "context": {"locale": "fr"}},
        {"type": "track", "event": "A", "userId": "u", "context": null},
    ]});
    let Value::Object(batch) = batch else {
        unreachable!()
    };
    let items = batch_items(batch).unwrap();
    assert_eq!(
        items[0]["context"],
        json!({"ip": "1.2.3.4", "locale": "de"})
    );
    assert_eq!(
        items[1]["context"],
        json!({"ip": "1.2.3.4", "locale": "fr"})
    );
    assert_eq!(
        items[2]["context"],
        json!({"ip": "1.2.3.4", "locale": "de"})
    );
    let Value::Object(bad) = json!({"batch": {}}) else {
        unreachable!()
    };
    let e = batch_items(bad).unwrap_err();
    assert_eq!(
        e.to_string(),
        "field `batch`: expected an array of messages, found an object"
    );
    let Value::Object(bad) = json!({"batch": [], "context": "x"}) else {
        unreachable!()
    };
    assert_eq!(
        batch_items(bad).unwrap_err().field.as_deref(),
        Some("context")
    );
}

/// A batch-wide `context` (merged into each message's), and anything that
/// is not `{"batch": [...]}`, are left to `batch_messages` over the JSON
/// value, which merges or reports; a null `context` is no context.
#[test]
fn batch_contexts_and_malformed_batches_are_left_to_the_value() {
    let received = Some(Timestamp::from_seconds(1_704_067_210));
    for body in [
        r#"{"context": {"ip": "1.2.3.4"}, "batch": [{"type": "track", "event": "A", "userId": "u"}]}"#,
        r#"{"context": {}, "batch": []}"#,
        r#"{"batch": {"type": "track"}}"#,
        r#"{"batch": [], "batch": []}"#,
        r#"[{"type": "track"}]"#,
        r#"{"batch": [1, 2"#,
        "{}",
    ] {
        let read = batch_from_text(body.as_bytes(), received, &mut Names::default());
        assert!(read.is_none(), "{body}");
    }
    let null_context =
        r#"{"context": null, "batch": [{"type": "track", "event": "A", "userId": "u"}]}"#;
    let read = batch_from_text(null_context.as_bytes(), received, &mut Names::default());
    let Ok(Value::Object(object)) = serde_json::from_str(null_context) else {
        unreachable!()
    };
    let tree = batch_messages(object, received).unwrap();
    assert_eq!(read.expect("no context"), tree);
    assert!(tree[0].is_ok());
}
