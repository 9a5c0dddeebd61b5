//! Dry runs: how scores, tiers and grades would move under a candidate
//! model, and the contacts that move most.

use std::collections::BTreeMap;

use leadscore_core::model::Model;
use leadscore_core::score::Score;
use leadscore_core::time::Timestamp;
use schemars::JsonSchema;
use serde::Serialize;

use super::{fold_many, Table, Tx, CONTACTS_PER_STEP};
use crate::listing::Scan;
use crate::{Progress, Result};

/// A contact whose score moves most under a candidate model.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Mover {
    /// Contact id.
    pub contact: String,
    /// Score now.
    pub before: f64,
    /// Score under the candidate.
    pub after: f64,
    /// Tier now.
    pub tier_before: String,
    /// Tier under the candidate.
    pub tier_after: String,
}

/// The impact of a candidate model on the stored contacts, both models
/// scoring each contact as of the same time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, JsonSchema)]
pub struct DryRun {
    /// The time both models score at (a contact whose latest event is
    /// later is compared as of that event).
    pub as_of: Timestamp,
    /// Contacts scored.
    pub contacts: u64,
    /// Contacts whose tier changes.
    pub tier_changes: u64,
    /// Contacts per tier now (`""` = no tier).
    pub tiers_before: BTreeMap<String, u64>,
    /// Contacts per tier under the candidate.
    pub tiers_after: BTreeMap<String, u64>,
    /// Mean, median and 90th percentile score now.
    pub score_before: Distribution,
    /// The same under the candidate.
    pub score_after: Distribution,
    /// The largest score changes (absolute), largest first.
    pub top_movers: Vec<Mover>,
}

/// A few figures of a score distribution.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, JsonSchema)]
pub struct Distribution {
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
}

impl Distribution {
    fn of(mut scores: Vec<f64>) -> Distribution {
        if scores.is_empty() {
            return Distribution::default();
        }
        scores.sort_by(f64::total_cmp);
        let at = |p: f64| scores[((scores.len() - 1) as f64 * p).round() as usize];
        Distribution {
            mean: scores.iter().sum::<f64>() / scores.len() as f64,
            p50: at(0.5),
            p90: at(0.9),
        }
    }
}

/// Movers kept in a dry-run report.
const TOP_MOVERS: usize = 10;

/// Accumulates a dry run, contact by contact.
#[derive(Default)]
struct DryRunBuilder {
    report: DryRun,
    before: Vec<f64>,
    after: Vec<f64>,
}

impl DryRunBuilder {
    /// Adds one contact: its stored score (if any) and its candidate score.
    pub fn add(&mut self, contact: &str, before: Option<&Score>, after: &Score) {
        let r = &mut self.report;
        r.contacts += 1;
        let tier_before = before.map(|s| s.tier.clone()).unwrap_or_default();
        *r.tiers_before.entry(tier_before.clone()).or_default() += 1;
        *r.tiers_after.entry(after.tier.clone()).or_default() += 1;
        if tier_before != after.tier {
            r.tier_changes += 1;
        }
        let score_before = before.map_or(0.0, |s| s.score);
        self.before.push(score_before);
        self.after.push(after.score);
        r.top_movers.push(Mover {
            contact: contact.to_string(),
            before: score_before,
            after: after.score,
            tier_before,
            tier_after: after.tier.clone(),
        });
        if r.top_movers.len() > 4 * TOP_MOVERS {
            self.trim();
        }
    }

    fn trim(&mut self) {
        let movers = &mut self.report.top_movers;
        movers.sort_by(|a, b| {
            (b.after - b.before)
                .abs()
                .total_cmp(&(a.after - a.before).abs())
                .then_with(|| a.contact.cmp(&b.contact))
        });
        movers.truncate(TOP_MOVERS);
    }

    pub fn finish(mut self, as_of: Timestamp) -> DryRun {
        self.trim();
        self.report.as_of = as_of;
        self.report.score_before = Distribution::of(self.before);
        self.report.score_after = Distribution::of(self.after);
        self.report
    }
}

/// Folds every contact under `candidate` and compares its score as of `at`
/// with the active model's at the same time: `scan` scores the live rows at
/// `at` when the active model's scores move with time, else the stored
/// scores are those scores. `total`: the contacts to expect, for progress.
pub(crate) fn dry_run(
    tx: &mut impl Tx,
    candidate: &Model,
    at: Timestamp,
    scan: Option<&Scan>,
    total: u64,
    progress: Progress<'_>,
) -> Result<DryRun> {
    let mut builder = DryRunBuilder::default();
    let mut cursor: Option<String> = None;
    let mut done = 0;
    loop {
        let contacts = tx.contacts_after(cursor.as_deref(), CONTACTS_PER_STEP)?;
        let Some(last) = contacts.last().cloned() else {
            break;
        };
        for (contact, state) in fold_many(tx, candidate, &contacts)? {
            let Some(latest) = state.last_timestamp() else {
                continue;
            };
            let after = state
                .score_at(candidate, at.max(latest))
                .expect("not before the latest message");
            let before = match tx.row(Table::Live, &contact)? {
                Some(row) => Some(match scan {
                    Some(scan) => scan.listed(row)?.score,
                    None => row.score,
                }),
                None => None,
            };
            builder.add(&contact, before.as_ref(), &after);
        }
        done += contacts.len() as u64;
        progress(done.min(total), total);
        cursor = Some(last);
    }
    Ok(builder.finish(at))
}
