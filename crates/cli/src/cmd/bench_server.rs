//! `leadscore bench --server`: how soon an event is visible in its
//! contact's score through `leadscore serve`'s code on 127.0.0.1, idle and
//! while other clients ingest as fast as they can (SQLite store of
//! generated contacts, `examples/b2b.toml` active, read pool on).
//!
//! A probe sends one `track` event for a new contact and asks `GET
//! /api/v1/contacts/{id}` until the contact is there with that event; the
//! figure is from just before the send to that answer.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use leadscore_store::{key_hash, new_key, Scope, SqliteStore, Store};
use leadscore_synth::{write_events, Config};
use serde_json::{json, Value};

use super::bench_store::import_into;
use super::bench_triggers::{activate_b2b, percentile, post_track};
use leadscore_store::Admin as _;

/// Clients ingesting in the background.
const LOADERS: usize = 8;
/// Probes per phase.
const PROBES: usize = 300;

/// Sends probes one after another; the send → visible time of each, in ms.
async fn probes(
    client: &reqwest::Client,
    base: &str,
    write: &str,
    read: &str,
    phase: &str,
) -> Result<Vec<f64>> {
    let mut latencies = Vec::with_capacity(PROBES);
    for i in 0..PROBES {
        let user = format!("probe-{phase}-{i}");
        let at = leadscore_store::now().to_string();
        let body = json!({"userId": user, "event": "Form Submitted",
            "properties": {"form": "demo"}, "messageId": format!("{user}-1"), "timestamp": at});
        let sent = Instant::now();
        post_track(client, base, write, &body, "probe").await?;
        loop {
            let answer = client
                .get(format!("{base}/api/v1/contacts/{user}"))
                .bearer_auth(read)
                .send()
                .await?;
            if answer.status().is_success() {
                let contact: Value = answer.json().await?;
                if contact["last_event"].as_str() == Some(at.as_str()) {
                    break;
                }
            }
            anyhow::ensure!(
                sent.elapsed() < Duration::from_secs(10),
                "{user} not visible in 10 s"
            );
        }
        latencies.push(sent.elapsed().as_secs_f64() * 1e3);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(latencies)
}

/// Ingests `track` events as fast as one client can until `stop`.
async fn load(
    client: reqwest::Client,
    base: String,
    write: String,
    n: usize,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) -> Result<()> {
    // Random UUID messageIds (the harder case: see `bench_load::IdShape`); `run` keeps them distinct
    // from another run's against the same store.
    let run = leadscore_store::now().0 as u64;
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let body = json!({"userId": format!("load{n}-{}", i % 2_000), "event": "Email Link Clicked",
            "messageId": super::bench_load::uuid(run ^ n as u64, i),
            "timestamp": leadscore_store::now().to_string()});
        post_track(&client, &base, &write, &body, "load").await?;
        sent.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

fn summary(latencies: &[f64]) -> Value {
    json!({
        "probes": latencies.len(),
        "p50_ms": percentile(latencies.to_vec(), 0.5),
        "p99_ms": percentile(latencies.to_vec(), 0.99),
        "max_ms": percentile(latencies.to_vec(), 1.0),
    })
}

pub fn run(contacts: u64, days: u32, out: Option<&Path>) -> Result<ExitCode> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("server.db");
    let events = dir.path().join("events.jsonl");
    let generated = {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&events)?);
        write_events(&Config::new(contacts, days, 1), &mut file, |_| {})?
    };
    let (write, read) = (new_key(Scope::Ingest)?, new_key(Scope::Read)?);
    {
        let mut store = SqliteStore::open(&path)?;
        activate_b2b(&mut store)?;
        store.add_key(&key_hash(&write), Scope::Ingest, "bench")?;
        store.add_key(&key_hash(&read), Scope::Read, "bench")?;
    }
    let import_s = import_into(&path, &events)?;
    eprintln!(
        "store: {generated} generated messages for {contacts} contacts imported in {import_s:.1} s"
    );
    let store = SqliteStore::open(&path)?;
    let reopen_path = path.clone();
    let config = leadscore_server::Config {
        reopen: Some(Arc::new(move || {
            Ok(Box::new(SqliteStore::open(&reopen_path)?) as Box<dyn Store>)
        })),
        delivery: None,
        ..leadscore_server::Config::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (idle, loaded, load_rate) = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (stop_server, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(leadscore_server::run(
            listener,
            Box::new(store),
            config,
            async move {
                let _ = stopped.await;
            },
        ));
        let client = reqwest::Client::new();
        let idle = probes(&client, &base, &write, &read, "idle").await?;
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let loaders: Vec<_> = (0..LOADERS)
            .map(|n| {
                tokio::spawn(load(
                    client.clone(),
                    base.clone(),
                    write.clone(),
                    n,
                    stop.clone(),
                    sent.clone(),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (started, before) = (Instant::now(), sent.load(Ordering::Relaxed));
        let loaded = probes(&client, &base, &write, &read, "loaded").await?;
        let rate = (sent.load(Ordering::Relaxed) - before) as f64 / started.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        for loader in loaders {
            loader.await??;
        }
        let _ = stop_server.send(());
        serving.await??;
        Ok::<_, anyhow::Error>((idle, loaded, rate))
    })?;
    let (idle, loaded) = (summary(&idle), summary(&loaded));
    eprintln!(
        "event sent -> visible in GET /api/v1/contacts/{{id}}: idle p50 {:.2} ms, p99 {:.2} ms; \
         with {LOADERS} clients ingesting ({load_rate:.0} events/s) p50 {:.2} ms, p99 {:.2} ms",
        idle["p50_ms"].as_f64().unwrap_or_default(),
        idle["p99_ms"].as_f64().unwrap_or_default(),
        loaded["p50_ms"].as_f64().unwrap_or_default(),
        loaded["p99_ms"].as_f64().unwrap_or_default(),
    );
    let figures = json!({
        "contacts": contacts,
        "messages": generated,
        "event_to_visible_idle": idle,
        "event_to_visible_under_load": loaded,
        "load_clients": LOADERS,
        "load_events_per_s": load_rate,
    });
    if let Some(path) = out {
        std::fs::write(path, serde_json::to_string_pretty(&figures)? + "\n")?;
    }
    Ok(ExitCode::SUCCESS)
}
