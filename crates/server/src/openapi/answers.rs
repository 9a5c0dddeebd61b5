//! The JSON answers of the routes: which schema each 2xx answer has, and
//! the schemas themselves.

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
pub(super) fn answer_schemas() -> Vec<(String, serde_json::Value)> {
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
    let outcome = generator
        .subschema_for::<leadscore_store::Outcome>()
        .to_value();
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
                    "warnings": list(&object(json!({"index": count, "field": text, "warning": text}), &["field", "warning"])),
                }),
                &["success"],
            ),
        ),
        (
            "Recorded".into(),
            object(
                json!({"success": {"type": "boolean"}, "recorded": count, "duplicates": count, "erased": count}),
                &["success", "recorded", "duplicates", "erased"],
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
                    "outcomes": list(&outcome),
                }),
                &["contact_id", "ids", "history", "events", "outcomes"],
            ),
        ),
        (
            "Scores".into(),
            object(
                json!({
                    "as_of": timestamp,
                    "contacts": list(&object(json!({"contact_id": text, "score": score, "last_event": {"anyOf": [timestamp, {"type": "null"}]}}), &["contact_id", "score"])),
                    "next_cursor": {"type": ["string", "null"], "description": "`[r]as_of[.N]~score~id`: pass it back as `cursor` for the next page, scored as of the same time (`r`: a listing of the past, N: the server's kept copy of it)"},
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
                json!({"champion": count, "challenger": count, "comparison": free,
                       "outcomes": object(json!({
                           "converted": {"type": "object", "additionalProperties": count, "description": "each outcome value counted as converted (`positive`), with its count"},
                           "not_converted": {"type": "object", "additionalProperties": count},
                           "suspicious": {"type": "array", "items": text, "description": "values counted as not converted that hold a positive value as a word (`Closed Won`): likely to add to `positive`"},
                       }), &["converted", "not_converted", "suspicious"]),
                       "unknown_contacts": {"type": "integer", "minimum": 0, "description": "ids with a recorded outcome that no contact holds (outcomes keyed by another id?): left out"}}),
                &[
                    "champion",
                    "challenger",
                    "comparison",
                    "outcomes",
                    "unknown_contacts",
                ],
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
