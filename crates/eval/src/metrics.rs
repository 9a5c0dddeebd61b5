//! Ranking metrics of scores against binary outcomes.

use serde::Serialize;

use crate::rng::Rng;

/// Why a metric cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricError {
    /// No row.
    Empty,
    /// Only positives or only negatives: nothing to rank against.
    SingleClass {
        /// Positives.
        positives: usize,
        /// Negatives.
        negatives: usize,
    },
    /// Scores and labels of different lengths.
    Mismatch,
    /// A bootstrap of no resample.
    NoResamples,
}

impl std::fmt::Display for MetricError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetricError::Empty => write!(f, "no contact to evaluate"),
            MetricError::SingleClass {
                positives,
                negatives,
            } => write!(
                f,
                "AUC needs both outcomes: {positives} positive and {negatives} negative contacts"
            ),
            MetricError::Mismatch => write!(f, "scores and outcomes differ in length"),
            MetricError::NoResamples => write!(f, "a bootstrap needs at least one resample"),
        }
    }
}

impl std::error::Error for MetricError {}

fn check(scores: &[f64], labels: &[bool]) -> Result<(usize, usize), MetricError> {
    if scores.len() != labels.len() {
        return Err(MetricError::Mismatch);
    }
    if scores.is_empty() {
        return Err(MetricError::Empty);
    }
    let positives = labels.iter().filter(|l| **l).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return Err(MetricError::SingleClass {
            positives,
            negatives,
        });
    }
    Ok((positives, negatives))
}

/// Area under the ROC curve: the probability that a random positive scores
/// above a random negative, ties counting one half (Mann–Whitney U with
/// average ranks).
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Result<f64, MetricError> {
    let (positives, negatives) = check(scores, labels)?;
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        // Ranks i+1 ..= j+1 share their average.
        let average = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += average * order[i..=j].iter().filter(|&&k| labels[k]).count() as f64;
        i = j + 1;
    }
    let p = positives as f64;
    Ok((rank_sum - p * (p + 1.0) / 2.0) / (p * negatives as f64))
}

/// Area under the precision–recall curve as average precision: the mean of
/// the precision at each positive, tied scores taken as one threshold.
pub fn pr_auc(scores: &[f64], labels: &[bool]) -> Result<f64, MetricError> {
    let (positives, _) = check(scores, labels)?;
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut seen, mut ap) = (0usize, 0usize, 0.0);
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let group_tp = order[i..=j].iter().filter(|&&k| labels[k]).count();
        tp += group_tp;
        seen += j - i + 1;
        ap += group_tp as f64 / positives as f64 * (tp as f64 / seen as f64);
        i = j + 1;
    }
    Ok(ap)
}

/// A confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    /// The estimate on all rows.
    pub estimate: f64,
    /// Lower bound (2.5th percentile of the bootstrap).
    pub low: f64,
    /// Upper bound (97.5th percentile).
    pub high: f64,
}

/// The 95% percentile interval of `value` over resamples of the rows,
/// drawn with replacement within each class (every resample keeps both).
fn percentile_interval(
    estimate: f64,
    labels: &[bool],
    resamples: usize,
    seed: u64,
    mut value: impl FnMut(&[usize]) -> Result<f64, MetricError>,
) -> Result<Interval, MetricError> {
    if resamples == 0 {
        return Err(MetricError::NoResamples);
    }
    let positives: Vec<usize> = (0..labels.len()).filter(|&i| labels[i]).collect();
    let negatives: Vec<usize> = (0..labels.len()).filter(|&i| !labels[i]).collect();
    let mut rng = Rng::new(seed);
    let mut values = Vec::with_capacity(resamples);
    let mut rows = Vec::with_capacity(labels.len());
    for _ in 0..resamples {
        rows.clear();
        for class in [&positives, &negatives] {
            for _ in 0..class.len() {
                rows.push(class[rng.below(class.len())]);
            }
        }
        values.push(value(&rows)?);
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    Ok(Interval {
        estimate,
        low: at(0.025),
        high: at(0.975),
    })
}

/// Percentile bootstrap of a statistic over rows resampled with
/// replacement, stratified by label (every resample keeps both classes).
pub fn bootstrap(
    scores: &[f64],
    labels: &[bool],
    resamples: usize,
    seed: u64,
    statistic: impl Fn(&[f64], &[bool]) -> Result<f64, MetricError>,
) -> Result<Interval, MetricError> {
    let estimate = statistic(scores, labels)?;
    let (mut s, mut l) = (Vec::new(), Vec::new());
    percentile_interval(estimate, labels, resamples, seed, |rows| {
        s.clear();
        l.clear();
        s.extend(rows.iter().map(|&i| scores[i]));
        l.extend(rows.iter().map(|&i| labels[i]));
        statistic(&s, &l)
    })
}

/// Paired bootstrap of the difference `b - a` of a statistic of two score
/// sets on the same rows.
pub fn paired_bootstrap(
    a: &[f64],
    b: &[f64],
    labels: &[bool],
    resamples: usize,
    seed: u64,
    statistic: impl Fn(&[f64], &[bool]) -> Result<f64, MetricError>,
) -> Result<Interval, MetricError> {
    let estimate = statistic(b, labels)? - statistic(a, labels)?;
    let (mut sa, mut sb, mut l) = (Vec::new(), Vec::new(), Vec::new());
    percentile_interval(estimate, labels, resamples, seed, |rows| {
        sa.clear();
        sb.clear();
        l.clear();
        sa.extend(rows.iter().map(|&i| a[i]));
        sb.extend(rows.iter().map(|&i| b[i]));
        l.extend(rows.iter().map(|&i| labels[i]));
        Ok(statistic(&sb, &l)? - statistic(&sa, &l)?)
    })
}

/// One bucket of a lift table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bucket {
    /// Label (`1` = top decile, or a tier name).
    pub name: String,
    /// Contacts in it.
    pub contacts: usize,
    /// Positives among them.
    pub positives: usize,
    /// Their conversion rate.
    pub rate: f64,
    /// `rate` over the overall rate.
    pub lift: f64,
    /// Lowest and highest score in it.
    pub min_score: f64,
    /// Highest score in it.
    pub max_score: f64,
}

/// Conversion and lift per score decile, top decile first. Deciles are
/// taken by position (equal sizes up to one contact), except that contacts
/// with the same score are never split: deciles that a run of equal scores
/// straddles are reported as one bucket named by its range (`6–10` when
/// the bottom half all scored 0), whose rate is then not an artefact of
/// how ties were ordered.
pub fn deciles(scores: &[f64], labels: &[bool]) -> Vec<Bucket> {
    let n = scores.len();
    if n == 0 {
        return Vec::new();
    }
    let overall = labels.iter().filter(|l| **l).count() as f64 / n as f64;
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    // Deciles `first..=d` so far; a boundary between equal scores joins
    // the next decile to them.
    let mut buckets = Vec::new();
    let mut first = 0;
    for d in 0..10 {
        let end = (d + 1) * n / 10;
        let tied = end > 0 && end < n && scores[order[end - 1]] == scores[order[end]];
        if d < 9 && tied {
            continue;
        }
        let name = if first == d {
            format!("{}", d + 1)
        } else {
            format!("{}–{}", first + 1, d + 1)
        };
        let rows = &order[first * n / 10..end];
        buckets.extend(bucket(name, rows, scores, labels, overall));
        first = d + 1;
    }
    buckets
}

/// A bucket of the given rows (`None` when empty).
pub fn bucket(
    name: String,
    rows: &[usize],
    scores: &[f64],
    labels: &[bool],
    overall: f64,
) -> Option<Bucket> {
    if rows.is_empty() {
        return None;
    }
    let positives = rows.iter().filter(|&&i| labels[i]).count();
    let rate = positives as f64 / rows.len() as f64;
    Some(Bucket {
        name,
        contacts: rows.len(),
        positives,
        rate,
        lift: if overall > 0.0 { rate / overall } else { 0.0 },
        min_score: rows
            .iter()
            .map(|&i| scores[i])
            .fold(f64::INFINITY, f64::min),
        max_score: rows
            .iter()
            .map(|&i| scores[i])
            .fold(f64::NEG_INFINITY, f64::max),
    })
}

/// What a score threshold would hand to sales.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Threshold {
    /// Contacts with score >= this are qualified.
    pub threshold: f64,
    /// How many (MQL volume).
    pub qualified: usize,
    /// Share of qualified that converted.
    pub precision: f64,
    /// Share of converters that were qualified.
    pub recall: f64,
}

/// Precision and recall at each threshold.
pub fn thresholds(scores: &[f64], labels: &[bool], at: &[f64]) -> Vec<Threshold> {
    let positives = labels.iter().filter(|l| **l).count().max(1);
    at.iter()
        .map(|&threshold| {
            let qualified: Vec<usize> = (0..scores.len())
                .filter(|&i| scores[i] >= threshold)
                .collect();
            let tp = qualified.iter().filter(|&&i| labels[i]).count();
            Threshold {
                threshold,
                qualified: qualified.len(),
                precision: if qualified.is_empty() {
                    0.0
                } else {
                    tp as f64 / qualified.len() as f64
                },
                recall: tp as f64 / positives as f64,
            }
        })
        .collect()
}

/// Population stability index of `actual` against `expected` over the
/// deciles of `expected` (values of one score, two periods). Below 0.1:
/// stable; 0.1–0.25: some shift; above 0.25: the population moved.
pub fn psi(expected: &[f64], actual: &[f64]) -> f64 {
    if expected.is_empty() || actual.is_empty() {
        return 0.0;
    }
    let mut sorted = expected.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut edges: Vec<f64> = (1..10).map(|d| sorted[d * sorted.len() / 10]).collect();
    edges.dedup();
    let share = |values: &[f64]| -> Vec<f64> {
        let mut counts = vec![0usize; edges.len() + 1];
        for v in values {
            counts[edges.partition_point(|e| e <= v)] += 1;
        }
        counts
            .iter()
            .map(|&c| (c as f64 / values.len() as f64).max(1e-4))
            .collect()
    };
    let (e, a) = (share(expected), share(actual));
    e.iter().zip(&a).map(|(e, a)| (a - e) * (a / e).ln()).sum()
}

#[cfg(test)]
mod tests;
