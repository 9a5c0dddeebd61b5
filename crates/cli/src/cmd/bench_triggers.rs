//! `leadscore bench --triggers`: the trigger engine's figures.
//!
//! 1. Due times at scale: stores of growing size where every contact has a
//!    time-based trigger pending; the cost of a scheduler pass with nothing
//!    due and of firing 1,000 due contacts, per store size.
//! 2. Webhook delivery throughput to a local receiver, against the same
//!    HTTP client posting the same bodies without the outbox (baseline).
//! 3. Event → webhook latency through `leadscore serve`'s code: from the
//!    ingest request's acknowledgement to the receiver getting the webhook.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use leadscore_core::event::Message;
use leadscore_core::time::Timestamp;
use leadscore_server::delivery::{Deliverer, DeliveryConfig};
use leadscore_server::StoreHandle;
use leadscore_store::{Admin as _, Outbox as _};
use leadscore_store::{Incoming, SqliteStore, Store};
use serde_json::{json, Value};

const DAY: i64 = 86_400;
const T0: i64 = 1_735_689_600; // 2025-01-01

fn due_model(receiver: SocketAddr) -> String {
    format!(
        r#"
[model]
name = "bench-triggers"
[[engagement]]
id = "view"
event = "Product Viewed"
points = 1
[[engagement]]
id = "demo"
event = "Demo Requested"
points = 40
[[trigger]]
id = "reactivation"
when = 'days_since("Product Viewed") >= 182'
actions = [{{ type = "log" }}]
[[trigger]]
id = "handoff"
when = 'score >= 30'
actions = [{{ type = "webhook", url = "http://{receiver}/hook" }}]
"#
    )
}

fn event(user: &str, name: &str, at: i64, id: &str) -> Incoming {
    let value = json!({"type": "track", "userId": user, "event": name,
        "timestamp": Timestamp::from_seconds(at).to_string(), "messageId": id});
    Incoming::new(Message::from_json(value, None, None).expect("a valid message"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub(super) fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Sends one Segment `track` call with a write key; an answer other than
/// 2xx is an error naming `what`.
pub(super) async fn post_track(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    body: &Value,
    what: &str,
) -> Result<()> {
    let response = client
        .post(format!("{base}/v1/track"))
        .basic_auth(key, Some(""))
        .json(body)
        .send()
        .await?;
    anyhow::ensure!(
        response.status().is_success(),
        "{what}: {}",
        response.status()
    );
    Ok(())
}

/// Adds `examples/b2b.toml` to a store and activates it; its version.
pub(super) fn activate_b2b(store: &mut dyn Store) -> Result<u32> {
    let version = store
        .add_model(
            "examples/b2b.toml",
            include_str!("../../../../examples/b2b.toml"),
        )?
        .version;
    store.activate(version, &mut |_, _| {})?;
    Ok(version)
}

/// When each request reached the receiver.
type Arrivals = Arc<std::sync::Mutex<Vec<Instant>>>;

/// A receiver on 127.0.0.1 counting requests, in its own runtime thread.
fn receiver() -> Result<(SocketAddr, Arc<AtomicU64>, Arrivals)> {
    let count = Arc::new(AtomicU64::new(0));
    let times = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (c, t) = (count.clone(), times.clone());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind 127.0.0.1");
            let _ = tx.send(listener.local_addr().expect("an address"));
            let app = axum::Router::new().fallback(move || {
                let (c, t) = (c.clone(), t.clone());
                async move {
                    c.fetch_add(1, Ordering::Relaxed);
                    t.lock().expect("times").push(Instant::now());
                    axum::http::StatusCode::NO_CONTENT
                }
            });
            let _ = axum::serve(listener, app).await;
        });
    });
    Ok((
        rx.recv().context("the receiver did not start")?,
        count,
        times,
    ))
}

pub fn run(max_contacts: u64, out: Option<&Path>) -> Result<ExitCode> {
    let dir = tempfile::tempdir()?;
    let (addr, received, times) = receiver()?;
    let model = due_model(addr);
    let mut figures = serde_json::Map::new();

    // 1. Due times at scale.
    let mut sizes = vec![10_000u64, 100_000, 1_000_000];
    sizes.retain(|n| *n <= max_contacts.max(10_000));
    let mut scaling = Vec::new();
    for &n in &sizes {
        let path = dir.path().join(format!("due-{n}.db"));
        let mut store = SqliteStore::open(&path)?;
        let v = store.add_model("bench.toml", &model)?.version;
        store.activate(v, &mut |_, _| {})?;
        let started = Instant::now();
        for chunk in (0..n).collect::<Vec<_>>().chunks(20_000) {
            let batch = chunk
                .iter()
                .map(|i| {
                    let at = T0 + (*i as i64 % DAY);
                    event(&format!("c{i:07}"), "Product Viewed", at, &format!("v{i}"))
                })
                .collect();
            store.ingest(batch)?;
        }
        let import = started.elapsed().as_secs_f64();
        // Nothing due: a pass of the scheduler 100 days later.
        let idle: Vec<f64> = (0..200)
            .map(|k| {
                let t = Timestamp::from_seconds(T0 + 100 * DAY + k);
                let s = Instant::now();
                let report = store.fire_due(t, 1_000).expect("fire_due");
                assert_eq!(report.contacts, 0);
                s.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        // 1,000 contacts due (their 182 days passed in the first 1,000 s).
        let t = Timestamp::from_seconds(T0 + 182 * DAY + 999);
        let s = Instant::now();
        let report = store.fire_due(t, 10_000)?;
        let due_ms = s.elapsed().as_secs_f64() * 1e3;
        let firings = report.firings;
        let idle_us = median(idle);
        eprintln!(
            "{n:>9} contacts pending: import {import:.1} s; scheduler pass with none due {idle_us:.1} µs; \
             {} due contacts fired in {due_ms:.1} ms ({firings} firings)",
            report.contacts
        );
        scaling.push(json!({
            "contacts_pending": n,
            "import_seconds": import,
            "idle_pass_us_median": idle_us,
            "due_contacts": report.contacts,
            "due_firings": firings,
            "due_pass_ms": due_ms,
            "due_us_per_contact": due_ms * 1e3 / report.contacts.max(1) as f64,
        }));
        drop(store);
        let _ = std::fs::remove_file(&path);
    }
    figures.insert("due_scaling".into(), Value::Array(scaling));

    // 2. Delivery throughput: N firings with a webhook each.
    let deliveries = 20_000u64;
    let path = dir.path().join("deliver.db");
    let mut store = SqliteStore::open(&path)?;
    let v = store.add_model("bench.toml", &model)?.version;
    store.activate(v, &mut |_, _| {})?;
    let now = leadscore_store::now().0 / 1_000_000_000;
    for chunk in (0..deliveries).collect::<Vec<_>>().chunks(5_000) {
        let batch = chunk
            .iter()
            .map(|i| event(&format!("d{i:07}"), "Demo Requested", now, &format!("d{i}")))
            .collect();
        store.ingest(batch)?;
    }
    let pending = store.outbox_counts()?.pending;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let config = DeliveryConfig {
        concurrency: 64,
        rate: None,
        batch: 2_000,
        ..DeliveryConfig::default()
    };
    // Baseline: the same client posting the same number of bodies.
    let baseline = runtime.block_on(async {
        let client = reqwest::Client::new();
        let url = format!("http://{addr}/hook");
        let body = json!({"idempotency_key": "x", "trigger": "handoff", "score": {"score": 40.0}})
            .to_string();
        let started = Instant::now();
        let limit = Arc::new(tokio::sync::Semaphore::new(64));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..pending {
            let permit = limit.clone().acquire_owned().await.expect("open");
            let (client, url, body) = (client.clone(), url.clone(), body.clone());
            tasks.spawn(async move {
                let _ = client.post(&url).body(body).send().await;
                drop(permit);
            });
        }
        while tasks.join_next().await.is_some() {}
        pending as f64 / started.elapsed().as_secs_f64()
    });
    let before = received.load(Ordering::Relaxed);
    let (rate, report) = runtime.block_on(async move {
        let (handle, worker) = StoreHandle::start(Box::new(store));
        let deliverer = Deliverer::new(handle, config).map_err(anyhow::Error::msg)?;
        let started = Instant::now();
        let report = deliverer.drain().await.map_err(anyhow::Error::msg)?;
        let rate = report.delivered as f64 / started.elapsed().as_secs_f64();
        drop(deliverer);
        let _ = tokio::task::spawn_blocking(move || worker.join()).await;
        Ok::<_, anyhow::Error>((rate, report))
    })?;
    let got = received.load(Ordering::Relaxed) - before;
    eprintln!(
        "webhook delivery: {} delivered ({got} received) at {rate:.0}/s; the bare client: {baseline:.0}/s (ratio {:.2})",
        report.delivered,
        rate / baseline
    );
    figures.insert(
        "delivery".into(),
        json!({"deliveries": report.delivered, "received": got, "per_second": rate,
               "baseline_client_per_second": baseline, "ratio_to_baseline": rate / baseline,
               "dead": report.dead, "retried": report.retried}),
    );

    // 3. Event → webhook latency through the server.
    let path = dir.path().join("serve.db");
    let mut store = SqliteStore::open(&path)?;
    let v = store.add_model("bench.toml", &model)?.version;
    store.activate(v, &mut |_, _| {})?;
    let key = leadscore_store::new_key(leadscore_store::Scope::Ingest)?;
    store.add_key(
        &leadscore_store::key_hash(&key),
        leadscore_store::Scope::Ingest,
        "bench",
    )?;
    let latencies = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let server = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(leadscore_server::run(
            listener,
            Box::new(store),
            leadscore_server::Config::default(),
            async move {
                let _ = stopped.await;
            },
        ));
        let client = reqwest::Client::new();
        let mut latencies = Vec::new();
        for i in 0..300 {
            let n = times.lock().expect("times").len();
            let body = json!({"userId": format!("lat{i}"), "event": "Demo Requested",
                "messageId": format!("lat{i}"), "timestamp": leadscore_store::now().to_string()});
            post_track(&client, &format!("http://{server}"), &key, &body, "ingest").await?;
            let acked = Instant::now();
            let deadline = acked + Duration::from_secs(5);
            loop {
                if let Some(at) = times.lock().expect("times").get(n) {
                    latencies.push(at.saturating_duration_since(acked).as_secs_f64() * 1e3);
                    break;
                }
                anyhow::ensure!(Instant::now() < deadline, "no webhook within 5 s");
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }
        let _ = stop.send(());
        let _ = serving.await;
        Ok::<_, anyhow::Error>(latencies)
    })?;
    let (p50, p99) = (
        percentile(latencies.clone(), 0.5),
        percentile(latencies, 0.99),
    );
    eprintln!(
        "event acknowledged -> webhook received: p50 {p50:.2} ms, p99 {p99:.2} ms (300 events)"
    );
    figures.insert(
        "event_to_webhook_ms".into(),
        json!({"events": 300, "p50": p50, "p99": p99,
               "enqueued_after_ack_ms": 0.0,
               "note": "firings are written in the transaction that acknowledges the event"}),
    );
    let value = Value::Object(figures);
    if let Some(path) = out {
        std::fs::write(path, serde_json::to_string_pretty(&value)? + "\n")?;
    }
    Ok(ExitCode::SUCCESS)
}
