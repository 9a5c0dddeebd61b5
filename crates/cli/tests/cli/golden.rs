//! Golden tests: the example models scored on a fixed generated data set.
//! Numbers are rounded to 6 decimals (SPEC §3.2: implementations agree
//! within 1e-6) so the snapshots do not depend on the last bit of `exp2`.

use insta::assert_snapshot;

use crate::harness::{example, generated, score, with_stdout_closed};

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
    let (_dir, events, contacts) = generated("150", "120", "3");
    for model in ["ecommerce", "b2b", "email"] {
        let args = [
            "--events",
            &events,
            "--contacts",
            &contacts,
            "--as-of",
            "2025-05-01T00:00:00Z",
        ];
        let csv = score(model, &args).success();
        assert_eq!(csv.lines().count(), 151, "header + one row per contact");
        assert_snapshot!(format!("golden-{model}"), rounded(&csv));
    }
}

/// Regression: `leadscore score … | head` printed "error: Broken pipe" and
/// exited 1 (the io error was wrapped by the CSV and JSON writers).
#[test]
fn closed_stdout_ends_quietly() {
    let (_dir, events, _) = generated("3000", "30", "1");
    let model = example("b2b");
    for format in ["csv", "jsonl"] {
        let args = [
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
        ];
        let run = with_stdout_closed(&args);
        assert_eq!(run.code, 0, "{format}: {}", run.stderr);
        assert!(run.stderr.is_empty(), "{format}: {}", run.stderr);
    }
}
