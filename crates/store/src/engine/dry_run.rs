//! Dry runs: how scores, tiers and grades would move under a candidate
//! model, and the contacts that move most.

use std::collections::BTreeMap;
use std::sync::Arc;

use leadscore_core::batch::contacts_as_of;
use leadscore_core::fold::ContactState;
use leadscore_core::model::Model;
use leadscore_core::score::Score;
use leadscore_core::time::Timestamp;
use rayon::prelude::*;
use schemars::JsonSchema;
use serde::Serialize;

use super::{contact_bodies, parse_log, Table, Tx, CONTACTS_PER_STEP};
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
    /// The time both models score at, from the messages up to it.
    pub as_of: Timestamp,
    /// Contacts scored (those with a message at or before `as_of`).
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
        let tier_before = before.map(|s| s.tier.to_string()).unwrap_or_default();
        *r.tiers_before.entry(tier_before.clone()).or_default() += 1;
        *r.tiers_after.entry(after.tier.to_string()).or_default() += 1;
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
            tier_after: after.tier.to_string(),
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
/// with the `active` model's at the same time. A contact whose messages
/// all precede `at` is compared with its live row (moved to `at` by a
/// [`Scan`] when the active model's scores move with time); one with
/// messages after `at` is grouped again from its messages up to `at` (the
/// ids stitched later were separate contacts then, and one first seen
/// later was none) and scored under both models. `total`: the contacts
/// to expect, for progress.
pub(crate) fn dry_run(
    tx: &mut impl Tx,
    candidate: &Model,
    at: Timestamp,
    active: Option<(u32, Arc<Model>)>,
    total: u64,
    progress: Progress<'_>,
) -> Result<DryRun> {
    // Contacts with messages after `at` are grouped again below.
    let scan = Scan::of(Some(at), active.clone(), false);
    let active = active.map(|(_, model)| model);
    let mut builder = DryRunBuilder::default();
    let mut cursor: Option<String> = None;
    let mut done = 0;
    loop {
        let contacts = tx.contacts_after(cursor.as_deref(), CONTACTS_PER_STEP)?;
        let Some(last) = contacts.last().cloned() else {
            break;
        };
        let mut read = Vec::with_capacity(contacts.len());
        for contact in &contacts {
            read.push((
                contact,
                contact_bodies(tx, contact)?.1,
                tx.row(Table::Live, contact)?,
            ));
        }
        let compared: Vec<Vec<(String, Option<Score>, Score)>> = read
            .into_par_iter()
            .map(|(contact, bodies, row)| {
                let messages = parse_log(bodies)?;
                let Some(latest) = messages.last().map(|m| m.timestamp) else {
                    return Ok(Vec::new());
                };
                if latest > at {
                    let then = contacts_as_of(messages, Vec::new(), at);
                    return Ok(then
                        .into_iter()
                        .map(|c| {
                            let before = active.as_deref().map(|m| c.score_as_of(m, at));
                            let after = c.score_as_of(candidate, at);
                            (c.id, before, after)
                        })
                        .collect());
                }
                let after = ContactState::fold(candidate, None, &messages)
                    .score_at(candidate, at)
                    .expect("not before the latest message");
                let before = match (row, &scan) {
                    (Some(row), Some(scan)) => Some(scan.listed(row)?.score),
                    (row, _) => row.map(|r| r.score),
                };
                Ok(vec![(contact.clone(), before, after)])
            })
            .collect::<Result<_>>()?;
        for (contact, before, after) in compared.iter().flatten() {
            builder.add(contact, before.as_ref(), after);
        }
        done += contacts.len() as u64;
        progress(done.min(total), total);
        cursor = Some(last);
    }
    Ok(builder.finish(at))
}
