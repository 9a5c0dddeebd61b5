//! Training recovers planted weights; the written model file loads, scores
//! like the regression, and is the same for the same seed.

use serde_json::{json, Map, Value};

use super::*;
use crate::rng::Rng;

/// Rows with three columns of planted log-odds effects.
fn planted(n: usize, seed: u64) -> (Vec<Map<String, Value>>, Vec<bool>) {
    let mut rng = Rng::new(seed);
    let (mut rows, mut labels) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let source = ["Web", "Referral", "Ads"][rng.below(3)];
        let role = ["Student", "Manager"][rng.below(2)];
        let visits = rng.below(40) as f64;
        let z: f64 =
            -1.0 + match source {
                "Referral" => 1.2,
                "Ads" => 0.6,
                _ => 0.0,
            } + if role == "Manager" { 1.8 } else { 0.0 };
        let p = 1.0 / (1.0 + (-z).exp());
        labels.push((rng.next_u64() as f64 / u64::MAX as f64) < p);
        let mut row = json!({"Lead Source": source, "role": role, "visits": visits});
        if rng.below(10) == 0 {
            row["role"] = json!("Select");
        }
        rows.push(row.as_object().unwrap().clone());
    }
    (rows, labels)
}

fn points_of(toml: &str, when: &str) -> f64 {
    let line = toml
        .lines()
        .find(|l| l.contains(when))
        .unwrap_or_else(|| panic!("no case {when} in\n{toml}"));
    let after = &line[line.find("points = ").unwrap() + 9..];
    after[..after.find(' ').unwrap()].parse().unwrap()
}

#[test]
fn training_recovers_planted_weights_and_writes_a_model_that_ranks_alike() {
    let (rows, labels) = planted(20_000, 5);
    let config = TrainConfig {
        lambda: 0.1,
        ..TrainConfig::default()
    };
    let report = train_table(&rows, &labels, &config).unwrap();
    assert_eq!(report.fold_auc_model.len(), 5);
    assert!(report.cv_auc_model > 0.7, "{report:?}");
    assert!(
        (report.cv_auc_model - report.cv_auc_toml).abs() < 0.02,
        "{report:?}"
    );
    // Points are the coefficients above each column's lowest level, on one
    // scale: Referral/Ads = 1.2/0.6 and Manager/Referral = 1.8/1.2.
    let toml = &report.toml;
    let referral = points_of(toml, r#"traits["Lead Source"] == "Referral""#);
    let ads = points_of(toml, r#"traits["Lead Source"] == "Ads""#);
    let manager = points_of(toml, r#"traits["role"] == "Manager""#);
    assert!((referral / ads - 2.0).abs() < 0.2, "{referral} {ads}");
    assert!(
        (manager / referral - 1.5).abs() < 0.15,
        "{manager} {referral}"
    );
    assert!(toml.contains("coef +"), "comments show coefficients");
    let model = Model::from_toml("s.toml", toml).unwrap();
    assert_eq!(model.fits.len(), 3);
    assert!(!model.tiers.is_empty());
    // Deterministic per seed.
    let again = train_table(&rows, &labels, &config).unwrap();
    assert_eq!(again.toml, report.toml);
    assert_eq!(again.fold_auc_model, report.fold_auc_model);
}

#[test]
fn one_class_is_refused() {
    let (rows, _) = planted(50, 1);
    let labels = vec![false; 50];
    let err = train_table(&rows, &labels, &TrainConfig::default()).unwrap_err();
    assert!(err.contains("needs both outcomes"), "{err}");
}

#[test]
fn names_and_levels_with_quotes_are_escaped() {
    assert_eq!(toml_string("a'b"), "\"a'b\"");
    assert_eq!(toml_string(r#"x["y"]"#), r#"'x["y"]'"#);
    assert_eq!(cel_string("say \"hi\""), r#""say \"hi\"""#);
    let mut taken = Vec::new();
    assert_eq!(rule_id("Lead Source", &mut taken), "lead-source");
    assert_eq!(rule_id("Lead  Source!", &mut taken), "lead-source-2");
}

/// The synthetic generator's contacts (6,000 over 120 days) and the end
/// of the generated period.
fn generated() -> (Vec<leadscore_core::batch::ContactLog>, Timestamp) {
    use leadscore_core::batch::contacts_as_of;
    use leadscore_input::{read_messages, ReadOptions};
    use leadscore_synth::{write_events, Config};

    let config = Config::new(6_000, 120, 11);
    let mut jsonl = Vec::new();
    write_events(&config, &mut jsonl, |_| {}).unwrap();
    let (messages, _) = read_messages(&jsonl[..], "gen", &ReadOptions::default(), |_| {}).unwrap();
    let end = Timestamp::from_seconds(config.end());
    (contacts_as_of(messages, Vec::new(), end), end)
}

/// Outcomes drawn from each contact's planted log-odds `z`, known a day
/// after `end`.
fn outcomes_from(
    contacts: &[leadscore_core::batch::ContactLog],
    end: Timestamp,
    z: impl Fn(&leadscore_core::batch::ContactLog) -> f64,
) -> std::collections::BTreeMap<String, crate::evaluate::Known> {
    let mut rng = Rng::new(99);
    contacts
        .iter()
        .map(|c| {
            let p = 1.0 / (1.0 + (-z(c)).exp());
            let positive = (rng.next_u64() as f64 / u64::MAX as f64) < p;
            let at = Timestamp(end.0 + 86_400_000_000_000);
            (c.id.clone(), crate::evaluate::Known { positive, at })
        })
        .collect()
}

/// Trains from events as of `end` with `extra` features.
fn train_events(
    contacts: &[leadscore_core::batch::ContactLog],
    outcomes: &std::collections::BTreeMap<String, crate::evaluate::Known>,
    end: Timestamp,
    extra: &crate::evaluate::EventFeatures,
) -> TrainReport {
    use crate::evaluate::{training_rows, Policy};
    let (rows, labels, at) = training_rows(contacts, outcomes, Policy::Fixed(end), extra);
    let config = TrainConfig {
        lambda: 0.1,
        ..TrainConfig::default()
    };
    let score = |model: &Model, i: usize| {
        let (c, t) = at[i];
        contacts[c].score_as_of(model, t).score
    };
    train_rows(&rows, &labels, &config, &score).unwrap()
}

fn occurrences(c: &leadscore_core::batch::ContactLog, event: &str) -> usize {
    c.messages
        .iter()
        .filter(|m| m.rule_name() == Some(event))
        .count()
}

/// The synthetic generator's events with outcomes drawn from planted
/// per-event log-odds: training from the events recovers the planted
/// points per occurrence (their ratios) within 10%.
#[test]
fn training_from_events_recovers_planted_weights() {
    let (contacts, end) = generated();
    let planted = [
        ("Form Submitted", 0.9),
        ("Email Link Clicked", 0.5),
        ("Email Bounced", -0.8),
    ];
    let outcomes = outcomes_from(&contacts, end, |c| {
        -1.5 + planted
            .iter()
            .map(|(event, w)| w * occurrences(c, event) as f64)
            .sum::<f64>()
    });
    let report = train_events(&contacts, &outcomes, end, &Default::default());
    let per = |event: &str| -> f64 {
        let block = report
            .toml
            .split("[[engagement]]")
            .find(|b| b.contains(&format!("event = '{event}'")))
            .unwrap();
        let line = block.lines().find(|l| l.starts_with("points = ")).unwrap();
        line[9..line
            .find(' ')
            .map_or(line.len(), |_| line[9..].find(' ').unwrap() + 9)]
            .parse()
            .unwrap()
    };
    let (form, click, bounce) = (
        per("Form Submitted"),
        per("Email Link Clicked"),
        per("Email Bounced"),
    );
    let within = |got: f64, want: f64| (got / want - 1.0).abs() < 0.1;
    eprintln!(
        "form {form} click {click} bounce {bounce}; auc {} / {}",
        report.cv_auc_model, report.cv_auc_toml
    );
    assert!(
        within(form / click, 0.9 / 0.5),
        "{form} {click}\n{}",
        report.toml
    );
    assert!(within(bounce / form, -0.8 / 0.9), "{bounce} {form}");
    assert!(
        report.cv_auc_model > 0.6 && (report.cv_auc_model - report.cv_auc_toml).abs() < 0.02,
        "{report:?}"
    );
}

/// Outcomes that depend on how recent a contact's latest page view is (and
/// on recent clicks): recency and decayed-count features find it, the
/// plain counts cannot, and the written file (fit rules on
/// `days_since("$page")`, engagement rules with `half_life`) ranks like
/// the regression.
#[test]
fn recency_and_decayed_counts_are_learned_and_written() {
    use crate::evaluate::EventFeatures;
    let (contacts, end) = generated();
    let outcomes = outcomes_from(&contacts, end, |c| {
        let last_page = c
            .messages
            .iter()
            .rev()
            .find(|m| m.rule_name() == Some("$page"))
            .map(|m| end.seconds_since(m.timestamp) / 86_400.0);
        let recent_clicks: f64 = c
            .messages
            .iter()
            .filter(|m| m.rule_name() == Some("Email Link Clicked"))
            .map(|m| 0.5f64.powf(end.seconds_since(m.timestamp) / (7.0 * 86_400.0)))
            .sum();
        -2.0 + match last_page {
            Some(d) if d < 14.0 => 2.5,
            _ => 0.0,
        } + 1.5 * recent_clicks
    });
    let counts = train_events(&contacts, &outcomes, end, &EventFeatures::default());
    let extra = EventFeatures {
        half_lives: vec![("7d".into(), 7.0 * 86_400.0)],
        recency: true,
    };
    let windows = train_events(&contacts, &outcomes, end, &extra);
    eprintln!(
        "counts {} / {}; windows {} / {}",
        counts.cv_auc_model, counts.cv_auc_toml, windows.cv_auc_model, windows.cv_auc_toml
    );
    assert!(
        windows.cv_auc_model > counts.cv_auc_model + 0.03,
        "{} vs {}",
        windows.cv_auc_model,
        counts.cv_auc_model
    );
    assert!(
        (windows.cv_auc_model - windows.cv_auc_toml).abs() < 0.02,
        "{windows:?}"
    );
    let toml = &windows.toml;
    assert!(toml.contains(r#"days_since("$page") < "#), "{toml}");
    assert!(toml.contains("half_life = '7d'"), "{toml}");
    // The most recent page-view bin earns the most of its rule's points.
    let page = toml
        .split("[[fit]]")
        .find(|b| b.contains("days-since-page"))
        .unwrap();
    let first: f64 = points_of(page, "days_since(\"$page\") < ");
    let lines: Vec<&str> = page.lines().filter(|l| l.contains("points = ")).collect();
    assert!(lines.len() >= 3, "{page}");
    for line in &lines[1..] {
        assert!(points_of(line, "points") <= first, "{page}");
    }
}

/// Levels that are numbers or booleans in the data are written as such:
/// `traits["plan"] == 2`, not `== "2"` (which would never match).
#[test]
fn number_and_boolean_levels_are_written_with_their_type() {
    let mut rng = Rng::new(3);
    let (mut rows, mut labels) = (Vec::new(), Vec::new());
    for _ in 0..4_000 {
        let paid = rng.below(2) == 0;
        let plan = 1 + rng.below(3) as i64;
        let z = -1.0 + if paid { 1.5 } else { 0.0 } + 0.7 * plan as f64;
        labels.push((rng.next_u64() as f64 / u64::MAX as f64) < 1.0 / (1.0 + (-z).exp()));
        rows.push(
            json!({"paid": paid, "plan": plan})
                .as_object()
                .unwrap()
                .clone(),
        );
    }
    let report = train_table(&rows, &labels, &TrainConfig::default()).unwrap();
    let toml = &report.toml;
    assert!(toml.contains(r#"traits["paid"] == true"#), "{toml}");
    assert!(toml.contains(r#"traits["plan"] == 3"#), "{toml}");
    let model = Model::from_toml("s.toml", toml).unwrap();
    let score = |paid: bool, plan: i64| {
        fit_score(
            &model,
            json!({"paid": paid, "plan": plan}).as_object().unwrap(),
        )
    };
    assert!(score(true, 1) > score(false, 1), "{toml}");
    assert!(score(false, 3) > score(false, 2) && score(false, 2) > score(false, 1));
    assert!(
        (report.cv_auc_model - report.cv_auc_toml).abs() < 0.01,
        "{report:?}"
    );
}

/// Decayed counts and days since the latest event at the decision time,
/// by hand.
#[test]
fn training_rows_carry_decayed_counts_and_recency() {
    use crate::evaluate::{training_rows, EventFeatures, Known, Policy};
    use leadscore_core::batch::contacts_as_of;
    use leadscore_input::{read_messages, ReadOptions};
    let jsonl = r#"{"type":"track","event":"Clicked","userId":"u","timestamp":"2026-01-01T00:00:00Z","messageId":"a"}
{"type":"track","event":"Clicked","userId":"u","timestamp":"2026-01-08T00:00:00Z","messageId":"b"}
{"type":"track","event":"Clicked","userId":"u","timestamp":"2026-01-20T00:00:00Z","messageId":"c"}
"#;
    let (messages, _) =
        read_messages(jsonl.as_bytes(), "t", &ReadOptions::default(), |_| {}).unwrap();
    let contacts = contacts_as_of(messages, Vec::new(), Timestamp(i64::MAX));
    let decision = Timestamp::parse("2026-01-15T00:00:00Z").unwrap();
    let known = [(
        "u".to_string(),
        Known {
            positive: true,
            at: Timestamp::parse("2026-02-01T00:00:00Z").unwrap(),
        },
    )]
    .into_iter()
    .collect();
    let extra = EventFeatures {
        half_lives: vec![("7d".into(), 7.0 * 86_400.0)],
        recency: true,
    };
    let (rows, _, _) = training_rows(&contacts, &known, Policy::Fixed(decision), &extra);
    let row = &rows[0];
    assert_eq!(
        row["count:Clicked"],
        json!(2),
        "the 20th is after the decision"
    );
    let recent = row["recent:7d:Clicked"].as_f64().unwrap();
    assert!(
        (recent - (0.25 + 0.5f64.powf(1.0))).abs() < 1e-12,
        "{recent}"
    );
    assert_eq!(row["days_since:Clicked"], json!(7.0));
}

#[test]
fn settings_training_cannot_run_with_are_refused() {
    let (rows, labels) = planted(60, 3);
    let positives = labels.iter().filter(|l| **l).count();
    for (config, says) in [
        (
            TrainConfig {
                lambda: f64::NAN,
                ..TrainConfig::default()
            },
            "L2 penalty",
        ),
        (
            TrainConfig {
                lambda: -1.0,
                ..TrainConfig::default()
            },
            "L2 penalty",
        ),
        (
            TrainConfig {
                folds: 1,
                ..TrainConfig::default()
            },
            "folds",
        ),
        (
            TrainConfig {
                folds: positives.min(60 - positives) + 1,
                ..TrainConfig::default()
            },
            "folds",
        ),
    ] {
        let err = train_table(&rows, &labels, &config).unwrap_err();
        assert!(err.contains(says), "{err}");
    }
    let mut config = TrainConfig::default();
    config.features.bins = 0;
    assert!(train_table(&rows, &labels, &config)
        .unwrap_err()
        .contains("bins"));
}

/// Rows whose outcome depends only on a combination: page `p1` converts
/// from channel `a`, page `p2` from channel `b`, each column alone carries
/// nothing. Some rows miss the channel or say `Select`.
fn interaction(n: usize, seed: u64) -> (Vec<Map<String, Value>>, Vec<bool>) {
    let mut rng = Rng::new(seed);
    let (mut rows, mut labels) = (Vec::new(), Vec::new());
    for i in 0..n {
        let page = ["p1", "p2"][rng.below(2)];
        let channel = ["a", "b"][rng.below(2)];
        let z: f64 = if (page == "p1") == (channel == "a") {
            1.0
        } else {
            -1.5
        };
        let p = 1.0 / (1.0 + (-z).exp());
        labels.push((rng.next_u64() as f64 / u64::MAX as f64) < p);
        let mut row = json!({"page": page, "channel": channel});
        match i % 20 {
            0 => drop(row.as_object_mut().unwrap().remove("channel")),
            1 => row["channel"] = json!("Select"),
            _ => {}
        }
        rows.push(row.as_object().unwrap().clone());
    }
    (rows, labels)
}

#[test]
fn a_cross_learns_what_its_columns_alone_miss_and_writes_it() {
    let (rows, labels) = interaction(4_000, 11);
    let alone = train_table(&rows, &labels, &TrainConfig::default()).unwrap();
    let mut config = TrainConfig::default();
    config.features.crosses = vec![vec!["page".into(), "channel".into()]];
    let crossed = train_table(&rows, &labels, &config).unwrap();
    assert!(alone.cv_auc_model < 0.56, "{alone:?}");
    assert!(crossed.cv_auc_model > 0.7, "{crossed:?}");
    assert!(
        (crossed.cv_auc_model - crossed.cv_auc_toml).abs() < 0.01,
        "{crossed:?}"
    );
    let toml = &crossed.toml;
    let matching = points_of(
        toml,
        r#"traits["page"] == "p1" && traits["channel"] == "a""#,
    );
    let crossing = points_of(
        toml,
        r#"traits["page"] == "p1" && traits["channel"] == "b""#,
    );
    assert!(matching > crossing + 10.0, "{matching} {crossing}\n{toml}");
    let model = Model::from_toml("s.toml", toml).unwrap();
    // A contact missing a part (or saying `Select`) scores as missing; one
    // with a combination never seen in training as "other".
    let score = |row: Value| fit_score(&model, row.as_object().unwrap());
    let missing = score(json!({"page": "p1"}));
    assert_eq!(score(json!({"page": "p1", "channel": "Select"})), missing);
    let other = score(json!({"page": "p9", "channel": "a"}));
    let seen = score(json!({"page": "p1", "channel": "a"}));
    assert!(
        seen > other && seen > missing,
        "{seen} {other} {missing}\n{toml}"
    );
}

#[test]
fn repeated_cross_validation_is_each_seed_in_turn() {
    let (rows, labels) = planted(600, 4);
    let run = |seed: u64, repeats: usize| {
        let config = TrainConfig {
            seed,
            repeats,
            ..TrainConfig::default()
        };
        train_table(&rows, &labels, &config).unwrap()
    };
    let (first, second, both) = (run(7, 1), run(8, 1), run(7, 2));
    assert_eq!((both.folds, both.repeats), (5, 2));
    assert_eq!(
        both.fold_auc_model,
        [first.fold_auc_model.clone(), second.fold_auc_model.clone()].concat()
    );
    assert_eq!(
        both.fold_auc_toml,
        [first.fold_auc_toml, second.fold_auc_toml].concat()
    );
    let mean = (first.cv_auc_model + second.cv_auc_model) / 2.0;
    assert!((both.cv_auc_model - mean).abs() < 1e-12);
    assert_eq!(both.toml, first.toml, "the written model uses every row");
}

#[test]
fn crosses_and_repetitions_training_cannot_run_with_are_refused() {
    let (rows, labels) = planted(60, 3);
    for (crosses, repeats, says) in [
        (vec![vec!["role"]], 1, "two columns or more"),
        (vec![vec!["role", "count:Email Opened"]], 1, "event feature"),
        (vec![vec!["role", "days_since:Demo"]], 1, "event feature"),
        (
            vec![vec!["role", "nowhere"]],
            1,
            r#"no contact has "nowhere""#,
        ),
        (vec![], 0, "repetitions"),
    ] {
        let mut config = TrainConfig {
            repeats,
            ..TrainConfig::default()
        };
        config.features.crosses = crosses
            .iter()
            .map(|c| c.iter().map(|p| p.to_string()).collect())
            .collect();
        let err = train_table(&rows, &labels, &config).unwrap_err();
        assert!(err.contains(says), "{err}");
    }
}

#[test]
fn folds_fitted_at_once_hold_at_most_a_gigabyte_of_hessians() {
    assert!(folds_at_once(640) >= 100, "Olist: every fold at once");
    assert_eq!(folds_at_once(8_000), 2, "8 kB · 8,001² = 512 MB each");
    assert_eq!(folds_at_once(20_000), 1, "3.2 GB: one at a time");
}
