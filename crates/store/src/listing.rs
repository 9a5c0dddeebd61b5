//! Leaderboards and segment summaries as of a time (the server's "now").
//!
//! A live row holds its contact's score as of its latest event. Under a
//! model whose scores move with time alone (decay, inactivity,
//! `days_since()`; [`Model::moves_with_time`]) that score goes stale, so a
//! listing as of `at` evaluates each stored state at `at` instead, in one
//! scan over the live rows in id order (about 1.25 µs per contact at 100k contacts:
//! `docs/performance.md`). Otherwise the stored scores are the scores at
//! `at` and the database's score index answers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::ScopedJoinHandle;

use leadscore_core::fold::ContactState;
use leadscore_core::model::Model;
use leadscore_core::score::{Score, SmolStr, Status};
use leadscore_core::time::Timestamp;
use rayon::prelude::*;
use serde::Serialize;

use leadscore_core::batch::contacts_as_of;

use crate::bodies::StoredBody;
use crate::engine::{contact_bodies, parse_log, Row, Tx};
use crate::{Listed, Result, StoreError};

/// A leaderboard or segment query over the live contacts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScoreQuery {
    /// Scores as of this time (decay, inactivity and `days_since()` moved
    /// to it; a contact whose latest event is later keeps its score as of
    /// that event unless `rewind`); `None`: each contact's score as of its
    /// latest event.
    pub at: Option<Timestamp>,
    /// A listing of the past: contacts with messages after `at` are
    /// grouped again from their messages up to it (ids stitched later were
    /// separate contacts then; contacts first seen later are left out) and
    /// scored there, reading those contacts' logs. Without it, a listing
    /// as of now, where only a clock running ahead dates messages later.
    pub rewind: bool,
    /// Only this tier (`""` = no tier).
    pub tier: Option<String>,
    /// Only this grade.
    pub grade: Option<String>,
    /// Only this stage.
    pub stage: Option<String>,
    /// Only this status.
    pub status: Option<Status>,
    /// Score at least.
    pub min: Option<f64>,
    /// Score at most.
    pub max: Option<f64>,
    /// Lowest scores first (default: highest first).
    pub ascending: bool,
    /// Continue after this `(score, id)` (the last row of the previous page).
    pub after: Option<(f64, String)>,
    /// Rows at most.
    pub limit: usize,
}

/// Contacts per tier × grade (active ones), excluded count and a score
/// histogram: the segment summary ([`crate::Store::summary`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// The time the scores are as of.
    pub as_of: Option<Timestamp>,
    /// Live contacts.
    pub contacts: u64,
    /// Of which excluded.
    pub excluded: u64,
    /// Active contacts per tier and grade (`""`: none), in name order.
    pub tier_grade: Vec<SummaryCell>,
    /// Active contacts per tenth of the model's score range.
    pub histogram: Vec<SummaryBin>,
}

/// One tier × grade cell of a [`Summary`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SummaryCell {
    /// Tier name (`""`: none).
    pub tier: String,
    /// Grade name (`""`: none).
    pub grade: String,
    /// Active contacts in both.
    pub contacts: u64,
}

/// One bin of a [`Summary`]'s histogram: `from <= score < to` (the last
/// bin holds its upper bound too).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SummaryBin {
    /// Lowest score of the bin.
    pub from: f64,
    /// Highest score of the bin (excluded but for the last bin).
    pub to: f64,
    /// Active contacts in it.
    pub contacts: u64,
}

impl Summary {
    /// Bins of the histogram.
    pub const BINS: usize = 10;
}

/// Builds a [`Summary`] one contact at a time (a store streams its rows
/// into it: nothing per contact is kept).
#[derive(Debug, Clone)]
pub struct SummaryBuilder {
    min: f64,
    width: f64,
    contacts: u64,
    excluded: u64,
    matrix: BTreeMap<(String, String), u64>,
    histogram: [u64; Summary::BINS],
}

impl SummaryBuilder {
    /// A summary over the score range `[min, max]` (the active model's;
    /// 0–100 without one).
    pub fn new(model: Option<&Model>) -> SummaryBuilder {
        let (min, max) = model.map_or((0.0, 100.0), |m| (m.min, m.max));
        SummaryBuilder {
            min,
            width: ((max - min) / Summary::BINS as f64).max(f64::MIN_POSITIVE),
            contacts: 0,
            excluded: 0,
            matrix: BTreeMap::new(),
            histogram: [0; Summary::BINS],
        }
    }

    /// Counts one contact.
    pub fn add(&mut self, tier: &str, grade: &str, status: Status, score: f64) {
        self.contacts += 1;
        if status == Status::Excluded {
            self.excluded += 1;
            return;
        }
        match self.matrix.get_mut(&(tier.to_string(), grade.to_string())) {
            Some(n) => *n += 1,
            None => {
                self.matrix.insert((tier.to_string(), grade.to_string()), 1);
            }
        }
        let bin = ((score - self.min) / self.width).floor().max(0.0) as usize;
        self.histogram[bin.min(Summary::BINS - 1)] += 1;
    }

    /// The summary, as of `as_of`.
    pub fn finish(self, as_of: Option<Timestamp>) -> Summary {
        let (min, width) = (self.min, self.width);
        Summary {
            as_of,
            contacts: self.contacts,
            excluded: self.excluded,
            tier_grade: self
                .matrix
                .into_iter()
                .map(|((tier, grade), contacts)| SummaryCell {
                    tier,
                    grade,
                    contacts,
                })
                .collect(),
            histogram: self
                .histogram
                .iter()
                .enumerate()
                .map(|(i, &contacts)| SummaryBin {
                    from: min + width * i as f64,
                    to: min + width * (i + 1) as f64,
                    contacts,
                })
                .collect(),
        }
    }
}

/// A query parameter, in a backend-neutral form.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Param {
    Text(String),
    Real(f64),
    Int(i64),
}

impl ScoreQuery {
    /// Refuses a filter on a tier, grade or stage `model` does not define
    /// (`""`, none, is always allowed), and a `min` above `max`: either
    /// would answer an empty list that reads as "nobody is hot today".
    pub fn check(&self, model: &Model) -> std::result::Result<(), String> {
        if let (Some(min), Some(max)) = (self.min, self.max) {
            if min > max {
                return Err(format!(
                    "min {min} is above max {max}: no score is in that range"
                ));
            }
        }
        for (kind, plural, wanted, labels) in [
            ("tier", "tiers", &self.tier, &model.tiers),
            ("grade", "grades", &self.grade, &model.grades),
            ("stage", "stages", &self.stage, &model.stages),
        ] {
            let Some(wanted) = wanted.as_deref().filter(|w| !w.is_empty()) else {
                continue;
            };
            if !labels.iter().any(|(name, _)| name == wanted) {
                let names: Vec<String> = labels.iter().map(|(n, _)| format!("{n:?}")).collect();
                return Err(format!(
                    "{kind}: the active model has no {kind} {wanted:?} ({plural}: {})",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ));
            }
        }
        Ok(())
    }

    /// Whether a contact with `score` passes the filters and comes after
    /// the cursor: what [`ScoreQuery::sql`] selects, for scores computed
    /// outside the database.
    pub(crate) fn matches(&self, id: &str, score: &Score) -> bool {
        let label =
            |wanted: &Option<String>, value: &str| wanted.as_ref().is_none_or(|w| w == value);
        label(&self.tier, &score.tier)
            && label(&self.grade, &score.grade)
            && label(&self.stage, &score.stage)
            && self.status.is_none_or(|s| s == score.status)
            && self.min.is_none_or(|min| score.score >= min)
            && self.max.is_none_or(|max| score.score <= max)
            && self.after.as_ref().is_none_or(|after| {
                self.order((score.score, id), (after.0, &after.1)) == std::cmp::Ordering::Greater
            })
    }

    /// This query's page of `rows`, a whole listing in this query's order
    /// (as [`crate::Store::scores`] gives it with no `after` and no limit):
    /// the rows after `after`, at most `limit`.
    pub fn page(&self, rows: &[Listed]) -> Vec<Listed> {
        let start = match &self.after {
            None => 0,
            Some(after) => rows.partition_point(|r| {
                self.order((r.score.score, &r.id), (after.0, &after.1))
                    != std::cmp::Ordering::Greater
            }),
        };
        rows[start..].iter().take(self.limit).cloned().collect()
    }

    /// The order of [`ScoreQuery::sql`]: by score (highest first unless
    /// `ascending`), then by id.
    pub(crate) fn order(&self, a: (f64, &str), b: (f64, &str)) -> std::cmp::Ordering {
        // As SQL compares: -0.0 equals 0.0 (scores are never NaN).
        let (low, high) = if self.ascending {
            (a.0, b.0)
        } else {
            (b.0, a.0)
        };
        let by_score = low.partial_cmp(&high).unwrap_or(std::cmp::Ordering::Equal);
        by_score.then_with(|| a.1.cmp(b.1))
    }

    /// The `WHERE … ORDER BY … LIMIT …` part and its parameters, with
    /// `placeholder(n)` for the n-th (1-based) parameter.
    pub(crate) fn sql(&self, placeholder: impl Fn(usize) -> String) -> (String, Vec<Param>) {
        let mut params = Vec::new();
        let next = |p: Param, params: &mut Vec<Param>| {
            params.push(p);
            placeholder(params.len())
        };
        let mut clauses = Vec::new();
        for (column, value) in [
            ("tier", &self.tier),
            ("grade", &self.grade),
            ("stage", &self.stage),
        ] {
            if let Some(value) = value {
                clauses.push(format!(
                    "{column} = {}",
                    next(Param::Text(value.clone()), &mut params)
                ));
            }
        }
        if let Some(status) = self.status {
            clauses.push(format!(
                "status = {}",
                next(Param::Text(status.as_str().into()), &mut params)
            ));
        }
        if let Some(min) = self.min {
            clauses.push(format!("score >= {}", next(Param::Real(min), &mut params)));
        }
        if let Some(max) = self.max {
            clauses.push(format!("score <= {}", next(Param::Real(max), &mut params)));
        }
        let (cmp, order) = if self.ascending {
            (">", "ASC")
        } else {
            ("<", "DESC")
        };
        if let Some((score, id)) = &self.after {
            let a = next(Param::Real(*score), &mut params);
            let b = next(Param::Real(*score), &mut params);
            let c = next(Param::Text(id.clone()), &mut params);
            clauses.push(format!("(score {cmp} {a} OR (score = {b} AND id > {c}))"));
        }
        let limit = next(Param::Int(self.limit as i64), &mut params);
        let filter = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        (
            format!("{filter} ORDER BY score {order}, id ASC LIMIT {limit}"),
            params,
        )
    }
}

/// Live rows read per step of a scan.
const STEP: usize = 1_000;

/// A step's contacts scored, row by row ([`Scan::score`]).
type Scored = Vec<Result<Vec<Listed>>>;

/// The scores of a step handed to another thread.
fn joined(scoring: ScopedJoinHandle<'_, Scored>) -> Scored {
    scoring
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Passes a step's contacts on, in order; the first error ends the scan.
fn emit(scored: Scored, each: &mut impl FnMut(Listed)) -> Result<()> {
    for listed in scored {
        listed?.into_iter().for_each(&mut *each);
    }
    Ok(())
}

/// What one live row of a scan's step needs scored.
enum Step {
    /// The row answers (its score moved on to `at`).
    Live(Box<Row>),
    /// The stored messages of a contact whose log goes past `at`.
    Rewind(Vec<StoredBody>),
}

/// A scan of the live rows that scores each contact as of `at`.
pub(crate) struct Scan {
    version: u32,
    model: Arc<Model>,
    at: Timestamp,
    rewind: bool,
}

impl Scan {
    /// The scan a listing as of `at` needs under the `active` model, or
    /// `None` when the stored scores answer (no time given, no active
    /// model, or a model whose scores do not move with time, unless the
    /// listing `rewind`s: [`ScoreQuery::rewind`]).
    pub(crate) fn of(
        at: Option<Timestamp>,
        active: Option<(u32, Arc<Model>)>,
        rewind: bool,
    ) -> Option<Scan> {
        let (at, (version, model)) = at.zip(active)?;
        (rewind || model.moves_with_time()).then_some(Scan {
            version,
            model,
            at,
            rewind,
        })
    }

    /// A live row's contact with its score as of `at`. A contact whose
    /// latest event is after `at` keeps its score as of that event (a
    /// listing does not fold logs back in time), as does a row of another
    /// model version (none is left once an activation switches).
    pub(crate) fn listed(&self, row: Row) -> Result<Listed> {
        if row.model_version != self.version || row.last_ts.is_none_or(|last| last > self.at) {
            return Ok(Listed::from(row));
        }
        let state = ContactState::decode(&self.model, &row.state, row.traits, row.company)
            .map_err(|e| StoreError::Corrupt(format!("contact {}: {e}", row.id)))?;
        let at_last = "`at` is not before the latest event";
        let score = match state
            .score_after(&self.model, self.at, &row.score)
            .expect(at_last)
        {
            Some(score) => score,
            None => state.score_at(&self.model, self.at).expect(at_last),
        };
        Ok(Listed {
            id: row.id.into(),
            last_event: row.last_ts,
            score,
        })
    }

    /// Every contact with its score as of `at` (with `rewind`, the contacts
    /// as they were then). The live rows are read through `tx` in id order
    /// (all in one snapshot), with their traits only when the model's
    /// contact rules read time, as otherwise the stored fit and exclusion
    /// stand ([`ContactState::score_after`]).
    fn run(&self, tx: &mut impl Tx, mut each: impl FnMut(Listed)) -> Result<()> {
        let traits = self.model.contact_rules_use_time();
        let mut after: Option<SmolStr> = None;
        // A step with contacts to rewind is parsed and scored on the other
        // threads while this one (the transaction's) reads the next; live
        // rows alone are too little work per row to hand off (measured in
        // docs/performance.md). Emitted in step order.
        std::thread::scope(|scope| {
            let mut scoring: Option<ScopedJoinHandle<'_, Scored>> = None;
            loop {
                let rows = tx.live_rows(after.as_deref(), STEP, traits)?;
                let done = rows.len() < STEP;
                after = rows.last().map(|r| r.id.clone());
                let rewound = |row: &Row| self.rewind && row.last_ts.is_some_and(|t| t > self.at);
                // Either the rows to score here, or the step to hand off
                // (its messages read now, while the step before is scored).
                let (live, work) = if rows.iter().any(rewound) {
                    let work = rows
                        .into_iter()
                        .map(|row| {
                            Ok(if rewound(&row) {
                                Step::Rewind(contact_bodies(tx, &row.id)?.1)
                            } else {
                                Step::Live(Box::new(row))
                            })
                        })
                        .collect::<Result<Vec<_>>>()?;
                    (Vec::new(), work)
                } else {
                    (rows, Vec::new())
                };
                if let Some(previous) = scoring.take() {
                    emit(joined(previous), &mut each)?;
                }
                for row in live {
                    each(self.listed(row)?);
                }
                if !work.is_empty() {
                    let next = scope
                        .spawn(move || work.into_par_iter().map(|step| self.score(step)).collect());
                    if done {
                        return emit(joined(next), &mut each);
                    }
                    scoring = Some(next);
                } else if done {
                    return Ok(());
                }
            }
        })
    }

    /// The contacts of one step of [`Scan::run`] with their scores as of
    /// `at`: a live row's, or those its log groups into as of `at`.
    fn score(&self, step: Step) -> Result<Vec<Listed>> {
        match step {
            Step::Live(row) => Ok(vec![self.listed(*row)?]),
            Step::Rewind(bodies) => Ok(contacts_as_of(parse_log(bodies)?, Vec::new(), self.at)
                .into_iter()
                .map(|then| Listed {
                    last_event: then.messages.iter().map(|m| m.timestamp).max(),
                    score: then.score_as_of(&self.model, self.at),
                    id: then.id,
                })
                .collect()),
        }
    }

    /// The contacts `query` selects, in its order.
    pub(crate) fn select(&self, query: &ScoreQuery, tx: &mut impl Tx) -> Result<Vec<Listed>> {
        let limit = query.limit;
        let best = |kept: &mut Vec<Listed>| {
            kept.sort_by(|a, b| query.order((a.score.score, &a.id), (b.score.score, &b.id)));
            kept.truncate(limit);
        };
        let mut kept = Vec::new();
        self.run(tx, |record| {
            if query.matches(&record.id, &record.score) {
                kept.push(record);
                if kept.len() > limit.saturating_mul(2) {
                    best(&mut kept);
                }
            }
        })?;
        best(&mut kept);
        Ok(kept)
    }

    /// The segment summary of every contact.
    pub(crate) fn summary(&self, tx: &mut impl Tx) -> Result<Summary> {
        let mut summary = SummaryBuilder::new(Some(&self.model));
        self.run(tx, |r| {
            let s = r.score;
            summary.add(&s.tier, &s.grade, s.status, s.score);
        })?;
        Ok(summary.finish(Some(self.at)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_counts_cells_bins_and_exclusions() {
        let mut b = SummaryBuilder::new(None);
        for (tier, grade, status, score) in [
            ("hot", "A", Status::Active, 95.0),
            ("hot", "A", Status::Active, 100.0),
            ("", "", Status::Excluded, 0.0),
            ("cold", "B", Status::Active, -5.0),
            ("cold", "B", Status::Active, 10.0),
        ] {
            b.add(tier, grade, status, score);
        }
        let s = b.finish(None);
        assert_eq!((s.contacts, s.excluded), (5, 1));
        let cells: Vec<_> = s
            .tier_grade
            .iter()
            .map(|c| (c.tier.as_str(), c.grade.as_str(), c.contacts))
            .collect();
        assert_eq!(cells, [("cold", "B", 2), ("hot", "A", 2)]);
        let bins: Vec<u64> = s.histogram.iter().map(|b| b.contacts).collect();
        assert_eq!(bins, [1, 1, 0, 0, 0, 0, 0, 0, 0, 2]);
        assert_eq!((s.histogram[1].from, s.histogram[1].to), (10.0, 20.0));
    }
}
