//! Drift: AUC and score distribution per month of decision times, and the
//! population stability index against the first month.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Points;
use crate::metrics::roc_auc;

/// One month of a drift report.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    /// `YYYY-MM` of the decision times.
    pub month: String,
    /// Contacts.
    pub contacts: usize,
    /// Converted.
    pub positives: usize,
    /// AUC (when both outcomes occur).
    pub auc: Option<f64>,
    /// Mean score.
    pub mean_score: f64,
    /// Population stability of the scores against the first month.
    pub psi: f64,
    /// `psi` above 0.25.
    pub shifted: bool,
}

/// AUC and score distribution per month of decision time, with the
/// population stability index against the first month.
pub fn drift(p: &Points) -> Vec<Window> {
    let mut months: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, t) in p.decisions.iter().enumerate() {
        let month = t.to_string().get(..7).unwrap_or_default().to_string();
        months.entry(month).or_default().push(i);
    }
    let first: Vec<f64> = months
        .values()
        .next()
        .map(|rows| rows.iter().map(|&i| p.scores[i]).collect())
        .unwrap_or_default();
    months
        .into_iter()
        .map(|(month, rows)| {
            let scores: Vec<f64> = rows.iter().map(|&i| p.scores[i]).collect();
            let labels: Vec<bool> = rows.iter().map(|&i| p.labels[i]).collect();
            let psi = crate::metrics::psi(&first, &scores);
            Window {
                month,
                contacts: rows.len(),
                positives: labels.iter().filter(|l| **l).count(),
                auc: roc_auc(&scores, &labels).ok(),
                mean_score: scores.iter().sum::<f64>() / scores.len() as f64,
                psi,
                shifted: psi > 0.25,
            }
        })
        .collect()
}
