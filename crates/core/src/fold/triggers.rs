//! What the trigger engine reads from a folded state (see [`crate::triggers`]):
//! the variables of trigger conditions, and where scores can change between
//! messages.

use crate::condition::Scope;
use crate::model::Model;
use crate::score::Score;
use crate::time::Timestamp;

use super::{ActivityAt, ContactState};

/// What the trigger engine reads from a state (see [`crate::triggers`]).
impl ContactState {
    /// Runs `f` with the variables of trigger conditions at `t` (>= the last
    /// message), `score` being the score at `t`.
    pub(crate) fn with_trigger_scope<R>(
        &self,
        t: Timestamp,
        score: &Score,
        f: impl FnOnce(&Scope<'_>) -> R,
    ) -> R {
        let outcome = crate::condition::Outcome {
            score: score.score,
            raw: score.raw,
            fit: score.fit,
            engagement: score.engagement,
            tier: &score.tier,
            grade: &score.grade,
            stage: &score.stage,
            status: score.status.as_str(),
        };
        let activity = ActivityAt { state: self, t };
        f(&Scope {
            traits: Some(self.traits()),
            company: Some(self.company()),
            activity: Some(&activity),
            outcome: Some(&outcome),
            ..Scope::default()
        })
    }

    /// Bounds of the engagement over `[a, b]` when no message and no time
    /// boundary (inactivity start, `days_since` threshold) lies inside: each
    /// decaying sum moves monotonically toward zero, so its values lie
    /// between those at the ends. With `step_at_b`, `b` may be a boundary:
    /// the engagement there (an inactivity rule starting at `b` included)
    /// widens the bounds. Returns (fit, lowest, highest engagement).
    pub(crate) fn engagement_range(
        &self,
        model: &Model,
        a: Timestamp,
        b: Timestamp,
        step_at_b: bool,
    ) -> (f64, f64, f64) {
        let (mut lo, mut hi, mut at_b) = (0.0, 0.0, 0.0);
        for rule in self.awarded(model) {
            let (x, y) = (rule.value_at(a), rule.value_at(b));
            lo += x.min(y);
            hi += x.max(y);
            at_b += y;
        }
        let inactivity = |t: Timestamp| -> f64 {
            model
                .inactivities
                .iter()
                .enumerate()
                .map(|(i, r)| r.value_at(self.inactivity_latest(model, i), t))
                .sum()
        };
        let before = inactivity(a);
        let (mut lo, mut hi) = (lo + before, hi + before);
        if step_at_b {
            let at_b = at_b + inactivity(b);
            (lo, hi) = (lo.min(at_b), hi.max(at_b));
        }
        let fit = self.contact_at(model, a).fit;
        (fit, lo, hi)
    }

    /// Whether some awarded points still decay.
    pub(crate) fn decaying(&self, model: &Model) -> bool {
        self.awarded(model)
            .any(|a| a.half_life.is_some() && a.awards.sum_at_last != 0.0)
    }

    /// The latest event of a `count()`/`days_since()` slot.
    pub(crate) fn slot_last(&self, slot: usize) -> Option<Timestamp> {
        self.activity_last.get(slot).copied().flatten()
    }

    /// When each inactivity rule starts (or started) to apply.
    pub(crate) fn inactivity_starts<'s>(
        &'s self,
        model: &'s Model,
    ) -> impl Iterator<Item = Timestamp> + 's {
        model.inactivities.iter().enumerate().filter_map(|(i, r)| {
            self.inactivity_latest(model, i)
                .map(|latest| latest.plus(r.after))
        })
    }
}
