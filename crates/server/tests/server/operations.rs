//! Operations: metrics, the OpenAPI description, JSON errors for unknown
//! routes and methods, health checks.

use crate::harness::{basic, bearer, Server};
use crate::track;
use serde_json::{json, Value};

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
