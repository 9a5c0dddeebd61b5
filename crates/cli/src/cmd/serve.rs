//! `leadscore serve` and `leadscore keys …`.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use leadscore_core::time::{Duration, Timestamp};
use leadscore_store::{key_hash, new_key, Scope, Store};

use crate::args::{KeysCommand, LogFormat, ServeSettings, DEFAULT_LISTEN};
use crate::store::{self, redact};

pub fn run(
    db: &Path,
    settings: ServeSettings,
    config: Option<&Path>,
    print_config: bool,
) -> Result<ExitCode> {
    let file = match config {
        None => ServeSettings::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read settings {}", path.display()))?;
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
    };
    let settings = settings.resolve(file);
    let max_future = check(&settings)?;
    if print_config {
        super::emit(&toml::to_string(&settings)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    // Resolved settings hold every value; these fall-backs never apply.
    let defaults = leadscore_server::Config::default();
    let listen = settings.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let body_limit = settings.body_limit.unwrap_or(defaults.body_limit);
    let cors_origins = &settings.cors_origins;
    let deliver = settings.deliver.unwrap_or(defaults.delivery.is_some());
    let grow_ahead_mib = settings.grow_ahead_mib.unwrap_or(0);
    if grow_ahead_mib > 0 && leadscore_store::is_postgres(db) {
        bail!("grow_ahead_mib: for a SQLite store only (it reads the database file ahead)");
    }
    init_logs(settings.log_format.unwrap_or(LogFormat::Text));
    // Before the store opens and the server listens: pre-touching beside
    // a load that starts with the server made requests shed, even at idle
    // priority (docs/decisions.md).
    let pretouch_mib = settings.pretouch_mib.unwrap_or(0);
    if pretouch_mib > 0 {
        let took = crate::memory::pretouch(pretouch_mib);
        tracing::info!(
            mib = pretouch_mib,
            seconds = took.as_secs_f64(),
            "pre-touched memory"
        );
    }
    let store = open_store(db, grow_ahead_mib)?;
    if store
        .keys()?
        .iter()
        .all(|k| k.revoked || k.scope != Scope::Ingest)
    {
        tracing::warn!("no ingest key yet: create one with `leadscore keys create --scope ingest`");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        tracing::info!(store = %redact(&db.to_string_lossy()), "opened the store");
        let config = leadscore_server::Config {
            body_limit,
            link_secret: link_secret(),
            cors_origins: cors_origins.to_vec(),
            reopen: Some(reopen(db)),
            delivery: deliver.then(leadscore_server::delivery::DeliveryConfig::default),
            read_connections: settings
                .read_connections
                .unwrap_or(defaults.read_connections),
            key_cache: settings
                .key_cache_ms
                .map_or(defaults.key_cache, std::time::Duration::from_millis),
            max_future,
            max_queued_events: settings
                .max_queued_events
                .unwrap_or(defaults.max_queued_events),
            writer_cache_contacts: settings
                .writer_cache_contacts
                .unwrap_or(defaults.writer_cache_contacts),
        };
        let shutdown = shutdown_signal()?;
        leadscore_server::run(listener, store, config, shutdown).await?;
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Refuses settings the server could not run with, before printing them or
/// opening the store; returns `max_future` parsed.
fn check(settings: &ServeSettings) -> Result<Option<Duration>> {
    if let Some(limit) = settings.body_limit.filter(|&n| n < 1024) {
        bail!("body_limit: at least 1024 bytes (a Segment message may be 32 KB), found {limit}");
    }
    if settings.max_queued_events == Some(0) {
        bail!("max_queued_events: at least 1 (a request is always taken when nothing waits)");
    }
    if let (Some(mib), Some(total)) = (settings.pretouch_mib, crate::memory::total_mib()) {
        if mib > total {
            bail!("pretouch_mib: at most this machine's memory ({total} MiB), found {mib}");
        }
    }
    if let Some(listen) = &settings.listen {
        let host_port = listen
            .rsplit_once(':')
            .filter(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if listen.parse::<std::net::SocketAddr>().is_err()
            && (host_port.is_none() || listen.contains(char::is_whitespace))
        {
            bail!(
                "listen: expected HOST:PORT such as 127.0.0.1:8080 or [::1]:8080, found {listen:?}"
            );
        }
    }
    for origin in &settings.cors_origins {
        leadscore_server::check_cors_origin(origin)
            .map_err(|e| anyhow::anyhow!("cors_origins: {e}"))?;
    }
    match settings.max_future.as_deref() {
        None => Ok(leadscore_server::Config::default().max_future),
        Some("off") => Ok(None),
        Some(text) => Duration::parse(text)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("max_future: {e}, or off")),
    }
}

/// Creates an ingest, a read and an admin key in the demo store and prints
/// them with requests to try (`as_of`: a past time to list as of).
pub fn demo_keys(db: &Path, listen: &str, as_of: Timestamp) -> Result<()> {
    let mut store = store::open(db)?;
    let mut key = |scope: Scope| -> Result<String> {
        let key = new_key(scope)?;
        store.add_key(&key_hash(&key), scope, "demo")?;
        Ok(key)
    };
    let (write, read, admin) = (key(Scope::Ingest)?, key(Scope::Read)?, key(Scope::Admin)?);
    let base = format!("http://{listen}");
    let mut out = String::new();
    writeln!(out, "\ndemo keys (stored hashed in {}):", db.display())?;
    writeln!(
        out,
        "  write (ingest): {write}\n  read:           {read}\n  admin:          {admin}"
    )?;
    writeln!(out, "\ntry:")?;
    writeln!(out, "  curl -u {write}: -H 'Content-Type: application/json' \\\n    -d '{{\"userId\":\"u00000001\",\"event\":\"Order Completed\",\"properties\":{{\"revenue\":120}}}}' {base}/v1/track")?;
    writeln!(
        out,
        "  curl -H 'Authorization: Bearer {read}' {base}/api/v1/contacts/u00000001"
    )?;
    writeln!(
        out,
        "  curl -H 'Authorization: Bearer {read}' '{base}/api/v1/scores?status=active&order=score_desc&limit=5'   # who to call (excluded contacts keep scores)"
    )?;
    writeln!(
        out,
        "  curl -H 'Authorization: Bearer {read}' '{base}/api/v1/segments/summary?as_of={as_of}'   # a month ago"
    )?;
    writeln!(out, "  open {base}/docs for every route\n")?;
    super::emit(&out)
}

/// Log lines on stderr, level from `LEADSCORE_LOG` (default `info`).
fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LEADSCORE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// The writer's store, reading `grow_ahead_mib` of a SQLite database file
/// ahead of its growth.
fn open_store(db: &Path, grow_ahead_mib: u64) -> Result<Box<dyn Store>> {
    if grow_ahead_mib == 0 {
        return store::open(db);
    }
    let mut sqlite = store::open_sqlite(db)?;
    sqlite.set_grow_ahead(grow_ahead_mib.saturating_mul(1 << 20))?;
    Ok(Box::new(sqlite))
}

/// A second connection to the same store, for background jobs.
fn reopen(db: &Path) -> leadscore_server::Reopen {
    let db = db.to_path_buf();
    std::sync::Arc::new(move || leadscore_store::open(&db))
}

/// `LEADSCORE_LINK_SECRET`, the key of signed tracking links.
fn link_secret() -> Option<Vec<u8>> {
    std::env::var("LEADSCORE_LINK_SECRET")
        .ok()
        .filter(|s| !s.is_empty())
        .map(String::into_bytes)
}

/// Prints a signed open-pixel or click link.
pub fn sign(
    base: &str,
    user: &str,
    campaign: Option<&str>,
    click: Option<&str>,
) -> Result<ExitCode> {
    let Some(secret) = link_secret() else {
        bail!("set LEADSCORE_LINK_SECRET (the same value as the server's) to sign links");
    };
    // What the server would refuse is refused here, before it is mailed.
    if user.trim().is_empty() {
        bail!("--user: an id is needed");
    }
    if !leadscore_server::redirect_allowed(base) {
        bail!("--base: the server's http(s) URL is needed, found {base:?}");
    }
    if let Some(url) = click.filter(|url| !leadscore_server::redirect_allowed(url)) {
        bail!("--click: links may only lead to http(s) URLs, found {url:?}");
    }
    let mut params = std::collections::BTreeMap::new();
    params.insert("u".to_string(), user.to_string());
    if let Some(c) = campaign {
        params.insert("c".to_string(), c.to_string());
    }
    let path = match click {
        Some(url) => {
            params.insert("url".to_string(), url.to_string());
            "/t/click"
        }
        None => "/t/open.gif",
    };
    let sig = leadscore_server::sign_link(&secret, path, &params);
    params.insert("sig".to_string(), sig);
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    super::emit(&format!(
        "{}{path}?{}\n",
        base.trim_end_matches('/'),
        query.join("&")
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// Percent-encodes a query value (RFC 3986 unreserved characters kept).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// SIGINT or SIGTERM. The handlers are installed when this is called (not
/// when the future is first polled), so a signal that arrives once the
/// server has said it is listening always stops it gracefully instead of
/// killing the process.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt =
            signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
        let mut terminate =
            signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {},
                _ = terminate.recv() => {},
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

pub fn keys(db: &Path, command: &KeysCommand) -> Result<ExitCode> {
    // A key may be created before the first import (to set up a server);
    // listing or revoking needs a store that exists.
    let mut store = match command {
        KeysCommand::Create { .. } => store::open(db)?,
        KeysCommand::List | KeysCommand::Revoke { .. } => store::open_existing(db)?,
    };
    match command {
        KeysCommand::Create { scope, label } => {
            let Some(scope) = Scope::parse(scope) else {
                bail!("--scope {scope:?}: expected ingest, read or admin");
            };
            let key = new_key(scope)?;
            let stored = store.add_key(&key_hash(&key), scope, label)?;
            eprintln!(
                "key {} ({}) created; it is shown once, only its hash is stored:",
                stored.id,
                scope.as_str()
            );
            super::emit(&format!("{key}\n"))?;
        }
        KeysCommand::List => {
            let mut out = String::new();
            writeln!(
                out,
                "{:<4} {:<7} {:<8} {:<32} label",
                "id", "scope", "state", "created"
            )?;
            for k in store.keys()? {
                writeln!(
                    out,
                    "{:<4} {:<7} {:<8} {:<32} {}",
                    k.id,
                    k.scope.as_str(),
                    if k.revoked { "revoked" } else { "active" },
                    k.created_at.to_string(),
                    k.label
                )?;
            }
            super::emit(&out)?;
        }
        KeysCommand::Revoke { id } => {
            if !store.revoke_key(*id)? {
                bail!("no key {id}");
            }
            eprintln!("key {id} revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}
