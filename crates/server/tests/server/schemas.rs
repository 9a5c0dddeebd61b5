//! Every JSON answer the OpenAPI description gives a schema to is checked
//! against it, on real answers: a field the server sends but the schema
//! does not declare, a missing required field or a wrong type fails.

use leadscore_server::openapi::{answer_schema, ROUTES};
use serde_json::{json, Value};

use crate::harness::{basic, bearer, Server};

/// Checks `value` against `schema` (the subset of JSON Schema the
/// description uses); objects with `properties` are closed unless they
/// allow `additionalProperties`. Returns where it fails.
fn check(value: &Value, schema: &Value, doc: &Value, at: &str) -> Result<(), String> {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.trim_start_matches("#/components/schemas/");
        let target = &doc["components"]["schemas"][name];
        if target.is_null() {
            return Err(format!("{at}: unresolved {reference}"));
        }
        return check(value, target, doc, at);
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(branches) = schema[key].as_array() {
            let errors: Vec<String> = branches
                .iter()
                .filter_map(|b| check(value, b, doc, at).err())
                .collect();
            if errors.len() == branches.len() {
                return Err(format!("{at}: no branch of {key} matches: {errors:?}"));
            }
        }
    }
    if let Some(all) = schema["allOf"].as_array() {
        for b in all {
            check(value, b, doc, at)?;
        }
    }
    if let Some(options) = schema["enum"].as_array() {
        if !options.contains(value) {
            return Err(format!("{at}: {value} not in {options:?}"));
        }
    }
    if !schema["const"].is_null() && schema["const"] != *value {
        return Err(format!("{at}: {value} is not {}", schema["const"]));
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !types.is_empty() {
        let fits = types.iter().any(|t| match *t {
            "null" => value.is_null(),
            "boolean" => value.is_boolean(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "string" => value.is_string(),
            "array" => value.is_array(),
            "object" => value.is_object(),
            _ => false,
        });
        if !fits {
            return Err(format!("{at}: {value} is not {types:?}"));
        }
    }
    if let (Some(min), Some(n)) = (schema["minimum"].as_f64(), value.as_f64()) {
        if n < min {
            return Err(format!("{at}: {n} < {min}"));
        }
    }
    if let Some(items) = value.as_array() {
        if schema.get("items").is_some() {
            for (i, item) in items.iter().enumerate() {
                check(item, &schema["items"], doc, &format!("{at}[{i}]"))?;
            }
        }
    }
    if let Some(object) = value.as_object() {
        for required in schema["required"].as_array().into_iter().flatten() {
            let name = required.as_str().unwrap_or_default();
            if !object.contains_key(name) {
                return Err(format!("{at}: required `{name}` missing"));
            }
        }
        let properties = schema["properties"].as_object();
        let extra = &schema["additionalProperties"];
        for (key, field) in object {
            match properties.and_then(|p| p.get(key)) {
                Some(declared) => check(field, declared, doc, &format!("{at}.{key}"))?,
                None if extra.is_object() => check(field, extra, doc, &format!("{at}.{key}"))?,
                None if properties.is_some() && extra != &json!(true) => {
                    return Err(format!("{at}: `{key}` is not declared"));
                }
                None => {}
            }
        }
    }
    Ok(())
}

#[test]
fn every_json_answer_matches_its_schema() {
    let server = Server::start();
    let (status, doc) = server.get("/openapi.json", "");
    assert_eq!(status, 200);
    let (write, admin) = (basic(&server.write_key), bearer(&server.admin_key));
    let mut checked = std::collections::BTreeSet::new();
    let mut answer = |method: &str, template: &str, path: &str, (status, body): (u16, Value)| {
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {body}"
        );
        let name = answer_schema(method, template)
            .unwrap_or_else(|| panic!("{method} {template} has no answer schema"));
        let schema = json!({"$ref": format!("#/components/schemas/{name}")});
        if let Err(e) = check(&body, &schema, &doc, name) {
            panic!("{method} {path}: {e}\n{body}");
        }
        let described = &doc["paths"][template][method.to_lowercase()]["responses"];
        assert!(
            described
                .to_string()
                .contains(&format!("#/components/schemas/{name}")),
            "{method} {template}: answer schema not referenced"
        );
        checked.insert((method.to_string(), template.to_string()));
    };
    let at = "2025-03-01T10:00:00Z";
    for (route, body) in [
        (
            "/v1/identify",
            json!({"userId": "u", "traits": {"email": "u@example.com", "consent": true}, "timestamp": at, "messageId": "i1"}),
        ),
        (
            "/v1/track",
            json!({"userId": "u", "event": "Form Submitted", "properties": {"form": "demo"}, "timestamp": at, "messageId": "t1"}),
        ),
        (
            "/v1/page",
            json!({"userId": "u", "name": "Pricing", "timestamp": at, "messageId": "p1"}),
        ),
        (
            "/v1/screen",
            json!({"userId": "u", "name": "Home", "timestamp": at, "messageId": "s1"}),
        ),
        (
            "/v1/group",
            json!({"userId": "u", "groupId": "acme", "traits": {"employees": 300}, "timestamp": at, "messageId": "g1"}),
        ),
        (
            "/v1/alias",
            json!({"userId": "u", "previousId": "anon-1", "timestamp": at, "messageId": "a1"}),
        ),
        (
            "/v1/batch",
            json!({"batch": [
                {"type": "track", "userId": "v", "event": "Form Submitted", "timestamp": at, "messageId": "b1"},
                {"type": "track", "userId": "v", "timestamp": at, "messageId": "b2"},
            ]}),
        ),
        (
            "/v1/import",
            json!({"batch": [{"type": "identify", "userId": "v", "traits": {"consent": true}, "timestamp": at, "messageId": "b3"}]}),
        ),
        // analytics.js's paths, its write key in the body.
        (
            "/v1/t",
            json!({"type": "track", "userId": "w", "event": "Signed Up", "timestamp": at, "messageId": "s-t"}),
        ),
        (
            "/v1/p",
            json!({"type": "page", "userId": "w", "name": "Home", "timestamp": at, "messageId": "s-p"}),
        ),
        (
            "/v1/s",
            json!({"type": "screen", "userId": "w", "name": "Home", "timestamp": at, "messageId": "s-s"}),
        ),
        (
            "/v1/i",
            json!({"type": "identify", "userId": "w", "traits": {}, "timestamp": at, "messageId": "s-i"}),
        ),
        (
            "/v1/g",
            json!({"type": "group", "userId": "w", "groupId": "g", "traits": {}, "timestamp": at, "messageId": "s-g"}),
        ),
        (
            "/v1/a",
            json!({"type": "alias", "userId": "w", "previousId": "old-w", "timestamp": at, "messageId": "s-a"}),
        ),
        (
            "/v1/b",
            json!({"batch": [{"type": "track", "userId": "w", "event": "A", "timestamp": at, "messageId": "s-b"}]}),
        ),
    ] {
        // analytics.js's one-letter paths: its key in the body.
        let response = if route.trim_start_matches("/v1/").len() == 1 {
            let mut body = body;
            body["writeKey"] = json!(server.write_key);
            server.post(route, "", &body)
        } else {
            server.post(route, &write, &body)
        };
        answer("POST", route, route, response);
    }
    let outcomes = json!({"outcomes": [
        {"contact_id": "u", "outcome": "won", "at": "2025-04-01T00:00:00Z"},
        {"contact_id": "v", "outcome": "lost", "at": "2025-04-01T00:00:00Z"},
    ]});
    answer(
        "POST",
        "/api/v1/outcomes",
        "/api/v1/outcomes",
        server.post("/api/v1/outcomes", &write, &outcomes),
    );
    for (template, path) in [
        ("/api/v1/contacts/{id}", "/api/v1/contacts/u"),
        (
            "/api/v1/contacts/{id}/history",
            "/api/v1/contacts/u/history",
        ),
        (
            "/api/v1/contacts/{id}/explanation",
            "/api/v1/contacts/u/explanation?as_of=2025-03-02T00:00:00Z",
        ),
        (
            "/api/v1/contacts/{id}/score",
            "/api/v1/contacts/u/score?as_of=2025-03-02T00:00:00Z",
        ),
        (
            "/api/v1/contacts/{id}/events",
            "/api/v1/contacts/u/events?limit=2",
        ),
        ("/api/v1/contacts/{id}/export", "/api/v1/contacts/u/export"),
        ("/api/v1/scores", "/api/v1/scores?limit=1"),
        ("/api/v1/segments/summary", "/api/v1/segments/summary"),
        ("/api/v1/models", "/api/v1/models"),
        ("/api/v1/firings", "/api/v1/firings"),
        ("/api/v1/outbox", "/api/v1/outbox"),
        (
            "/api/v1/campaigns/{name}/members",
            "/api/v1/campaigns/nurture/members",
        ),
    ] {
        answer("GET", template, path, server.get(path, &admin));
    }
    let source = include_str!("../../../../examples/b2b.toml")
        .replace("points = 15\ncap = 30", "points = 5\ncap = 30");
    // (method, template, path, model text for a text body) in an order that
    // builds on itself: a second version, then diff, challenger, activation.
    for (method, template, path, text) in [
        (
            "POST",
            "/api/v1/models",
            "/api/v1/models?name=c.toml",
            Some(&source),
        ),
        (
            "POST",
            "/api/v1/models/dry-run",
            "/api/v1/models/dry-run",
            Some(&source),
        ),
        (
            "GET",
            "/api/v1/models/{old}/diff/{new}",
            "/api/v1/models/1/diff/2",
            None,
        ),
        (
            "POST",
            "/api/v1/models/{version}/challenger",
            "/api/v1/models/2/challenger",
            None,
        ),
        (
            "GET",
            "/api/v1/models/compare",
            "/api/v1/models/compare",
            None,
        ),
        (
            "POST",
            "/api/v1/models/{version}/activate",
            "/api/v1/models/2/activate",
            None,
        ),
        // The job, running or done.
        ("GET", "/api/v1/jobs/{id}", "/api/v1/jobs/1", None),
        (
            "POST",
            "/api/v1/outbox/retry",
            "/api/v1/outbox/retry?all=true",
            None,
        ),
        (
            "POST",
            "/api/v1/outbox/purge",
            "/api/v1/outbox/purge?all=true",
            None,
        ),
        (
            "DELETE",
            "/api/v1/contacts/{id}",
            "/api/v1/contacts/v",
            None,
        ),
    ] {
        let answered = match (method, text) {
            (_, Some(text)) => server.text(method, path, &admin, text),
            ("POST", None) => server.post(path, &admin, &json!({})),
            (_, None) => server.request(method, path, &admin, None),
        };
        answer(method, template, path, answered);
    }
    // Every route with an answer schema was checked.
    for route in ROUTES {
        if answer_schema(route.method, route.path).is_some() {
            assert!(
                checked.contains(&(route.method.to_string(), route.path.to_string())),
                "{} {} has an answer schema but no checked answer",
                route.method,
                route.path
            );
        }
    }
}

#[test]
fn the_checker_rejects_what_it_should() {
    let doc = json!({"components": {"schemas": {"A": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}}}});
    let a = json!({"$ref": "#/components/schemas/A"});
    assert!(check(&json!({"n": 1}), &a, &doc, "A").is_ok());
    assert!(
        check(&json!({"n": 1, "extra": 2}), &a, &doc, "A").is_err(),
        "undeclared field"
    );
    assert!(
        check(&json!({}), &a, &doc, "A").is_err(),
        "missing required"
    );
    assert!(
        check(&json!({"n": "1"}), &a, &doc, "A").is_err(),
        "wrong type"
    );
    assert!(check(
        &json!([{"n": 1}, {"n": 1.5}]),
        &json!({"type": "array", "items": a}),
        &doc,
        "A"
    )
    .is_err());
}
