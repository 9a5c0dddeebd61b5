//! Golden tests: the example models scored on a fixed generated data set.
//! Numbers are rounded to 6 decimals (SPEC §3.2: implementations agree
//! within 1e-6) so the snapshots do not depend on the last bit of `exp2`.

use insta::assert_snapshot;

use crate::harness::{examples, leadscore};

fn rounded(csv: &str) -> String {
    csv.lines()
        .map(|line| {
            line.split(',')
                .map(|cell| match cell.parse::<f64>() {
                    Ok(x) if cell.contains('.') => format!("{:.6}", x),
                    _ => cell.to_string(),
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn examples_on_generated_data() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().display().to_string();
    let run = leadscore(&[
        "generate",
        "--contacts",
        "150",
        "--days",
        "120",
        "--seed",
        "3",
        "--out",
        &out,
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for model in ["ecommerce", "b2b", "email"] {
        let path = examples()
            .join(format!("{model}.toml"))
            .display()
            .to_string();
        let events = dir.path().join("events.jsonl").display().to_string();
        let contacts = dir.path().join("contacts.csv").display().to_string();
        let run = leadscore(&[
            "score",
            "--model",
            &path,
            "--events",
            &events,
            "--contacts",
            &contacts,
            "--as-of",
            "2025-05-01T00:00:00Z",
        ]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(
            run.stdout.lines().count(),
            151,
            "header + one row per contact"
        );
        assert_snapshot!(format!("golden-{model}"), rounded(&run.stdout));
    }
}

/// Regression: `leadscore score … | head` printed "error: Broken pipe" and
/// exited 1 for JSON lines output.
#[test]
fn closed_stdout_ends_quietly() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().display().to_string();
    let run = leadscore(&[
        "generate",
        "--contacts",
        "3000",
        "--days",
        "30",
        "--out",
        &out,
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let events = dir.path().join("events.jsonl").display().to_string();
    let model = examples().join("b2b.toml").display().to_string();
    for format in ["csv", "jsonl"] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_leadscore"))
            .args([
                "score",
                "--model",
                &model,
                "--events",
                &events,
                "--as-of",
                "2025-02-01",
                "--explain",
                "--format",
                format,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let output = child.wait_with_output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(0),
            "{format}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.stderr.is_empty(),
            "{format}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
