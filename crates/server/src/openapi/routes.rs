//! The table of every route: method, path, key, summary, parameters and
//! answers. The OpenAPI document and the docs page are generated from it.

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

/// A Segment route's answers: those given, then what every one of them may
/// answer (a body over the limit, a full queue: `max_queued_events`) and
/// the key's.
macro_rules! ingest_responses {
    ($(($code:expr, $what:expr)),* $(,)?) => {
        responses![
            $(($code, $what),)*
            (413, "body too large"),
            (503, "overloaded: nothing kept, send again after Retry-After"),
        ]
    };
}

const SHORT_RESPONSES: &[(u16, &str)] =
    ingest_responses![(200, "committed"), (400, "invalid message")];

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
        responses: ingest_responses![
            (200, "committed"),
            (400, "invalid message (names the field)")
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
        responses: ingest_responses![
            (200, "committed"),
            (400, "invalid message")
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
        responses: ingest_responses![
            (200, "committed"),
            (400, "invalid message")
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
        responses: ingest_responses![
            (200, "committed"),
            (400, "invalid message")
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
        responses: ingest_responses![
            (200, "committed"),
            (400, "invalid message")
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
        responses: ingest_responses![
            (200, "committed"),
            (400, "invalid message")
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
        responses: ingest_responses![
            (200, "committed (with per-index errors and timestamp warnings if any)"),
            (400, "no valid message")
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
        responses: ingest_responses![
            (200, "committed"),
            (400, "no valid message")
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
        summary: "Leaderboard / segment, keyset-paged, scored now (decay and inactivity applied), or as_of a past time: the contacts as they were then, from their messages up to it.",
        body: None,
        query: &[
            "tier", "grade", "stage", "status", "min", "max", "order", "limit", "cursor", "as_of",
        ],
        responses: responses![(200, "contacts and next_cursor"), (400, "bad parameter")],
    },
    Route {
        method: "GET",
        path: "/api/v1/segments/summary",
        access: Access::Read,
        tag: "scores",
        summary: "Contacts per tier x grade, excluded count, score histogram, scored now or as_of a past time (the contacts as they were then).",
        body: None,
        query: &["as_of"],
        responses: responses![(200, "summary"), (400, "bad parameter")],
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
        summary: "Impact of a candidate model (TOML body), nothing stored: both models score every contact as of the same time (as_of, default now).",
        body: Some("application/toml"),
        query: &["name", "as_of"],
        responses: responses![(200, "impact"), (400, "bad as_of"), (422, "invalid model")],
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
