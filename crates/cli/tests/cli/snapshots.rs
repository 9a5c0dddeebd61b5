//! Snapshots of CLI output and of error messages (insta).

use insta::assert_snapshot;

use crate::harness::{examples, leadscore};

fn example(name: &str) -> String {
    examples().join(name).display().to_string()
}

#[test]
fn check_examples_prints_a_summary_per_model() {
    let run = leadscore(&[
        "check",
        "../../../../../examples/ecommerce.toml",
        "../../../../../examples/b2b.toml",
        "../../../../../examples/email.toml",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_snapshot!(run.stdout);
}

#[test]
fn check_reports_model_errors_with_places() {
    for bad in [
        "bad-cel",
        "bad-key",
        "bad-duration",
        "bad-duplicate",
        "bad-streak",
    ] {
        let run = leadscore(&["check", &format!("{bad}.toml")]);
        assert_eq!(run.code, 1, "{bad}");
        assert_snapshot!(bad, run.stderr);
    }
}

#[test]
fn score_csv_sorted_by_contact_with_contacts_file() {
    let run = leadscore(&[
        "score",
        "--model",
        &example("b2b.toml"),
        "--events",
        "events.jsonl",
        "--contacts",
        "contacts.csv",
        "--as-of",
        "2025-04-01T00:00:00Z",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_snapshot!(run.stdout);
}

#[test]
fn score_jsonl_with_explanations() {
    let run = leadscore(&[
        "score",
        "--model",
        &example("b2b.toml"),
        "--events",
        "events.jsonl",
        "--as-of",
        "2025-04-01",
        "--format",
        "jsonl",
        "--explain",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_snapshot!(run.stdout);
}

#[test]
fn explain_shows_rules_events_and_decay() {
    let run = leadscore(&[
        "explain",
        "--model",
        &example("b2b.toml"),
        "--events",
        "events.jsonl",
        "--contact",
        "anon-1",
        "--as-of",
        "2025-04-01T00:00:00Z",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_snapshot!(run.stdout);
}

#[test]
fn unparsable_timestamp_names_line_and_field() {
    let run = leadscore(&[
        "score",
        "--model",
        &example("email.toml"),
        "--events",
        "bad-timestamp.jsonl",
    ]);
    assert_eq!(run.code, 1);
    assert_snapshot!(run.stderr);
}

#[test]
fn malformed_json_names_line_7() {
    let run = leadscore(&[
        "score",
        "--model",
        &example("email.toml"),
        "--events",
        "malformed-line7.jsonl",
    ]);
    assert_eq!(run.code, 1);
    assert_snapshot!(run.stderr);
}

#[test]
fn skip_invalid_reports_and_scores_the_rest() {
    let run = leadscore(&[
        "score",
        "--model",
        &example("email.toml"),
        "--events",
        "malformed-line7.jsonl",
        "--events",
        "bad-timestamp.jsonl",
        "--skip-invalid",
        "--as-of",
        "2025-04-01",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_snapshot!(format!("stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr));
}

#[test]
fn every_subcommand_has_help_with_examples() {
    for sub in [
        "check", "score", "explain", "generate", "demo", "schema", "bench",
    ] {
        let run = leadscore(&[sub, "--help"]);
        assert_eq!(run.code, 0, "{sub}");
        assert!(
            run.stdout.contains("Example"),
            "{sub} --help has no example:\n{}",
            run.stdout
        );
    }
}
