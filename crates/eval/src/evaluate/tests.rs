//! Unit tests of point-in-time evaluation: decision times, leakage, reports, comparison and drift.

use super::*;
use leadscore_core::batch::contacts_as_of;
use leadscore_core::event::Message;
use serde_json::json;

const MODEL: &str = r#"
[model]
name = "t"
[[engagement]]
id = "demo"
event = "Demo"
points = 50
[[engagement]]
id = "view"
event = "View"
points = 5
[[tier]]
name = "hot"
min = 50
[[tier]]
name = "cold"
min = 0
"#;

fn track(user: &str, event: &str, day: i64) -> Message {
    let at = Timestamp::from_seconds(1_700_000_000 + day * 86_400);
    Message::from_json(
        json!({"type": "track", "userId": user, "event": event, "timestamp": at.to_string(),
                   "messageId": format!("{user}-{event}-{day}")}),
        None,
        None,
    )
    .unwrap()
}

fn day(d: i64) -> Timestamp {
    Timestamp::from_seconds(1_700_000_000 + d * 86_400)
}

#[test]
fn scores_as_of_the_decision_time_and_nothing_after_leaks() {
    let model = Model::from_toml("t.toml", MODEL).unwrap();
    let mut messages = vec![];
    let mut outcomes = BTreeMap::new();
    for i in 0..40 {
        let user = format!("u{i}");
        let converts = i % 2 == 0;
        messages.push(track(&user, "View", 0));
        if converts {
            messages.push(track(&user, "Demo", 1));
        }
        // A demo after the decision time (outcome - 7d) must not count.
        if i % 4 == 1 {
            messages.push(track(&user, "Demo", 25));
        }
        outcomes.insert(
            user,
            Known {
                positive: converts,
                at: day(30),
            },
        );
    }
    let contacts = contacts_as_of(messages, Vec::new(), day(100));
    let policy = Policy::parse("before:7d").unwrap();
    let report = evaluate(&model, &contacts, &outcomes, policy, &Settings::default()).unwrap();
    assert_eq!((report.contacts, report.positives), (40, 20));
    assert_eq!(report.auc.estimate, 1.0, "late demos ignored: {report:?}");
    assert_eq!(report.tiers[0].name, "hot");
    assert_eq!((report.tiers[0].contacts, report.tiers[0].rate), (20, 1.0));
    assert_eq!(
        report.velocity_days,
        Some(29.0),
        "hot at day 1, won at day 30"
    );
    assert!(
        report.warnings.iter().any(|w| w.contains("too generous")),
        "{:?}",
        report.warnings
    );
    // The same with the decision after the late demos: they count now.
    let after = evaluate(
        &model,
        &contacts,
        &outcomes,
        Policy::Fixed(day(26)),
        &Settings::default(),
    )
    .unwrap();
    assert!(after.auc.estimate < 1.0);
    // Outcomes before a fixed date are left out: nothing remains.
    let early = evaluate(
        &model,
        &contacts,
        &outcomes,
        Policy::Fixed(day(31)),
        &Settings::default(),
    );
    assert_eq!(early.unwrap_err(), "no contact to evaluate");
}

#[test]
fn a_better_challenger_wins_with_a_paired_interval_and_drift_is_per_month() {
    let champion = Model::from_toml("a.toml", MODEL).unwrap();
    // The challenger ignores demos: it cannot tell converters apart.
    let challenger =
        Model::from_toml("b.toml", &MODEL.replace("points = 50", "points = 0")).unwrap();
    let mut messages = vec![];
    let mut outcomes = BTreeMap::new();
    for i in 0..60 {
        let user = format!("u{i}");
        messages.push(track(&user, "View", i % 40));
        if i % 3 == 0 {
            messages.push(track(&user, "Demo", i % 40 + 1));
        }
        outcomes.insert(
            user,
            Known {
                positive: i % 3 == 0 && i % 4 != 0,
                at: day(i % 40 + 30),
            },
        );
    }
    let contacts = contacts_as_of(messages, Vec::new(), day(200));
    let policy = Policy::Before(Duration::from_seconds(86_400));
    let a = points(&champion, &contacts, &outcomes, policy).unwrap();
    let b = points(&challenger, &contacts, &outcomes, policy).unwrap();
    let c = compare(&b, &a, 0.2, &Settings::default()).unwrap();
    assert!(c.auc_difference.low > 0.0, "{c:?}");
    assert!(
        c.verdict
            .starts_with("the challenger ranks converters better"),
        "{c:?}"
    );
    assert!(c.challenger_top_rate > c.champion_top_rate, "{c:?}");
    let same = compare(&a, &a, 0.2, &Settings::default()).unwrap();
    assert!(same.verdict.starts_with("no clear difference"), "{same:?}");
    let windows = drift(&a);
    assert!(windows.len() >= 2, "{windows:?}");
    assert_eq!(
        windows.iter().map(|w| w.contacts).sum::<usize>(),
        a.ids.len()
    );
    assert_eq!(windows[0].psi, 0.0);
}

#[test]
fn policies_parse_with_clear_errors() {
    assert_eq!(
        Policy::parse("before:7d"),
        Ok(Policy::Before(Duration::from_seconds(7 * 86_400)))
    );
    assert_eq!(
        Policy::parse("fixed:2025-01-01"),
        Ok(Policy::Fixed(
            Timestamp::parse("2025-01-01T00:00:00Z").unwrap()
        ))
    );
    assert!(matches!(
        Policy::parse("after-first-seen:30d"),
        Ok(Policy::AfterFirstSeen(_))
    ));
    assert!(Policy::parse("soon")
        .unwrap_err()
        .contains("expected fixed:DATE"));
    assert!(Policy::parse("sometime:1d")
        .unwrap_err()
        .contains("unknown kind"));
}

/// Ties at the cut count at their conversion rate, whatever their order.
#[test]
fn top_rate_does_not_depend_on_the_order_of_ties() {
    // Four contacts tie at the top, one of them converted; the top quarter
    // takes two of them: 1/4 of a conversion each, in any order.
    let scores = [5.0, 5.0, 5.0, 5.0, 1.0, 1.0, 0.0, 0.0];
    for first in 0..4 {
        let mut labels = [false; 8];
        labels[first] = true;
        assert_eq!(top_rate(&scores, &labels, 0.25).unwrap(), 0.25, "{first}");
    }
    // No tie at the cut: the plain share.
    let labels = [true, false, false, false, true, true, false, false];
    assert_eq!(top_rate(&scores, &labels, 0.75).unwrap(), 3.0 / 6.0);
    assert_eq!(
        top_rate(&[3.0, 2.0, 1.0], &[true, false, true], 0.34).unwrap(),
        0.5
    );
}

#[test]
fn outcome_values_are_counted_and_crm_spellings_of_a_conversion_flagged() {
    let positive = ["won".to_string(), "converted".to_string()];
    let values = super::outcome_values(
        [
            "won",
            "Won",
            "Closed Won",
            "lost",
            "Closed Lost",
            "lost",
            "converted-later",
            "wonderful",
        ],
        &positive,
    );
    assert_eq!(
        values.converted.into_iter().collect::<Vec<_>>(),
        [("Won".to_string(), 1), ("won".to_string(), 1)]
    );
    assert_eq!(values.not_converted["lost"], 2);
    assert_eq!(values.not_converted.len(), 5);
    assert_eq!(values.suspicious, ["Closed Won", "converted-later"]);
}
