//! The OpenAPI description of the server (utoipa's builders) and a
//! self-contained HTML page generated from it (no scripts, no CDN).
//!
//! One table, [`ROUTES`], describes every route; a test calls each of them
//! and fails if one answers 404, so the description cannot go stale.

use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem, PathsBuilder,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Ref, Required,
    ResponseBuilder,
};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A write key (HTTP Basic user name).
    Ingest,
    /// A read key (Bearer).
    Read,
    /// An admin key (Bearer).
    Admin,
    /// A signed link (`sig` parameter).
    Signed,
    /// Anyone.
    Public,
}

/// One route of the API.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// `GET`, `POST` or `DELETE`.
    pub method: &'static str,
    /// Path with `{parameters}`.
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// Group in the docs.
    pub tag: &'static str,
    /// What it does.
    pub summary: &'static str,
    /// Request body media type, if any.
    pub body: Option<&'static str>,
    /// Query parameters.
    pub query: &'static [&'static str],
    /// Status codes and what they mean.
    pub responses: &'static [(u16, &'static str)],
}

const AUTH: [(u16, &str); 2] = [
    (401, "no, unknown or revoked key"),
    (403, "key of another scope"),
];

macro_rules! responses {
    ($(($code:expr, $what:expr)),* $(,)?) => {
        &[$(($code, $what),)* AUTH[0], AUTH[1]]
    };
}

const SHORT_RESPONSES: &[(u16, &str)] = responses![
    (200, "committed"),
    (400, "invalid message"),
    (413, "body too large")
];

/// An analytics.js path: the message type's first letter (`b` for a batch).
const fn short(path: &'static str, summary: &'static str) -> Route {
    Route {
        method: "POST",
        path,
        access: Access::Ingest,
        tag: "ingest",
        summary,
        body: Some("application/json"),
        query: &[],
        responses: SHORT_RESPONSES,
    }
}

/// Every route the server answers.
pub const ROUTES: &[Route] = &[
    Route {
        method: "POST",
        path: "/v1/track",
        access: Access::Ingest,
        tag: "ingest",
        summary: "A Segment track call (type from the route).",
        body: Some("application/json"),
        query: &[],
        responses: responses![
            (200, "committed"),
            (400, "invalid message (names the field)"),
            (413, "body too large")
        ],
    },
    Route {
        method: "POST",
        path: "/v1/page",
        access: Access::Ingest,
        tag: "ingest",
        summary: "A Segment page call.",
        body: Some("application/json"),
        query: &[],
        responses: responses![
            (200, "committed"),
            (400, "invalid message"),
            (413, "body too large")
        ],
    },
    Route {
        method: "POST",
        path: "/v1/screen",
        access: Access::Ingest,
        tag: "ingest",
        summary: "A Segment screen call.",
        body: Some("application/json"),
        query: &[],
        responses: responses![
            (200, "committed"),
            (400, "invalid message"),
            (413, "body too large")
        ],
    },
    Route {
        method: "POST",
        path: "/v1/identify",
        access: Access::Ingest,
        tag: "ingest",
        summary: "A Segment identify call (traits).",
        body: Some("application/json"),
        query: &[],
        responses: responses![
            (200, "committed"),
            (400, "invalid message"),
            (413, "body too large")
        ],
    },
    Route {
        method: "POST",
        path: "/v1/group",
        access: Access::Ingest,
        tag: "ingest",
        summary: "A Segment group call (company traits).",
        body: Some("application/json"),
        query: &[],
        responses: responses![
            (200, "committed"),
            (400, "invalid message"),
            (413, "body too large")
        ],
    },
    Route {
        method: "POST",
        path: "/v1/alias",
        access: Access::Ingest,
        tag: "ingest",
        summary: "A Segment alias call (previousId to userId).",
        body: Some("application/json"),
        query: &[],
        responses: responses![
            (200, "committed"),
            (400, "invalid message"),
            (413, "body too large")
        ],
    },
    Route {
        method: "POST",
        path: "/v1/batch",
        access: Access::Ingest,
        tag: "ingest",
        summary: "{\"batch\": [messages]}: valid ones kept, invalid ones reported by index.",
        body: Some("application/json"),
        query: &[],
        responses: responses![
            (200, "committed (with per-index errors if any)"),
            (400, "no valid message"),
            (413, "body too large")
        ],
    },
    Route {
        method: "POST",
        path: "/v1/import",
        access: Access::Ingest,
        tag: "ingest",
        summary: "Same as /v1/batch.",
        body: Some("application/json"),
        query: &[],
        responses: responses![
            (200, "committed"),
            (400, "no valid message"),
            (413, "body too large")
        ],
    },
    short("/v1/t", "Same as /v1/track, as analytics.js calls it (its write key in the body's writeKey, text/plain)."),
    short("/v1/p", "Same as /v1/page (analytics.js)."),
    short("/v1/s", "Same as /v1/screen (analytics.js)."),
    short("/v1/i", "Same as /v1/identify (analytics.js)."),
    short("/v1/g", "Same as /v1/group (analytics.js)."),
    short("/v1/a", "Same as /v1/alias (analytics.js)."),
    short("/v1/b", "Same as /v1/batch (analytics.js's batching mode)."),
    Route {
        method: "POST",
        path: "/beacon/v1/batch",
        access: Access::Ingest,
        tag: "ingest",
        summary: "Same as /v1/batch with the write key as ?writeKey= (RudderStack's SDK with useBeacon: sendBeacon cannot set headers).",
        body: Some("application/json"),
        query: &["writeKey"],
        responses: SHORT_RESPONSES,
    },
    Route {
        method: "POST",
        path: "/api/v1/outcomes",
        access: Access::Ingest,
        tag: "outcomes",
        summary: "Sales outcomes ({contact_id, outcome, value?, at?} or {outcomes: [...]}).",
        body: Some("application/json"),
        query: &[],
        responses: responses![(201, "recorded"), (400, "invalid item (nothing stored)")],
    },
    Route {
        method: "GET",
        path: "/api/v1/contacts/{id}",
        access: Access::Read,
        tag: "contacts",
        summary: "Score now, labels, status, traits of a contact (any of its ids).",
        body: None,
        query: &[],
        responses: responses![(200, "the contact"), (404, "no such contact")],
    },
    Route {
        method: "DELETE",
        path: "/api/v1/contacts/{id}",
        access: Access::Admin,
        tag: "contacts",
        summary: "GDPR erasure: everything about the contact; its ids are tombstoned.",
        body: None,
        query: &[],
        responses: responses![(200, "erased"), (404, "no such contact")],
    },
    Route {
        method: "GET",
        path: "/api/v1/contacts/{id}/history",
        access: Access::Read,
        tag: "contacts",
        summary: "Every change of score, tier, grade, stage, status and its cause (from <= time < to).",
        body: None,
        query: &["from", "to"],
        responses: responses![(200, "entries"), (400, "bad time"), (404, "no such contact")],
    },
    Route {
        method: "GET",
        path: "/api/v1/contacts/{id}/explanation",
        access: Access::Read,
        tag: "contacts",
        summary: "Each contributing rule with its points, awards and messages, under the active model, the challenger (`model=challenger`, in shadow) or any stored version.",
        body: None,
        query: &["as_of", "model"],
        responses: responses![(200, "explanation"), (404, "no such contact")],
    },
    Route {
        method: "GET",
        path: "/api/v1/contacts/{id}/score",
        access: Access::Read,
        tag: "contacts",
        summary: "The score at any time (exact).",
        body: None,
        query: &["as_of"],
        responses: responses![(200, "score"), (404, "no such contact")],
    },
    Route {
        method: "GET",
        path: "/api/v1/contacts/{id}/events",
        access: Access::Read,
        tag: "contacts",
        summary: "The contact's events in log order, paged.",
        body: None,
        query: &["cursor", "limit"],
        responses: responses![(200, "events and next_cursor"), (404, "no such contact")],
    },
    Route {
        method: "GET",
        path: "/api/v1/contacts/{id}/export",
        access: Access::Admin,
        tag: "contacts",
        summary: "GDPR access: everything held about the contact.",
        body: None,
        query: &[],
        responses: responses![(200, "export"), (404, "no such contact")],
    },
    Route {
        method: "GET",
        path: "/api/v1/scores",
        access: Access::Read,
        tag: "scores",
        summary: "Leaderboard / segment, keyset-paged, scored now (decay and inactivity applied).",
        body: None,
        query: &[
            "tier", "grade", "stage", "status", "min", "max", "order", "limit", "cursor",
        ],
        responses: responses![(200, "contacts and next_cursor"), (400, "bad parameter")],
    },
    Route {
        method: "GET",
        path: "/api/v1/segments/summary",
        access: Access::Read,
        tag: "scores",
        summary: "Contacts per tier x grade, excluded count, score histogram, scored now.",
        body: None,
        query: &[],
        responses: responses![(200, "summary")],
    },
    Route {
        method: "GET",
        path: "/api/v1/models",
        access: Access::Read,
        tag: "models",
        summary: "Stored model versions.",
        body: None,
        query: &[],
        responses: responses![(200, "versions")],
    },
    Route {
        method: "POST",
        path: "/api/v1/models",
        access: Access::Admin,
        tag: "models",
        summary: "Validate and store a model (TOML body) as a new version.",
        body: Some("application/toml"),
        query: &["name"],
        responses: responses![
            (201, "stored"),
            (422, "invalid model (file:line:column, rule id)")
        ],
    },
    Route {
        method: "POST",
        path: "/api/v1/models/dry-run",
        access: Access::Admin,
        tag: "models",
        summary: "Impact of a candidate model (TOML body), nothing stored.",
        body: Some("application/toml"),
        query: &["name"],
        responses: responses![(200, "impact"), (422, "invalid model")],
    },
    Route {
        method: "GET",
        path: "/api/v1/models/{old}/diff/{new}",
        access: Access::Read,
        tag: "models",
        summary: "Rule-level differences between two versions.",
        body: None,
        query: &[],
        responses: responses![(200, "changes"), (404, "no such version")],
    },
    Route {
        method: "POST",
        path: "/api/v1/models/{version}/activate",
        access: Access::Admin,
        tag: "models",
        summary: "Rescore everyone under a version in the background, then switch atomically.",
        body: None,
        query: &[],
        responses: responses![(202, "job started"), (404, "no such version")],
    },
    Route {
        method: "GET",
        path: "/api/v1/jobs/{id}",
        access: Access::Admin,
        tag: "models",
        summary: "State and progress of a background job.",
        body: None,
        query: &[],
        responses: responses![(200, "job"), (404, "no such job")],
    },
    Route {
        method: "POST",
        path: "/api/v1/models/{version}/challenger",
        access: Access::Admin,
        tag: "models",
        summary: "Attach a stored version as the challenger of the active model (compared in shadow).",
        body: None,
        query: &[],
        responses: responses![(200, "attached"), (404, "no such version")],
    },
    Route {
        method: "GET",
        path: "/api/v1/models/compare",
        access: Access::Read,
        tag: "models",
        summary: "The active model against the attached challenger on recorded outcomes: AUCs, paired bootstrap intervals, verdict.",
        body: None,
        query: &["as_of_policy", "positive", "top_share"],
        responses: responses![
            (200, "comparison"),
            (400, "bad parameter"),
            (409, "no active model or no challenger attached"),
            (422, "cannot compare (e.g. outcomes of one kind only)")
        ],
    },
    Route {
        method: "GET",
        path: "/api/v1/stream/scores",
        access: Access::Read,
        tag: "contacts",
        summary: "Server-Sent Events: a `score` event per committed score change (history entry JSON); `contact` filters.",
        body: None,
        query: &["contact"],
        responses: responses![(200, "text/event-stream")],
    },
    Route {
        method: "GET",
        path: "/api/v1/firings",
        access: Access::Read,
        tag: "triggers",
        summary: "Trigger firings, oldest first (cursor: `after` = last seq).",
        body: None,
        query: &["trigger", "contact", "after", "limit"],
        responses: responses![(200, "firings"), (400, "bad parameter")],
    },
    Route {
        method: "GET",
        path: "/api/v1/outbox",
        access: Access::Admin,
        tag: "triggers",
        summary: "Outbox rows (pending, delivered, dead), newest first, and counts.",
        body: None,
        query: &["status", "limit"],
        responses: responses![(200, "rows and counts"), (400, "bad parameter")],
    },
    Route {
        method: "POST",
        path: "/api/v1/outbox/retry",
        access: Access::Admin,
        tag: "triggers",
        summary: "Puts dead letters back in the queue (`id`, or all).",
        body: None,
        query: &["id", "all"],
        responses: responses![(200, "how many"), (400, "bad parameter")],
    },
    Route {
        method: "POST",
        path: "/api/v1/outbox/purge",
        access: Access::Admin,
        tag: "triggers",
        summary: "Deletes dead letters (`id`, or all).",
        body: None,
        query: &["id", "all"],
        responses: responses![(200, "how many"), (400, "bad parameter")],
    },
    Route {
        method: "GET",
        path: "/api/v1/campaigns/{name}/members",
        access: Access::Read,
        tag: "triggers",
        summary: "Contacts enrolled in a campaign list by triggers, oldest first (for email tools to pull).",
        body: None,
        query: &["since", "limit"],
        responses: responses![(200, "members"), (400, "bad parameter")],
    },
    Route {
        method: "GET",
        path: "/t/open.gif",
        access: Access::Signed,
        tag: "email",
        summary: "Signed open pixel: records Email Opened, answers a 1x1 GIF.",
        body: None,
        query: &["u", "a", "c", "sig"],
        responses: &[
            (200, "pixel"),
            (403, "invalid signature"),
            (503, "no link secret configured"),
        ],
    },
    Route {
        method: "GET",
        path: "/t/click",
        access: Access::Signed,
        tag: "email",
        summary: "Signed click: records Email Link Clicked, redirects to url.",
        body: None,
        query: &["u", "a", "c", "url", "sig"],
        responses: &[
            (302, "redirect"),
            (400, "url is not http(s)"),
            (403, "invalid signature"),
        ],
    },
    Route {
        method: "GET",
        path: "/metrics",
        access: Access::Read,
        tag: "operations",
        summary: "Prometheus metrics.",
        body: None,
        query: &[],
        responses: responses![(200, "text exposition format")],
    },
    Route {
        method: "GET",
        path: "/openapi.json",
        access: Access::Public,
        tag: "operations",
        summary: "This description.",
        body: None,
        query: &[],
        responses: &[(200, "OpenAPI 3.1 document")],
    },
    Route {
        method: "GET",
        path: "/docs",
        access: Access::Public,
        tag: "operations",
        summary: "The API reference as a page.",
        body: None,
        query: &[],
        responses: &[(200, "HTML")],
    },
];

fn method(m: &str) -> HttpMethod {
    match m {
        "POST" => HttpMethod::Post,
        "DELETE" => HttpMethod::Delete,
        _ => HttpMethod::Get,
    }
}

/// The OpenAPI document.
pub fn spec() -> OpenApi {
    let mut paths = PathsBuilder::new();
    // Several methods may share a path: gather them into one item.
    let mut items: Vec<(&str, PathItem)> = Vec::new();
    for route in ROUTES {
        let mut op = OperationBuilder::new()
            .summary(Some(route.summary))
            .tag(route.tag)
            .operation_id(Some(format!("{} {}", route.method, route.path)));
        for name in route
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        {
            op = op.parameter(
                ParameterBuilder::new()
                    .name(name)
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True),
            );
        }
        for name in route.query {
            op = op.parameter(
                ParameterBuilder::new()
                    .name(*name)
                    .parameter_in(ParameterIn::Query)
                    .required(Required::False),
            );
        }
        if let Some(media) = route.body {
            let mut content = ContentBuilder::new();
            if let Some(name) = body_schema(route.path) {
                content = content.schema(Some(Ref::from_schema_name(name)));
            }
            op = op.request_body(Some(
                RequestBodyBuilder::new()
                    .content(media, content.build())
                    .required(Some(Required::True))
                    .build(),
            ));
        }
        for (code, what) in route.responses {
            op = op.response(
                code.to_string(),
                ResponseBuilder::new().description(*what).build(),
            );
        }
        match route.access {
            Access::Ingest => {
                op = op.security(SecurityRequirement::new("write_key", Vec::<String>::new()))
            }
            Access::Read | Access::Admin => {
                op = op.security(SecurityRequirement::new("api_key", Vec::<String>::new()))
            }
            Access::Signed | Access::Public => {}
        }
        match items.iter_mut().find(|(p, _)| *p == route.path) {
            Some((_, item)) => {
                let single = PathItem::new(method(route.method), op.build());
                item.merge_operations(single);
            }
            None => items.push((route.path, PathItem::new(method(route.method), op.build()))),
        }
    }
    for (path, item) in items {
        paths = paths.path(path, item);
    }
    let components = schemas(ComponentsBuilder::new())
        .security_scheme(
            "write_key",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
        )
        .security_scheme(
            "api_key",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        )
        .build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("leadscore")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Segment-compatible ingestion and the REST API of leadscore. Ingest routes take a write key as the HTTP Basic user name; REST routes take a read or admin key as a Bearer token.",
                )),
        )
        .paths(paths)
        .components(Some(components))
        .build()
}

/// The schema (in `components`) of a route's JSON request body.
pub fn body_schema(path: &str) -> Option<&'static str> {
    match path {
        "/v1/batch" | "/v1/import" | "/v1/b" | "/beacon/v1/batch" => Some("Batch"),
        "/api/v1/outcomes" => Some("Outcomes"),
        p if p.starts_with("/v1/") => Some("Message"),
        _ => None,
    }
}

/// JSON Schemas of the request bodies: a Segment message, a batch, outcomes.
fn schemas(components: ComponentsBuilder) -> ComponentsBuilder {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
    let text = |what: &str| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(what))
    };
    let object = |what: &str| {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(what))
    };
    let message = ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(
            "A Segment message (https://segment.com/docs/connections/spec/). Its type comes from the route for single calls; batch items carry it. userId or anonymousId is required.",
        ))
        .property(
            "type",
            text("track, page, screen, identify, group or alias (batch items)")
                .enum_values(Some(["track", "page", "screen", "identify", "group", "alias"])),
        )
        .property("userId", text("the contact's id"))
        .property("anonymousId", text("an anonymous id (linked to userId when both are given)"))
        .property("event", text("track: the event name"))
        .property("name", text("page/screen: its name"))
        .property("previousId", text("alias: the id being linked to userId"))
        .property("groupId", text("group: the company id"))
        .property("properties", object("track/page/screen properties"))
        .property("traits", object("identify/group traits (null removes a key)"))
        .property("context", object("context (informational)"))
        .property("timestamp", text("RFC 3339 with offset; default: originalTimestamp, then receipt time").format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::DateTime))))
        .property("originalTimestamp", text("RFC 3339"))
        .property("messageId", text("deduplication key (derived from the message when absent)"));
    let batch = ObjectBuilder::new()
        .schema_type(Type::Object)
        .required("batch")
        .property(
            "batch",
            ArrayBuilder::new().items(Ref::from_schema_name("Message")),
        )
        .property(
            "context",
            object("applies to every message of the batch, under its own context's keys"),
        );
    let outcome = ObjectBuilder::new()
        .schema_type(Type::Object)
        .required("contact_id")
        .required("outcome")
        .property("contact_id", text("any of the contact's ids"))
        .property(
            "outcome",
            text("converted, won, lost, disqualified, or another word"),
        )
        .property(
            "value",
            ObjectBuilder::new()
                .schema_type(Type::Number)
                .description(Some("deal value")),
        )
        .property(
            "at",
            text("RFC 3339, or a date (midnight UTC); default: now"),
        );
    let outcomes = OneOfBuilder::new()
        .item(Ref::from_schema_name("Outcome"))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .required("outcomes")
                .property(
                    "outcomes",
                    ArrayBuilder::new().items(Ref::from_schema_name("Outcome")),
                ),
        );
    components
        .schema("Message", message)
        .schema("Batch", batch)
        .schema("Outcome", outcome)
        .schema("Outcomes", outcomes)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The API reference as one HTML page (no scripts, no external assets).
pub fn page() -> String {
    let mut rows = String::new();
    let mut tag = "";
    for r in ROUTES {
        if r.tag != tag {
            tag = r.tag;
            rows += &format!("<tr><th colspan=\"4\">{}</th></tr>\n", escape(tag));
        }
        let access = match r.access {
            Access::Ingest => {
                "write key (Basic, the body's writeKey, or ?writeKey= on the beacon route)"
            }
            Access::Read => "read key",
            Access::Admin => "admin key",
            Access::Signed => "signed link",
            Access::Public => "none",
        };
        let mut params = r.query.join(", ");
        if let Some(body) = r.body {
            params = if params.is_empty() {
                format!("body: {body}")
            } else {
                format!("{params}; body: {body}")
            };
        }
        let codes: Vec<String> = r
            .responses
            .iter()
            .map(|(c, w)| format!("{c} {}", escape(w)))
            .collect();
        rows += &format!(
            "<tr><td><code>{} {}</code></td><td>{}</td><td>{}<br><small>{}</small></td><td><small>{}</small></td></tr>\n",
            r.method,
            escape(r.path),
            access,
            escape(r.summary),
            escape(&params),
            codes.join("<br>")
        );
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>leadscore API</title>\n<style>body{{font:15px system-ui,sans-serif;margin:2em;max-width:72em}}table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #ddd;padding:.4em;text-align:left;vertical-align:top}}th{{background:#f4f4f4;text-transform:capitalize}}code{{white-space:nowrap}}</style></head>\n<body><h1>leadscore API {}</h1><p>Machine-readable: <a href=\"/openapi.json\">/openapi.json</a>. Ingest routes take the write key as the HTTP Basic user name (as Segment SDKs send it); the REST API takes <code>Authorization: Bearer KEY</code>.</p>\n<table><tr><th>route</th><th>key</th><th>what</th><th>answers</th></tr>\n{rows}</table></body></html>\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// The JSON answer (2xx) of a route: a schema in `components`.
pub fn answer_schema(method: &str, path: &str) -> Option<&'static str> {
    Some(match (method, path) {
        ("POST", "/api/v1/outcomes") => "Recorded",
        ("POST", p) if p.starts_with("/v1/") => "Ingested",
        ("GET", "/api/v1/contacts/{id}") => "Contact",
        ("DELETE", "/api/v1/contacts/{id}") => "Erased",
        ("GET", "/api/v1/contacts/{id}/history") => "History",
        ("GET", "/api/v1/contacts/{id}/explanation") => "Explained",
        ("GET", "/api/v1/contacts/{id}/score") => "ScoreAt",
        ("GET", "/api/v1/contacts/{id}/events") => "Events",
        ("GET", "/api/v1/contacts/{id}/export") => "Export",
        ("GET", "/api/v1/scores") => "Scores",
        ("GET", "/api/v1/segments/summary") => "Summary",
        ("GET", "/api/v1/models") => "Models",
        ("POST", "/api/v1/models") => "AddedModel",
        ("POST", "/api/v1/models/dry-run") => "DryRunAnswer",
        ("GET", "/api/v1/models/{old}/diff/{new}") => "Diff",
        ("POST", "/api/v1/models/{version}/activate") => "JobStarted",
        ("GET", "/api/v1/jobs/{id}") => "Job",
        ("POST", "/api/v1/models/{version}/challenger") => "ChallengerAttached",
        ("GET", "/api/v1/models/compare") => "Comparison",
        ("GET", "/api/v1/firings") => "Firings",
        ("GET", "/api/v1/outbox") => "Outbox",
        ("POST", "/api/v1/outbox/retry") => "Requeued",
        ("POST", "/api/v1/outbox/purge") => "Purged",
        ("GET", "/api/v1/campaigns/{name}/members") => "Members",
        _ => return None,
    })
}

/// JSON Schemas of the answers: the stored types' schemas are generated
/// from the types (schemars); the envelopes around them are written here,
/// and a test checks every route's real answer against its schema.
fn answer_schemas() -> Vec<(String, serde_json::Value)> {
    use leadscore_core::score::{Explanation, Score};
    use leadscore_core::time::Timestamp;
    use leadscore_store::{
        CampaignMember, ContactRecord, DryRun, EraseReport, FiringRecord, LedgerEntry,
        ModelVersion, OutboxCounts, OutboxRecord, RuleChange,
    };
    use schemars::generate::SchemaSettings;
    use serde_json::json;
    let mut generator = SchemaSettings::draft2020_12()
        .with(|s| s.definitions_path = "/components/schemas".into())
        .into_generator();
    let score = generator.subschema_for::<Score>().to_value();
    let explanation = generator.subschema_for::<Explanation>().to_value();
    let timestamp = generator.subschema_for::<Timestamp>().to_value();
    let ledger = generator.subschema_for::<LedgerEntry>().to_value();
    let model = generator.subschema_for::<ModelVersion>().to_value();
    let record = generator.subschema_for::<ContactRecord>().to_value();
    let erased = generator.subschema_for::<EraseReport>().to_value();
    let dry_run = generator.subschema_for::<DryRun>().to_value();
    let change = generator.subschema_for::<RuleChange>().to_value();
    let firing = generator.subschema_for::<FiringRecord>().to_value();
    let job = generator.subschema_for::<leadscore_store::Job>().to_value();
    let outbox = generator.subschema_for::<OutboxRecord>().to_value();
    let counts = generator.subschema_for::<OutboxCounts>().to_value();
    let member = generator.subschema_for::<CampaignMember>().to_value();
    let object = |properties: serde_json::Value, required: &[&str]| json!({"type": "object", "properties": properties, "required": required});
    let list = |items: &serde_json::Value| json!({"type": "array", "items": items});
    // An answer with one (required) field.
    let one = |field: &str, schema: serde_json::Value| {
        let mut properties = serde_json::Map::new();
        properties.insert(field.to_string(), schema);
        object(serde_json::Value::Object(properties), &[field])
    };
    let text = json!({"type": "string"});
    let count = json!({"type": "integer", "minimum": 0});
    let number = json!({"type": "number"});
    let cursor = json!({"type": ["integer", "null"], "minimum": 0, "description": "pass as `cursor` for the next page; null on the last"});
    let free = json!({"type": "object", "description": "see docs/server.md"});
    let mut out: Vec<(String, serde_json::Value)> = vec![
        (
            "Ingested".into(),
            object(
                json!({
                    "success": {"type": "boolean"},
                    "accepted": count,
                    "errors": list(&object(json!({"index": count, "field": {"type": ["string", "null"]}, "error": text}), &["index", "error"])),
                }),
                &["success"],
            ),
        ),
        (
            "Recorded".into(),
            object(
                json!({"success": {"type": "boolean"}, "recorded": count}),
                &["success", "recorded"],
            ),
        ),
        (
            "Contact".into(),
            object(
                json!({
                    "contact_id": text, "as_of": timestamp, "score": number, "raw": number, "fit": number,
                    "engagement": number, "tier": text, "grade": text, "stage": text,
                    "status": {"enum": ["active", "excluded"]}, "reasons": list(&text),
                    "last_event": {"anyOf": [timestamp, {"type": "null"}]},
                    "traits": {"type": ["object", "null"]}, "company": {"type": ["object", "null"]},
                }),
                &["contact_id", "as_of", "score", "tier", "status"],
            ),
        ),
        (
            "Erased".into(),
            object(
                json!({"success": {"type": "boolean"}, "erased": erased}),
                &["success", "erased"],
            ),
        ),
        ("History".into(), one("entries", list(&ledger))),
        (
            "Explained".into(),
            object(
                json!({
                    "contact_id": text, "as_of": timestamp, "model_version": count,
                    "score": score, "explanation": explanation,
                }),
                &[
                    "contact_id",
                    "as_of",
                    "model_version",
                    "score",
                    "explanation",
                ],
            ),
        ),
        (
            "ScoreAt".into(),
            object(
                json!({"contact_id": text, "as_of": timestamp, "score": score}),
                &["contact_id", "as_of", "score"],
            ),
        ),
        (
            "Events".into(),
            object(
                json!({
                    "contact_id": text, "events": list(&json!({"type": "object", "description": "a stored Segment message"})),
                    "next_cursor": cursor,
                }),
                &["contact_id", "events"],
            ),
        ),
        (
            "Export".into(),
            object(
                json!({
                    "contact_id": text, "ids": list(&text),
                    "record": {"anyOf": [record, {"type": "null"}]},
                    "history": list(&ledger), "events": list(&json!({"type": "object"})),
                }),
                &["contact_id", "ids", "history", "events"],
            ),
        ),
        (
            "Scores".into(),
            object(
                json!({
                    "as_of": timestamp,
                    "contacts": list(&object(json!({"contact_id": text, "score": score, "last_event": {"anyOf": [timestamp, {"type": "null"}]}}), &["contact_id", "score"])),
                    "next_cursor": {"type": ["string", "null"], "description": "`as_of~score~id`: pass it back as `cursor` for the next page, scored as of the same time"},
                }),
                &["as_of", "contacts"],
            ),
        ),
        (
            "Summary".into(),
            object(
                json!({
                    "as_of": timestamp, "contacts": count, "excluded": count,
                    "tier_grade": list(&object(json!({"tier": text, "grade": text, "contacts": count}), &["tier", "grade", "contacts"])),
                    "histogram": list(&object(json!({"from": number, "to": number, "contacts": count}), &["from", "to", "contacts"])),
                }),
                &["as_of", "contacts", "tier_grade", "histogram"],
            ),
        ),
        ("Models".into(), one("models", list(&model))),
        ("AddedModel".into(), one("model", model)),
        ("DryRunAnswer".into(), one("dry_run", dry_run)),
        (
            "Diff".into(),
            object(
                json!({"old": count, "new": count, "changes": list(&change)}),
                &["old", "new", "changes"],
            ),
        ),
        (
            "JobStarted".into(),
            object(json!({"job": count, "status": text}), &["job", "status"]),
        ),
        ("Job".into(), job),
        (
            "ChallengerAttached".into(),
            one("challenger", count.clone()),
        ),
        (
            "Comparison".into(),
            object(
                json!({"champion": count, "challenger": count, "comparison": free}),
                &["champion", "challenger", "comparison"],
            ),
        ),
        (
            "Firings".into(),
            object(
                json!({"firings": list(&firing), "next_after": {"type": ["integer", "null"]}}),
                &["firings"],
            ),
        ),
        (
            "Outbox".into(),
            object(
                json!({"rows": list(&outbox), "counts": counts}),
                &["rows", "counts"],
            ),
        ),
        ("Requeued".into(), one("requeued", count.clone())),
        ("Purged".into(), one("purged", count.clone())),
        (
            "Members".into(),
            object(
                json!({
                    "campaign": text, "members": list(&member), "next_since": {"type": ["integer", "null"]},
                }),
                &["campaign", "members"],
            ),
        ),
    ];
    for (name, schema) in generator.take_definitions(true) {
        out.push((name, schema));
    }
    out
}

/// The OpenAPI document as served: [`spec`] with the answers' schemas.
pub fn document() -> serde_json::Value {
    let mut doc = serde_json::to_value(spec()).expect("the description serialises");
    let schemas = &mut doc["components"]["schemas"];
    for (name, schema) in answer_schemas() {
        schemas[name] = schema;
    }
    for route in ROUTES {
        let Some(name) = answer_schema(route.method, route.path) else {
            continue;
        };
        let method = route.method.to_lowercase();
        let responses = &mut doc["paths"][route.path][method.as_str()]["responses"];
        let Some((code, _)) = route.responses.iter().find(|(c, _)| (200..300).contains(c)) else {
            continue;
        };
        responses[code.to_string()]["content"] = serde_json::json!({
            "application/json": {"schema": {"$ref": format!("#/components/schemas/{name}")}}
        });
    }
    doc
}
