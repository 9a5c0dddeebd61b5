//! Starts the server on 127.0.0.1:0 over a fresh SQLite store and speaks
//! plain HTTP/1.1 to it (no client library needed).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;

use base64::Engine as _;
use leadscore_core::batch::contacts_as_of;
use leadscore_core::event::Message;
use leadscore_core::model::Model;
use leadscore_core::score::Score;
use leadscore_core::time::Timestamp;
use leadscore_store::Admin as _;
use leadscore_store::{key_hash, new_key, Scope, SqliteStore, Store};
use serde_json::Value;

const MODEL: &str = include_str!("../../../../examples/b2b.toml");

/// The tracking-link secret of test servers.
pub const LINK_SECRET: &[u8] = b"test-link-secret";

/// A signed link path: `path?params&sig=…`, values percent-encoded.
pub fn signed(path: &str, params: &[(&str, &str)]) -> String {
    let map: std::collections::BTreeMap<String, String> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let sig = leadscore_server::sign_link(LINK_SECRET, path, &map);
    let encode = |v: &str| -> String {
        v.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    let query: Vec<String> = map
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    format!("{path}?{}&sig={sig}", query.join("&"))
}

pub fn basic(key: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{key}:"))
    )
}

pub fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

pub struct Server {
    pub addr: SocketAddr,
    pub write_key: String,
    pub read_key: String,
    pub admin_key: String,
    pub revoked_key: String,
    path: PathBuf,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(Vec::new())
    }

    /// A server that allows these CORS origins.
    pub fn start_with(cors_origins: Vec<String>) -> Server {
        Server::start_full(cors_origins, MODEL, None)
    }

    /// A server over `model` that evaluates due triggers and delivers the
    /// outbox with `delivery`.
    pub fn start_delivering(
        model: &str,
        delivery: leadscore_server::delivery::DeliveryConfig,
    ) -> Server {
        Server::start_full(Vec::new(), model, Some(delivery))
    }

    fn start_full(
        cors_origins: Vec<String>,
        model: &str,
        delivery: Option<leadscore_server::delivery::DeliveryConfig>,
    ) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.db");
        let mut store = SqliteStore::open(&path).unwrap();
        let version = store.add_model("model.toml", model).unwrap().version;
        store.activate(version, &mut |_, _| {}).unwrap();
        let mut key = |scope| {
            let key = new_key(scope).unwrap();
            let stored = store.add_key(&key_hash(&key), scope, "test").unwrap();
            (key, stored.id)
        };
        let (write_key, _) = key(Scope::Ingest);
        let (read_key, _) = key(Scope::Read);
        let (admin_key, _) = key(Scope::Admin);
        let (revoked_key, revoked) = key(Scope::Ingest);
        store.revoke_key(revoked).unwrap();
        let reopen_path = path.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, bound) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                ready.send(listener.local_addr().unwrap()).unwrap();
                let shutdown = async move {
                    let _ = stopped.await;
                };
                leadscore_server::run(
                    listener,
                    Box::new(store),
                    leadscore_server::Config {
                        link_secret: Some(LINK_SECRET.to_vec()),
                        cors_origins,
                        reopen: Some(std::sync::Arc::new(move || {
                            Ok(Box::new(SqliteStore::open(&reopen_path)?) as Box<dyn Store>)
                        })),
                        delivery,
                        ..leadscore_server::Config::default()
                    },
                    shutdown,
                )
                .await
                .unwrap();
            });
        });
        let addr = bound.recv().unwrap();
        Server {
            addr,
            write_key,
            read_key,
            admin_key,
            revoked_key,
            path,
            _dir: dir,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Revokes `key` through another connection, as `leadscore keys revoke`
    /// does while the server runs.
    pub fn revoke(&self, key: &str) {
        let mut store = SqliteStore::open(&self.path).unwrap();
        let id = store.key_by_hash(&key_hash(key)).unwrap().unwrap().id;
        assert!(store.revoke_key(id).unwrap());
    }

    /// Stops the server (gracefully) and opens its store.
    pub fn stop(mut self) -> SqliteStore {
        let _ = self.stop.take().unwrap().send(());
        self.thread.take().unwrap().join().unwrap();
        SqliteStore::open(&self.path).unwrap()
    }

    /// The status of a GET whose body never ends (a stream).
    pub fn status_line(&self, path: &str, auth: &str) -> u16 {
        use std::io::BufRead;
        let mut stream = TcpStream::connect(self.addr).unwrap();
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n");
        if !auth.is_empty() {
            request += &format!("Authorization: {auth}\r\n");
        }
        request += "\r\n";
        stream.write_all(request.as_bytes()).unwrap();
        let mut line = String::new();
        std::io::BufReader::new(stream)
            .read_line(&mut line)
            .unwrap();
        line.split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// The status line and headers of a response, lower-cased.
    pub fn head(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> String {
        let mut stream = TcpStream::connect(self.addr).unwrap();
        let mut request =
            format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
        for (name, value) in headers {
            request += &format!("{name}: {value}\r\n");
        }
        request += "\r\n";
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response
            .split("\r\n\r\n")
            .next()
            .unwrap_or_default()
            .to_lowercase()
    }

    pub fn raw(
        &self,
        method: &str,
        path: &str,
        auth: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut stream = TcpStream::connect(self.addr).unwrap();
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        {
            head += "Content-Type: application/json\r\n";
        }
        if !auth.is_empty() {
            head += &format!("Authorization: {auth}\r\n");
        }
        for (name, value) in headers {
            head += &format!("{name}: {value}\r\n");
        }
        head += "\r\n";
        stream.write_all(head.as_bytes()).unwrap();
        let _ = stream.write_all(body);
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        let text = String::from_utf8_lossy(&response);
        let status: u16 = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
        (
            status,
            serde_json::from_str(body).unwrap_or(Value::String(body.to_string())),
        )
    }

    /// Sends a body that is not JSON (a model's TOML).
    pub fn text(&self, method: &str, path: &str, auth: &str, body: &str) -> (u16, Value) {
        self.raw(method, path, auth, body.as_bytes(), &[])
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        auth: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let body = body
            .map(|b| serde_json::to_vec(b).unwrap())
            .unwrap_or_default();
        self.raw(method, path, auth, &body, &[])
    }

    pub fn post(&self, path: &str, auth: &str, body: &Value) -> (u16, Value) {
        self.request("POST", path, auth, Some(body))
    }

    pub fn get(&self, path: &str, auth: &str) -> (u16, Value) {
        self.request("GET", path, auth, None)
    }
}

/// The batch score now of `id` over `messages` (JSON), with the same model.
pub fn batch_score(id: &str, messages: &[Value]) -> Score {
    let model = Model::from_toml("b2b.toml", MODEL).unwrap();
    let messages: Vec<Message> = messages
        .iter()
        .map(|v| {
            let mut v = v.clone();
            if v.get("type").is_none() {
                v["type"] = "track".into();
            }
            Message::from_json(v, None, None).unwrap()
        })
        .collect();
    let last = messages.iter().map(|m| m.timestamp).max().unwrap();
    contacts_as_of(messages, Vec::new(), Timestamp(last.0))
        .into_iter()
        .find(|c| c.id == id)
        .unwrap()
        .score_as_of(&model, last)
}

/// The cases a property runs: `default`, or `PROPTEST_CASES` when it is
/// set, for a longer soak (`PROPTEST_CASES=5000 cargo test --release`).
pub fn cases(default: u32) -> proptest::test_runner::Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok());
    proptest::test_runner::Config::with_cases(cases.unwrap_or(default))
}
