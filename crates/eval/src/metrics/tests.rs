//! Metrics against hand-computed values (and scikit-learn's documented
//! examples, which these reproduce).

use proptest::prelude::*;

use super::*;

const F: bool = false;
const T: bool = true;

#[test]
fn auc_and_average_precision_match_the_scikit_learn_examples() {
    // sklearn.metrics.roc_auc_score / average_precision_score docs:
    // y_true = [0, 0, 1, 1], y_score = [0.1, 0.4, 0.35, 0.8].
    let scores = [0.1, 0.4, 0.35, 0.8];
    let labels = [F, F, T, T];
    assert_eq!(roc_auc(&scores, &labels), Ok(0.75));
    let ap = pr_auc(&scores, &labels).unwrap();
    assert!((ap - 0.833_333_333_333_333_4).abs() < 1e-12, "{ap}");
}

#[test]
fn ties_count_one_half() {
    assert_eq!(roc_auc(&[1.0, 1.0, 2.0], &[F, T, T]), Ok(0.75));
    assert_eq!(roc_auc(&[3.0; 6], &[F, T, T, F, F, T]), Ok(0.5));
    // All tied: one threshold, precision = base rate.
    assert_eq!(pr_auc(&[3.0; 4], &[F, T, F, F]), Ok(0.25));
}

#[test]
fn one_class_or_no_rows_is_a_clear_error() {
    assert_eq!(
        roc_auc(&[1.0, 2.0], &[T, T]),
        Err(MetricError::SingleClass {
            positives: 2,
            negatives: 0
        })
    );
    assert_eq!(roc_auc(&[], &[]), Err(MetricError::Empty));
    assert_eq!(roc_auc(&[1.0], &[T, F]), Err(MetricError::Mismatch));
    assert!(MetricError::SingleClass {
        positives: 0,
        negatives: 3
    }
    .to_string()
    .contains("needs both outcomes"));
}

#[test]
fn bootstrap_is_deterministic_per_seed_and_brackets_the_estimate() {
    let scores: Vec<f64> = (0..200)
        .map(|i| f64::from(i % 17) + f64::from(i % 3))
        .collect();
    let labels: Vec<bool> = (0..200).map(|i| (i * 7) % 5 < 2 || i % 17 > 12).collect();
    let a = bootstrap(&scores, &labels, 300, 7, roc_auc).unwrap();
    let b = bootstrap(&scores, &labels, 300, 7, roc_auc).unwrap();
    assert_eq!(a, b);
    assert!(a.low <= a.estimate && a.estimate <= a.high, "{a:?}");
    assert!(a.high - a.low < 0.3, "{a:?}");
    let diff = paired_bootstrap(&scores, &scores, &labels, 100, 1, roc_auc).unwrap();
    assert_eq!((diff.estimate, diff.low, diff.high), (0.0, 0.0, 0.0));
}

#[test]
fn deciles_thresholds_and_psi_by_hand() {
    let scores: Vec<f64> = (0..20).map(f64::from).collect();
    let labels: Vec<bool> = (0..20).map(|i| i >= 16).collect(); // top 4 convert
    let d = deciles(&scores, &labels);
    assert_eq!(d.len(), 10);
    assert_eq!(d.iter().map(|b| b.contacts).sum::<usize>(), 20);
    assert_eq!((d[0].positives, d[0].rate, d[0].lift), (2, 1.0, 5.0));
    assert_eq!((d[0].min_score, d[0].max_score), (18.0, 19.0));
    assert_eq!(d[9].positives, 0);
    let t = thresholds(&scores, &labels, &[10.0, 18.0]);
    assert_eq!(
        (t[0].qualified, t[0].precision, t[0].recall),
        (10, 0.4, 1.0)
    );
    assert_eq!((t[1].qualified, t[1].precision, t[1].recall), (2, 1.0, 0.5));
    assert_eq!(psi(&scores, &scores), 0.0);
    let shifted: Vec<f64> = scores.iter().map(|s| s + 10.0).collect();
    assert!(psi(&scores, &shifted) > 0.25);
}

/// Equal scores stay in one bucket: the deciles a run of ties straddles
/// are reported together, named by their range.
#[test]
fn deciles_never_split_equal_scores() {
    // 10, 9, 8, 7, then sixteen zeros; a tie also across deciles 1 and 2.
    let mut scores = vec![10.0, 9.0, 9.0, 7.0];
    scores.extend([0.0; 16]);
    let labels: Vec<bool> = (0..20).map(|i| i % 3 == 0).collect();
    let d = deciles(&scores, &labels);
    let got: Vec<(&str, usize)> = d.iter().map(|b| (b.name.as_str(), b.contacts)).collect();
    assert_eq!(got, [("1–2", 4), ("3–10", 16)]);
    assert_eq!((d[1].min_score, d[1].max_score), (0.0, 0.0));
    assert_eq!(d[1].positives, labels[4..].iter().filter(|l| **l).count());
    // Distinct scores: ten deciles of two, as before.
    let distinct: Vec<f64> = (0..20).map(f64::from).collect();
    let names: Vec<String> = deciles(&distinct, &labels)
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(names, (1..=10).map(|d| d.to_string()).collect::<Vec<_>>());
}

proptest! {
    #[test]
    fn auc_is_symmetric_and_invariant_under_monotone_maps(
        rows in proptest::collection::vec((0..50u8, any::<bool>()), 2..60),
    ) {
        let scores: Vec<f64> = rows.iter().map(|r| f64::from(r.0)).collect();
        let labels: Vec<bool> = rows.iter().map(|r| r.1).collect();
        if let Ok(auc) = roc_auc(&scores, &labels) {
            let negated: Vec<f64> = scores.iter().map(|s| -s).collect();
            prop_assert!((roc_auc(&negated, &labels).unwrap() - (1.0 - auc)).abs() < 1e-12);
            let squashed: Vec<f64> = scores.iter().map(|s| (s / 7.0).exp()).collect();
            prop_assert!((roc_auc(&squashed, &labels).unwrap() - auc).abs() < 1e-12);
            // Brute force over pairs.
            let (mut wins, mut pairs) = (0.0, 0.0);
            for i in 0..scores.len() {
                for j in 0..scores.len() {
                    if labels[i] && !labels[j] {
                        pairs += 1.0;
                        wins += if scores[i] > scores[j] { 1.0 } else if scores[i] == scores[j] { 0.5 } else { 0.0 };
                    }
                }
            }
            prop_assert!((auc - wins / pairs).abs() < 1e-12);
        }
    }
}

#[test]
fn a_bootstrap_of_no_resample_is_an_error_not_a_panic() {
    let (scores, labels) = ([0.9, 0.1, 0.6, 0.4], [true, false, true, false]);
    assert_eq!(
        bootstrap(&scores, &labels, 0, 1, roc_auc).unwrap_err(),
        MetricError::NoResamples
    );
}
