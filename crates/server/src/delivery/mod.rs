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
use leadscore_core::time::Timestamp;
use leadscore_store::{now, Delivery, DueReport, Settle};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::StoreHandle;

mod request;

pub use request::{request_for, sign_webhook, CrmSettings, CrmTarget, Permanent, Request};

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
mod tests;
