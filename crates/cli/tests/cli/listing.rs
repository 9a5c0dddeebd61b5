//! Reading the store's contacts through the command line: leaderboards
//! and summaries now and of the past, a contact's history, erasure and
//! export.

use serde_json::Value;

use crate::harness::generated;
use crate::store::{store_with, with_db};

/// `top` lists the store's contacts by their score now (as `contact` scores
/// each at the same time), filters select, `--summary` counts them all, and
/// `--as-of` lists them as they were then.
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
    // As of a past time: the contacts and scores a batch recompute of the
    // store's log gives then (`score --as-of`), in score order.
    let mut lasts: Vec<&str> = all
        .iter()
        .map(|c| c["last_event"].as_str().unwrap())
        .collect();
    lasts.sort_unstable();
    let then = lasts[0];
    let past =
        parse(with_db(&db, &["top", "--as-of", then, "--limit", "1000", "--json"]).success());
    let mut batch: Vec<(String, f64)> =
        parse(with_db(&db, &["score", "--as-of", then, "--format", "jsonl"]).success())
            .iter()
            .map(|c| {
                (
                    c["contact_id"].as_str().unwrap().to_string(),
                    c["score"].as_f64().unwrap(),
                )
            })
            .collect();
    batch.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let listed: Vec<(String, f64)> = past
        .iter()
        .map(|c| (c["contact_id"].as_str().unwrap().to_string(), score(c)))
        .collect();
    assert!(
        batch.len() < all.len(),
        "some contacts are first seen after {then}"
    );
    assert_eq!(listed.len(), batch.len());
    for ((id, listed), (batch_id, batch)) in listed.iter().zip(&batch) {
        assert_eq!(id, batch_id);
        assert!(
            (listed - batch).abs() < 1e-9,
            "{id}: {listed} listed, {batch} batch"
        );
    }
    let summary: Value = serde_json::from_str(
        &with_db(&db, &["top", "--summary", "--as-of", then, "--json"]).success(),
    )
    .unwrap();
    assert_eq!(summary["contacts"].as_u64().unwrap(), batch.len() as u64);
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

/// `export` without `--contact` writes the whole log (erased contacts
/// gone) and the recorded outcomes in the forms `import` reads: another
/// store built from them scores the same, as do the files themselves.
#[test]
fn the_whole_log_and_its_outcomes_move_to_another_store() {
    let (dir, events, _) = generated("60", "60", "12");
    let db = store_with(&dir, "ecommerce", &events, None);
    with_db(&db, &["erase", "--contact", "u00000005"]).success();
    let path = |name: &str| dir.path().join(name).display().to_string();
    std::fs::write(
        path("outcomes.csv"),
        "contact_id,outcome,at,value\nu00000001,won,2025-02-01,1200.5\na00000002,lost,2025-02-03,\n",
    )
    .unwrap();
    with_db(&db, &["import", "--outcomes", &path("outcomes.csv")]).success();

    let log = path("log.jsonl");
    let exported = with_db(&db, &["export", "--out", &log]);
    assert_eq!(exported.code, 0, "{}", exported.stderr);
    assert!(
        exported.stderr.contains("message(s) of"),
        "{}",
        exported.stderr
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!std::path::Path::new(&format!("{log}.partial")).exists());
    assert_eq!(text, with_db(&db, &["export"]).success(), "file = stdout");
    assert!(text.lines().count() > 100);
    assert!(
        !text.contains("00000005\""),
        "an erased contact is not exported"
    );
    let outcomes = path("exported-outcomes.csv");
    with_db(&db, &["export", "--outcomes", "--out", &outcomes]).success();

    let other = path("other.db");
    with_db(
        &other,
        &[
            "model",
            "add",
            &crate::harness::example("ecommerce"),
            "--activate",
        ],
    )
    .success();
    with_db(&other, &["import", &log, "--outcomes", &outcomes]).success();
    let score = |db: &str, extra: &[&str]| {
        let mut args = vec!["score", "--as-of", "2025-03-01"];
        args.extend(extra);
        with_db(db, &args).success()
    };
    let before = score(&db, &[]);
    assert!(before.lines().count() > 50, "{before}");
    assert_eq!(score(&other, &[]), before, "the other store");
    let ecommerce = crate::harness::example("ecommerce");
    assert_eq!(
        score(&other, &["--model", &ecommerce, "--events", &log]),
        before,
        "the exported file"
    );
    assert_eq!(
        with_db(&other, &["export", "--outcomes"]).success(),
        std::fs::read_to_string(&outcomes).unwrap()
    );
    let status: Value =
        serde_json::from_str(&with_db(&other, &["status", "--json"]).success()).unwrap();
    assert_eq!(status["stats"]["outcomes"], 2, "{status}");
    assert_eq!(
        status["stats"]["events"].as_u64(),
        Some(text.lines().count() as u64)
    );
    let again = with_db(&db, &["import", &log, "--outcomes", &outcomes]);
    assert!(
        again.stderr.contains("imported 0 new message(s)")
            && again
                .stderr
                .contains("recorded 0 outcome(s) of 2: 2 already recorded"),
        "{}",
        again.stderr
    );

    let nowhere = path("missing/log.jsonl");
    let error = with_db(&db, &["export", "--out", &nowhere]).failure();
    assert!(error.contains("cannot create"), "{error}");
}
