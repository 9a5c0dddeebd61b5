//! `leadscore serve` as a process: JSON logs and graceful stop on SIGTERM,
//! settings from flags, environment and file, and the outbox commands.

use std::io::{BufRead, BufReader};
use std::process::Command;

use serde_json::Value;

use crate::harness::{example, generated, leadscore, serve_process};
use crate::store::{store_with, with_db};

#[test]
fn serve_logs_json_lines_and_stops_gracefully_on_sigterm() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("serve.db").display().to_string();
    with_db(&db, &["model", "add", &example("email"), "--activate"]).success();
    let mut child = serve_process(
        &db,
        &[
            "--log-format",
            "json",
            "--pretouch-mib",
            "8",
            "--grow-ahead-mib",
            "1",
        ],
    )
    // The access log, off by default, as docs/server.md says to turn it on.
    .env("LEADSCORE_LOG", "info,leadscore_server::access=debug")
    .spawn()
    .unwrap();
    // Lines through a channel, so that a line that never comes fails the
    // test instead of hanging it.
    let stderr = child.stderr.take().unwrap();
    let (sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let _ = sender.send(line.unwrap());
        }
    });
    let mut logged = Vec::new();
    // The pre-touch's line comes before `listening`: wait for both.
    let (mut addr, mut pretouched) = (None, false);
    while addr.is_none() || !pretouched {
        let Ok(line) = lines.recv_timeout(std::time::Duration::from_secs(60)) else {
            child.kill().unwrap();
            panic!("no `listening` and `pre-touched memory` lines: {logged:?}");
        };
        let record: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        logged.push(record.clone());
        if record["fields"]["message"] == "listening" {
            addr = Some(record["fields"]["addr"].as_str().unwrap().to_string());
        }
        if record["fields"]["message"] == "pre-touched memory" {
            assert_eq!(record["fields"]["mib"], 8, "{record}");
            pretouched = true;
        }
    }
    let addr = addr.unwrap();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    for line in lines {
        logged.push(serde_json::from_str(&line).unwrap());
    }
    assert!(child.wait().unwrap().success());
    let messages: Vec<&str> = logged
        .iter()
        .filter_map(|r| r["fields"]["message"].as_str())
        .collect();
    assert!(
        messages
            .contains(&"no ingest key yet: create one with `leadscore keys create --scope ingest`"),
        "{messages:?}"
    );
    assert!(
        logged.iter().any(|r| r["fields"]["message"] == "request"
            && r["fields"]["route"] == "/healthz"
            && r["fields"]["status"] == "200"),
        "{logged:?}"
    );
    assert_eq!(
        messages.last(),
        Some(&"stopped: every acknowledged event is committed"),
        "{messages:?}"
    );
}

/// A signal sent as soon as the server says it is listening stops it
/// gracefully: the handlers are installed before that line is logged (they
/// used to be installed when the shutdown future was first polled, and a
/// SIGTERM in between killed the process: 47 of 60 starts under load).
#[test]
fn a_sigterm_right_after_listening_stops_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("serve.db").display().to_string();
    with_db(&db, &["model", "add", &example("email"), "--activate"]).success();
    for signal in ["-TERM", "-INT", "-TERM", "-INT", "-TERM"] {
        let mut child = serve_process(&db, &[]).spawn().unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        lines
            .by_ref()
            .map(Result::unwrap)
            .find(|line| line.contains("listening"))
            .expect("the server logs that it listens");
        let sent = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let rest: Vec<String> = lines.map(Result::unwrap).collect();
        let status = child.wait().unwrap();
        assert!(status.success(), "{signal}: {status}: {rest:?}");
        assert!(
            rest.last()
                .is_some_and(|l| l.contains("stopped: every acknowledged event is committed")),
            "{signal}: {rest:?}"
        );
    }
}

#[test]
fn serve_settings_come_from_flags_then_environment_then_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("serve.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:9000\"\nbody_limit = 10000\ncors_origins = [\"https://a.example\"]\n",
    )
    .unwrap();
    let file = file.display().to_string();
    let print = |env: &[(&str, &str)], args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_leadscore"));
        command
            .args(["serve", "--config", &file, "--print-config"])
            .args(args);
        for (k, v) in env {
            command.env(k, v);
        }
        let out = command.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        toml::from_str::<toml::Table>(&String::from_utf8(out.stdout).unwrap()).unwrap()
    };
    let from_file = print(&[], &[]);
    assert_eq!(from_file["listen"].as_str(), Some("127.0.0.1:9000"));
    assert_eq!(from_file["log_format"].as_str(), Some("text"));
    assert_eq!(from_file["key_cache_ms"].as_integer(), Some(1_000));
    let env = print(
        &[
            ("LEADSCORE_LISTEN", "127.0.0.1:7000"),
            (
                "LEADSCORE_CORS_ORIGINS",
                "https://b.example,https://c.example",
            ),
        ],
        &[],
    );
    assert_eq!(env["listen"].as_str(), Some("127.0.0.1:7000"));
    assert_eq!(env["cors_origins"].as_array().unwrap().len(), 2);
    let flags = print(
        &[("LEADSCORE_LISTEN", "127.0.0.1:7000")],
        &["--listen", "127.0.0.1:6000", "--body-limit", "5000"],
    );
    assert_eq!(flags["listen"].as_str(), Some("127.0.0.1:6000"));
    assert_eq!(flags["body_limit"].as_integer(), Some(5000));
    // A limit no message fits in is refused, not served.
    let tiny = leadscore(&["serve", "--body-limit", "5", "--print-config"]).failure();
    assert!(tiny.contains("body_limit: at least 1024"), "{tiny}");
    // So are an address without a port and an origin no browser sends.
    for (args, message) in [
        (["--listen", "localhost"], "listen: expected HOST:PORT"),
        (
            ["--listen", "127.0.0.1:99999"],
            "listen: expected HOST:PORT",
        ),
        (
            ["--cors-origin", "https://shop.example/"],
            "cors_origins: CORS origin \"https://shop.example/\": an origin has no path",
        ),
    ] {
        let refused = leadscore(&[&["serve", "--print-config"][..], &args[..]].concat()).failure();
        assert!(refused.contains(message), "{refused}");
    }
    let refused = leadscore(&["serve", "--print-config", "--max-future", "soon"]).failure();
    assert!(
        refused.contains("max_future: expected a duration"),
        "{refused}"
    );
    assert_eq!(from_file["max_future"].as_str(), Some("5m"));
    let off = print(&[("LEADSCORE_MAX_FUTURE", "off")], &[]);
    assert_eq!(off["max_future"].as_str(), Some("off"));
    assert_eq!(from_file["max_queued_events"].as_integer(), Some(50_000));
    let queue = print(&[("LEADSCORE_MAX_QUEUED_EVENTS", "5000")], &[]);
    assert_eq!(queue["max_queued_events"].as_integer(), Some(5000));
    let refused = leadscore(&["serve", "--print-config", "--max-queued-events", "0"]).failure();
    assert!(
        refused.contains("max_queued_events: at least 1"),
        "{refused}"
    );
    assert_eq!(
        from_file["writer_cache_contacts"].as_integer(),
        Some(leadscore_store::DEFAULT_LIVE_CONTACTS as i64)
    );
    let cache = print(&[("LEADSCORE_WRITER_CACHE_CONTACTS", "0")], &[]);
    assert_eq!(cache["writer_cache_contacts"].as_integer(), Some(0));
    let cache = print(&[], &["--writer-cache-contacts", "200000"]);
    assert_eq!(cache["writer_cache_contacts"].as_integer(), Some(200_000));
    assert_eq!(from_file["pretouch_mib"].as_integer(), Some(0));
    let pretouch = print(&[("LEADSCORE_PRETOUCH_MIB", "1024")], &[]);
    assert_eq!(pretouch["pretouch_mib"].as_integer(), Some(1024));
    let refused = leadscore(&["serve", "--print-config", "--pretouch-mib", "1000000000"]).failure();
    assert!(
        refused.contains("pretouch_mib: at most this machine's memory ("),
        "{refused}"
    );
    assert_eq!(from_file["grow_ahead_mib"].as_integer(), Some(0));
    let grow = print(&[("LEADSCORE_GROW_AHEAD_MIB", "256")], &[]);
    assert_eq!(grow["grow_ahead_mib"].as_integer(), Some(256));
    let refused = with_db(
        "postgres://nobody@127.0.0.1:1/none",
        &["serve", "--grow-ahead-mib", "8"],
    )
    .failure();
    assert!(
        refused.contains("grow_ahead_mib: for a SQLite store only"),
        "{refused}"
    );
    let named = print(&[], &["--listen", "localhost:8080"]);
    assert_eq!(named["listen"].as_str(), Some("localhost:8080"));
    std::fs::write(dir.path().join("bad.toml"), "lisen = 1\n").unwrap();
    let bad = leadscore(&[
        "serve",
        "--config",
        &dir.path().join("bad.toml").display().to_string(),
        "--print-config",
    ])
    .failure();
    assert!(bad.contains("unknown field `lisen`"), "{bad}");
}

#[test]
fn outbox_lists_delivers_and_reports_firings() {
    let (dir, events, _) = generated("300", "200", "5");
    let db = store_with(&dir, "email", &events, None);
    let firings = with_db(&db, &["outbox", "firings", "--trigger", "list-hygiene"]).success();
    let n = firings.lines().count();
    assert!(
        n > 0,
        "the email model's list-hygiene trigger fires on this data"
    );
    for line in firings.lines() {
        let f: Value = serde_json::from_str(line).unwrap();
        assert_eq!(f["trigger"], "list-hygiene");
        assert_eq!(f["late"], true, "imported history is late");
    }
    let listed: Value =
        serde_json::from_str(&with_db(&db, &["outbox", "list", "--json"]).success()).unwrap();
    assert_eq!(listed["counts"]["pending"], n as u64);
    let run = with_db(&db, &["outbox", "deliver"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("{n} delivered, 0 to retry, 0 dead")),
        "{}",
        run.stderr
    );
    let table = with_db(
        &db,
        &["outbox", "list", "--status", "delivered", "--limit", "1"],
    )
    .success();
    assert!(
        table.starts_with(&format!("0 pending, {n} delivered, 0 dead\n")),
        "{table}"
    );
    assert!(table.contains(" log "), "{table}");
    let missing = with_db(&db, &["outbox", "retry", "--id", "999999"]).failure();
    assert!(missing.contains("no dead letter 999999"), "{missing}");
    let purge = with_db(&db, &["outbox", "purge", "--all"]);
    assert!(
        purge.stderr.contains("0 dead letter(s) deleted"),
        "{}",
        purge.stderr
    );
    let bad = with_db(&db, &["outbox", "list", "--status", "lost"]).failure();
    assert!(bad.contains("expected pending, delivered or dead"), "{bad}");
}
