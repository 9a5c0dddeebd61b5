//! The server over a real socket on 127.0.0.1, one module per area:
//! ingestion as Segment's SDKs send it (`ingest`), keys on every route
//! (`auth`), the REST API (`api`), operations routes and the OpenAPI
//! description (`operations`, `schemas`), triggers and delivery
//! (`triggers`), garbage bodies (`garbage`); the server and its clients in
//! `harness`.

mod api;
mod auth;
mod garbage;
mod harness;
mod ingest;
mod listings;
mod operations;
mod schemas;
mod triggers;

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
