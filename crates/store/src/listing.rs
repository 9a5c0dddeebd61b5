//! Leaderboards and segment summaries as of a time (the server's "now").
//!
//! A live row holds its contact's score as of its latest event. Under a
//! model whose scores move with time alone (decay, inactivity,
//! `days_since()`; [`Model::moves_with_time`]) that score goes stale, so a
//! listing as of `at` evaluates each stored state at `at` instead, in one
//! scan over the live rows in id order (about 1.25 µs per contact at 100k contacts:
//! `docs/performance.md`). Otherwise the stored scores are the scores at
//! `at` and the database's score index answers.

use std::sync::Arc;

use leadscore_core::fold::ContactState;
use leadscore_core::model::Model;
use leadscore_core::time::Timestamp;

use crate::engine::Row;
use crate::{Listed, Result, ScoreQuery, StoreError, Summary, SummaryBuilder};

/// Live rows read per step of a scan.
const STEP: usize = 1_000;

/// A scan of the live rows that scores each contact as of `at`.
pub(crate) struct Scan {
    version: u32,
    model: Arc<Model>,
    at: Timestamp,
}

impl Scan {
    /// The scan a listing as of `at` needs under the `active` model, or
    /// `None` when the stored scores answer (no time given, no active
    /// model, or a model whose scores do not move with time).
    pub(crate) fn of(at: Option<Timestamp>, active: Option<(u32, Arc<Model>)>) -> Option<Scan> {
        let (at, (version, model)) = at.zip(active)?;
        model
            .moves_with_time()
            .then_some(Scan { version, model, at })
    }

    /// A live row's contact with its score as of `at`. A contact whose
    /// latest event is after `at` keeps its score as of that event (a
    /// listing does not fold logs back in time), as does a row of another
    /// model version (none is left once an activation switches).
    fn listed(&self, row: Row) -> Result<Listed> {
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
            id: row.id,
            last_event: row.last_ts,
            score,
        })
    }

    /// Every live contact with its score as of `at`, in id order;
    /// `page(after, n, traits)` reads the next `n` live rows after id
    /// `after` (all in one snapshot), with their traits only when `traits`
    /// (else empty maps): a scan needs them only when the model's contact
    /// rules read time, as otherwise the stored fit and exclusion stand
    /// ([`ContactState::score_after`]).
    fn run(
        &self,
        mut page: impl FnMut(Option<&str>, usize, bool) -> Result<Vec<Row>>,
        mut each: impl FnMut(Listed),
    ) -> Result<()> {
        let traits = self.model.contact_rules_use_time();
        let mut after: Option<String> = None;
        loop {
            let rows = page(after.as_deref(), STEP, traits)?;
            let done = rows.len() < STEP;
            after = rows.last().map(|r| r.id.clone());
            for row in rows {
                each(self.listed(row)?);
            }
            if done {
                return Ok(());
            }
        }
    }

    /// The contacts `query` selects, in its order.
    pub(crate) fn select(
        &self,
        query: &ScoreQuery,
        page: impl FnMut(Option<&str>, usize, bool) -> Result<Vec<Row>>,
    ) -> Result<Vec<Listed>> {
        let limit = query.limit;
        let best = |kept: &mut Vec<Listed>| {
            kept.sort_by(|a, b| query.order((a.score.score, &a.id), (b.score.score, &b.id)));
            kept.truncate(limit);
        };
        let mut kept = Vec::new();
        self.run(page, |record| {
            if query.matches(&record.id, &record.score) {
                kept.push(record);
                if kept.len() > 2 * limit {
                    best(&mut kept);
                }
            }
        })?;
        best(&mut kept);
        Ok(kept)
    }

    /// The segment summary of every live contact.
    pub(crate) fn summary(
        &self,
        page: impl FnMut(Option<&str>, usize, bool) -> Result<Vec<Row>>,
    ) -> Result<Summary> {
        let mut summary = SummaryBuilder::new(Some(&self.model));
        self.run(page, |r| {
            let s = r.score;
            summary.add(&s.tier, &s.grade, s.status, s.score);
        })?;
        Ok(summary.finish(Some(self.at)))
    }
}
