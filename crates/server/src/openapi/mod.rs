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

fn method(m: &str) -> HttpMethod {
    match m {
        "POST" => HttpMethod::Post,
        "DELETE" => HttpMethod::Delete,
        _ => HttpMethod::Get,
    }
}

mod answers;
mod page;
mod routes;

pub use answers::answer_schema;
use answers::answer_schemas;
pub use page::page;
pub use routes::{Access, Route, ROUTES};

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
