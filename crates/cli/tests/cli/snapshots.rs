//! Snapshots of CLI output and of error messages (insta).

use insta::assert_snapshot;

use crate::harness::{example, leadscore, score};

#[test]
fn check_examples_prints_a_summary_per_model() {
    let examples = "../../../../../examples";
    let models = ["ecommerce", "b2b", "email"].map(|m| format!("{examples}/{m}.toml"));
    let mut args = vec!["check"];
    args.extend(models.iter().map(String::as_str));
    assert_snapshot!(leadscore(&args).success());
}

/// `check --events`: each rule's contacts over a real log, rules that
/// never apply, names no rule reads, and a misspelt event name.
#[test]
fn check_runs_a_model_over_a_log() {
    // Relative to the fixtures, so the snapshot names no machine's path.
    let b2b = "../../../../../examples/b2b.toml";
    assert_snapshot!(leadscore(&["check", b2b, "--events", "events.jsonl"]).success());
    let dir = tempfile::tempdir().unwrap();
    let misspelt = dir.path().join("misspelt.jsonl");
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cli/fixtures/events.jsonl"),
    )
    .unwrap()
    .replace("Form Submitted", "form_submitted")
    .replace("\"job_title\"", "\"Job Title\"");
    std::fs::write(&misspelt, text).unwrap();
    let out = leadscore(&["check", b2b, "--events", &misspelt.display().to_string()]).success();
    assert!(
        out.contains("warning: \"form_submitted\" (")
            && out.contains("rules read \"Form Submitted\": a different spelling?"),
        "{out}"
    );
    assert!(
        out.contains("never: no \"Form Submitted\" in the log"),
        "{out}"
    );
    assert!(
        out.contains("warning: traits.job_title (read by decision-maker) is set by nothing in the log, traits.Job Title is (1 calls): a different spelling?"),
        "{out}"
    );
    // --strict fails a deployment pipeline on such spellings, not on a clean log.
    let strict = leadscore(&[
        "check",
        b2b,
        "--events",
        &misspelt.display().to_string(),
        "--strict",
    ]);
    assert_eq!(strict.code, 1, "{}", strict.stderr);
    assert!(
        strict
            .stderr
            .contains("2 name(s) or key(s) spelt another way in the log (--strict)"),
        "{}",
        strict.stderr
    );
    leadscore(&["check", b2b, "--events", "events.jsonl", "--strict"]).success();
    let usage = leadscore(&["check", b2b, "--as-of", "2025-01-01"]);
    assert_eq!(usage.code, 2, "--as-of needs --events or --store");
    // The store's log, read one contact at a time, gives the same report.
    let db = dir.path().join("ls.db").display().to_string();
    leadscore(&["--db", &db, "import", "events.jsonl"]).success();
    let at = ["--as-of", "2025-03-22T08:01:00Z"];
    let from = |source: &[&str]| {
        let mut args = vec!["--db", &db, "check", b2b];
        args.extend(source);
        args.extend(at);
        leadscore(&args).success()
    };
    let stored = from(&["--store"]);
    assert!(stored.contains("3 contacts, 14 messages"), "{stored}");
    assert_eq!(stored, from(&["--events", "events.jsonl"]));
}

#[test]
fn check_reports_model_errors_with_places() {
    for bad in [
        "bad-cel",
        "bad-key",
        "bad-duration",
        "bad-duplicate",
        "bad-streak",
        "bad-label",
    ] {
        assert_snapshot!(bad, leadscore(&["check", &format!("{bad}.toml")]).failure());
    }
}

#[test]
fn score_csv_sorted_by_contact_with_contacts_file() {
    let args = [
        "--events",
        "events.jsonl",
        "--contacts",
        "contacts.csv",
        "--as-of",
        "2025-04-01T00:00:00Z",
    ];
    assert_snapshot!(score("b2b", &args).success());
}

#[test]
fn score_jsonl_with_explanations() {
    let args = [
        "--events",
        "events.jsonl",
        "--as-of",
        "2025-04-01",
        "--format",
        "jsonl",
        "--explain",
    ];
    assert_snapshot!(score("b2b", &args).success());
}

#[test]
fn explain_shows_rules_events_and_decay() {
    let model = example("b2b");
    let args = [
        "explain",
        "--model",
        &model,
        "--events",
        "events.jsonl",
        "--contact",
        "anon-1",
        "--as-of",
        "2025-04-01T00:00:00Z",
    ];
    assert_snapshot!(leadscore(&args).success());
}

#[test]
fn unparsable_timestamp_names_line_and_field() {
    assert_snapshot!(score("email", &["--events", "bad-timestamp.jsonl"]).failure());
}

#[test]
fn malformed_json_names_line_7() {
    assert_snapshot!(score("email", &["--events", "malformed-line7.jsonl"]).failure());
}

#[test]
fn skip_invalid_reports_and_scores_the_rest() {
    let args = [
        "--events",
        "malformed-line7.jsonl",
        "--events",
        "bad-timestamp.jsonl",
        "--skip-invalid",
        "--as-of",
        "2025-04-01",
    ];
    let run = score("email", &args);
    let stderr = run.stderr.clone();
    assert_snapshot!(format!("stdout:\n{}\nstderr:\n{stderr}", run.success()));
}

#[test]
fn every_subcommand_has_help_with_examples() {
    for sub in [
        "check", "score", "explain", "generate", "demo", "schema", "bench",
    ] {
        let help = leadscore(&[sub, "--help"]).success();
        assert!(
            help.contains("Example"),
            "{sub} --help has no example:\n{help}"
        );
    }
}

/// Firings at a message, at the first decay tick below a score, and at a
/// days_since threshold (see the comments in fixtures/triggers.toml).
#[test]
fn triggers_prints_every_firing_of_the_period() {
    let all = [
        "triggers",
        "--model",
        "triggers.toml",
        "--events",
        "events.jsonl",
        "--to",
        "2025-12-31",
    ];
    assert_snapshot!(leadscore(&all).success());
    let mut later = all.to_vec();
    later.extend(["--from", "2025-03-20", "--format", "jsonl"]);
    assert_snapshot!(leadscore(&later).success());
    let mut backwards = all.to_vec();
    backwards.extend(["--from", "2026-01-01"]);
    assert!(leadscore(&backwards)
        .failure()
        .contains("is after the end of the period"));
}

/// Point-in-time evaluation on the fixtures' outcomes (alice won, bob lost,
/// carol disqualified), each scored 7 days before its outcome.
#[test]
fn evaluate_prints_the_ranking_report() {
    let model = crate::harness::example("b2b");
    let args = [
        "evaluate",
        "--model",
        &model,
        "--events",
        "events.jsonl",
        "--contacts",
        "contacts.csv",
        "--outcomes",
        "outcomes.csv",
        "--bootstrap",
        "200",
    ];
    let report = leadscore(&args).success();
    assert_snapshot!(report);
    // The same outcomes as JSON lines behind a byte order mark (as Windows
    // tools write files): the same report.
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("outcomes.jsonl");
    let lines = [
        r#"{"contact_id":"alice","outcome":"won","at":"2025-04-01T00:00:00Z","value":12000}"#,
        r#"{"contact_id":"bob","outcome":"lost","at":"2025-04-02T00:00:00Z"}"#,
        r#"{"contact_id":"carol","outcome":"disqualified","at":"2025-04-03T00:00:00Z"}"#,
        r#"{"contact_id":"anon-1","outcome":"converted","at":"2025-05-01T00:00:00Z"}"#,
    ];
    std::fs::write(&jsonl, format!("\u{FEFF}{}\n", lines.join("\n"))).unwrap();
    let jsonl = jsonl.display().to_string();
    let mut from_jsonl = args.to_vec();
    let at = from_jsonl
        .iter()
        .position(|a| *a == "outcomes.csv")
        .unwrap();
    from_jsonl[at] = &jsonl;
    assert_eq!(leadscore(&from_jsonl).success(), report);
    let bad = leadscore(&[
        "evaluate",
        "--model",
        &model,
        "--events",
        "events.jsonl",
        "--outcomes",
        "outcomes.csv",
        "--as-of-policy",
        "yesterday",
    ])
    .failure();
    assert!(bad.contains("expected fixed:DATE"), "{bad}");
    // Settings no report can be made with: an error, never a panic.
    for (flag, value, says) in [
        ("--bootstrap", "0", "at least 1"),
        ("--max-top-share", "1.5", "between 0 and 1"),
    ] {
        let mut bad_args = args[..args.len() - 2].to_vec();
        bad_args.extend([flag, value]);
        let bad = leadscore(&bad_args);
        assert_eq!(bad.code, 1, "{flag} {value}: {}", bad.stderr);
        assert!(bad.stderr.contains(says), "{flag} {value}: {}", bad.stderr);
    }
}

/// Champion vs challenger on the fixtures, and a monthly drift table.
#[test]
fn compare_gives_a_verdict_and_evaluate_a_monthly_table() {
    let (b2b, email) = (
        crate::harness::example("b2b"),
        crate::harness::example("email"),
    );
    let args = [
        "compare",
        "--champion",
        &email,
        "--challenger",
        &b2b,
        "--events",
        "events.jsonl",
        "--contacts",
        "contacts.csv",
        "--outcomes",
        "outcomes.csv",
        "--bootstrap",
        "200",
        "--top-share",
        "0.34",
    ];
    assert_snapshot!(leadscore(&args).success());
    for share in ["0", "1.2"] {
        let mut bad_args = args.to_vec();
        bad_args[args.len() - 1] = share;
        let bad = leadscore(&bad_args);
        assert_eq!(bad.code, 1, "--top-share {share}: {}", bad.stderr);
        assert!(bad.stderr.contains("top share"), "{}", bad.stderr);
    }
    let monthly = leadscore(&[
        "evaluate",
        "--model",
        &b2b,
        "--events",
        "events.jsonl",
        "--outcomes",
        "outcomes.csv",
        "--bootstrap",
        "50",
        "--monthly",
        "--json",
    ])
    .success();
    let v: serde_json::Value = serde_json::from_str(&monthly).unwrap();
    assert_eq!(v["monthly"][0]["month"], "2025-03", "{v}");
    assert_eq!(v["monthly"][0]["contacts"], 3);
    // The HTML report: three inline charts, nothing fetched.
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("r.html").display().to_string();
    leadscore(&[
        "evaluate",
        "--model",
        &b2b,
        "--events",
        "events.jsonl",
        "--outcomes",
        "outcomes.csv",
        "--bootstrap",
        "50",
        "--html",
        &html,
    ])
    .success();
    let page = std::fs::read_to_string(&html).unwrap();
    assert_eq!(page.matches("<svg").count(), 3);
    assert!(
        !page.contains("<script") && !page.contains("http"),
        "self-contained"
    );
    assert!(page.contains("ROC AUC <b>"), "{page}");
}

/// An event as the outcome: alice booked a meeting (converted at it), the
/// others did not as of the log's last message.
#[test]
fn an_event_can_be_the_outcome() {
    let b2b = crate::harness::example("b2b");
    let out = leadscore(&[
        "evaluate",
        "--model",
        &b2b,
        "--events",
        "events.jsonl",
        "--outcome-event",
        "Meeting Booked",
        "--as-of-policy",
        "before:1d",
        "--bootstrap",
        "50",
        "--json",
    ])
    .success();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["contacts"].as_u64(), v["positives"].as_u64()),
        (Some(3), Some(1)),
        "{v}"
    );
    let both = leadscore(&[
        "evaluate",
        "--model",
        &b2b,
        "--events",
        "events.jsonl",
        "--outcome-event",
        "X",
        "--outcomes",
        "outcomes.csv",
    ]);
    assert_eq!(both.code, 2, "--outcome-event and --outcomes conflict");
}

/// `leadscore link` signs what the server verifies, and refuses what the
/// server would refuse (so a bad link is never mailed).
#[test]
fn link_signs_what_the_server_accepts_and_refuses_the_rest() {
    let env = [("LEADSCORE_LINK_SECRET", "s3cret")];
    let out = crate::harness::leadscore_env(
        &[
            "link",
            "--base",
            "https://mail.example/",
            "--user",
            "u1",
            "--campaign",
            "spring",
            "--click",
            "https://shop.example/a?b=c&d=é",
        ],
        &env,
    )
    .success();
    let (path, query) = out.trim().split_once('?').unwrap();
    assert_eq!(path, "https://mail.example/t/click");
    let mut params: std::collections::BTreeMap<String, String> = query
        .split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap();
            let bytes: Vec<u8> = v.bytes().collect();
            let mut decoded = Vec::new();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'%' {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                    decoded.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 3;
                } else {
                    decoded.push(bytes[i]);
                    i += 1;
                }
            }
            (k.to_string(), String::from_utf8(decoded).unwrap())
        })
        .collect();
    assert_eq!(params["url"], "https://shop.example/a?b=c&d=é");
    let sig = params.remove("sig").unwrap();
    assert_eq!(
        sig,
        leadscore_server::sign_link(b"s3cret", "/t/click", &params)
    );
    for (args, says) in [
        (
            vec![
                "--base",
                "https://x",
                "--user",
                "u1",
                "--click",
                "javascript:alert(1)",
            ],
            "--click",
        ),
        (vec!["--base", "ftp://x", "--user", "u1"], "--base"),
        (vec!["--base", "https://x", "--user", " "], "--user"),
    ] {
        let mut all = vec!["link"];
        all.extend(args);
        let e = crate::harness::leadscore_env(&all, &env).failure();
        assert!(e.contains(says), "{e}");
    }
    let e = leadscore(&["link", "--base", "https://x", "--user", "u1"]).failure();
    assert!(e.contains("LEADSCORE_LINK_SECRET"), "{e}");
}
