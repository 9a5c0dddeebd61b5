//! Champion against challenger on the same point-in-time points: paired
//! bootstrap intervals of the AUC difference and of conversion in the top
//! share, and a verdict in words.

use serde::Serialize;

use super::{Points, Settings};
use crate::metrics::{paired_bootstrap, roc_auc, Interval};

/// Champion against challenger on the same points.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Contacts compared.
    pub contacts: usize,
    /// Converted among them.
    pub positives: usize,
    /// AUC of each.
    pub champion_auc: f64,
    /// AUC of the challenger.
    pub challenger_auc: f64,
    /// Challenger minus champion AUC, with a 95% paired bootstrap interval.
    pub auc_difference: Interval,
    /// The share of contacts called the top.
    pub top_share: f64,
    /// Conversion among each model's top contacts.
    pub champion_top_rate: f64,
    /// The challenger's.
    pub challenger_top_rate: f64,
    /// Challenger minus champion top conversion, with a 95% interval.
    pub top_rate_difference: Interval,
    /// The verdict in words.
    pub verdict: String,
}

/// Conversion among the top `share` of contacts by score. When the cut
/// falls inside a run of equal scores, the places left at the cut go to
/// that run at its conversion rate (what any order of the ties gives on
/// average), so the figure never depends on how ties happen to be ordered:
/// a model that gives a tenth of the contacts the maximum score would
/// otherwise win or lose a comparison by the order of its input.
pub fn top_rate(
    scores: &[f64],
    labels: &[bool],
    share: f64,
) -> Result<f64, crate::metrics::MetricError> {
    if scores.is_empty() {
        return Err(crate::metrics::MetricError::Empty);
    }
    let k = ((scores.len() as f64 * share).ceil() as usize).clamp(1, scores.len());
    let mut sorted: Vec<f64> = scores.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let cut = sorted[k - 1];
    let (mut above, mut above_positive, mut tied, mut tied_positive) =
        (0usize, 0usize, 0usize, 0usize);
    for (score, &label) in scores.iter().zip(labels) {
        match score.total_cmp(&cut) {
            std::cmp::Ordering::Greater => {
                above += 1;
                above_positive += usize::from(label);
            }
            std::cmp::Ordering::Equal => {
                tied += 1;
                tied_positive += usize::from(label);
            }
            std::cmp::Ordering::Less => {}
        }
    }
    let from_ties = (k - above) as f64 * tied_positive as f64 / tied as f64;
    Ok((above_positive as f64 + from_ties) / k as f64)
}

/// A share of contacts called the top: above 0, at most 1.
pub fn check_top_share(share: f64) -> Result<(), String> {
    if share > 0.0 && share <= 1.0 {
        Ok(())
    } else {
        Err(format!(
            "the top share: above 0 and at most 1, found {share}"
        ))
    }
}

/// Compares two models' rankings of the same contacts at the same
/// decision times, with paired bootstrap intervals.
pub fn compare(
    champion: &Points,
    challenger: &Points,
    top_share: f64,
    settings: &Settings,
) -> Result<Comparison, String> {
    settings.check()?;
    check_top_share(top_share)?;
    if champion.ids != challenger.ids {
        return Err("the two models were scored on different contacts".into());
    }
    let labels = &champion.labels;
    let (a, b) = (&champion.scores, &challenger.scores);
    let err = |e: crate::metrics::MetricError| e.to_string();
    let auc_difference =
        paired_bootstrap(a, b, labels, settings.resamples, settings.seed, roc_auc).map_err(err)?;
    let top = |s: &[f64], l: &[bool]| top_rate(s, l, top_share);
    let top_rate_difference =
        paired_bootstrap(a, b, labels, settings.resamples, settings.seed, top).map_err(err)?;
    let (champion_auc, challenger_auc) = (
        roc_auc(a, labels).map_err(err)?,
        roc_auc(b, labels).map_err(err)?,
    );
    let verdict = if auc_difference.low > 0.0 {
        format!(
            "the challenger ranks converters better: AUC {:+.3} (95% CI {:+.3} to {:+.3})",
            auc_difference.estimate, auc_difference.low, auc_difference.high
        )
    } else if auc_difference.high < 0.0 {
        format!(
            "the champion ranks converters better: the challenger's AUC is {:+.3} (95% CI {:+.3} to {:+.3})",
            auc_difference.estimate, auc_difference.low, auc_difference.high
        )
    } else {
        format!(
            "no clear difference: AUC {:+.3} (95% CI {:+.3} to {:+.3}) includes 0",
            auc_difference.estimate, auc_difference.low, auc_difference.high
        )
    };
    Ok(Comparison {
        contacts: labels.len(),
        positives: labels.iter().filter(|l| **l).count(),
        champion_auc,
        challenger_auc,
        auc_difference,
        top_share,
        champion_top_rate: top(a, labels).map_err(err)?,
        challenger_top_rate: top(b, labels).map_err(err)?,
        top_rate_difference,
        verdict,
    })
}
