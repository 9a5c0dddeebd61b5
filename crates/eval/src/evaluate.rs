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
    bootstrap, bucket, deciles, paired_bootstrap, pr_auc, roc_auc, thresholds, Bucket, Interval,
    Threshold,
};

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

/// A contact's outcome.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Known {
    /// Converted (or won).
    pub positive: bool,
    /// When.
    pub at: Timestamp,
}

/// Each contact's outcome from recorded ones `(contact id, outcome, time)`:
/// its first positive one (an outcome named in `positive`, any case), else
/// its first.
pub fn outcomes_by_contact<'a>(
    recorded: impl IntoIterator<Item = (&'a str, &'a str, Timestamp)>,
    positive: &[String],
) -> BTreeMap<String, Known> {
    let mut sorted: Vec<_> = recorded.into_iter().collect();
    sorted.sort_by_key(|o| o.2);
    let mut known: BTreeMap<String, Known> = BTreeMap::new();
    for (contact, outcome, at) in sorted {
        let is_positive = positive.iter().any(|p| p.eq_ignore_ascii_case(outcome));
        let entry = known.entry(contact.to_string()).or_insert(Known {
            positive: is_positive,
            at,
        });
        if is_positive && !entry.positive {
            *entry = Known { positive: true, at };
        }
    }
    known
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

/// The outcome of a contact, by any of its ids.
fn outcome_of(contact: &ContactLog, outcomes: &BTreeMap<String, Known>) -> Option<Known> {
    std::iter::once(contact.id.as_str())
        .chain(
            contact
                .messages
                .iter()
                .flat_map(|m| [m.user_id.as_deref(), m.anonymous_id.as_deref()])
                .flatten(),
        )
        .filter_map(|id| outcomes.get(id))
        .next()
        .copied()
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
        p.tiers.push(score.tier);
        p.grades.push(score.grade);
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

/// Conversion among the top `share` of contacts by score.
pub fn top_rate(
    scores: &[f64],
    labels: &[bool],
    share: f64,
) -> Result<f64, crate::metrics::MetricError> {
    if scores.is_empty() {
        return Err(crate::metrics::MetricError::Empty);
    }
    let k = ((scores.len() as f64 * share).ceil() as usize).clamp(1, scores.len());
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    Ok(order[..k].iter().filter(|&&i| labels[i]).count() as f64 / k as f64)
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

#[cfg(test)]
mod tests {
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
}
