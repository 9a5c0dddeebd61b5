//! Golden tests: the example models scored on a fixed generated data set.
//! Numbers are rounded to 6 decimals (SPEC §3.2: implementations agree
//! within 1e-6) so the snapshots do not depend on the last bit of `exp2`.

use insta::assert_snapshot;

use crate::harness::{example, generated, leadscore, score, with_stdout_closed};

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

/// The times of a generated log's messages, in seconds.
fn message_times(events: &std::path::Path) -> Vec<i64> {
    let text = std::fs::read_to_string(events).expect("events written");
    text.lines()
        .map(|line| {
            let message: serde_json::Value = serde_json::from_str(line).expect("one message");
            let at = message["timestamp"].as_str().expect("a timestamp");
            at.parse::<jiff::Timestamp>().expect("RFC 3339").as_second()
        })
        .collect()
}

/// `generate` writes nothing dated after its period (CRM follow-ups come
/// days after a demo form, so some fall past the last day); `--end` moves
/// the period, `today` ends it at this morning's midnight, and a date that
/// does not exist is refused by name.
#[test]
fn generate_keeps_every_message_inside_its_period() {
    let dir = tempfile::tempdir().expect("temp dir");
    let day = 86_400;
    let generate = |end: Option<&str>| {
        let out = dir.path().join(end.unwrap_or("default"));
        let mut args = vec!["generate", "--contacts", "2000", "--days", "10", "--out"];
        args.push(out.to_str().expect("utf-8 path"));
        if let Some(end) = end {
            args.extend(["--end", end]);
        }
        leadscore(&args).success();
        let times = message_times(&out.join("events.jsonl"));
        let (first, last) = (times.iter().min().copied(), times.iter().max().copied());
        (
            first.expect("messages"),
            last.expect("messages"),
            times.len(),
        )
    };
    // 2025-01-01 + 10 days, as before --end existed.
    let (first, last, count) = generate(None);
    let start = 1_735_689_600;
    assert!(first >= start && last < start + 10 * day, "{first}..{last}");
    // The same contacts, ten days before 2025-03-01.
    let end = 1_740_787_200; // 2025-03-01T00:00:00Z
    let (moved_first, moved_last, moved_count) = generate(Some("2025-03-01"));
    assert!(moved_first >= end - 10 * day && moved_last < end);
    assert_eq!(moved_count, count, "the same log, moved");
    assert_eq!(end - moved_last, start + 10 * day - last);
    // Ten days ending this morning.
    let midnight = || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs() as i64;
        now - now.rem_euclid(day)
    };
    let before = midnight();
    let (today_first, today_last, _) = generate(Some("today"));
    let after = midnight(); // the same unless the test ran across midnight
    assert!(today_first >= before - 10 * day && today_last < after);
    assert!(today_last >= before - day, "the last day is yesterday");
    let refused = leadscore(&[
        "generate",
        "--days",
        "10",
        "--end",
        "2025-02-30",
        "--out",
        "x",
    ]);
    assert_eq!(refused.code, 2, "a usage error");
    assert!(
        refused.stderr.contains("--end") && refused.stderr.contains("2025-02-30"),
        "{}",
        refused.stderr
    );
}
