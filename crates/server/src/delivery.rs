//! Trigger delivery: fires due time-based triggers, then drains the outbox
//! with at-least-once semantics.
//!
//! Workers claim rows with a lease (several processes on one PostgreSQL
//! share the outbox: claims use `FOR UPDATE SKIP LOCKED`), deliver each
//! action (signed webhook, CRM update, log line) within a per-destination
//! concurrency and rate limit, and settle the results in batches: delivered,
//! retried later with exponential backoff and jitter (`backon`), or moved to
//! the dead letters after the last attempt or a permanent error. A worker
//! that dies lets its lease expire and the row is delivered again: the
//! receiver sees the same idempotency key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::BackoffBuilder;
use hmac::{Hmac, KeyInit, Mac};
use leadscore_core::time::Timestamp;
use leadscore_store::{now, Delivery, DueReport, Settle};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::StoreHandle;

/// Delivery settings.
#[derive(Clone)]
pub struct DeliveryConfig {
    /// Attempts before a delivery becomes a dead letter.
    pub max_attempts: u32,
    /// First retry delay.
    pub min_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Requests in flight per destination.
    pub concurrency: usize,
    /// Requests per second per destination (`None`: unlimited).
    pub rate: Option<f64>,
    /// Timeout of one request.
    pub timeout: Duration,
    /// How long a claimed row stays with its worker: a worker that dies
    /// leaves its claimed rows to others (or to itself restarted) after this
    /// (`LEADSCORE_DELIVERY_LEASE_SECONDS`, default 60). Longer than a batch
    /// takes, or a slow batch is delivered twice (with the same key).
    pub lease: Duration,
    /// Rows claimed at once.
    pub batch: usize,
    /// Pause when there is nothing to do.
    pub idle: Duration,
    /// Where CRM requests go and with which tokens.
    pub crm: CrmSettings,
    /// Reads webhook secrets by environment variable name (the process
    /// environment; tests inject their own).
    pub env: Env,
}

/// Looks up an environment variable.
pub type Env = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

impl std::fmt::Debug for DeliveryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryConfig")
            .field("max_attempts", &self.max_attempts)
            .field("min_backoff", &self.min_backoff)
            .field("max_backoff", &self.max_backoff)
            .field("concurrency", &self.concurrency)
            .field("rate", &self.rate)
            .field("timeout", &self.timeout)
            .field("lease", &self.lease)
            .field("batch", &self.batch)
            .field("idle", &self.idle)
            .field("crm", &self.crm)
            .finish()
    }
}

impl Default for DeliveryConfig {
    fn default() -> DeliveryConfig {
        DeliveryConfig {
            max_attempts: 8,
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(3_600),
            concurrency: 32,
            rate: Some(1_000.0),
            timeout: Duration::from_secs(10),
            lease: Duration::from_secs(
                std::env::var("LEADSCORE_DELIVERY_LEASE_SECONDS")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .filter(|s| *s > 0)
                    .unwrap_or(60),
            ),
            batch: 512,
            idle: Duration::from_millis(200),
            crm: CrmSettings::from_env(),
            env: Arc::new(|name: &str| std::env::var(name).ok()),
        }
    }
}

/// One CRM's base URL, token and id setting.
#[derive(Debug, Clone, Default)]
pub struct CrmTarget {
    /// Base URL (no trailing slash).
    pub base: String,
    /// Access token (`None`: deliveries to it fail with a clear error).
    pub token: Option<String>,
    /// HubSpot: the `idProperty` contacts are matched on; Salesforce: the
    /// sObject type. Unused for Zoho.
    pub option: String,
}

/// The three CRMs, from `LEADSCORE_{HUBSPOT,SALESFORCE,ZOHO}_{URL,TOKEN}`,
/// `LEADSCORE_HUBSPOT_ID_PROPERTY` and `LEADSCORE_SALESFORCE_OBJECT`.
#[derive(Debug, Clone, Default)]
pub struct CrmSettings {
    /// HubSpot (default <https://api.hubapi.com>, `idProperty=email`).
    pub hubspot: CrmTarget,
    /// Salesforce (no default URL: the instance URL; sObject `Lead`).
    pub salesforce: CrmTarget,
    /// Zoho CRM (default <https://www.zohoapis.com>).
    pub zoho: CrmTarget,
}

impl CrmSettings {
    /// Reads the environment.
    pub fn from_env() -> CrmSettings {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let target = |system: &str, base: &str, option: &str, option_default: &str| CrmTarget {
            base: var(&format!("LEADSCORE_{system}_URL"))
                .unwrap_or_else(|| base.to_string())
                .trim_end_matches('/')
                .to_string(),
            token: var(&format!("LEADSCORE_{system}_TOKEN")),
            option: var(option).unwrap_or_else(|| option_default.to_string()),
        };
        CrmSettings {
            hubspot: target(
                "HUBSPOT",
                "https://api.hubapi.com",
                "LEADSCORE_HUBSPOT_ID_PROPERTY",
                "email",
            ),
            salesforce: target("SALESFORCE", "", "LEADSCORE_SALESFORCE_OBJECT", "Lead"),
            zoho: target("ZOHO", "https://www.zohoapis.com", "", ""),
        }
    }
}

/// One HTTP request an action makes.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// `POST`, `PATCH`, `PUT`.
    pub method: &'static str,
    /// Full URL.
    pub url: String,
    /// Headers besides `Content-Type: application/json`.
    pub headers: Vec<(String, String)>,
    /// JSON body, exactly as sent.
    pub body: String,
}

/// Why an action cannot be attempted (a dead letter at once).
#[derive(Debug, Clone, PartialEq)]
pub struct Permanent(pub String);

/// The signature header of a webhook: `t=<unix seconds>,v1=<hex
/// HMAC-SHA256 of "<t>.<body>">` (the scheme Stripe uses).
pub fn sign_webhook(secret: &[u8], unix_seconds: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any size");
    mac.update(unix_seconds.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={unix_seconds},v1={hex}")
}

/// URL path segment escaping (ids may hold `@`, `/`, spaces).
fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The request a webhook or CRM action makes for a firing `body` (`None`
/// for `log`, which writes a log line instead).
pub fn request_for(
    action: &Value,
    body: &Value,
    crm: &CrmSettings,
    unix_seconds: i64,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Request>, Permanent> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let contact = text(&body["contact_id"]);
    let score = &body["score"];
    match action["type"].as_str() {
        Some("webhook") => {
            let payload = body.to_string();
            let mut headers = vec![(
                "Idempotency-Key".to_string(),
                text(&body["idempotency_key"]),
            )];
            if let Some(name) = action["secret_env"].as_str() {
                let secret = env(name).ok_or_else(|| {
                    Permanent(format!(
                        "webhook secret: environment variable {name} is not set"
                    ))
                })?;
                headers.push((
                    "Leadscore-Signature".to_string(),
                    sign_webhook(secret.as_bytes(), unix_seconds, &payload),
                ));
            }
            Ok(Some(Request {
                method: "POST",
                url: text(&action["url"]),
                headers,
                body: payload,
            }))
        }
        Some("crm") => {
            let system = text(&action["system"]);
            let target = match system.as_str() {
                "hubspot" => &crm.hubspot,
                "salesforce" => &crm.salesforce,
                "zoho" => &crm.zoho,
                other => return Err(Permanent(format!("unknown CRM {other:?}"))),
            };
            let upper = system.to_uppercase();
            let token = target.token.as_deref().ok_or_else(|| {
                Permanent(format!("{system}: LEADSCORE_{upper}_TOKEN is not set"))
            })?;
            if target.base.is_empty() {
                return Err(Permanent(format!(
                    "{system}: LEADSCORE_{upper}_URL is not set"
                )));
            }
            let number = score["score"].as_f64().unwrap_or_default();
            let rounded = (number * 100.0).round() / 100.0;
            let bearer = ("Authorization".to_string(), format!("Bearer {token}"));
            Ok(Some(match system.as_str() {
                // Contacts API v3: PATCH /crm/v3/objects/contacts/{id}?idProperty=…
                "hubspot" => Request {
                    method: "PATCH",
                    url: format!(
                        "{}/crm/v3/objects/contacts/{}?idProperty={}",
                        target.base,
                        segment(&contact),
                        segment(&target.option)
                    ),
                    headers: vec![bearer],
                    body: json!({"properties": {
                        "leadscore_score": rounded.to_string(),
                        "leadscore_tier": score["tier"],
                        "leadscore_grade": score["grade"],
                        "leadscore_stage": score["stage"],
                        "leadscore_trigger": body["trigger"],
                    }})
                    .to_string(),
                },
                // sObject update: PATCH /services/data/vXX.X/sobjects/Lead/{id}
                "salesforce" => Request {
                    method: "PATCH",
                    url: format!(
                        "{}/services/data/v61.0/sobjects/{}/{}",
                        target.base,
                        segment(&target.option),
                        segment(&contact)
                    ),
                    headers: vec![bearer],
                    body: json!({
                        "Leadscore_Score__c": rounded,
                        "Leadscore_Tier__c": score["tier"],
                        "Leadscore_Grade__c": score["grade"],
                        "Leadscore_Stage__c": score["stage"],
                    })
                    .to_string(),
                },
                // Zoho CRM v2: PUT /crm/v2/Leads with {"data": [{"id": …}]}
                _ => Request {
                    method: "PUT",
                    url: format!("{}/crm/v2/Leads", target.base),
                    headers: vec![(
                        "Authorization".to_string(),
                        format!("Zoho-oauthtoken {token}"),
                    )],
                    body: json!({"data": [{
                        "id": contact,
                        "Leadscore_Score": rounded,
                        "Leadscore_Tier": score["tier"],
                        "Leadscore_Grade": score["grade"],
                        "Leadscore_Stage": score["stage"],
                    }]})
                    .to_string(),
                },
            }))
        }
        Some("log") => Ok(None),
        other => Err(Permanent(format!("cannot deliver action {other:?}"))),
    }
}

/// Per-destination limits: requests in flight and requests per second.
struct Limit {
    permits: Semaphore,
    next: Mutex<Instant>,
}

/// Delivers outbox rows.
pub struct Deliverer {
    handle: StoreHandle,
    client: reqwest::Client,
    config: DeliveryConfig,
    limits: Mutex<HashMap<String, Arc<Limit>>>,
}

/// What a drain did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DrainReport {
    /// Due contacts evaluated and firings recorded.
    pub due: DueReport,
    /// Deliveries that succeeded.
    pub delivered: u64,
    /// Deliveries to try again later.
    pub retried: u64,
    /// Deliveries moved to the dead letters.
    pub dead: u64,
}

impl Deliverer {
    /// A deliverer over the store behind `handle`.
    pub fn new(handle: StoreHandle, config: DeliveryConfig) -> Result<Arc<Deliverer>, String> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .user_agent(concat!("leadscore/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Arc::new(Deliverer {
            handle,
            client,
            config,
            limits: Mutex::new(HashMap::new()),
        }))
    }

    fn limit(&self, destination: &str) -> Arc<Limit> {
        let mut limits = self.limits.lock().expect("limits lock");
        limits
            .entry(destination.to_string())
            .or_insert_with(|| {
                Arc::new(Limit {
                    permits: Semaphore::new(self.config.concurrency.max(1)),
                    next: Mutex::new(Instant::now()),
                })
            })
            .clone()
    }

    /// The delay before attempt `attempt + 1`, with jitter.
    fn backoff(&self, attempt: u32) -> Duration {
        backon::ExponentialBuilder::default()
            .with_min_delay(self.config.min_backoff)
            .with_max_delay(self.config.max_backoff)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build()
            .nth(attempt.saturating_sub(1) as usize)
            .unwrap_or(self.config.max_backoff)
    }

    /// Attempts one delivery and decides what becomes of it.
    async fn attempt(self: &Arc<Self>, delivery: &Delivery) -> Settle {
        let limit = self.limit(&delivery.destination);
        let _permit = limit.permits.acquire().await.expect("never closed");
        if let Some(rate) = self.config.rate {
            let wait = {
                let mut next = limit.next.lock().expect("rate lock");
                let at = (*next).max(Instant::now());
                *next = at + Duration::from_secs_f64(1.0 / rate);
                at
            };
            tokio::time::sleep_until(wait.into()).await;
        }
        let started = Instant::now();
        let unix = now().0 / 1_000_000_000;
        let env = |name: &str| (self.config.env)(name);
        let outcome = match request_for(
            &delivery.action,
            &delivery.body,
            &self.config.crm,
            unix,
            &env,
        ) {
            Err(Permanent(error)) => Err((false, error)),
            Ok(None) => {
                tracing::info!(
                    target: "leadscore::firing",
                    trigger = %delivery.body["trigger"].as_str().unwrap_or_default(),
                    contact = %delivery.body["contact_id"].as_str().unwrap_or_default(),
                    fired_at = %delivery.body["fired_at"].as_str().unwrap_or_default(),
                    late = delivery.body["late"].as_bool().unwrap_or_default(),
                    key = %delivery.key,
                    "trigger fired"
                );
                Ok(())
            }
            Ok(Some(request)) => self.send(request).await,
        };
        metrics::histogram!("leadscore_delivery_request_seconds")
            .record(started.elapsed().as_secs_f64());
        match outcome {
            Ok(()) => Settle::Delivered,
            Err((retryable, error)) => {
                if retryable && delivery.attempt < self.config.max_attempts {
                    let delay = self.backoff(delivery.attempt);
                    Settle::Retry {
                        at: Timestamp(now().0.saturating_add(delay.as_nanos() as i64)),
                        error,
                    }
                } else {
                    Settle::Dead { error }
                }
            }
        }
    }

    /// Sends a request: `Err((retryable, message))` on failure. 408, 429
    /// and 5xx, timeouts and connection errors are retried; other statuses
    /// are permanent.
    async fn send(&self, request: Request) -> Result<(), (bool, String)> {
        let method = reqwest::Method::from_bytes(request.method.as_bytes()).expect("known method");
        let mut builder = self
            .client
            .request(method, &request.url)
            .header("content-type", "application/json")
            .body(request.body);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        match builder.send().await {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => {
                let status = response.status();
                let retryable =
                    status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408;
                Err((retryable, format!("HTTP {}", status.as_u16())))
            }
            Err(e) => Err((true, format!("{e}"))),
        }
    }

    /// Evaluates due contacts at `now` until none is left.
    pub async fn fire_due(&self, at: Timestamp) -> Result<DueReport, String> {
        let mut total = DueReport::default();
        loop {
            let report = self
                .handle
                .call(move |store| store.fire_due(at, 1_000))
                .await
                .map_err(|_| "the store is gone".to_string())?
                .map_err(|e| e.to_string())?;
            for (trigger, n) in &report.firings_by_trigger {
                metrics::counter!("leadscore_trigger_firings_total", "trigger" => trigger.clone())
                    .increment(*n);
            }
            total.contacts += report.contacts;
            total.firings += report.firings;
            for (trigger, n) in report.firings_by_trigger {
                *total.firings_by_trigger.entry(trigger).or_default() += n;
            }
            if report.contacts < 1_000 {
                return Ok(total);
            }
        }
    }

    /// Claims one batch and delivers it; returns what became of it.
    async fn step(self: &Arc<Self>) -> Result<DrainReport, String> {
        let lease = self.config.lease.as_secs() as i64;
        let batch = self.config.batch;
        let claimed = self
            .handle
            .call(move |store| {
                let at = now();
                store.claim(
                    at,
                    at.plus(leadscore_core::time::Duration::from_seconds(lease)),
                    batch,
                )
            })
            .await
            .map_err(|_| "the store is gone".to_string())?
            .map_err(|e| e.to_string())?;
        let mut report = DrainReport::default();
        if claimed.is_empty() {
            return Ok(report);
        }
        let mut tasks = JoinSet::new();
        for delivery in claimed {
            let me = self.clone();
            tasks.spawn(async move {
                let settle = me.attempt(&delivery).await;
                (delivery.id, settle)
            });
        }
        let mut results = Vec::new();
        while let Some(done) = tasks.join_next().await {
            let (id, settle) = done.map_err(|e| format!("delivery task: {e}"))?;
            let label = match &settle {
                Settle::Delivered => {
                    report.delivered += 1;
                    "delivered"
                }
                Settle::Retry { error, .. } => {
                    report.retried += 1;
                    tracing::warn!(outbox = id, %error, "delivery failed, will retry");
                    "retry"
                }
                Settle::Dead { error } => {
                    report.dead += 1;
                    tracing::error!(outbox = id, %error, "delivery failed for good: dead letter");
                    "dead"
                }
            };
            metrics::counter!("leadscore_deliveries_total", "result" => label).increment(1);
            results.push((id, settle));
        }
        self.handle
            .call(move |store| store.settle(&results, now()))
            .await
            .map_err(|_| "the store is gone".to_string())?
            .map_err(|e| e.to_string())?;
        Ok(report)
    }

    /// Fires what is due now and delivers everything ready, until nothing
    /// is left to do now (retries scheduled later stay queued).
    pub async fn drain(self: &Arc<Self>) -> Result<DrainReport, String> {
        let mut total = DrainReport {
            due: self.fire_due(now()).await?,
            ..DrainReport::default()
        };
        loop {
            let step = self.step().await?;
            if step.delivered + step.retried + step.dead == 0 {
                return Ok(total);
            }
            total.delivered += step.delivered;
            total.retried += step.retried;
            total.dead += step.dead;
        }
    }

    /// Runs until `shutdown` turns true: fires due triggers and delivers,
    /// pausing when idle. A batch in flight is finished before it stops.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            let busy = match self.fire_due(now()).await {
                Err(e) => {
                    tracing::error!(error = %e, "evaluating due triggers failed");
                    false
                }
                Ok(_) => match self.step().await {
                    Ok(step) => step.delivered + step.retried + step.dead > 0,
                    Err(e) => {
                        tracing::error!(error = %e, "delivering failed");
                        false
                    }
                },
            };
            if !busy {
                tokio::select! {
                    _ = tokio::time::sleep(self.config.idle) => {}
                    _ = self.handle.fired() => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> Value {
        json!({
            "idempotency_key": "k1",
            "trigger": "mql",
            "contact_id": "ana@example.com",
            "fired_at": "2025-01-01T00:00:00Z",
            "late": false,
            "score": {"score": 71.456, "tier": "hot", "grade": "A", "stage": "MQL"},
        })
    }

    fn crm() -> CrmSettings {
        let target = |base: &str, option: &str| CrmTarget {
            base: base.into(),
            token: Some("tok".into()),
            option: option.into(),
        };
        CrmSettings {
            hubspot: target("http://h", "email"),
            salesforce: target("http://s", "Lead"),
            zoho: target("http://z", ""),
        }
    }

    #[test]
    fn webhook_signature_is_stripe_style_and_verifiable() {
        // Known answer: HMAC-SHA256("whsec", "1700000000.{}").
        let signed = sign_webhook(b"whsec", 1_700_000_000, "{}");
        assert!(signed.starts_with("t=1700000000,v1="), "{signed}");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"whsec").unwrap();
        mac.update(b"1700000000.{}");
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(signed, format!("t=1700000000,v1={hex}"));
        let action = json!({"type": "webhook", "url": "http://x/h", "secret_env": "S"});
        let env = |name: &str| (name == "S").then(|| "whsec".to_string());
        let r = request_for(&action, &body(), &crm(), 1_700_000_000, &env)
            .unwrap()
            .unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.headers[0], ("Idempotency-Key".into(), "k1".into()));
        assert_eq!(
            r.headers[1].1,
            sign_webhook(b"whsec", 1_700_000_000, &r.body)
        );
        let missing = request_for(&action, &body(), &crm(), 0, &|_| None).unwrap_err();
        assert!(
            missing.0.contains("environment variable S is not set"),
            "{missing:?}"
        );
    }

    #[test]
    fn crm_requests_have_each_systems_shape() {
        let env = |_: &str| None;
        let crm_request = |system: &str, settings: &CrmSettings| {
            request_for(
                &json!({"type": "crm", "system": system}),
                &body(),
                settings,
                0,
                &env,
            )
        };
        let hub = crm_request("hubspot", &crm()).unwrap().unwrap();
        assert_eq!(hub.method, "PATCH");
        assert_eq!(
            hub.url,
            "http://h/crm/v3/objects/contacts/ana%40example.com?idProperty=email"
        );
        assert_eq!(hub.headers, [("Authorization".into(), "Bearer tok".into())]);
        assert_eq!(
            serde_json::from_str::<Value>(&hub.body).unwrap(),
            json!({"properties": {"leadscore_score": "71.46", "leadscore_tier": "hot",
                "leadscore_grade": "A", "leadscore_stage": "MQL", "leadscore_trigger": "mql"}})
        );
        let sf = crm_request("salesforce", &crm()).unwrap().unwrap();
        assert_eq!(
            sf.url,
            "http://s/services/data/v61.0/sobjects/Lead/ana%40example.com"
        );
        assert_eq!(
            serde_json::from_str::<Value>(&sf.body).unwrap()["Leadscore_Score__c"],
            json!(71.46)
        );
        let zoho = crm_request("zoho", &crm()).unwrap().unwrap();
        assert_eq!(
            (zoho.method, zoho.url.as_str()),
            ("PUT", "http://z/crm/v2/Leads")
        );
        assert_eq!(zoho.headers[0].1, "Zoho-oauthtoken tok");
        assert_eq!(
            serde_json::from_str::<Value>(&zoho.body).unwrap()["data"][0]["id"],
            "ana@example.com"
        );
        let mut no_token = crm();
        no_token.zoho.token = None;
        let err = crm_request("zoho", &no_token).unwrap_err();
        assert!(err.0.contains("LEADSCORE_ZOHO_TOKEN"), "{err:?}");
        assert_eq!(
            request_for(&json!({"type": "log"}), &body(), &crm(), 0, &env),
            Ok(None)
        );
    }
}
