//! `leadscore serve` settings: flags, environment, a TOML file, defaults.

use clap::ValueEnum;

/// Where `leadscore serve` listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// `leadscore serve` settings: from flags, environment variables, a TOML
/// file, then defaults (in that order of precedence).
#[derive(Debug, Clone, Default, PartialEq, clap::Args, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeSettings {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "LEADSCORE_LISTEN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Largest request body in bytes, after gzip decoding [default: 512000].
    #[arg(long, env = "LEADSCORE_BODY_LIMIT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_limit: Option<usize>,
    /// Origin browsers may send events from (repeat, or comma-separated in
    /// LEADSCORE_CORS_ORIGINS; `*` for any).
    #[arg(
        long = "cors-origin",
        value_name = "ORIGIN",
        env = "LEADSCORE_CORS_ORIGINS",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub cors_origins: Vec<String>,
    /// Log lines on stderr as text or JSON (level from LEADSCORE_LOG, default info) [default: text].
    #[arg(long, value_enum, env = "LEADSCORE_LOG_FORMAT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    /// Fire due triggers and deliver the outbox in this process (`false`
    /// when other processes over the same PostgreSQL do it) [default: true].
    #[arg(long, env = "LEADSCORE_DELIVER", value_name = "BOOL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliver: Option<bool>,
    /// Database connections serving reads beside the writer (0: reads take
    /// turns with writes) [default: 4].
    #[arg(long, env = "LEADSCORE_READ_CONNECTIONS", value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_connections: Option<usize>,
    /// Milliseconds a key's scope and revocation are trusted after reading
    /// them (a key revoked with `leadscore keys revoke` stops working within
    /// this; 0: every request reads its key) [default: 1000].
    #[arg(long, env = "LEADSCORE_KEY_CACHE_MS", value_name = "MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_cache_ms: Option<u64>,
    /// How far ahead of the server's clock an ingested message's timestamp
    /// may be: a later one is stored at its receive time, with a warning in
    /// the answer (a duration such as `5m`, or `off` to keep timestamps as
    /// sent) [default: 5m].
    #[arg(long, env = "LEADSCORE_MAX_FUTURE", value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_future: Option<String>,
    /// Messages that may wait for the writer: beyond them `/v1/*` answers
    /// 503 with `Retry-After: 1` and SDKs send again later, instead of the
    /// queue (memory, latency) growing as long as an overload lasts
    /// [default: 50000].
    #[arg(long, env = "LEADSCORE_MAX_QUEUED_EVENTS", value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_queued_events: Option<usize>,
    /// Contacts whose live state the writer keeps in memory between
    /// batches: at least the last N contacts written, up to twice as many,
    /// about 1.3–2.4 KB each; a contact written again within them is
    /// neither read nor decoded (0: none). Also the most updated live rows
    /// it keeps unwritten (each is written about 30 s after its first
    /// change, sooner beyond N) [default: 50000].
    #[arg(long, env = "LEADSCORE_WRITER_CACHE_CONTACTS", value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writer_cache_contacts: Option<usize>,
    /// MiB of memory to take and write to once at start-up, before
    /// listening, then keep for reuse: the writer's heap then grows into
    /// pages the kernel has already supplied instead of stalling on fresh
    /// ones (set it to the memory the server reaches under load; 0: none)
    /// [default: 0].
    #[arg(long, env = "LEADSCORE_PRETOUCH_MIB", value_name = "MIB")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pretouch_mib: Option<u64>,
    /// MiB of the SQLite database file that a thread at idle priority
    /// reads into the page cache past the database's end, ahead of the
    /// checkpoints that write there, so that a host slow to supply fresh
    /// memory stalls it rather than the checkpoints; the file then grows
    /// four times that at a time, its disk blocks reserved (0: none)
    /// [default: 0].
    #[arg(long, env = "LEADSCORE_GROW_AHEAD_MIB", value_name = "MIB")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grow_ahead_mib: Option<u64>,
}

impl ServeSettings {
    /// These settings, with `file`'s where these have none, then defaults.
    pub fn resolve(self, file: ServeSettings) -> ServeSettings {
        // The server's own defaults, so that there is one place for each.
        let server = leadscore_server::Config::default();
        ServeSettings {
            listen: Some(
                self.listen
                    .or(file.listen)
                    .unwrap_or_else(|| DEFAULT_LISTEN.into()),
            ),
            body_limit: Some(
                self.body_limit
                    .or(file.body_limit)
                    .unwrap_or(server.body_limit),
            ),
            cors_origins: if self.cors_origins.is_empty() {
                file.cors_origins
            } else {
                self.cors_origins
            },
            log_format: Some(
                self.log_format
                    .or(file.log_format)
                    .unwrap_or(LogFormat::Text),
            ),
            deliver: Some(
                self.deliver
                    .or(file.deliver)
                    .unwrap_or(server.delivery.is_some()),
            ),
            read_connections: Some(
                self.read_connections
                    .or(file.read_connections)
                    .unwrap_or(server.read_connections),
            ),
            key_cache_ms: Some(
                self.key_cache_ms
                    .or(file.key_cache_ms)
                    .unwrap_or(server.key_cache.as_millis() as u64),
            ),
            max_future: Some(self.max_future.or(file.max_future).unwrap_or_else(|| {
                server
                    .max_future
                    .map_or_else(|| "off".into(), |d| d.to_string())
            })),
            max_queued_events: Some(
                self.max_queued_events
                    .or(file.max_queued_events)
                    .unwrap_or(server.max_queued_events),
            ),
            writer_cache_contacts: Some(
                self.writer_cache_contacts
                    .or(file.writer_cache_contacts)
                    .unwrap_or(server.writer_cache_contacts),
            ),
            pretouch_mib: Some(self.pretouch_mib.or(file.pretouch_mib).unwrap_or(0)),
            grow_ahead_mib: Some(self.grow_ahead_mib.or(file.grow_ahead_mib).unwrap_or(0)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}
