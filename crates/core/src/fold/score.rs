//! Scoring a folded state at a time: decay and caps applied to the awards,
//! contact rules (fit, exclusions) evaluated at `t`, labels, and the
//! explanation of every point.

use crate::condition::Scope;
use crate::model::{ContactInput, Model};
use crate::rules::awards::Awards;
use crate::score::{Contribution, ExcludedBy, Explanation, RuleKind, Score, SmolStr, Status};
use crate::time::Timestamp;

use super::{ActivityAt, ContactEval, ContactState, OutOfOrder, Totals, Trace};

impl ContactState {
    /// The most engagement and streak rules can add at any time after the
    /// last message: decay only moves awards toward zero.
    pub(super) fn undecayed_bound(&self, model: &Model) -> f64 {
        self.awarded(model)
            .map(|a| a.awards.upper_bound(a.cap))
            .sum()
    }

    /// An upper bound of the score at any time after the last message.
    pub(super) fn score_bound(model: &Model, contact: ContactEval, awarded: f64) -> f64 {
        let inactivity: f64 = model.inactivities.iter().map(|r| r.points.max(0.0)).sum();
        (contact.fit + awarded + inactivity).clamp(model.min, model.max)
    }

    fn stage_with(&self, model: &Model, t: Timestamp, contact: ContactEval) -> Option<usize> {
        if contact.excluded {
            return None;
        }
        let totals = self.totals_with(model, t, contact);
        model.stages.rank_of(totals.score)
    }

    /// Engagement and streak rules that have awarded this contact points:
    /// the two kinds whose contributions are decayed, capped sums of awards.
    pub(super) fn awarded<'s>(&'s self, model: &'s Model) -> impl Iterator<Item = Awarded<'s>> {
        let engagements = model
            .engagements
            .iter()
            .zip(&self.engagements)
            .enumerate()
            .map(|(index, (r, s))| Awarded {
                kind: RuleKind::Engagement,
                index,
                id: &r.id,
                half_life: r.half_life,
                cap: r.cap,
                awards: &s.awards,
            });
        let streaks = model
            .streaks
            .iter()
            .zip(&self.streaks)
            .enumerate()
            .map(|(index, (r, s))| Awarded {
                kind: RuleKind::Streak,
                index,
                id: &r.id,
                half_life: r.half_life,
                cap: r.cap,
                awards: &s.awards,
            });
        engagements.chain(streaks).filter(|a| a.awards.count > 0)
    }

    /// Runs `f` with the variables of exclude/fit conditions as of `t`.
    fn with_contact_scope<R>(&self, t: Timestamp, f: impl FnOnce(&Scope<'_>) -> R) -> R {
        let activity = ActivityAt { state: self, t };
        f(&Scope {
            traits: Some(self.traits()),
            company: Some(self.company()),
            activity: Some(&activity),
            ..Scope::default()
        })
    }

    /// The latest activity that inactivity rule `i` watches.
    pub(super) fn inactivity_latest(&self, model: &Model, i: usize) -> Option<Timestamp> {
        if model.inactivities[i].events.is_some() {
            self.inactivity_last[i]
        } else {
            self.last_activity
        }
    }

    fn totals_with(&self, model: &Model, t: Timestamp, contact: ContactEval) -> Totals {
        Self::totals_of(model, contact, self.engagement_at(model, t))
    }

    pub(super) fn totals_of(model: &Model, contact: ContactEval, engagement: f64) -> Totals {
        let raw = contact.fit + engagement;
        Totals {
            fit: contact.fit,
            engagement,
            raw,
            score: raw.clamp(model.min, model.max),
            excluded: contact.excluded,
        }
    }

    /// Fit and exclusion at `t` (not before the last message): the cached
    /// value unless the model's contact rules read `days_since()`.
    pub(super) fn contact_at(&self, model: &Model, t: Timestamp) -> ContactEval {
        if model.contact_rules_use_time() {
            return self.contact_eval(model, t);
        }
        let cache = &self.contact_cache;
        *cache.whole.get_or_init(|| {
            ContactEval::combine(ContactInput::ALL.map(|input| {
                *cache.parts[input as usize].get_or_init(|| self.contact_part(model, input, t))
            }))
        })
    }

    fn contact_eval(&self, model: &Model, t: Timestamp) -> ContactEval {
        ContactEval::combine(ContactInput::ALL.map(|input| self.contact_part(model, input, t)))
    }

    /// Fit points and exclusion of the rules that read `input`.
    fn contact_part(&self, model: &Model, input: ContactInput, t: Timestamp) -> ContactEval {
        let part = model.contact_part(input);
        self.with_contact_scope(t, |scope| {
            let fit = part
                .fits
                .iter()
                .filter_map(|&i| model.fits[i].evaluate(scope))
                .map(|m| m.points)
                .sum::<f64>();
            let excluded = part
                .exclusions
                .iter()
                .any(|&i| model.exclusions[i].applies(scope));
            ContactEval { fit, excluded }
        })
    }

    fn engagement_at(&self, model: &Model, t: Timestamp) -> f64 {
        self.engagement_parts(model, t).0
    }

    /// Engagement at `t`, and the sum of the awarded rules' positive values
    /// at `t` (what awards can add at any later time until the next one).
    pub(super) fn engagement_parts(&self, model: &Model, t: Timestamp) -> (f64, f64) {
        // Sums start at -0.0 as `Iterator::sum` does, so the totals are the
        // same bits whichever function computes them.
        let (mut awarded, mut positive) = (-0.0, -0.0);
        for a in self.awarded(model) {
            let value = a.value_at(t);
            awarded += value;
            positive += value.max(0.0);
        }
        let inactivity: f64 = model
            .inactivities
            .iter()
            .enumerate()
            .map(|(i, r)| r.value_at(self.inactivity_latest(model, i), t))
            .sum();
        (awarded + inactivity + 0.0, positive)
    }

    /// The score at `t`, which must not be before the last absorbed message.
    pub fn score_at(&self, model: &Model, t: Timestamp) -> Result<Score, OutOfOrder> {
        if self.last_timestamp.is_some_and(|last| t < last) {
            return Err(OutOfOrder);
        }
        Ok(self.score_with(
            model,
            t,
            |at| self.contact_at(model, at),
            || {
                self.excluded_by(model, t)
                    .into_iter()
                    .map(|e| e.reason)
                    .collect()
            },
        ))
    }

    /// The score at `t` (not before the last absorbed message) from `known`,
    /// the score as of the last message, when the model's contact rules do
    /// not read time: their fit points, exclusion and reasons then stand
    /// until the next message, and only engagement (decay, inactivity) and
    /// the labels move. The contact rules are not evaluated, so a state
    /// decoded without its traits answers. `None` when the model's contact
    /// rules read time.
    pub fn score_after(
        &self,
        model: &Model,
        t: Timestamp,
        known: &Score,
    ) -> Result<Option<Score>, OutOfOrder> {
        if self.last_timestamp.is_some_and(|last| t < last) {
            return Err(OutOfOrder);
        }
        if model.contact_rules_use_time() {
            return Ok(None);
        }
        let contact = ContactEval {
            fit: known.fit,
            excluded: known.status == Status::Excluded,
        };
        Ok(Some(self.score_with(
            model,
            t,
            |_| contact,
            || known.reasons.clone(),
        )))
    }

    /// The score at `t` with the contact rules' value at any time from
    /// `contact_at` and the exclusion reasons (when excluded) from `reasons`.
    fn score_with(
        &self,
        model: &Model,
        t: Timestamp,
        contact_at: impl Fn(Timestamp) -> ContactEval,
        reasons: impl FnOnce() -> Vec<String>,
    ) -> Score {
        let totals = self.totals_with(model, t, contact_at(t));
        let reasons = if totals.excluded {
            reasons()
        } else {
            Vec::new()
        };
        let (tier, grade, stage, status) = if totals.excluded {
            (
                SmolStr::default(),
                SmolStr::default(),
                SmolStr::default(),
                Status::Excluded,
            )
        } else {
            // `contact_at` answers from the cache unless the rules read
            // days_since() (then at p itself).
            let pending = self
                .pending_point
                .and_then(|p| self.stage_with(model, p, contact_at(p)));
            let stage = self
                .stage
                .max(pending)
                .max(model.stages.rank_of(totals.score));
            (
                model.tiers.name_for(totals.score),
                model.grades.name_for(totals.fit),
                stage.map_or_else(SmolStr::default, |r| model.stages.name(r).clone()),
                Status::Active,
            )
        };
        Score {
            score: totals.score,
            raw: totals.raw,
            fit: totals.fit,
            engagement: totals.engagement,
            tier,
            grade,
            stage,
            status,
            reasons,
        }
    }

    /// Every contributing rule at `t` (>= the last message), with the message
    /// ids from `trace` when one was recorded during the fold.
    pub fn explain(&self, model: &Model, t: Timestamp, trace: Option<&Trace>) -> Explanation {
        let fits: Vec<_> = self.with_contact_scope(t, |scope| {
            model.fits.iter().map(|r| r.evaluate(scope)).collect()
        });
        let mut rules = Vec::new();
        for (rule, matched) in model.fits.iter().zip(fits) {
            if let Some(m) = matched {
                let detail = match m.case {
                    Some(i) => format!("when {}", rule.cases[i].0.source()),
                    None => "else (no case matched)".to_string(),
                };
                rules.push(Contribution {
                    id: rule.id.clone(),
                    kind: RuleKind::Fit,
                    points: m.points,
                    undecayed: m.points,
                    awards: 1,
                    first_award: None,
                    last_award: None,
                    message_ids: Vec::new(),
                    detail,
                });
            }
        }
        for rule in self.awarded(model) {
            let message_ids = trace
                .map(|tr| tr.ids(rule.kind, rule.index))
                .unwrap_or_default();
            rules.push(rule.contribution(t, message_ids));
        }
        for (i, rule) in model.inactivities.iter().enumerate() {
            let latest = self.inactivity_latest(model, i);
            let points = rule.value_at(latest, t);
            if let (Some(latest), true) = (latest, points != 0.0) {
                rules.push(Contribution {
                    id: rule.id.clone(),
                    kind: RuleKind::Inactivity,
                    points,
                    undecayed: points,
                    awards: 1,
                    first_award: Some(latest.plus(rule.after)),
                    last_award: Some(latest.plus(rule.after)),
                    message_ids: Vec::new(),
                    detail: format!("no activity since {latest} ({} or more)", rule.after),
                });
            }
        }
        Explanation {
            rules,
            excluded_by: self.excluded_by(model, t),
        }
    }

    /// The exclusions that apply at `t`, in file order.
    fn excluded_by(&self, model: &Model, t: Timestamp) -> Vec<ExcludedBy> {
        self.with_contact_scope(t, |scope| {
            model
                .exclusions
                .iter()
                .filter(|r| r.applies(scope))
                .map(|r| ExcludedBy {
                    id: r.id.clone(),
                    reason: r.reason.clone(),
                })
                .collect()
        })
    }
}

/// One engagement or streak rule's awards for a contact.
pub(super) struct Awarded<'s> {
    pub(super) kind: RuleKind,
    pub(super) index: usize,
    pub(super) id: &'s str,
    pub(super) half_life: Option<f64>,
    pub(super) cap: Option<f64>,
    pub(super) awards: &'s Awards,
}

impl Awarded<'_> {
    /// The rule's contribution at `t`: decayed, then capped.
    pub(super) fn value_at(&self, t: Timestamp) -> f64 {
        self.awards.value_at(t, self.half_life, self.cap)
    }

    /// The contribution explained, with the decay and cap in words.
    fn contribution(&self, t: Timestamp, message_ids: Vec<String>) -> Contribution {
        let points = self.value_at(t);
        let mut detail = Vec::new();
        if let Some(cap) = self.cap.filter(|c| points.abs() == *c) {
            detail.push(format!("capped at {cap}"));
        }
        if (self.awards.undecayed - points).abs() > 1e-9 {
            detail.push(format!("{} before decay", self.awards.undecayed));
        }
        Contribution {
            id: self.id.to_string(),
            kind: self.kind,
            points,
            undecayed: self.awards.undecayed,
            awards: self.awards.count,
            first_award: Some(self.awards.first),
            last_award: Some(self.awards.last),
            message_ids,
            detail: detail.join(", "),
        }
    }
}
