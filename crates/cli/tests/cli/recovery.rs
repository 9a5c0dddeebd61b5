//! Crash safety of the store through the command line: the importer and an
//! activation killed with SIGKILL at varied points, two processes importing
//! into one PostgreSQL, a dropped PostgreSQL connection.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{example, generated, score};
use crate::store::{store_with, with_db};

/// Starts `leadscore import --report-commits` in the background; its stdout
/// lines say what has been committed.
fn spawn_import(
    db: &str,
    events: &str,
    batch: &str,
    stderr: Stdio,
) -> (
    std::process::Child,
    std::io::Lines<BufReader<std::process::ChildStdout>>,
) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_leadscore"))
        .args([
            "--db",
            db,
            "import",
            events,
            "--batch",
            batch,
            "--report-commits",
        ])
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

/// Per-contact history chains: each entry starts where the previous ended.
fn assert_history_consistent(db: &str, contacts: &[String]) {
    for id in contacts {
        let text = with_db(db, &["history", "--contact", id, "--json"]).success();
        let entries: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let own: Vec<&Value> = entries
            .iter()
            .filter(|e| e["contact"] == id.as_str())
            .collect();
        for pair in own.windows(2) {
            assert!(pair[0]["seq"].as_i64() < pair[1]["seq"].as_i64());
            assert_eq!(
                pair[0]["new"], pair[1]["old"],
                "{id}: gap or duplicate in history"
            );
        }
    }
}

#[test]
fn a_killed_import_loses_nothing_committed_and_resumes_exactly() {
    let (dir, events, _) = generated("400", "120", "9");
    let reference = score("b2b", &["--events", &events, "--as-of", "2025-06-01"]).success();
    for (round, kill_after) in [1usize, 4, 9].into_iter().enumerate() {
        let db = dir
            .path()
            .join(format!("crash{round}.db"))
            .display()
            .to_string();
        with_db(&db, &["model", "add", &example("b2b"), "--activate"]).success();
        let (mut child, mut lines) = spawn_import(&db, &events, "300", Stdio::null());
        let mut committed = 0u64;
        for _ in 0..kill_after {
            match lines.next() {
                Some(line) => {
                    committed = line
                        .unwrap()
                        .trim_start_matches("committed ")
                        .parse()
                        .unwrap()
                }
                None => break,
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let status: Value =
            serde_json::from_str(&with_db(&db, &["status", "--json"]).success()).unwrap();
        let stored = status["stats"]["events"].as_u64().unwrap();
        // `committed` counts every message of the committed transactions,
        // duplicates included (about 0.2 % of generated data), and those
        // are not stored twice.
        assert!(
            stored >= committed.saturating_sub(committed / 100 + 50),
            "round {round}: {stored} stored < {committed} committed"
        );
        assert!(committed > 0 || kill_after == 0);
        // Restart: the rest comes in, nothing twice.
        with_db(&db, &["import", &events]).success();
        let from_store = with_db(&db, &["score", "--as-of", "2025-06-01"]).success();
        assert_eq!(from_store, reference, "round {round}");
        let contacts: Vec<String> = reference
            .lines()
            .skip(1)
            .take(25)
            .map(|l| l.split(',').next().unwrap().to_string())
            .collect();
        assert_history_consistent(&db, &contacts);
    }
}

#[test]
fn a_killed_activation_keeps_old_scores_and_completes_when_rerun() {
    let (dir, events, _) = generated("3000", "20", "10");
    let db = store_with(&dir, "b2b", &events, None);
    with_db(&db, &["model", "add", &example("ecommerce")]).success();
    let old = with_db(&db, &["score", "--as-of", "2025-02-01"]).success();
    for delay_ms in [30u64, 120] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_leadscore"))
            .args(["--db", &db, "model", "activate", "2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();
        let list = with_db(&db, &["model", "list"]).success();
        if list.lines().nth(1).unwrap().starts_with("1        *") {
            // Not switched: the old scores are still served.
            assert_eq!(
                with_db(&db, &["score", "--as-of", "2025-02-01"]).success(),
                old
            );
        }
    }
    with_db(&db, &["model", "activate", "2"]).success();
    let expected = score("ecommerce", &["--events", &events, "--as-of", "2025-02-01"]).success();
    assert_eq!(
        with_db(&db, &["score", "--as-of", "2025-02-01"]).success(),
        expected
    );
    let rows = with_db(&db, &["status", "--json"]).success();
    let stats: Value = serde_json::from_str(&rows).unwrap();
    assert_eq!(stats["active_model"]["version"], 2);
}

/// The PostgreSQL server for tests, as in the store's suite; under CI its
/// absence is a failure.
fn postgres_url() -> Option<String> {
    match std::env::var("LEADSCORE_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("CI").is_err(),
                "CI is set but LEADSCORE_TEST_POSTGRES is not"
            );
            eprintln!("LEADSCORE_TEST_POSTGRES not set: skipped");
            None
        }
    }
}

/// A fresh schema; the URL that selects it.
fn postgres_schema(url: &str, name: &str) -> String {
    let schema = format!("cli_{name}_{}", std::process::id());
    let psql_like = |sql: &str| {
        let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
        client.batch_execute(sql).unwrap();
    };
    psql_like(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
    ));
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

#[test]
fn two_processes_import_into_one_postgres_concurrently() {
    let Some(url) = postgres_url() else { return };
    let (dir, events, _) = generated("120", "60", "13");
    let text = std::fs::read_to_string(&events).unwrap();
    // Two files with interleaved lines: both processes touch the same contacts.
    let (mut a, mut b) = (String::new(), String::new());
    for (i, line) in text.lines().enumerate() {
        let half = if i % 2 == 0 { &mut a } else { &mut b };
        half.push_str(line);
        half.push('\n');
    }
    let (path_a, path_b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    std::fs::write(&path_a, a).unwrap();
    std::fs::write(&path_b, b).unwrap();
    let db = postgres_schema(&url, "concurrent");
    with_db(&db, &["model", "add", &example("b2b"), "--activate"]).success();
    let spawn = |path: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_leadscore"))
            .args([
                "--db",
                &db,
                "import",
                &path.display().to_string(),
                "--batch",
                "200",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (spawn(&path_a), spawn(&path_b));
    for child in [first, second] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let expected = score("b2b", &["--events", &events, "--as-of", "2025-03-01"]).success();
    assert_eq!(
        with_db(&db, &["score", "--as-of", "2025-03-01"]).success(),
        expected
    );
    // Live state too, for a few contacts.
    for line in expected.lines().skip(1).take(10) {
        let id = line.split(',').next().unwrap();
        let live: Value = serde_json::from_str(
            &with_db(&db, &["contact", id, "--as-of", "2025-03-01", "--json"]).success(),
        )
        .unwrap();
        let score: f64 = line.split(',').nth(1).unwrap().parse().unwrap();
        assert!(
            (live["score"]["score"].as_f64().unwrap() - score).abs() < 0.006,
            "{id}"
        );
    }
}

#[test]
fn a_dropped_postgres_connection_fails_the_import_cleanly_and_a_rerun_completes() {
    let Some(url) = postgres_url() else { return };
    let (_dir, events, _) = generated("300", "120", "15");
    let name = format!("lsdrop{}", std::process::id());
    let db = format!("{}&application_name={name}", postgres_schema(&url, "drop"));
    with_db(&db, &["model", "add", &example("b2b"), "--activate"]).success();
    let (child, mut lines) = spawn_import(&db, &events, "100", Stdio::piped());
    let _ = lines.next(); // one batch committed
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&name],
        )
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: ") && !stderr.contains("panicked"),
        "{stderr}"
    );
    // Nothing half-written: a rerun completes and equals the batch.
    with_db(&db, &["import", &events]).success();
    let expected = score("b2b", &["--events", &events, "--as-of", "2025-06-01"]).success();
    assert_eq!(
        with_db(&db, &["score", "--as-of", "2025-06-01"]).success(),
        expected
    );
}
