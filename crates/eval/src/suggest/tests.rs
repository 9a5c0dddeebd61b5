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

/// The synthetic generator's events with outcomes drawn from planted
/// per-event log-odds: training from the events recovers the planted
/// points per occurrence (their ratios) within 10%.
#[test]
fn training_from_events_recovers_planted_weights() {
    use crate::evaluate::{training_rows, Known, Policy};
    use leadscore_core::batch::contacts_as_of;
    use leadscore_input::{read_messages, ReadOptions};
    use leadscore_synth::{write_events, Config};
    use std::collections::BTreeMap;

    let config = Config::new(6_000, 120, 11);
    let mut jsonl = Vec::new();
    write_events(&config, &mut jsonl, |_| {}).unwrap();
    let (messages, _) = read_messages(&jsonl[..], "gen", &ReadOptions::default(), |_| {}).unwrap();
    let end = Timestamp::from_seconds(config.end());
    let contacts = contacts_as_of(messages, Vec::new(), end);
    let planted = [
        ("Form Submitted", 0.9),
        ("Email Link Clicked", 0.5),
        ("Email Bounced", -0.8),
    ];
    let mut rng = Rng::new(99);
    let mut outcomes = BTreeMap::new();
    for c in &contacts {
        let z: f64 = -1.5
            + planted
                .iter()
                .map(|(event, w)| {
                    w * c
                        .messages
                        .iter()
                        .filter(|m| m.rule_name() == Some(event))
                        .count() as f64
                })
                .sum::<f64>();
        let positive = (rng.next_u64() as f64 / u64::MAX as f64) < 1.0 / (1.0 + (-z).exp());
        outcomes.insert(
            c.id.clone(),
            Known {
                positive,
                at: Timestamp(end.0 + 86_400_000_000_000),
            },
        );
    }
    let (rows, labels, at) = training_rows(&contacts, &outcomes, Policy::Fixed(end));
    let train_config = TrainConfig {
        lambda: 0.1,
        ..TrainConfig::default()
    };
    let score = |model: &Model, i: usize| {
        let (c, t) = at[i];
        contacts[c].score_as_of(model, t).score
    };
    let report = train_rows(&rows, &labels, &train_config, &score).unwrap();
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
