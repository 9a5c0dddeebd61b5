//! Training on a table of contacts: cross-validated logistic regression,
//! and a ready-to-use model file whose fit points are the learned log-odds
//! contributions on a 0–100 scale.

use std::fmt::Write as _;

use leadscore_core::fold::ContactState;
use leadscore_core::model::Model;
use leadscore_core::time::Timestamp;
use rayon::prelude::*;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::features::{
    cel_string, counted, trait_expr, Column, FeatureConfig, Features, DAYS_SINCE_PREFIX,
};
use crate::logistic::{fit, Logistic};
use crate::metrics::{roc_auc, MetricError};
use crate::rng::Rng;

/// Bytes of Hessians the cross-validation's folds may hold at once.
const HESSIANS_AT_ONCE: usize = 1 << 30;

/// How many folds may be fitted at once with `dims` features: as many
/// as their dense Hessians fit in [`HESSIANS_AT_ONCE`], at least one.
fn folds_at_once(dims: usize) -> usize {
    let hessian = 8 * (dims + 1) * (dims + 1);
    (HESSIANS_AT_ONCE / hessian).max(1)
}

/// Training settings.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// Feature building.
    pub features: FeatureConfig,
    /// L2 penalty.
    pub lambda: f64,
    /// Cross-validation folds (stratified).
    pub folds: usize,
    /// Seed of the fold assignment.
    pub seed: u64,
    /// Repetitions of the cross-validation, each with folds of its own
    /// (seeds `seed`, `seed + 1`, …); the AUCs are the mean over all.
    pub repeats: usize,
    /// Name of the written model.
    pub name: String,
}

impl TrainConfig {
    /// Settings training can run with on `positives` and `negatives` rows:
    /// a finite, non-negative penalty, at least 2 folds and no more folds
    /// than rows of either outcome (each fold needs both to rank).
    pub fn check(&self, positives: usize, negatives: usize) -> Result<(), String> {
        if !(self.lambda.is_finite() && self.lambda >= 0.0) {
            return Err(format!(
                "the L2 penalty: a number at least 0, found {}",
                self.lambda
            ));
        }
        if self.features.bins == 0 {
            return Err("numeric bins: at least 1".into());
        }
        if self.repeats == 0 {
            return Err("repetitions of the cross-validation: at least 1".into());
        }
        for parts in &self.features.crosses {
            if parts.len() < 2 {
                return Err(format!(
                    "a cross needs two columns or more, found {parts:?}"
                ));
            }
            if let Some(p) = parts
                .iter()
                .find(|p| counted(p).is_some() || p.starts_with(DAYS_SINCE_PREFIX))
            {
                return Err(format!(
                    "cross {}: {p:?} is an event feature; only traits and columns cross",
                    parts.join(",")
                ));
            }
        }
        let fewest = positives.min(negatives);
        if self.folds < 2 || self.folds > fewest {
            return Err(format!(
                "{} folds: between 2 and the number of contacts of the rarer outcome ({positives} converted, {negatives} not)",
                self.folds
            ));
        }
        Ok(())
    }
}

impl Default for TrainConfig {
    fn default() -> TrainConfig {
        TrainConfig {
            features: FeatureConfig::default(),
            lambda: 1.0,
            folds: 5,
            seed: 1,
            repeats: 1,
            name: "suggested".to_string(),
        }
    }
}

/// What training found.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    /// Rows and positives.
    pub rows: usize,
    /// Positive rows.
    pub positives: usize,
    /// Indicators of the final model.
    pub features: usize,
    /// Folds of each cross-validation.
    pub folds: usize,
    /// Repetitions of the cross-validation.
    pub repeats: usize,
    /// Out-of-fold AUC of the learned model, per fold (the first
    /// repetition's folds, then the next one's).
    pub fold_auc_model: Vec<f64>,
    /// Out-of-fold AUC of the written model file, per fold.
    pub fold_auc_toml: Vec<f64>,
    /// Mean of `fold_auc_model`.
    pub cv_auc_model: f64,
    /// Mean of `fold_auc_toml`.
    pub cv_auc_toml: f64,
    /// The model file learned on every row.
    #[serde(skip)]
    pub toml: String,
}

/// Assigns rows to `k` folds, positives and negatives spread evenly.
pub fn stratified_folds(labels: &[bool], k: usize, seed: u64) -> Vec<usize> {
    let mut rng = Rng::new(seed);
    let mut fold = vec![0; labels.len()];
    for class in [true, false] {
        let mut rows: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        rng.shuffle(&mut rows);
        for (n, i) in rows.into_iter().enumerate() {
            fold[i] = n % k;
        }
    }
    fold
}

/// A model fitted on some rows, with its features.
pub struct Trained {
    /// The features (learned on the training rows).
    pub features: Features,
    /// The regression.
    pub model: Logistic,
    support: Vec<(usize, usize)>,
}

/// Learns features and fits the regression on `rows`.
pub fn train(rows: &[&Map<String, Value>], labels: &[bool], config: &TrainConfig) -> Trained {
    let features = Features::learn(rows, &config.features);
    let encoded: Vec<_> = rows.iter().map(|r| features.encode(r)).collect();
    let model = fit(&encoded, labels, features.dims(), config.lambda);
    let mut support = vec![(0, 0); features.dims()];
    for (row, &y) in encoded.iter().zip(labels) {
        for &(j, _) in row {
            support[j].0 += 1;
            support[j].1 += usize::from(y);
        }
    }
    Trained {
        features,
        model,
        support,
    }
}

/// Cross-validates, then trains on every row and writes the model file.
/// Rows are traits only: the written file scores them without events.
pub fn train_table(
    rows: &[Map<String, Value>],
    labels: &[bool],
    config: &TrainConfig,
) -> Result<TrainReport, String> {
    train_rows(rows, labels, config, &|model: &Model, i: usize| {
        fit_score(model, &rows[i])
    })
}

/// [`train_table`] where `score_file(model, i)` scores row `i` with a
/// written model (folding the contact's events when rows count them).
pub fn train_rows(
    rows: &[Map<String, Value>],
    labels: &[bool],
    config: &TrainConfig,
    score_file: &(dyn Fn(&Model, usize) -> f64 + Sync),
) -> Result<TrainReport, String> {
    let positives = labels.iter().filter(|l| **l).count();
    if positives == 0 || positives == labels.len() {
        return Err(MetricError::SingleClass {
            positives,
            negatives: labels.len() - positives,
        }
        .to_string());
    }
    config.check(positives, labels.len() - positives)?;
    for parts in &config.features.crosses {
        if let Some(p) = parts
            .iter()
            .find(|p| !rows.iter().any(|r| r.contains_key(*p)))
        {
            return Err(format!("cross {}: no contact has {p:?}", parts.join(",")));
        }
    }
    // Every fold of every repetition is independent: they run in parallel
    // and are collected in order (the same figures on any thread count),
    // as many at once as their dense Hessians (8·d² bytes each) fit in
    // HESSIANS_AT_ONCE: a few thousand features on many cores would
    // otherwise hold gigabytes.
    let all: Vec<&Map<String, Value>> = rows.iter().collect();
    let at_once = folds_at_once(Features::learn(&all, &config.features).dims());
    let splits: Vec<Vec<usize>> = (0..config.repeats as u64)
        .map(|r| stratified_folds(labels, config.folds, config.seed.wrapping_add(r)))
        .collect();
    let runs: Vec<(&[usize], usize)> = splits
        .iter()
        .flat_map(|folds| (0..config.folds).map(move |k| (folds.as_slice(), k)))
        .collect();
    let fold = |&(folds, k): &(&[usize], usize)| {
        let (train_idx, test_idx): (Vec<usize>, Vec<usize>) =
            (0..rows.len()).partition(|&i| folds[i] != k);
        let train_rows: Vec<&Map<String, Value>> = train_idx.iter().map(|&i| &rows[i]).collect();
        let train_labels: Vec<bool> = train_idx.iter().map(|&i| labels[i]).collect();
        let trained = train(&train_rows, &train_labels, config);
        let test_labels: Vec<bool> = test_idx.iter().map(|&i| labels[i]).collect();
        let predicted: Vec<f64> = test_idx
            .iter()
            .map(|&i| trained.model.log_odds(&trained.features.encode(&rows[i])))
            .collect();
        let auc_model = roc_auc(&predicted, &test_labels).map_err(|e| e.to_string())?;
        let training_scores = |m: &Model| train_idx.iter().map(|&i| score_file(m, i)).collect();
        let toml = model_file(&trained, &train_rows, config, &training_scores)?;
        let model = Model::from_toml("suggested.toml", &toml).map_err(|e| e.to_string())?;
        let scored: Vec<f64> = test_idx.iter().map(|&i| score_file(&model, i)).collect();
        let auc_toml = roc_auc(&scored, &test_labels).map_err(|e| e.to_string())?;
        Ok((auc_model, auc_toml))
    };
    let mut aucs: Vec<(f64, f64)> = Vec::with_capacity(runs.len());
    for batch in runs.chunks(at_once) {
        let done: Result<Vec<_>, String> = batch.par_iter().map(fold).collect();
        aucs.extend(done?);
    }
    let (fold_auc_model, fold_auc_toml): (Vec<f64>, Vec<f64>) = aucs.into_iter().unzip();
    let trained = train(&all, labels, config);
    let every_score = |m: &Model| (0..rows.len()).map(|i| score_file(m, i)).collect();
    let toml = model_file(&trained, &all, config, &every_score)?;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    Ok(TrainReport {
        rows: rows.len(),
        positives,
        features: trained.features.dims(),
        folds: config.folds,
        repeats: config.repeats,
        cv_auc_model: mean(&fold_auc_model),
        cv_auc_toml: mean(&fold_auc_toml),
        fold_auc_model,
        fold_auc_toml,
        toml,
    })
}

/// The score a model gives a contact with these traits and no events.
pub fn fit_score(model: &Model, traits: &Map<String, Value>) -> f64 {
    ContactState::new(model, Some(traits))
        .score_at(model, Timestamp(0))
        .map(|s| s.score)
        .unwrap_or_default()
}

/// A TOML string (literal when possible).
fn toml_string(text: &str) -> String {
    if !text.contains('\'') && !text.contains('\n') && !text.contains('\r') {
        return format!("'{text}'");
    }
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A CEL condition: the trait is set and not empty.
fn present(name: &str) -> String {
    let value = trait_expr(name);
    format!(
        "{} in traits && {value} != null && {value} != \"\"",
        cel_string(name)
    )
}

/// A rule id from a column name: lower-case words joined by `-`.
fn rule_id(name: &str, taken: &mut Vec<String>) -> String {
    let mut id: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while id.contains("--") {
        id = id.replace("--", "-");
    }
    let mut id = id.trim_matches('-').to_string();
    if id.is_empty() {
        id = "column".into();
    }
    let base = id.clone();
    let mut n = 2;
    while taken.contains(&id) {
        id = format!("{base}-{n}");
        n += 1;
    }
    taken.push(id.clone());
    id
}

/// Writes the model file of a trained regression: one fit rule per column,
/// each level's points its coefficient above the column's lowest, scaled
/// so that the best contact scores 100; tiers at the 80th and 50th
/// percentiles of the training rows' scores.
/// `training_scores` scores the training contacts with a draft of the file
/// (for the tiers).
pub fn model_file(
    trained: &Trained,
    rows: &[&Map<String, Value>],
    config: &TrainConfig,
    training_scores: &dyn Fn(&Model) -> Vec<f64>,
) -> Result<String, String> {
    let features = &trained.features;
    let w = &trained.model.weights;
    let spans: Vec<(f64, f64)> = (0..features.columns.len())
        .map(|c| {
            let at = features.offset(c);
            let ws = &w[at..at + features.columns[c].width()];
            let lo = ws.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = ws.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (lo, hi)
        })
        .collect();
    let total: f64 = features
        .columns
        .iter()
        .zip(&spans)
        .map(|(column, (lo, hi))| match column {
            Column::Count { p95, .. } => hi.abs() * p95,
            _ => hi - lo,
        })
        .sum();
    let scale = if total > 0.0 { 100.0 / total } else { 0.0 };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Suggested by `leadscore train`: fit points are L2 logistic-regression"
    );
    let _ = writeln!(
        out,
        "# log-odds contributions (lambda {}), each column's lowest level at 0,",
        config.lambda
    );
    let _ = writeln!(
        out,
        "# scaled by {scale:.3} points per unit of log-odds so the best contact scores 100."
    );
    let _ = writeln!(
        out,
        "# Intercept {:+.4}. Comments: coefficient, contacts with the level, their conversion.",
        trained.model.intercept
    );
    let _ = writeln!(out, "\n[model]\nname = {}", toml_string(&config.name));
    let _ = writeln!(
        out,
        "description = \"Learned from {} contacts\"\n",
        rows.len()
    );
    if features
        .columns
        .iter()
        .any(|c| matches!(c, Column::Count { .. }))
    {
        // Points per event are unbounded: a 0–100 clamp would tie the most
        // (and least) engaged contacts and lose their ranking.
        let _ = writeln!(
            out,
            "# Fit spans 0–100; events add or remove points without bound, so the\n# range is left wide (tiers below are on the same scale).\n[score]\nmin = -10000\nmax = 10000"
        );
    } else {
        let _ = writeln!(out, "[score]\nmin = 0\nmax = 100");
    }
    // Whole points unless a point is worth more than a tenth of a unit of
    // log-odds (many columns): then tenths, so rounding does not blur ranks.
    let unit = if scale >= 10.0 { 1.0 } else { 10.0 };
    if unit > 1.0 {
        let _ = writeln!(
            out,
            "\n# Fit points in tenths: with this many columns a whole point is too coarse."
        );
    }
    let mut taken = Vec::new();
    let points = |j: usize, c: usize| ((w[j] - spans[c].0) * scale * unit).round() / unit;
    for (c, column) in features.columns.iter().enumerate() {
        let at = features.offset(c);
        let value = column.expr();
        let comment = |j: usize| {
            let (n, pos) = trained.support[j];
            let rate = if n > 0 {
                100.0 * pos as f64 / n as f64
            } else {
                0.0
            };
            format!("coef {:+.4}, {n} contacts, {rate:.1}% converted", w[j])
        };
        if let Column::Count {
            event, half_life, ..
        } = column
        {
            let per = (w[at] * scale * 10.0).round() / 10.0;
            let (id, decay) = match half_life {
                None => (format!("each {event}"), "none"),
                Some(h) => (format!("recent {event} {h}"), h.as_str()),
            };
            let _ = writeln!(
                out,
                "\n[[engagement]]\nid = {}\nevent = {}\nhalf_life = {}\npoints = {per} # {}",
                toml_string(&rule_id(&id, &mut taken)),
                toml_string(event),
                toml_string(decay),
                comment(at)
            );
            continue;
        }
        let _ = writeln!(
            out,
            "\n[[fit]]\nid = {}",
            toml_string(&rule_id(column.name(), &mut taken))
        );
        // (condition, indicator, comment) per case, then the `else` indicator.
        // A case per kept level (each part equal to its literal), the
        // missing markers of any part as missing, then "other" when every
        // part is present; `else` is missing.
        let level_cases =
            |parts: &[String], values: &[String], levels: &[&[String]], what: &str| {
                let (other, missing) = (at + levels.len(), at + levels.len() + 1);
                let mut cases: Vec<_> = levels
                    .iter()
                    .enumerate()
                    .map(|(i, literals)| {
                        let when: Vec<String> = values
                            .iter()
                            .zip(literals.iter())
                            .map(|(value, literal)| format!("{value} == {literal}"))
                            .collect();
                        (when.join(" && "), at + i, comment(at + i))
                    })
                    .collect();
                for value in values {
                    cases.extend(features.missing.iter().map(|marker| {
                        let when = format!("{value} == {}", cel_string(marker));
                        (when, missing, "as missing".to_string())
                    }));
                }
                let every: Vec<String> = parts.iter().map(|p| present(p)).collect();
                let note = format!("other {what}: {}", comment(other));
                cases.push((every.join(" && "), other, note));
                (cases, missing)
            };
        let (cases, otherwise): (Vec<(String, usize, String)>, usize) = match column {
            Column::Categorical { name, literals, .. } => {
                let levels: Vec<&[String]> = literals.iter().map(std::slice::from_ref).collect();
                let values = [column.expr()];
                level_cases(std::slice::from_ref(name), &values, &levels, "levels")
            }
            Column::Cross {
                parts, literals, ..
            } => {
                let levels: Vec<&[String]> = literals.iter().map(Vec::as_slice).collect();
                let values: Vec<String> = parts.iter().map(|p| trait_expr(p)).collect();
                level_cases(parts, &values, &levels, "combinations")
            }
            Column::Numeric { edges, .. } => {
                let mut cases: Vec<_> = edges
                    .iter()
                    .enumerate()
                    .map(|(i, e)| (format!("{value} < {e:?}"), at + i, comment(at + i)))
                    .collect();
                let last = at + edges.len();
                let top = edges.last().copied().unwrap_or(0.0);
                cases.push((format!("{value} >= {top:?}"), last, comment(last)));
                (cases, last + 1)
            }
            Column::Count { .. } => unreachable!("written as engagement rules above"),
        };
        let _ = writeln!(out, "cases = [");
        for (when, slot, note) in cases {
            let _ = writeln!(
                out,
                "  {{ when = {}, points = {} }}, # {note}",
                toml_string(&when),
                points(slot, c)
            );
        }
        let _ = writeln!(
            out,
            "]\nelse = {} # missing: {}",
            points(otherwise, c),
            comment(otherwise)
        );
    }
    // Tiers from the training rows' scores under this very file.
    let draft =
        Model::from_toml("suggested.toml", &out).map_err(|e| format!("written model: {e}"))?;
    let mut scores = training_scores(&draft);
    scores.sort_by(f64::total_cmp);
    let at = |q: f64| scores[((scores.len() - 1) as f64 * q).round() as usize];
    let round = |x: f64| (x * 10.0).round() / 10.0;
    let (hot, warm) = (round(at(0.8)), round(at(0.5)));
    let _ = writeln!(
        out,
        "\n# Tiers: top 20% and next 30% of the training contacts."
    );
    let lowest = draft.min;
    for (name, min) in [("hot", hot), ("warm", warm)] {
        if min > lowest && (name == "hot" || min < hot) {
            let _ = writeln!(out, "[[tier]]\nname = \"{name}\"\nmin = {min}\n");
        }
    }
    let _ = writeln!(out, "[[tier]]\nname = \"cold\"\nmin = {lowest}");
    Model::from_toml("suggested.toml", &out).map_err(|e| format!("written model: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests;
