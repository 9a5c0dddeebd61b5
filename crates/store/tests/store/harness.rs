//! Test data and helpers: generated event logs, the batch reference, stores.

use std::path::PathBuf;

use leadscore_core::batch::contacts_as_of;
use leadscore_core::event::Message;
use leadscore_core::model::Model;
use leadscore_core::score::Score;
use leadscore_core::time::Timestamp;
use leadscore_input::{read_messages, ReadOptions};
use std::sync::atomic::{AtomicU64, Ordering};

use leadscore_store::{ContactAt, Incoming, PgConfig, PgStore, SqliteStore, Store};
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
    served
        .defer_durability(leadscore_store::DEFAULT_LIVE_CONTACTS)
        .unwrap();
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

/// Every message the store holds, contact by contact.
pub fn stored_messages(store: &dyn Store) -> Vec<Message> {
    let mut all = Vec::new();
    store.each_log(&mut |log| all.extend(log.messages)).unwrap();
    all
}

pub fn incoming(messages: &[Message]) -> Vec<Incoming> {
    messages.iter().cloned().map(Incoming::new).collect()
}

/// Adds and activates an example model.
pub fn activate(store: &mut dyn Store, name: &str) -> u32 {
    let (file, source) = example_source(name);
    activate_source(store, &file, &source)
}

/// Adds and activates a model from its source.
pub fn activate_source(store: &mut dyn Store, file: &str, source: &str) -> u32 {
    let version = store.add_model(file, source).unwrap().version;
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
        assert_contact_at_agrees(store, id, t);
    }
}

/// [`Store::contact_at`] gives what [`Store::score_at`] and
/// [`Store::contact`] of the canonical id give apart (a backend reads them
/// together from one snapshot, its live row once).
pub fn assert_contact_at_agrees(store: &dyn Store, id: &str, t: Timestamp) {
    let together = store.contact_at(id, t).unwrap();
    let apart = store.score_at(id, t).unwrap().map(|(canonical, score)| {
        let record = store.contact(&canonical).unwrap();
        ContactAt {
            id: canonical,
            score,
            record,
        }
    });
    assert_eq!(together, apart, "{id} at {t}");
}

/// Random messages over a few user and anonymous ids that stitch them in
/// every way SPEC §2 allows: messages carrying both ids, aliases (chains
/// and cycles), identifies and group calls, and messageIds reused with
/// different content. Timestamps fall on quarter days, so ties happen.
pub fn stitched_log(seed: u64, n: usize) -> (Vec<Message>, Timestamp) {
    const START: i64 = 1_735_689_600; // 2025-01-01
    let mut state = seed | 1;
    let mut next = move |below: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % below
    };
    let ids = ["u0", "u1", "u2", "u3", "a0", "a1", "a2", "a3"];
    let mut lines = Vec::new();
    for _ in 0..n {
        let at = Timestamp::from_seconds(START + next(40) as i64 * 21_600).to_string();
        let user = format!("u{}", next(4));
        let anon = format!("a{}", next(4));
        let who = match next(3) {
            0 => serde_json::json!({ "userId": user }),
            1 => serde_json::json!({ "anonymousId": anon }),
            _ => serde_json::json!({ "userId": user, "anonymousId": anon }),
        };
        let mut line = match next(8) {
            0 => {
                serde_json::json!({"type": "alias", "previousId": ids[next(8) as usize], "userId": user})
            }
            1 => serde_json::json!({"type": "identify", "traits": {
                "job_title": (["VP Sales", "intern"][next(2) as usize]),
                "email": (["x@competitor.example", "x@buyer.example"][next(2) as usize])}}),
            2 => serde_json::json!({"type": "group", "groupId": "g", "traits": {
                "employees": ([10, 300][next(2) as usize]), "country": "US", "industry": "Software"}}),
            3 => {
                serde_json::json!({"type": "page", "name": "Pricing", "properties": {"path": "/pricing"}})
            }
            4 => {
                serde_json::json!({"type": "track", "event": "Form Submitted", "properties": {"form": "demo"}})
            }
            5 => serde_json::json!({"type": "track", "event": "Meeting Booked"}),
            6 => serde_json::json!({"type": "track", "event": "Email Link Clicked"}),
            _ => serde_json::json!({"type": "track", "event": "Unsubscribed"}),
        };
        let object = line.as_object_mut().unwrap();
        if object["type"] != "alias" {
            object.extend(who.as_object().unwrap().clone());
        }
        object.insert("timestamp".into(), at.into());
        // About one message in six reuses an earlier id.
        object.insert(
            "messageId".into(),
            format!("m{}", next(5 * n as u64 / 6 + 1)).into(),
        );
        lines.push(line.to_string());
    }
    (
        parse_jsonl(&lines),
        Timestamp::from_seconds(START + 11 * 86_400),
    )
}

/// Messages from JSON lines the test knows are valid.
pub fn parse_jsonl<S: AsRef<str>>(lines: &[S]) -> Vec<Message> {
    let jsonl: Vec<&str> = lines.iter().map(AsRef::as_ref).collect();
    let jsonl = jsonl.join("\n");
    read_messages(jsonl.as_bytes(), "test", &ReadOptions::default(), |_| {})
        .unwrap()
        .0
}

/// The cases a property runs: `default`, or `PROPTEST_CASES` when it is
/// set, for a longer soak (`PROPTEST_CASES=500 cargo test --release`).
pub fn cases(default: u32) -> proptest::prelude::ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok());
    proptest::prelude::ProptestConfig::with_cases(cases.unwrap_or(default))
}
