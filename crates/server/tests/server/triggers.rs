//! Triggers end to end: an event crosses a threshold, the server records
//! the firing with the score change and delivers every action to a local
//! receiver with the exact requests each system expects; failures are
//! retried with backoff, then buried, then replayed on request.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use leadscore_server::delivery::{sign_webhook, CrmSettings, CrmTarget, DeliveryConfig};
use serde_json::{json, Value};

use crate::harness::{basic, bearer, Server};

/// A request the receiver got.
#[derive(Debug, Clone)]
struct Got {
    method: String,
    uri: String,
    headers: HeaderMap,
    body: String,
}

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Got>>>,
    /// `/flaky` answers 500 while set.
    failing: Arc<AtomicBool>,
}

async fn receive(
    State(r): State<Receiver>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    r.got.lock().unwrap().push(Got {
        method: method.to_string(),
        uri: uri.to_string(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    if uri.path() == "/flaky" && r.failing.load(Ordering::SeqCst) {
        // First 429, then a response slower than the client's timeout,
        // then 500s: all retried.
        let attempts = r
            .got
            .lock()
            .unwrap()
            .iter()
            .filter(|g| g.uri == "/flaky")
            .count();
        return match attempts {
            1 => StatusCode::TOO_MANY_REQUESTS,
            2 => {
                tokio::time::sleep(Duration::from_millis(1_500)).await;
                StatusCode::NO_CONTENT
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
    }
    if uri.path() == "/rejects" {
        return StatusCode::BAD_REQUEST;
    }
    StatusCode::NO_CONTENT
}

/// A receiver on 127.0.0.1 in its own thread.
fn receiver() -> (Receiver, SocketAddr) {
    let r = Receiver::default();
    r.failing.store(true, Ordering::SeqCst);
    let state = r.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let app = axum::Router::new().fallback(receive).with_state(state);
            axum::serve(listener, app).await.unwrap();
        });
    });
    (r, rx.recv().unwrap())
}

impl Receiver {
    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `done` holds for what was received.
    fn wait(&self, what: &str, done: impl Fn(&[Got]) -> bool) -> Vec<Got> {
        let start = Instant::now();
        loop {
            let got = self.got();
            if done(&got) {
                return got;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "timed out waiting for {what}: {got:#?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn model(at: SocketAddr) -> String {
    format!(
        r#"
[model]
name = "handoff"
[[engagement]]
id = "demo"
event = "Demo Requested"
points = 40
[[tier]]
name = "hot"
min = 30
[[trigger]]
id = "sales-handoff"
when = 'score >= 30'
actions = [
  {{ type = "webhook", url = "http://{at}/hooks/mql", secret_env = "HOOK_SECRET" }},
  {{ type = "crm", system = "hubspot" }},
  {{ type = "crm", system = "salesforce" }},
  {{ type = "crm", system = "zoho" }},
  {{ type = "campaign", campaign = "sales" }},
]
[[trigger]]
id = "flaky"
when = 'score >= 30'
actions = [{{ type = "webhook", url = "http://{at}/flaky" }}]
[[trigger]]
id = "rejected"
when = 'score >= 30'
actions = [{{ type = "webhook", url = "http://{at}/rejects" }}]
"#
    )
}

fn config(at: SocketAddr) -> DeliveryConfig {
    let target = |path: &str, option: &str| CrmTarget {
        base: format!("http://{at}{path}"),
        token: Some("crm-token".into()),
        option: option.into(),
    };
    DeliveryConfig {
        max_attempts: 4,
        timeout: Duration::from_millis(500),
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        idle: Duration::from_millis(20),
        crm: CrmSettings {
            hubspot: target("/hubspot", "email"),
            salesforce: target("/salesforce", "Lead"),
            zoho: target("/zoho", ""),
        },
        env: Arc::new(|name: &str| (name == "HOOK_SECRET").then(|| "whsec_test".to_string())),
        ..DeliveryConfig::default()
    }
}

#[test]
fn a_crossing_is_delivered_to_every_action_with_the_exact_requests() {
    let (receiver, at) = receiver();
    let server = Server::start_delivering(&model(at), config(at));
    let now = leadscore_store::now().to_string();
    let event = json!({"userId": "ana@example.com", "event": "Demo Requested",
        "messageId": "d1", "timestamp": now});
    let (status, _) = server.post("/v1/track", &basic(&server.write_key), &event);
    assert_eq!(status, 200);
    let got = receiver.wait("the webhook and the three CRM updates", |got| {
        ["/hooks/mql", "/hubspot/", "/salesforce/", "/zoho/"]
            .iter()
            .all(|p| got.iter().any(|g| g.uri.starts_with(p)))
    });
    let find = |prefix: &str| {
        got.iter()
            .find(|g| g.uri.starts_with(prefix))
            .unwrap()
            .clone()
    };

    // The webhook: JSON firing, idempotency key, Stripe-style signature.
    let hook = find("/hooks/mql");
    assert_eq!(hook.method, "POST");
    let body: Value = serde_json::from_str(&hook.body).unwrap();
    assert_eq!(body["trigger"], "sales-handoff");
    assert_eq!(body["contact_id"], "ana@example.com");
    assert_eq!(body["score"]["score"], 40.0);
    assert_eq!(body["score"]["tier"], "hot");
    assert_eq!(body["late"], false);
    assert_eq!(body["explanation"]["rules"][0]["id"], "demo");
    let key = body["idempotency_key"].as_str().unwrap();
    assert_eq!(hook.headers["idempotency-key"], key);
    let signature = hook.headers["leadscore-signature"].to_str().unwrap();
    let t: i64 = signature[2..signature.find(',').unwrap()].parse().unwrap();
    assert_eq!(signature, sign_webhook(b"whsec_test", t, &hook.body));

    // HubSpot contacts v3, Salesforce sObject, Zoho v2 shapes.
    let hubspot = find("/hubspot/");
    assert_eq!(hubspot.method, "PATCH");
    assert_eq!(
        hubspot.uri,
        "/hubspot/crm/v3/objects/contacts/ana%40example.com?idProperty=email"
    );
    assert_eq!(hubspot.headers["authorization"], "Bearer crm-token");
    assert_eq!(
        serde_json::from_str::<Value>(&hubspot.body).unwrap(),
        json!({"properties": {"leadscore_score": "40", "leadscore_tier": "hot",
            "leadscore_grade": "", "leadscore_stage": "", "leadscore_trigger": "sales-handoff"}})
    );
    let salesforce = find("/salesforce/");
    assert_eq!(
        (salesforce.method.as_str(), salesforce.uri.as_str()),
        (
            "PATCH",
            "/salesforce/services/data/v61.0/sobjects/Lead/ana%40example.com"
        )
    );
    assert_eq!(
        serde_json::from_str::<Value>(&salesforce.body).unwrap()["Leadscore_Score__c"],
        40.0
    );
    let zoho = find("/zoho/");
    assert_eq!(
        (zoho.method.as_str(), zoho.uri.as_str()),
        ("PUT", "/zoho/crm/v2/Leads")
    );
    assert_eq!(zoho.headers["authorization"], "Zoho-oauthtoken crm-token");

    // The campaign list and the firing are readable.
    let (status, members) =
        server.get("/api/v1/campaigns/sales/members", &bearer(&server.read_key));
    assert_eq!(status, 200, "{members}");
    assert_eq!(members["members"][0]["contact"], "ana@example.com");
    let (_, firings) = server.get(
        "/api/v1/firings?trigger=sales-handoff&contact=ana@example.com",
        &bearer(&server.read_key),
    );
    assert_eq!(firings["firings"][0]["key"], key);

    // 429, a timeout and 500s are retried with backoff, then buried after
    // max_attempts (4); a 400 is buried at once.
    let flaky = receiver.wait("four attempts at /flaky", |got| {
        got.iter().filter(|g| g.uri == "/flaky").count() >= 4
    });
    let attempts: Vec<&Got> = flaky.iter().filter(|g| g.uri == "/flaky").collect();
    let keys: Vec<_> = attempts
        .iter()
        .map(|g| g.headers["idempotency-key"].clone())
        .collect();
    assert!(
        keys.windows(2).all(|w| w[0] == w[1]),
        "one key for every attempt"
    );
    let outbox = |server: &Server| {
        server
            .get("/api/v1/outbox?status=dead", &bearer(&server.admin_key))
            .1
    };
    let start = Instant::now();
    while outbox(&server)["counts"]["dead"] != 2 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{}",
            outbox(&server)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let dead = outbox(&server);
    let rows = dead["rows"].as_array().unwrap();
    let errors: Vec<&str> = rows
        .iter()
        .map(|r| r["last_error"].as_str().unwrap())
        .collect();
    assert!(
        errors.contains(&"HTTP 500") && errors.contains(&"HTTP 400"),
        "{dead}"
    );
    assert_eq!(
        receiver
            .got()
            .iter()
            .filter(|g| g.uri == "/rejects")
            .count(),
        1,
        "a permanent error is not retried"
    );

    // Replay: the receiver is fixed, the dead letters are retried.
    receiver.failing.store(false, Ordering::SeqCst);
    let flaky_id = rows
        .iter()
        .find(|r| r["destination"].as_str().unwrap().ends_with("/flaky"))
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let (status, retried) = server.post(
        &format!("/api/v1/outbox/retry?id={flaky_id}"),
        &bearer(&server.admin_key),
        &json!({}),
    );
    assert_eq!((status, retried["requeued"].clone()), (200, json!(1)));
    receiver.wait("the replayed delivery", |got| {
        got.iter().filter(|g| g.uri == "/flaky").count() >= 5
    });
    let start = Instant::now();
    while outbox(&server)["counts"]["dead"] != 1 {
        assert!(start.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(20));
    }
    // Without id or all, nothing is purged.
    for bad in ["/api/v1/outbox/purge", "/api/v1/outbox/purge?id=1&all=true"] {
        let (status, refused) = server.post(bad, &bearer(&server.admin_key), &json!({}));
        assert_eq!(status, 400, "{bad}: {refused}");
    }
    assert_eq!(outbox(&server)["counts"]["dead"], 1);
    let (status, purged) = server.post(
        "/api/v1/outbox/purge?all=true",
        &bearer(&server.admin_key),
        &json!({}),
    );
    assert_eq!((status, purged["purged"].clone()), (200, json!(1)));
    // Nothing was delivered twice: one request per action for "ana".
    assert_eq!(
        receiver
            .got()
            .iter()
            .filter(|g| g.uri == "/hooks/mql")
            .count(),
        1
    );
    server.stop();
}
