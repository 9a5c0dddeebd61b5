//! The store through the command line: import, score from the store, model
//! versions, history, erase/export, bad databases, and crash safety (the
//! importer and an activation killed with SIGKILL at varied points).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{example, generated, leadscore, score};

/// `leadscore --db DB ARGS`.
fn with_db(db: &str, args: &[&str]) -> crate::harness::Run {
    let mut all = vec!["--db", db];
    all.extend_from_slice(args);
    leadscore(&all)
}

/// A store at `dir/ls.db` with `model` active and `events` imported.
fn store_with(dir: &tempfile::TempDir, model: &str, events: &str, crm: Option<&str>) -> String {
    let db = dir.path().join("ls.db").display().to_string();
    with_db(&db, &["model", "add", &example(model), "--activate"]).success();
    let mut args = vec!["import", events];
    if let Some(crm) = crm {
        args.extend(["--contacts", crm]);
    }
    with_db(&db, &args).success();
    db
}

#[test]
fn the_store_scores_like_the_files() {
    let (dir, events, crm) = generated("150", "90", "5");
    let db = store_with(&dir, "b2b", &events, Some(&crm));
    for as_of in ["2025-02-15", "2025-04-01T00:00:00Z"] {
        let from_files = score(
            "b2b",
            &["--events", &events, "--contacts", &crm, "--as-of", as_of],
        )
        .success();
        let from_store = with_db(&db, &["score", "--as-of", as_of]).success();
        assert_eq!(from_store, from_files, "as of {as_of}");
    }
    // `explain` from the store (that contact's log only) = from the files.
    let from_files = score(
        "b2b",
        &[
            "--events",
            &events,
            "--contacts",
            &crm,
            "--as-of",
            "2025-04-01",
            "--explain",
            "--format",
            "jsonl",
        ],
    )
    .success();
    let first: Value = serde_json::from_str(from_files.lines().next().unwrap()).unwrap();
    let id = first["contact_id"].as_str().unwrap();
    let explained = leadscore(&[
        "explain",
        "--model",
        &example("b2b"),
        "--events",
        &events,
        "--contacts",
        &crm,
        "--contact",
        id,
        "--as-of",
        "2025-04-01",
        "--json",
    ])
    .success();
    assert_eq!(
        with_db(
            &db,
            &[
                "explain",
                "--contact",
                id,
                "--as-of",
                "2025-04-01",
                "--json"
            ]
        )
        .success(),
        explained
    );
    // The live state (not the log) answers `contact`; same numbers.
    let rows = score(
        "b2b",
        &[
            "--events",
            &events,
            "--contacts",
            &crm,
            "--as-of",
            "2025-04-01",
            "--format",
            "jsonl",
        ],
    )
    .success();
    for line in rows.lines().take(20) {
        let row: Value = serde_json::from_str(line).unwrap();
        let id = row["contact_id"].as_str().unwrap();
        let live: Value = serde_json::from_str(
            &with_db(&db, &["contact", id, "--as-of", "2025-04-01", "--json"]).success(),
        )
        .unwrap();
        assert_eq!(live["contact_id"], row["contact_id"]);
        assert!(
            (live["score"]["score"].as_f64().unwrap() - row["score"].as_f64().unwrap()).abs()
                < 1e-9,
            "{id}"
        );
        assert_eq!(live["score"]["tier"], row["tier"], "{id}");
    }
}

#[test]
fn contacts_columns_can_be_renamed_or_left_out() {
    let (dir, _, crm) = generated("20", "30", "14");
    let db = dir.path().join("ls.db").display().to_string();
    with_db(&db, &["model", "add", &example("b2b"), "--activate"]).success();
    with_db(
        &db,
        &[
            "import",
            "--contacts",
            &crm,
            "--map",
            "crm_owner=owner",
            "--map",
            "annual_value=",
        ],
    )
    .success();
    let first = std::fs::read_to_string(&crm)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .to_string();
    let contact: Value =
        serde_json::from_str(&with_db(&db, &["contact", &first, "--json"]).success()).unwrap();
    let traits = contact["traits"].as_object().unwrap();
    assert!(
        traits.contains_key("owner") && traits.contains_key("lifecycle"),
        "{traits:?}"
    );
    assert!(
        !traits.contains_key("crm_owner") && !traits.contains_key("annual_value"),
        "{traits:?}"
    );
    let e = with_db(&db, &["import", "--contacts", &crm, "--map", "Owner=owner"]).failure();
    assert!(e.contains("no `Owner` column to map"), "{e}");
}

#[test]
fn the_demo_leaves_a_store_to_explore() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db").display().to_string();
    for _ in 0..2 {
        // Twice: the second run replaces the first demo store.
        let out = leadscore(&["demo", "--contacts", "150", "--store", &db]).success();
        assert!(
            out.contains("top contacts:") && out.contains("live score"),
            "{out}"
        );
        let line = out.lines().find(|l| l.contains(": live score")).unwrap();
        let numbers: Vec<&str> = line
            .split(['(', ')', ' '])
            .filter(|w| w.parse::<f64>().is_ok())
            .collect();
        assert_eq!(numbers[0], numbers[1], "live equals batch: {line}");
    }
    let status: Value =
        serde_json::from_str(&with_db(&db, &["status", "--json"]).success()).unwrap();
    assert_eq!(status["stats"]["contacts"], 150);
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "mine").unwrap();
    let e = leadscore(&[
        "demo",
        "--contacts",
        "10",
        "--store",
        &text.display().to_string(),
    ])
    .failure();
    assert!(e.contains("is not a leadscore store"), "{e}");
    assert_eq!(std::fs::read_to_string(&text).unwrap(), "mine");
}

/// The demo replaces only stores it built: a store of real data given as
/// its path (`--store` or `--db`, also for `serve --demo`) is refused and
/// left as it was.
#[test]
fn the_demo_never_replaces_a_store_of_real_data() {
    let (dir, events, _) = generated("30", "30", "3");
    let db = store_with(&dir, "b2b", &events, None);
    let before = with_db(&db, &["score", "--as-of", "2025-02-01"]).success();
    for args in [
        vec!["demo", "--contacts", "10", "--store", &db],
        vec!["--db", &db, "demo", "--contacts", "10"],
        vec!["--db", &db, "serve", "--demo", "--listen", "127.0.0.1:0"],
    ] {
        let e = leadscore(&args).failure();
        assert!(e.contains("that the demo did not build"), "{args:?}: {e}");
    }
    assert_eq!(
        with_db(&db, &["score", "--as-of", "2025-02-01"]).success(),
        before
    );
    // `--db` names where the demo builds its store.
    let demo = dir.path().join("mine-demo.db").display().to_string();
    let out = leadscore(&["--db", &demo, "demo", "--contacts", "20"]).success();
    assert!(
        out.contains(&format!("leadscore --db {demo} contact")),
        "{out}"
    );
    let status: Value =
        serde_json::from_str(&with_db(&demo, &["status", "--json"]).success()).unwrap();
    assert_eq!(status["stats"]["contacts"], 20);
    // Not while it is open elsewhere (a running `serve --demo`): deleting
    // its files would take the data from under that connection.
    let held = leadscore_store::SqliteStore::open(&demo).unwrap();
    let e = leadscore(&["--db", &demo, "demo", "--contacts", "5"]).failure();
    assert!(e.contains("is in use"), "{e}");
    let status: Value =
        serde_json::from_str(&with_db(&demo, &["status", "--json"]).success()).unwrap();
    assert_eq!(status["stats"]["contacts"], 20, "left as it was");
    drop(held);
    leadscore(&["--db", &demo, "demo", "--contacts", "5"]).success();
}

#[test]
fn importing_again_changes_nothing_and_says_so() {
    let (dir, events, _) = generated("40", "60", "6");
    let db = store_with(&dir, "ecommerce", &events, None);
    let before = with_db(&db, &["status", "--json"]).success();
    let again = with_db(&db, &["import", &events]);
    assert_eq!(again.code, 0);
    assert!(
        again.stderr.contains("imported 0 new message(s)"),
        "{}",
        again.stderr
    );
    let after = with_db(&db, &["status", "--json"]).success();
    let stats = |text: &str| serde_json::from_str::<Value>(text).unwrap()["stats"].clone();
    assert_eq!(stats(&after)["events"], stats(&before)["events"]);
    assert_eq!(
        stats(&after)["ledger_entries"],
        stats(&before)["ledger_entries"]
    );
}

#[test]
fn model_versions_diff_dry_run_and_rollback() {
    let (dir, events, _) = generated("60", "60", "7");
    let db = store_with(&dir, "b2b", &events, None);
    let source = std::fs::read_to_string(example("b2b")).unwrap();
    let changed = dir.path().join("b2b-v2.toml");
    std::fs::write(&changed, source.replacen("points = 5", "points = 9", 1)).unwrap();
    let changed = changed.display().to_string();
    let dry = with_db(&db, &["model", "dry-run", &changed]).success();
    assert!(
        dry.contains("dry run of")
            && dry.contains("both models as of")
            && dry.contains("top movers"),
        "{dry}"
    );
    let dated = with_db(
        &db,
        &[
            "model",
            "dry-run",
            &changed,
            "--as-of",
            "2031-01-01",
            "--json",
        ],
    )
    .success();
    let dated: serde_json::Value = serde_json::from_str(&dated).unwrap();
    assert_eq!(dated["as_of"], "2031-01-01T00:00:00Z", "{dated}");
    let bad = with_db(&db, &["model", "dry-run", &changed, "--as-of", "soon"]).failure();
    assert!(bad.contains("--as-of"), "{bad}");
    with_db(&db, &["model", "add", &changed]).success();
    let list = with_db(&db, &["model", "list"]).success();
    assert_eq!(list.lines().count(), 3, "{list}");
    assert!(
        list.lines().nth(1).unwrap().starts_with("1        *"),
        "{list}"
    );
    let diff = with_db(&db, &["model", "diff", "1", "2"]).success();
    assert!(
        diff.starts_with("~ ") && diff.contains("points: 5 -> 9"),
        "{diff}"
    );
    let activated = with_db(&db, &["model", "activate", "2"]);
    assert!(
        activated.stderr.contains("version 2 active"),
        "{}",
        activated.stderr
    );
    let rolled = with_db(&db, &["model", "rollback"]);
    assert!(
        rolled.stderr.contains("version 1 active"),
        "{}",
        rolled.stderr
    );
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[model]\nname = \"x\"\n[[fit]]\nid = \"f\"\nwhen = 'traits.a =='\npoints = 1\n",
    )
    .unwrap();
    let e = with_db(&db, &["model", "add", &bad.display().to_string()]).failure();
    assert!(e.contains("bad.toml:5:") && e.contains("`f`"), "{e}");
}

/// `top` lists the store's contacts by their score now (as `contact` scores
/// each at the same time), filters select, and `--summary` counts them all.
#[test]
fn top_lists_contacts_by_their_score_now() {
    let (dir, events, _) = generated("80", "60", "12");
    let db = store_with(&dir, "b2b", &events, None);
    let parse = |text: String| -> Vec<Value> {
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let all = parse(with_db(&db, &["top", "--limit", "1000", "--json"]).success());
    let status: Value =
        serde_json::from_str(&with_db(&db, &["status", "--json"]).success()).unwrap();
    assert_eq!(
        all.len() as u64,
        status["stats"]["contacts"].as_u64().unwrap()
    );
    let score = |c: &Value| c["score"]["score"].as_f64().unwrap();
    assert!(all.windows(2).all(|w| score(&w[0]) >= score(&w[1])));
    for c in all.iter().take(5) {
        let id = c["contact_id"].as_str().unwrap();
        let as_of = c["as_of"].as_str().unwrap();
        let one: Value = serde_json::from_str(
            &with_db(&db, &["contact", id, "--as-of", as_of, "--json"]).success(),
        )
        .unwrap();
        assert_eq!(one["score"], c["score"], "{id}");
    }
    // A tier and a floor select exactly the contacts with both. Scores
    // decay between two runs, so the floor lies between two scores.
    let tier = all[0]["score"]["tier"].as_str().unwrap();
    let gap = (all.len() / 4..all.len() - 1)
        .find(|&k| score(&all[k]) - score(&all[k + 1]) > 1e-3)
        .unwrap();
    let floor = (score(&all[gap]) + score(&all[gap + 1])) / 2.0;
    let picked = parse(
        with_db(
            &db,
            &[
                "top",
                "--tier",
                tier,
                "--min",
                &floor.to_string(),
                "--limit",
                "1000",
                "--json",
            ],
        )
        .success(),
    );
    let wanted = all
        .iter()
        .filter(|c| c["score"]["tier"] == tier && score(c) >= floor)
        .count();
    assert!(wanted > 0);
    assert_eq!(picked.len(), wanted);
    // A tier the model does not have is an error, not an empty list.
    let e = with_db(&db, &["top", "--tier", "Hot"]).failure();
    assert!(e.contains("no tier \"Hot\""), "{e}");
    let e = with_db(&db, &["top", "--min", "50", "--max", "10"]).failure();
    assert!(e.contains("min 50 is above max 10"), "{e}");
    // The table: a title, a header and one row per contact.
    let table = with_db(&db, &["top", "--limit", "3"]).success();
    assert!(table.starts_with("top 3 as of "), "{table}");
    assert_eq!(table.lines().count(), 5, "{table}");
    // The summary counts every contact once.
    let summary: Value =
        serde_json::from_str(&with_db(&db, &["top", "--summary", "--json"]).success()).unwrap();
    let cells: u64 = summary["tier_grade"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["contacts"].as_u64().unwrap())
        .sum();
    assert_eq!(summary["contacts"].as_u64().unwrap(), all.len() as u64);
    assert_eq!(
        cells + summary["excluded"].as_u64().unwrap(),
        all.len() as u64
    );
    let text = with_db(&db, &["top", "--summary"]).success();
    assert!(
        text.contains("tier/grade") && text.contains("score"),
        "{text}"
    );
}

#[test]
fn history_erase_and_export() {
    let (dir, events, _) = generated("30", "60", "8");
    let db = store_with(&dir, "ecommerce", &events, None);
    let history = with_db(&db, &["history", "--contact", "u00000003", "--json"]).success();
    let entries: Vec<Value> = history
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(entries.len() > 1);
    let export: Value =
        serde_json::from_str(&with_db(&db, &["export", "--contact", "a00000003"]).success())
            .unwrap();
    assert_eq!(export["contact_id"], "u00000003");
    assert!(!export["events"].as_array().unwrap().is_empty());
    let erased = with_db(&db, &["erase", "--contact", "u00000003"]);
    assert!(
        erased.stderr.contains("erased contact u00000003"),
        "{}",
        erased.stderr
    );
    assert!(with_db(&db, &["contact", "u00000003"])
        .failure()
        .contains("no contact"));
    let replay = with_db(&db, &["import", &events]);
    assert!(
        replay.stderr.contains("of erased contacts ignored"),
        "{}",
        replay.stderr
    );
    assert!(with_db(&db, &["contact", "u00000003"])
        .failure()
        .contains("no contact"));
}

#[test]
fn bad_stores_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not a database\n").unwrap();
    let e = with_db(&text.display().to_string(), &["status"]).failure();
    assert!(e.contains("not a leadscore database"), "{e}");
    assert_eq!(std::fs::read_to_string(&text).unwrap(), "not a database\n");
    let missing = dir.path().join("missing.db").display().to_string();
    let e = with_db(&missing, &["score"]).failure();
    assert!(e.contains("no store at"), "{e}");
    assert!(!dir.path().join("missing.db").exists());
    // A leadscore store whose pages were overwritten: an error, no panic.
    let (gen, events, _) = generated("20", "30", "12");
    let corrupt = gen.path().join("corrupt.db");
    let corrupt_path = corrupt.display().to_string();
    with_db(
        &corrupt_path,
        &["model", "add", &example("email"), "--activate"],
    )
    .success();
    with_db(&corrupt_path, &["import", &events]).success();
    let mut bytes = std::fs::read(&corrupt).unwrap();
    let len = bytes.len();
    for b in &mut bytes[4096..len.min(4096 * 40)] {
        *b = 0xA5;
    }
    std::fs::write(&corrupt, bytes).unwrap();
    for args in [
        &["status"][..],
        &["score"],
        &["contact", "u00000001"],
        &["import", &events],
    ] {
        let run = with_db(&corrupt_path, args);
        assert_eq!(run.code, 1, "{args:?}: {}", run.stdout);
        assert!(
            run.stderr.starts_with("error: "),
            "{args:?}: {}",
            run.stderr
        );
        assert!(!run.stderr.contains("panicked"), "{args:?}: {}", run.stderr);
    }
    // A PostgreSQL that is not there: a clear error, the password hidden.
    let e = with_db("postgres://ls:secret@127.0.0.1:1/leadscore", &["status"]).failure();
    assert!(
        e.contains("cannot open the store postgres://ls:***@127.0.0.1:1/leadscore"),
        "{e}"
    );
    assert!(!e.contains("secret"), "{e}");
    let empty = dir.path().join("empty.db").display().to_string();
    with_db(
        &empty,
        &[
            "import",
            &crate::harness::fixtures()
                .join("events.jsonl")
                .display()
                .to_string(),
        ],
    )
    .success();
    let e = with_db(&empty, &["score"]).failure();
    assert!(e.contains("no active model"), "{e}");
}

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

#[test]
fn serve_logs_json_lines_and_stops_gracefully_on_sigterm() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("serve.db").display().to_string();
    with_db(&db, &["model", "add", &example("email"), "--activate"]).success();
    let mut child = Command::new(env!("CARGO_BIN_EXE_leadscore"))
        .args([
            "--db",
            &db,
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut logged = Vec::new();
    let addr = loop {
        let line = lines
            .next()
            .expect("the server logs before it listens")
            .unwrap();
        let record: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        logged.push(record.clone());
        if record["fields"]["message"] == "listening" {
            break record["fields"]["addr"].as_str().unwrap().to_string();
        }
    };
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
        logged.push(serde_json::from_str(&line.unwrap()).unwrap());
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
