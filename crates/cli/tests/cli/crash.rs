//! `leadscore serve` killed with SIGKILL while it ingests, fires triggers
//! and delivers them: after restarts every acknowledged event is stored
//! once, and every acknowledged crossing is delivered at least once, never
//! under two idempotency keys.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::serve_process;
use serde_json::{json, Value};

/// (contact, idempotency key) of every webhook received.
type Received = Arc<Mutex<Vec<(String, String)>>>;

fn receiver() -> (SocketAddr, Received) {
    let got: Received = Arc::default();
    let state = got.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
                let state = state.clone();
                async move {
                    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                    state.lock().unwrap().push((
                        v["contact_id"].as_str().unwrap_or_default().to_string(),
                        v["idempotency_key"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    ));
                    axum::http::StatusCode::NO_CONTENT
                }
            });
            axum::serve(listener, app).await.unwrap();
        });
    });
    (rx.recv().unwrap(), got)
}

fn leadscore(db: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_leadscore"))
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Adds and activates the model in `file` and returns a new ingest key.
fn with_model(db: &str, file: &std::path::Path) -> String {
    leadscore(
        db,
        &["model", "add", &file.display().to_string(), "--activate"],
    );
    leadscore(db, &["keys", "create", "--scope", "ingest"])
        .trim()
        .to_string()
}

/// Starts `serve` and returns it with its address (from its JSON log).
fn serve(db: &str) -> (Child, String) {
    let mut child = serve_process(db, &["--log-format", "json"])
        // Rows a killed server had claimed come back after the lease.
        .env("LEADSCORE_DELIVERY_LEASE_SECONDS", "2")
        .spawn()
        .unwrap();
    let addr = listening(&mut child);
    (child, addr)
}

/// The address a started `serve --log-format json` logs; its log is then
/// drained in the background so it never blocks on a full pipe.
fn listening(child: &mut Child) -> String {
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("the server logs its address").unwrap();
        let record: Value = serde_json::from_str(&line).unwrap();
        if record["fields"]["message"] == "listening" {
            break record["fields"]["addr"].as_str().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    addr
}

/// Posts one track call; `true` when acknowledged with 200.
fn track(addr: &str, key: &str, user: &str) -> bool {
    track_at(addr, key, user, user, "2026-01-01T00:00:00Z")
}

/// Posts one `Demo Requested` track call with its messageId and time.
fn track_at(addr: &str, key: &str, user: &str, id: &str, at: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let body = json!({"userId": user, "event": "Demo Requested", "messageId": id,
        "timestamp": at})
    .to_string();
    let auth = base64_basic(key);
    let request = format!(
        "POST /v1/track HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Basic {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

fn base64_basic(key: &str) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = format!("{key}:").into_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn a_killed_server_delivers_every_acknowledged_crossing_once_per_key() {
    let (receiver_addr, received) = receiver();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db").display().to_string();
    let model = dir.path().join("m.toml");
    std::fs::write(
        &model,
        format!(
            r#"[model]
name = "crash"
[[engagement]]
id = "demo"
event = "Demo Requested"
points = 40
[[trigger]]
id = "handoff"
when = 'score >= 30'
actions = [{{ type = "webhook", url = "http://{receiver_addr}/hook" }}]
"#
        ),
    )
    .unwrap();
    let key = with_model(&db, &model);
    let mut acknowledged = BTreeSet::new();
    for (round, kill_after) in [40u64, 150, 10].into_iter().enumerate() {
        let (mut child, addr) = serve(&db);
        // A client sends until the server is gone; it is killed meanwhile,
        // with requests in flight and deliveries under way: a while after
        // its second acknowledgement (counted, not timed from the start:
        // on a slow disk each request takes a commit's fsync).
        let key = key.clone();
        let acked = Arc::new(Mutex::new(Vec::new()));
        let sender = std::thread::spawn({
            let acked = Arc::clone(&acked);
            move || {
                for n in 0.. {
                    let user = format!("r{round}-{n:04}");
                    if track(&addr, &key, &user) {
                        acked.lock().unwrap().push(user);
                    } else if n > 0 {
                        return;
                    }
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while acked.lock().unwrap().len() < 2 {
            assert!(
                Instant::now() < deadline,
                "round {round}: nothing acknowledged"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(kill_after));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        sender.join().unwrap();
        acknowledged.extend(acked.lock().unwrap().drain(..));
    }
    // Restart and let it deliver what is owed.
    let (mut child, _) = serve(&db);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got: BTreeSet<String> = received
            .lock()
            .unwrap()
            .iter()
            .map(|(c, _)| c.clone())
            .collect();
        if acknowledged.is_subset(&got) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "undelivered: {:?}",
            acknowledged.difference(&got).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(acknowledged.len() > 3, "{acknowledged:?}");
    // Every acknowledged event is in the log exactly once.
    use leadscore_store::Store as _;
    let store = leadscore_store::SqliteStore::open(std::path::Path::new(&db)).unwrap();
    for user in &acknowledged {
        let log = store
            .contact_messages(user)
            .unwrap()
            .unwrap_or_else(|| panic!("{user} lost"));
        assert_eq!(log.messages.len(), 1, "{user}");
        assert_eq!(log.messages[0].message_id, *user);
    }
    let mut keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (contact, key) in received.lock().unwrap().iter() {
        keys.entry(contact.clone()).or_default().insert(key.clone());
    }
    for (contact, keys) in &keys {
        assert_eq!(keys.len(), 1, "{contact}: one crossing, one key: {keys:?}");
    }
}

/// A server killed while it keeps updates of live rows in memory (it
/// writes them about 30 s later): the stored rows are then behind, and
/// the next start derives them again from the log, so that every
/// contact's row equals a fold of its messages.
#[test]
fn a_killed_servers_kept_rows_are_derived_again_on_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kept.db").display().to_string();
    let model = dir.path().join("m.toml");
    std::fs::write(
        &model,
        "[model]\nname = \"kept\"\n[[engagement]]\nid = \"demo\"\nevent = \"Demo Requested\"\npoints = 10\n",
    )
    .unwrap();
    let key = with_model(&db, &model);
    let users = ["u1", "u2", "u3"];
    let (mut child, addr) = serve(&db);
    for round in 0..5 {
        for user in users {
            let at = format!("2026-01-01T00:00:0{round}Z");
            assert!(track_at(&addr, &key, user, &format!("{user}-{round}"), &at));
        }
    }
    child.kill().unwrap(); // SIGKILL: nothing kept is written
    child.wait().unwrap();
    use leadscore_store::Store as _;
    let folded = |store: &leadscore_store::SqliteStore, user: &str| {
        let (_, model) = store.active_model().unwrap().unwrap();
        let log = store.contact_messages(user).unwrap().unwrap();
        let state = leadscore_core::fold::ContactState::fold(&model, None, &log.messages);
        let last = state.last_timestamp().unwrap();
        state.score_at(&model, last).unwrap()
    };
    let stored = |store: &leadscore_store::SqliteStore, user: &str| {
        store.contact(user).unwrap().unwrap().score
    };
    {
        let store = leadscore_store::SqliteStore::open(std::path::Path::new(&db)).unwrap();
        for user in users {
            assert_eq!(folded(&store, user).score, 50.0);
            assert_eq!(
                stored(&store, user).score,
                10.0,
                "{user}: kept, not written"
            );
        }
    }
    // The next start derives them again before it listens.
    let (mut child, _) = serve(&db);
    child.kill().unwrap();
    child.wait().unwrap();
    let store = leadscore_store::SqliteStore::open(std::path::Path::new(&db)).unwrap();
    for user in users {
        assert_eq!(stored(&store, user), folded(&store, user), "{user}");
    }
}

/// The README's first command: `serve --demo` builds the demo store, prints
/// working keys and serves it.
#[test]
fn serve_demo_prints_keys_that_work() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_leadscore"))
        .args([
            "serve",
            "--demo",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = listening(&mut child);
    let mut out = String::new();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    while !out.contains("for every route") {
        assert!(stdout.read_line(&mut out).unwrap() > 0, "{out}");
    }
    let key = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("write (ingest): "))
        .unwrap()
        .to_string();
    assert!(out.contains("leadscore demo: "), "{out}");
    assert!(
        track(&addr, &key, "u00000001"),
        "the printed write key is accepted"
    );
    assert!(dir.path().join("leadscore-demo.db").exists());
    child.kill().unwrap();
    child.wait().unwrap();
}
