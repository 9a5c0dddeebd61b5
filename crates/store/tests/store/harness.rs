//! Test data and helpers: generated event logs, the batch reference, stores.

use std::path::PathBuf;

use leadscore_core::batch::contacts_as_of;
use leadscore_core::event::Message;
use leadscore_core::model::Model;
use leadscore_core::score::Score;
use leadscore_core::time::Timestamp;
use leadscore_input::{read_messages, ReadOptions};
use std::sync::atomic::{AtomicU64, Ordering};

use leadscore_store::{Incoming, PgConfig, PgStore, SqliteStore, Store};
use leadscore_synth::{write_events, Config};
use tempfile::TempDir;

pub fn example_source(name: &str) -> (String, String) {
    let path = format!("{}/../../examples/{name}.toml", env!("CARGO_MANIFEST_DIR"));
    (
        format!("{name}.toml"),
        std::fs::read_to_string(path).unwrap(),
    )
}

pub fn example(name: &str) -> Model {
    let (file, source) = example_source(name);
    Model::from_toml(&file, &source).unwrap_or_else(|e| panic!("{e}"))
}

/// A generated log and the time just after it.
pub fn generated(contacts: u64, days: u32, seed: u64) -> (Vec<Message>, Timestamp) {
    let config = Config::new(contacts, days, seed);
    let mut jsonl = Vec::new();
    write_events(&config, &mut jsonl, |_| {}).unwrap();
    let (messages, _) = read_messages(&jsonl[..], "gen", &ReadOptions::default(), |_| {}).unwrap();
    (messages, Timestamp::from_seconds(config.end()))
}

/// Every contact's batch score at `t` (the reference the store must equal).
pub fn batch(model: &Model, messages: &[Message], t: Timestamp) -> Vec<(String, Score)> {
    contacts_as_of(messages.to_vec(), Vec::new(), t)
        .into_iter()
        .map(|c| {
            let s = c.score_as_of(model, t);
            (c.id, s)
        })
        .collect()
}

/// A fresh SQLite store in a temporary directory (kept alive by the guard).
pub fn sqlite() -> (SqliteStore, TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leadscore.db");
    (SqliteStore::open(&path).unwrap(), dir, path)
}

/// Keeps a test store's storage alive; cleans it up when dropped (held,
/// never read).
pub enum Guard {
    Dir(#[allow(dead_code)] TempDir),
    Schema(#[allow(dead_code)] SchemaGuard),
}

/// A PostgreSQL schema made for one test, dropped afterwards.
pub struct SchemaGuard {
    url: String,
    schema: String,
}

impl SchemaGuard {
    /// The schema's name (for a second connection to it).
    pub fn schema(&self) -> &str {
        &self.schema
    }
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        if let Ok(mut client) = postgres::Client::connect(&self.url, postgres::NoTls) {
            let _ = client.batch_execute(&format!("DROP SCHEMA {} CASCADE", self.schema));
        }
    }
}

/// The PostgreSQL server for tests (`LEADSCORE_TEST_POSTGRES`, a URL). When
/// it is not set the PostgreSQL runs are skipped, except under CI, where
/// its absence fails the test: CI must exercise both backends.
pub fn postgres_url() -> Option<String> {
    match std::env::var("LEADSCORE_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("CI").is_err(),
                "CI is set but LEADSCORE_TEST_POSTGRES is not: .ci/run must start PostgreSQL"
            );
            eprintln!("LEADSCORE_TEST_POSTGRES not set: PostgreSQL backend skipped");
            None
        }
    }
}

/// A fresh PostgreSQL store in its own schema.
pub fn postgres(url: &str) -> (PgStore, SchemaGuard) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let schema = format!(
        "test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let mut admin = postgres::Client::connect(url, postgres::NoTls).expect("PostgreSQL is up");
    admin
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
        ))
        .unwrap();
    let mut config: PgConfig = url.parse().unwrap();
    config.options(&format!("-c search_path={schema}"));
    let store = PgStore::open_config(&config).unwrap();
    (
        store,
        SchemaGuard {
            url: url.to_string(),
            schema,
        },
    )
}

/// Every backend under test: SQLite always (as the CLI and as the server run
/// it), PostgreSQL when available.
pub fn backends() -> Vec<(Box<dyn Store>, Guard)> {
    let (store, dir, _) = sqlite();
    // SQLite as the server's writer runs it: commits flushed later, live
    // states kept between batches.
    let (mut served, served_dir, _) = sqlite();
    served.defer_durability().unwrap();
    let mut all: Vec<(Box<dyn Store>, Guard)> = vec![
        (Box::new(store), Guard::Dir(dir)),
        (Box::new(served), Guard::Dir(served_dir)),
    ];
    if let Some(url) = postgres_url() {
        let (store, guard) = postgres(&url);
        all.push((Box::new(store), Guard::Schema(guard)));
    }
    all
}

pub fn incoming(messages: &[Message]) -> Vec<Incoming> {
    messages.iter().cloned().map(Incoming::new).collect()
}

/// Adds and activates an example model.
pub fn activate(store: &mut dyn Store, name: &str) -> u32 {
    let (file, source) = example_source(name);
    let version = store.add_model(&file, &source).unwrap().version;
    store.activate(version, &mut |_, _| {}).unwrap();
    version
}

/// Deterministic shuffle.
/// `messages` in an arrival order drawn from `seed`, every `resend_every`-th
/// of them sent again at the end.
pub fn arrival(messages: &[Message], seed: u64, resend_every: usize) -> Vec<Message> {
    let mut arrival = messages.to_vec();
    shuffle(&mut arrival, seed);
    let resent: Vec<_> = arrival.iter().step_by(resend_every).cloned().collect();
    arrival.extend(resent);
    arrival
}

/// Ingests `messages` in batches of `size`.
pub fn ingest_in_batches(store: &mut dyn Store, messages: &[Message], size: usize) {
    for chunk in messages.chunks(size) {
        store.ingest(incoming(chunk)).unwrap();
    }
}

pub fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut state = seed | 1;
    for i in (1..items.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        items.swap(i, (state % (i as u64 + 1)) as usize);
    }
}

/// Asserts that the store's live scores at `t` equal the batch reference.
pub fn assert_live_equals_batch(
    store: &dyn Store,
    model: &Model,
    messages: &[Message],
    t: Timestamp,
) {
    let reference = batch(model, messages, t);
    assert!(!reference.is_empty());
    assert_eq!(
        store.stats().unwrap().contacts,
        reference.len() as u64,
        "contacts"
    );
    for (id, expected) in &reference {
        let (canonical, got) = store
            .score_at(id, t)
            .unwrap()
            .unwrap_or_else(|| panic!("{id} missing"));
        assert_eq!(&canonical, id);
        assert_eq!(&got, expected, "{id}");
    }
}
