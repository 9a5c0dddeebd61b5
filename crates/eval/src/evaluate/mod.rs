//! Point-in-time evaluation of a model on recorded outcomes: each contact is
//! scored as of a decision time before its outcome, from its messages up to
//! that time only (nothing after it can leak into the score).

use std::collections::BTreeMap;

use leadscore_core::batch::ContactLog;
use leadscore_core::fold::ContactState;
use leadscore_core::model::Model;
use leadscore_core::score::Status;
use leadscore_core::time::{Duration, Timestamp};
use serde::Serialize;

use crate::metrics::{
    bootstrap, bucket, deciles, pr_auc, roc_auc, thresholds, Bucket, Interval, Threshold,
};

mod compare;
mod drift;
mod outcomes;

pub use compare::{check_top_share, compare, top_rate, Comparison};
pub use drift::{drift, Window};
pub use outcomes::{ids_of, outcome_of, outcome_values, outcomes_by_contact, Known, OutcomeValues};

/// When each contact is scored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Policy {
    /// Everyone at one date; contacts whose outcome came before it, or
    /// first seen after it, are left out.
    Fixed(Timestamp),
    /// Each contact this long before its outcome.
    Before(Duration),
    /// Each contact this long after its first message (outcome after it).
    AfterFirstSeen(Duration),
}

impl Policy {
    /// Parses `fixed:DATE`, `before:7d` or `after-first-seen:30d`.
    pub fn parse(text: &str) -> Result<Policy, String> {
        let (kind, value) = text.split_once(':').ok_or_else(|| {
            format!("as-of policy {text:?}: expected fixed:DATE, before:DURATION or after-first-seen:DURATION")
        })?;
        match kind {
            "fixed" => Timestamp::parse_date_or_time(value).map(Policy::Fixed),
            "before" => Duration::parse(value).map(Policy::Before),
            "after-first-seen" => Duration::parse(value).map(Policy::AfterFirstSeen),
            other => Err(format!(
                "as-of policy: unknown kind {other:?} (fixed, before, after-first-seen)"
            )),
        }
    }
}

/// Evaluation settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Bootstrap resamples for the AUC interval.
    pub resamples: usize,
    /// Bootstrap seed.
    pub seed: u64,
    /// Warn when the top tier holds more than this share of contacts.
    pub max_top_share: f64,
}

impl Settings {
    /// Settings a report can be made with: at least one resample, a share
    /// between 0 and 1.
    pub fn check(&self) -> Result<(), String> {
        if self.resamples == 0 {
            return Err("bootstrap resamples: at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.max_top_share) {
            return Err(format!(
                "the top tier's largest share: between 0 and 1, found {}",
                self.max_top_share
            ));
        }
        Ok(())
    }
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            resamples: 1_000,
            seed: 1,
            max_top_share: 0.3,
        }
    }
}

/// Contacts per tier × grade and how they converted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cell {
    /// Tier.
    pub tier: String,
    /// Grade.
    pub grade: String,
    /// Contacts.
    pub contacts: usize,
    /// Converted.
    pub positives: usize,
    /// Rate.
    pub rate: f64,
}

/// The evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Contacts evaluated.
    pub contacts: usize,
    /// Converted among them.
    pub positives: usize,
    /// Left out, by reason.
    pub left_out: BTreeMap<String, usize>,
    /// ROC AUC with its 95% bootstrap interval.
    pub auc: Interval,
    /// Average precision.
    pub pr_auc: f64,
    /// Conversion per score decile (top first).
    pub deciles: Vec<Bucket>,
    /// Conversion per tier (model order, top first).
    pub tiers: Vec<Bucket>,
    /// Tier × grade.
    pub matrix: Vec<Cell>,
    /// MQL volume, precision and recall per threshold.
    pub thresholds: Vec<Threshold>,
    /// Median days from first reaching the top tier to converting.
    pub velocity_days: Option<f64>,
    /// Problems with the model, in words.
    pub warnings: Vec<String>,
    /// Score distribution by outcome: 10 bins over the model's range.
    pub histogram: Vec<Bin>,
}

/// A bin of the score histogram.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bin {
    /// Lowest score in the bin (included).
    pub low: f64,
    /// Highest (excluded, but the last bin includes the model's maximum).
    pub high: f64,
    /// Converted contacts.
    pub positives: usize,
    /// The others.
    pub negatives: usize,
}

/// The decision time of a contact, or why it is left out.
fn decide(policy: Policy, known: Known, first: Timestamp) -> Result<Timestamp, &'static str> {
    let decision = match policy {
        Policy::Fixed(t) => t,
        Policy::Before(d) => Timestamp(known.at.0 - d.nanos()),
        Policy::AfterFirstSeen(d) => first.plus(d),
    };
    if known.at <= decision {
        return Err("outcome at or before the decision time");
    }
    if first > decision {
        return Err("first seen after the decision time");
    }
    Ok(decision)
}

/// Which event features beyond plain counts training rows carry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFeatures {
    /// Decayed counts: `recent:LABEL:EVENT` per (label, half-life seconds).
    pub half_lives: Vec<(String, f64)>,
    /// `days_since:EVENT`: days from the latest one to the decision time.
    pub recency: bool,
}

/// Training rows from event logs: each contact with an outcome, as of its
/// decision time, as traits (the contacts file's, then identify calls up to
/// then, merged key by key) plus `count:EVENT` for every activity up to
/// then, and the [`EventFeatures`] asked for. Returns the rows, labels, and each row's contact index and
/// decision time (to score a written model on the same data).
pub type TrainingRows = (
    Vec<serde_json::Map<String, serde_json::Value>>,
    Vec<bool>,
    Vec<(usize, Timestamp)>,
);

/// See [`TrainingRows`].
pub fn training_rows(
    contacts: &[ContactLog],
    outcomes: &BTreeMap<String, Known>,
    policy: Policy,
    extra: &EventFeatures,
) -> TrainingRows {
    use crate::features::{COUNT_PREFIX, DAYS_SINCE_PREFIX, RECENT_PREFIX};
    use leadscore_core::event::MessageKind;
    use leadscore_core::rules::awards::decay;
    use serde_json::Value;
    /// Per event: count, decayed counts (one per half-life), latest time.
    struct Seen {
        count: u64,
        decayed: Vec<f64>,
        last: Timestamp,
    }
    let (mut rows, mut labels, mut at) = (Vec::new(), Vec::new(), Vec::new());
    for (index, contact) in contacts.iter().enumerate() {
        let Some(known) = outcome_of(contact, outcomes) else {
            continue;
        };
        let Some(first) = contact.messages.first().map(|m| m.timestamp) else {
            continue;
        };
        let Ok(decision) = decide(policy, known, first) else {
            continue;
        };
        let mut traits = contact.base_traits.clone().unwrap_or_default();
        let mut seen: BTreeMap<&str, Seen> = BTreeMap::new();
        for m in contact
            .messages
            .iter()
            .take_while(|m| m.timestamp <= decision)
        {
            if m.kind == MessageKind::Identify {
                for (k, v) in &m.traits {
                    if v.is_null() {
                        traits.remove(k);
                    } else {
                        traits.insert(k.clone(), v.clone());
                    }
                }
            } else if let Some(name) = m.rule_name() {
                let entry = seen.entry(name).or_insert_with(|| Seen {
                    count: 0,
                    decayed: vec![0.0; extra.half_lives.len()],
                    last: m.timestamp,
                });
                entry.count += 1;
                entry.last = m.timestamp;
                let age = decision.seconds_since(m.timestamp);
                for (sum, (_, h)) in entry.decayed.iter_mut().zip(&extra.half_lives) {
                    *sum += decay(1.0, age, Some(*h));
                }
            }
        }
        for (name, s) in seen {
            traits.insert(format!("{COUNT_PREFIX}{name}"), Value::from(s.count));
            for (sum, (label, _)) in s.decayed.iter().zip(&extra.half_lives) {
                traits.insert(format!("{RECENT_PREFIX}{label}:{name}"), Value::from(*sum));
            }
            if extra.recency {
                let days = decision.seconds_since(s.last) / 86_400.0;
                traits.insert(format!("{DAYS_SINCE_PREFIX}{name}"), Value::from(days));
            }
        }
        rows.push(traits);
        labels.push(known.positive);
        at.push((index, decision));
    }
    (rows, labels, at)
}

/// The score of a contact at `t` from its messages up to `t`.
pub fn score_as_of(model: &Model, contact: &ContactLog, t: Timestamp) -> f64 {
    contact.score_as_of(model, t).score
}

/// Every evaluated contact's score at its decision time.
#[derive(Debug, Clone, Default)]
pub struct Points {
    /// Contact ids.
    pub ids: Vec<String>,
    /// Decision times.
    pub decisions: Vec<Timestamp>,
    /// Scores there.
    pub scores: Vec<f64>,
    /// Converted.
    pub labels: Vec<bool>,
    /// Tier there.
    pub tiers: Vec<String>,
    /// Grade there.
    pub grades: Vec<String>,
    /// Days from first reaching the top tier to converting (converters who did).
    pub velocity: Vec<f64>,
    /// Left out, by reason.
    pub left_out: BTreeMap<String, usize>,
}

impl Points {
    /// Adds `other`'s points after these (and its left-out counts).
    pub fn append(&mut self, other: Points) {
        self.ids.extend(other.ids);
        self.decisions.extend(other.decisions);
        self.scores.extend(other.scores);
        self.labels.extend(other.labels);
        self.tiers.extend(other.tiers);
        self.grades.extend(other.grades);
        self.velocity.extend(other.velocity);
        for (why, n) in other.left_out {
            *self.left_out.entry(why).or_default() += n;
        }
    }

    /// Orders the points by contact id, as contacts grouped from a whole
    /// log come: bootstrap resamples then do not depend on the order the
    /// contacts were read in.
    pub fn sort_by_id(&mut self) {
        let mut order: Vec<usize> = (0..self.ids.len()).collect();
        order.sort_by(|&a, &b| self.ids[a].cmp(&self.ids[b]));
        fn permute<T: Clone>(v: &mut Vec<T>, order: &[usize]) {
            *v = order.iter().map(|&i| v[i].clone()).collect();
        }
        permute(&mut self.ids, &order);
        permute(&mut self.decisions, &order);
        permute(&mut self.scores, &order);
        permute(&mut self.labels, &order);
        permute(&mut self.tiers, &order);
        permute(&mut self.grades, &order);
    }
}

/// Scores each contact with an outcome as of its decision time (which does
/// not depend on the model: two models are compared on the same points).
pub fn points(
    model: &Model,
    contacts: &[ContactLog],
    outcomes: &BTreeMap<String, Known>,
    policy: Policy,
) -> Result<Points, String> {
    let mut p = Points::default();
    let top = model
        .tiers
        .iter()
        .last()
        .map(|(name, min)| (name.to_string(), min));
    for contact in contacts {
        let mut skip = |why: &str| *p.left_out.entry(why.to_string()).or_default() += 1;
        let Some(known) = outcome_of(contact, outcomes) else {
            skip("no outcome");
            continue;
        };
        let Some(first) = contact.messages.first().map(|m| m.timestamp) else {
            skip("no message");
            continue;
        };
        let decision = match decide(policy, known, first) {
            Ok(t) => t,
            Err(why) => {
                skip(why);
                continue;
            }
        };
        let until = contact
            .messages
            .partition_point(|m| m.timestamp <= decision);
        let mut state = ContactState::new(model, contact.base_traits.as_ref());
        let mut reached = None;
        for m in &contact.messages[..until] {
            let _ = state.absorb(model, m);
            if let (None, Some((_, min))) = (reached, &top) {
                let s = state
                    .score_at(model, m.timestamp)
                    .map_err(|_| "log order")?;
                if s.status == Status::Active && s.score >= *min {
                    reached = Some(m.timestamp);
                }
            }
        }
        let score = state.score_at(model, decision).map_err(|_| "log order")?;
        if known.positive {
            if let Some(at) = reached {
                p.velocity.push(known.at.seconds_since(at) / 86_400.0);
            }
        }
        p.ids.push(contact.id.clone());
        p.decisions.push(decision);
        p.scores.push(score.score);
        p.labels.push(known.positive);
        p.tiers.push(score.tier.into());
        p.grades.push(score.grade.into());
    }
    Ok(p)
}

/// Evaluates `model` on the contacts that have an outcome.
pub fn evaluate(
    model: &Model,
    contacts: &[ContactLog],
    outcomes: &BTreeMap<String, Known>,
    policy: Policy,
    settings: &Settings,
) -> Result<Report, String> {
    let p = points(model, contacts, outcomes, policy)?;
    report(model, p, settings)
}

/// The report of scored points.
pub fn report(model: &Model, p: Points, settings: &Settings) -> Result<Report, String> {
    settings.check()?;
    let top = model
        .tiers
        .iter()
        .last()
        .map(|(name, min)| (name.to_string(), min));
    let Points {
        scores,
        labels,
        tiers,
        grades,
        mut velocity,
        left_out,
        ..
    } = p;
    let auc = bootstrap(&scores, &labels, settings.resamples, settings.seed, roc_auc)
        .map_err(|e| e.to_string())?;
    let overall = labels.iter().filter(|l| **l).count() as f64 / labels.len() as f64;
    let mut tier_names: Vec<String> = model.tiers.iter().map(|(n, _)| n.to_string()).collect();
    tier_names.reverse();
    tier_names.push(String::new());
    let by_tier: Vec<Bucket> = tier_names
        .iter()
        .filter_map(|name| {
            let rows: Vec<usize> = (0..scores.len()).filter(|&i| tiers[i] == *name).collect();
            let label = if name.is_empty() {
                "(none)".to_string()
            } else {
                name.clone()
            };
            bucket(label, &rows, &scores, &labels, overall)
        })
        .collect();
    let mut cells: BTreeMap<(String, String), (usize, usize)> = BTreeMap::new();
    for i in 0..scores.len() {
        let cell = cells
            .entry((tiers[i].clone(), grades[i].clone()))
            .or_default();
        cell.0 += 1;
        cell.1 += usize::from(labels[i]);
    }
    let matrix = cells
        .into_iter()
        .map(|((tier, grade), (n, p))| Cell {
            tier,
            grade,
            contacts: n,
            positives: p,
            rate: p as f64 / n as f64,
        })
        .collect();
    let mut cuts: Vec<f64> = (1..10)
        .map(|k| model.min + (model.max - model.min) * f64::from(k) / 10.0)
        .collect();
    cuts.extend(model.tiers.iter().map(|(_, min)| min));
    cuts.sort_by(f64::total_cmp);
    cuts.dedup();
    let mut warnings = Vec::new();
    if let (Some((name, _)), Some(top_bucket)) = (&top, by_tier.first()) {
        if top_bucket.name == *name {
            let share = top_bucket.contacts as f64 / scores.len() as f64;
            if share > settings.max_top_share {
                warnings.push(format!(
                    "too generous: tier {name} holds {:.0}% of contacts (more than {:.0}%)",
                    share * 100.0,
                    settings.max_top_share * 100.0
                ));
            }
            let rest: Vec<usize> = (0..scores.len()).filter(|&i| tiers[i] != *name).collect();
            if let Some(rest) = bucket("rest".into(), &rest, &scores, &labels, overall) {
                if top_bucket.rate <= rest.rate {
                    warnings.push(format!(
                        "tier {name} converts at {:.1}%, no better than the other tiers ({:.1}%)",
                        top_bucket.rate * 100.0,
                        rest.rate * 100.0
                    ));
                }
            }
        }
    }
    if auc.high < 0.6 {
        warnings.push(format!(
            "the score barely ranks converters first (AUC {:.3})",
            auc.estimate
        ));
    }
    velocity.sort_by(f64::total_cmp);
    let width = (model.max - model.min) / 10.0;
    let mut histogram: Vec<Bin> = (0..10)
        .map(|k| Bin {
            low: model.min + width * f64::from(k),
            high: model.min + width * f64::from(k + 1),
            positives: 0,
            negatives: 0,
        })
        .collect();
    for (s, &y) in scores.iter().zip(&labels) {
        let k = (((s - model.min) / width).floor().max(0.0) as usize).min(9);
        if y {
            histogram[k].positives += 1;
        } else {
            histogram[k].negatives += 1;
        }
    }
    Ok(Report {
        histogram,
        contacts: scores.len(),
        positives: labels.iter().filter(|l| **l).count(),
        left_out,
        pr_auc: pr_auc(&scores, &labels).map_err(|e| e.to_string())?,
        deciles: deciles(&scores, &labels),
        tiers: by_tier,
        matrix,
        thresholds: thresholds(&scores, &labels, &cuts),
        velocity_days: (!velocity.is_empty()).then(|| velocity[velocity.len() / 2]),
        warnings,
        auc,
    })
}

#[cfg(test)]
mod tests;
