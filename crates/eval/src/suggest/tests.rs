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
