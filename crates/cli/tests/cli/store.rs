//! The store through the command line: import, score from the store, the
//! demo's store, model versions, bad databases. Leaderboards, history and
//! erase/export are in `listing`, crash safety in `recovery`, the server
//! process in `serve`.

use serde_json::Value;

use crate::harness::{example, generated, leadscore, score};

/// `leadscore --db DB ARGS`.
pub(crate) fn with_db(db: &str, args: &[&str]) -> crate::harness::Run {
    let mut all = vec!["--db", db];
    all.extend_from_slice(args);
    leadscore(&all)
}

/// A store at `dir/ls.db` with `model` active and `events` imported.
pub(crate) fn store_with(
    dir: &tempfile::TempDir,
    model: &str,
    events: &str,
    crm: Option<&str>,
) -> String {
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
    // The store's log (read one contact at a time) with a contacts file
    // given when scoring, holding an id the store never saw, in the
    // middle of the file: the same rows as all from files.
    let bare = tempfile::tempdir().unwrap();
    let bare_db = bare.path().join("ls.db").display().to_string();
    with_db(&bare_db, &["model", "add", &example("b2b"), "--activate"]).success();
    with_db(&bare_db, &["import", &events]).success();
    let text = std::fs::read_to_string(&crm).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let columns = lines[0].split(',').count();
    let stranger = format!("zz-new{}", ",".repeat(columns - 1));
    lines.insert(lines.len() / 2, &stranger);
    let crm_plus = bare.path().join("crm.csv");
    std::fs::write(&crm_plus, lines.join("\n") + "\n").unwrap();
    let crm_plus = crm_plus.display().to_string();
    for as_of in ["2025-02-15", "2025-04-01T00:00:00Z"] {
        let from_files = score(
            "b2b",
            &[
                "--events",
                &events,
                "--contacts",
                &crm_plus,
                "--as-of",
                as_of,
            ],
        )
        .success();
        let from_store = with_db(
            &bare_db,
            &["score", "--contacts", &crm_plus, "--as-of", as_of],
        )
        .success();
        assert!(from_store.contains("\nzz-new,"), "{from_store}");
        assert_eq!(
            from_store, from_files,
            "as of {as_of}, contacts file at scoring"
        );
        // The firings of the same period, from the store's log as from the
        // files (the fixture's triggers fire at messages, decay ticks and
        // inactivity starts).
        let timed = format!(
            "{}/tests/cli/fixtures/triggers.toml",
            env!("CARGO_MANIFEST_DIR")
        );
        let simulate = |extra: &[&str]| {
            let mut args = vec!["triggers", "--model", &timed, "--to", as_of];
            args.extend(extra);
            with_db(&bare_db, &args).success()
        };
        let from_store = simulate(&[]);
        assert!(from_store.lines().count() > 20, "{from_store}");
        assert_eq!(
            from_store,
            simulate(&["--events", &events]),
            "firings as of {as_of}"
        );
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

/// `evaluate` and `compare` read the store's log one contact at a time
/// and report what they report from the files, with outcomes from an
/// event and from a file.
#[test]
fn the_store_evaluates_like_the_files() {
    let (dir, events, _) = generated("400", "120", "9");
    // A visitor seen in January who buys in February, stitched to u00000001 in
    // April: halfway, a contact of its own, read with u00000001 (out of
    // id order).
    let mut text = std::fs::read_to_string(&events).unwrap();
    for (i, (when, line)) in [
        (
            "2025-01-05",
            r#""anonymousId":"zz-visitor","event":"Product Viewed""#,
        ),
        (
            "2025-02-11",
            r#""anonymousId":"zz-visitor","event":"Order Completed""#,
        ),
        (
            "2025-04-20",
            r#""anonymousId":"zz-visitor","userId":"u00000001","event":"Product Viewed""#,
        ),
    ]
    .iter()
    .enumerate()
    {
        text.push_str(&format!(
            "{{\"type\":\"track\",{line},\"messageId\":\"zz-{i}\",\"timestamp\":\"{when}T10:00:00Z\"}}\n"
        ));
    }
    let events = dir.path().join("events-zz.jsonl");
    std::fs::write(&events, text).unwrap();
    let events = events.display().to_string();
    let db = store_with(&dir, "ecommerce", &events, None);
    let outcomes = dir.path().join("outcomes.csv");
    let mut csv = String::from("contact_id,outcome,at\n");
    for i in 0..400 {
        let outcome = if i % 3 == 0 { "won" } else { "lost" };
        csv.push_str(&format!("u{i:08},{outcome},2025-04-{:02}\n", 1 + i % 28));
    }
    std::fs::write(&outcomes, csv).unwrap();
    let outcomes = outcomes.display().to_string();
    let (ecommerce, b2b) = (example("ecommerce"), example("b2b"));
    // Halfway, anonymous ids stitched later are contacts of their own,
    // read with the contact they belong to now (out of id order).
    let mut reports = Vec::new();
    for (labels, halfway) in [
        (&["--outcome-event", "Order Completed"][..], false),
        (&["--outcome-event", "Order Completed"], true),
        (&["--outcomes", &outcomes], false),
    ] {
        let run = |args: &[&str], files: bool| {
            let mut all: Vec<&str> = args.to_vec();
            all.extend(labels);
            all.extend(["--json", "--bootstrap", "200"]);
            if files {
                all.extend(["--events", &events]);
            }
            with_db(&db, &all).success()
        };
        let mut evaluate = vec!["evaluate", "--model", &ecommerce, "--monthly"];
        if halfway {
            evaluate.extend(["--as-of", "2025-03-01"]);
        }
        let from_store = run(&evaluate, false);
        assert!(from_store.contains("\"auc\""), "{from_store}");
        assert_eq!(
            from_store,
            run(&evaluate, true),
            "evaluate, {labels:?}, {halfway}"
        );
        let mut compare = vec!["compare", "--champion", &ecommerce, "--challenger", &b2b];
        if halfway {
            compare.extend(["--as-of", "2025-03-01"]);
        }
        let compared = run(&compare, false);
        assert_eq!(compared, run(&compare, true), "compare, {labels:?}");
        reports.push(compared);
    }
    assert_ne!(reports[0], reports[1], "--as-of cuts the log compared");
}

#[test]
fn contacts_columns_can_be_renamed_or_left_out() {
    let (dir, _, crm) = generated("20", "30", "14");
    let db = dir.path().join("ls.db").display().to_string();
    with_db(&db, &["model", "add", &example("b2b"), "--activate"]).success();
    let imported = with_db(
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
    );
    assert_eq!(imported.code, 0, "{}", imported.stderr);
    // Its rows are dated before any event on purpose: not an odd date.
    assert!(
        !imported.stderr.contains("before 2000"),
        "{}",
        imported.stderr
    );
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
    let refused = leadscore(&["--db", &demo, "demo", "--contacts", "5"]);
    assert!(
        refused.stdout.is_empty(),
        "refused before the tour: {}",
        refused.stdout
    );
    let e = refused.failure();
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
    assert!(
        !again.stderr.contains("dated after now"),
        "{}",
        again.stderr
    );
    assert!(!again.stderr.contains("before 2000"), "{}", again.stderr);
    // A message dated after now (a wrong year) is stored, and said; so are
    // messages from 1970 (seconds read as milliseconds).
    let typo = dir.path().join("typo.jsonl");
    std::fs::write(
        &typo,
        [
            r#"{"type":"track","userId":"u1","event":"Order Completed","messageId":"typo-1","timestamp":"2099-01-01T00:00:00Z"}"#,
            r#"{"type":"track","userId":"u1","event":"Order Completed","messageId":"typo-2","timestamp":"1970-01-21T03:33:20Z"}"#,
            r#"{"type":"track","userId":"u1","event":"Order Completed","messageId":"typo-3","timestamp":"1970-01-20T00:00:00Z"}"#,
        ]
        .join("\n"),
    )
    .unwrap();
    let imported = with_db(&db, &["import", &typo.display().to_string()]);
    assert!(
        imported
            .stderr
            .contains("1 message(s) are dated after now, the latest 2099-01-01T00:00:00Z"),
        "{}",
        imported.stderr
    );
    assert!(
        imported
            .stderr
            .contains("2 message(s) are dated before 2000, the earliest 1970-01-20T00:00:00Z"),
        "{}",
        imported.stderr
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

#[test]
fn bad_stores_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not a database\n").unwrap();
    let e = with_db(&text.display().to_string(), &["status"]).failure();
    assert!(e.contains("not a leadscore database"), "{e}");
    assert_eq!(std::fs::read_to_string(&text).unwrap(), "not a database\n");
    let missing = dir.path().join("missing.db").display().to_string();
    for args in [&["score"][..], &["keys", "list"], &["keys", "revoke", "1"]] {
        let e = with_db(&missing, args).failure();
        assert!(e.contains("no store at"), "{args:?}: {e}");
        assert!(!dir.path().join("missing.db").exists(), "{args:?}");
    }
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
