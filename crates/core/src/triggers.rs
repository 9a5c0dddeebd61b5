//! The trigger engine (SPEC §3.3): evaluates each trigger's condition at
//! every evaluation point of a contact and reports false→true edges.
//!
//! Evaluation points are the contact's messages, the instants where a
//! time-based term changes (an inactivity rule starting to apply, a
//! `days_since()` threshold of a trigger, fit or exclusion condition being
//! reached), and the periodic decay tick (multiples of `[triggers] tick`
//! since the Unix epoch).
//!
//! Between two messages nothing but time moves, so [`TriggerState::next_point`]
//! can tell exactly when the next evaluation point that changes a condition
//! comes, without evaluating every tick: it evaluates at the boundaries, and
//! over runs of ticks it bounds the decaying engagement (each decaying sum
//! moves monotonically toward zero) and only looks inside runs where a
//! number the conditions compare with (or a tier/stage minimum) lies within
//! the bounds. Conditions that use a moving value in another way (say
//! `score * 2 > 100`) are evaluated at every tick while points still decay.
//! This is what lets a store keep one due time per contact and leave
//! contacts alone until then.

use crate::condition::{Moving, TimeTerms};
use crate::fold::ContactState;
use crate::model::Model;
use crate::score::{Score, Status};
use crate::time::Timestamp;

/// How far ahead one search looks; beyond it a contact is looked at again
/// when the horizon is reached (cheap: once every few years).
pub const HORIZON_SECONDS: i64 = 5 * 365 * 86_400;

/// Most ticks evaluated one by one in a search for conditions whose moving
/// terms cannot be bounded; the search resumes from there.
const SCAN_TICKS: i64 = 64;

/// What the conditions of a model's triggers depend on between messages,
/// computed once per model.
#[derive(Debug, Clone, Default)]
pub struct TriggerPlan {
    /// Numbers that moving variables are compared with (tier and stage
    /// minimums included as `score` thresholds when conditions read them).
    moving: Vec<(Moving, f64)>,
    /// `days_since()` thresholds of every condition whose value can change
    /// with time (triggers, fit, exclusions).
    days: Vec<(usize, f64)>,
    /// Some condition uses a moving term in a way that cannot be bounded.
    opaque: bool,
    /// Some trigger reads a moving variable (score, raw, engagement, tier, stage).
    reads_moving: bool,
}

impl TriggerPlan {
    /// The plan of a model.
    pub fn new(model: &Model) -> TriggerPlan {
        let mut plan = TriggerPlan::default();
        if model.triggers.is_empty() {
            return plan;
        }
        let mut labels = false;
        for trigger in &model.triggers {
            let terms = trigger.when.time_terms();
            plan.reads_moving |= !terms.moving.is_empty() || terms.labels || terms.opaque;
            labels |= terms.labels;
            plan.absorb(terms);
        }
        let contact_conditions = model
            .fits
            .iter()
            .flat_map(|f| f.cases.iter().map(|(c, _)| c))
            .chain(model.exclusions.iter().map(|e| &e.when));
        for condition in contact_conditions.filter(|c| c.uses_time()) {
            plan.absorb(condition.time_terms());
        }
        if labels {
            let mins = model.tiers.iter().chain(model.stages.iter());
            plan.moving
                .extend(mins.map(|(_, min)| (Moving::Score, min)));
        }
        plan
    }

    fn absorb(&mut self, terms: TimeTerms) {
        self.moving.extend(terms.moving);
        self.days.extend(terms.days);
        self.opaque |= terms.opaque;
    }

    /// Whether a threshold lies within the range of the moving variables.
    fn may_cross(&self, model: &Model, fit: f64, lo: f64, hi: f64) -> bool {
        let clamp = |v: f64| v.clamp(model.min, model.max);
        self.moving.iter().any(|&(var, x)| {
            let (a, b) = match var {
                Moving::Engagement => (lo, hi),
                Moving::Raw => (fit + lo, fit + hi),
                Moving::Score => (clamp(fit + lo), clamp(fit + hi)),
            };
            a <= x && x <= b
        })
    }
}

/// One false→true edge of a trigger's condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Firing {
    /// Index of the trigger in the model.
    pub trigger: usize,
    /// The evaluation point.
    pub at: Timestamp,
    /// The contact's score there.
    pub score: Score,
    /// Why: the rules behind the score there (without message ids).
    pub explanation: crate::score::Explanation,
}

/// A contact's trigger state: each condition's value at the latest
/// evaluation point, and which `once` triggers already fired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TriggerState {
    /// The latest evaluation point.
    at: Option<Timestamp>,
    /// Edges before this instant are not reported (the model was activated
    /// then; history before it is not this model's to act on).
    since: Option<Timestamp>,
    values: Vec<bool>,
    fired: Vec<bool>,
}

impl TriggerState {
    /// A contact not evaluated yet: every condition false.
    pub fn new(model: &Model) -> TriggerState {
        let n = model.triggers.len();
        TriggerState {
            at: None,
            since: None,
            values: vec![false; n],
            fired: vec![false; n],
        }
    }

    /// A state that takes the conditions' values at `t` as given, without
    /// firing (a model being activated starts from what is true now).
    pub fn armed_at(model: &Model, contact: &ContactState, t: Timestamp) -> TriggerState {
        let mut state = TriggerState::new(model);
        conditions_at(model, contact, t, |i, now| state.values[i] = now);
        state.at = Some(t);
        state.since = Some(t);
        state
    }

    /// Where the state's heap buffers are, as (start, bytes), as
    /// [`ContactState::buffers`] gives them.
    pub fn buffers(&self) -> [(*const u8, usize); 2] {
        [
            (self.values.as_ptr().cast(), self.values.len()),
            (self.fired.as_ptr().cast(), self.fired.len()),
        ]
    }

    /// The latest evaluation point.
    pub fn at(&self) -> Option<Timestamp> {
        self.at
    }

    /// Edges before this instant are not reported.
    pub fn since(&self) -> Option<Timestamp> {
        self.since
    }

    /// Each trigger's condition value at the latest evaluation point.
    pub fn values(&self) -> &[bool] {
        &self.values
    }

    /// Evaluates every trigger at `t` (not before the contact's last
    /// message nor the latest evaluation) and reports the edges. Returns
    /// the contact's score at `t` that the conditions were evaluated with
    /// (`None` when the model has no triggers, and nothing was computed).
    pub fn evaluate(
        &mut self,
        model: &Model,
        contact: &ContactState,
        t: Timestamp,
        out: &mut Vec<Firing>,
    ) -> Option<Score> {
        if model.triggers.is_empty() {
            return None;
        }
        let reportable = self.since.is_none_or(|since| t >= since);
        // Each value replaced in place once compared (no vector a
        // message); the rising edges noted, then reported with the score.
        let mut rising = Vec::new();
        let (values, fired) = (&mut self.values, &mut self.fired);
        let score = conditions_at(model, contact, t, |i, now| {
            if now && !values[i] && reportable && !(model.triggers[i].once && fired[i]) {
                fired[i] = true;
                rising.push(i);
            }
            values[i] = now;
        });
        for i in rising {
            out.push(Firing {
                trigger: i,
                at: t,
                score: score.clone(),
                explanation: contact.explain(model, t, None),
            });
        }
        self.at = Some(t);
        Some(score)
    }

    /// Evaluates every time-based point after the latest evaluation and up
    /// to `until` (included or not), as [`Self::evaluate`] does. Used before
    /// absorbing a message at `until` (excluded: the message's own point
    /// is evaluated after it) and when a due time is reached (included).
    pub fn advance(
        &mut self,
        model: &Model,
        contact: &ContactState,
        until: Timestamp,
        inclusive: bool,
        out: &mut Vec<Firing>,
    ) {
        // Only points up to `until` matter: searching no further keeps the
        // cost proportional to the gap, not to the horizon.
        let cap = if inclusive {
            Timestamp(until.0.saturating_add(1))
        } else {
            until
        };
        while let Some(p) = self.search(model, contact, Some(cap)) {
            self.evaluate(model, contact, p, out);
        }
    }

    /// The next time-based evaluation point at which some condition may
    /// change value (a store's due time), or `None` when nothing can change
    /// before the next message.
    pub fn next_point(&self, model: &Model, contact: &ContactState) -> Option<Timestamp> {
        self.search(model, contact, None)
    }

    /// [`Self::next_point`] among the points before `cap` only (`None`: none
    /// of them changes a condition).
    fn search(
        &self,
        model: &Model,
        contact: &ContactState,
        cap: Option<Timestamp>,
    ) -> Option<Timestamp> {
        let after = self.at?;
        if model.triggers.is_empty() || cap.is_some_and(|cap| cap <= after) {
            return None;
        }
        let plan = model.trigger_plan();
        let far = after.plus(crate::time::Duration::from_seconds(HORIZON_SECONDS));
        let horizon = cap.map_or(far, |cap| cap.min(far));
        // On the stack for up to 8 bounds (a `days_since()` slot adds two,
        // an inactivity rule one): no allocation a message.
        let mut bounds: smallvec::SmallVec<[Timestamp; 8]> = smallvec::SmallVec::new();
        for &(slot, days) in &plan.days {
            if let Some(last) = contact.slot_last(slot) {
                let b = Timestamp(last.0.saturating_add((days * 86_400e9).round() as i64));
                // Both sides of the threshold: `>=` flips at it, `>` just after.
                bounds.extend([b, Timestamp(b.0.saturating_add(1))]);
            }
        }
        bounds.extend(contact.inactivity_starts(model));
        bounds.retain(|b| *b > after && *b < horizon);
        bounds.sort_unstable();
        bounds.dedup();
        let search = Search {
            model,
            plan,
            contact,
            state: self,
            tick: model.tick.nanos().max(1),
        };
        let mut start = after;
        for b in bounds {
            if !search.may_change_by(start, b) {
                start = b;
                continue;
            }
            if let Some(t) = search.ticks(start, b) {
                return Some(t);
            }
            if search.changes_at(b) {
                return Some(b);
            }
            start = b;
        }
        if let Some(t) = search.ticks(start, horizon) {
            return Some(t);
        }
        if cap.is_some_and(|cap| cap <= far) {
            return None; // nothing before the cap
        }
        let moving = plan.reads_moving && contact.decaying(model);
        (moving || !plan.days.is_empty() || !model.inactivities.is_empty()).then_some(horizon)
    }

    /// Encodes the state compactly (for a store).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(18 + self.values.len());
        out.push(1); // format version
        for t in [self.at, self.since] {
            match t {
                Some(t) => {
                    out.push(1);
                    out.extend_from_slice(&t.0.to_le_bytes());
                }
                None => out.push(0),
            }
        }
        for (v, f) in self.values.iter().zip(&self.fired) {
            out.push(u8::from(*v) | (u8::from(*f) << 1));
        }
        out
    }

    /// Decodes [`Self::encode`]'s output for `model`; `None` when it does
    /// not fit (another model: re-arm).
    pub fn decode(model: &Model, bytes: &[u8]) -> Option<TriggerState> {
        let (&version, mut rest) = bytes.split_first()?;
        if version != 1 {
            return None;
        }
        let mut time = || -> Option<Option<Timestamp>> {
            let (&flag, after) = rest.split_first()?;
            rest = after;
            if flag == 0 {
                return Some(None);
            }
            let (raw, after) = rest.split_first_chunk::<8>()?;
            rest = after;
            Some(Some(Timestamp(i64::from_le_bytes(*raw))))
        };
        let at = time()?;
        let since = time()?;
        if rest.len() != model.triggers.len() {
            return None;
        }
        Some(TriggerState {
            at,
            since,
            values: rest.iter().map(|b| b & 1 != 0).collect(),
            fired: rest.iter().map(|b| b & 2 != 0).collect(),
        })
    }
}

/// Every firing of a contact's log (sorted, deduplicated) up to `until`:
/// the offline simulation, and what a store's live engine reproduces when
/// messages arrive in order. Returns the final states too.
pub fn simulate(
    model: &Model,
    base_traits: Option<&serde_json::Map<String, serde_json::Value>>,
    log: &[crate::event::Message],
    until: Timestamp,
) -> (ContactState, TriggerState, Vec<Firing>) {
    replay(model, base_traits, log, until, None)
}

/// [`simulate`] reporting only edges from `since` on (a store re-folding a
/// contact whose triggers were armed when its model was activated).
pub fn replay(
    model: &Model,
    base_traits: Option<&serde_json::Map<String, serde_json::Value>>,
    log: &[crate::event::Message],
    until: Timestamp,
    since: Option<Timestamp>,
) -> (ContactState, TriggerState, Vec<Firing>) {
    let mut contact = ContactState::new(model, base_traits);
    let mut triggers = TriggerState::new(model);
    triggers.since = since;
    let mut out = Vec::new();
    for message in log {
        if message.timestamp > until {
            break;
        }
        triggers.advance(model, &contact, message.timestamp, false, &mut out);
        if contact.absorb(model, message).is_err() {
            continue; // not in log order: the caller sorts
        }
        triggers.evaluate(model, &contact, message.timestamp, &mut out);
    }
    triggers.advance(model, &contact, until, true, &mut out);
    (contact, triggers, out)
}

/// Gives `each` every trigger's index and condition at `t`, in order;
/// returns the score there. Excluded contacts fire nothing: every
/// condition is false for them.
fn conditions_at(
    model: &Model,
    contact: &ContactState,
    t: Timestamp,
    mut each: impl FnMut(usize, bool),
) -> Score {
    let score = contact
        .score_at(model, t)
        .expect("trigger points are never before the last message");
    if score.status == Status::Excluded {
        (0..model.triggers.len()).for_each(|i| each(i, false));
    } else {
        contact.with_trigger_scope(t, &score, |scope| {
            for (i, trigger) in model.triggers.iter().enumerate() {
                each(i, trigger.when.holds(scope));
            }
        });
    }
    score
}

/// One search for the next point where a condition changes.
struct Search<'a> {
    model: &'a Model,
    plan: &'a TriggerPlan,
    contact: &'a ContactState,
    state: &'a TriggerState,
    tick: i64,
}

impl Search<'_> {
    fn changes_at(&self, t: Timestamp) -> bool {
        let mut changes = false;
        conditions_at(self.model, self.contact, t, |i, now| {
            changes |= now != self.state.values[i];
        });
        changes
    }

    /// Whether the conditions at a tick after `start` (whose conditions
    /// equal the state's) or at the boundary `b` may differ from the
    /// state's: always when some condition reads `days_since()` or cannot
    /// be bounded, otherwise only when a threshold lies within the moving
    /// variables' range over `[start, b]`, the step of an inactivity rule
    /// starting at `b` included. Spares most boundaries the search of their
    /// ticks and a full evaluation (about 2k instructions a message under
    /// `examples/b2b.toml`).
    fn may_change_by(&self, start: Timestamp, b: Timestamp) -> bool {
        if self.plan.opaque || !self.plan.days.is_empty() {
            return true;
        }
        // No message and no other boundary inside `(start, b)`.
        let (fit, lo, hi) = self.contact.engagement_range(self.model, start, b, true);
        self.plan.may_cross(self.model, fit, lo, hi)
    }

    fn tick_time(&self, k: i64) -> Timestamp {
        Timestamp(k.saturating_mul(self.tick))
    }

    /// The first tick strictly between `start` and `end` (no boundary in
    /// between) where a condition changes, or a tick to look again from.
    fn ticks(&self, start: Timestamp, end: Timestamp) -> Option<Timestamp> {
        let first = start.0.div_euclid(self.tick) + 1;
        let last = (end.0 - 1).div_euclid(self.tick);
        if first > last {
            return None;
        }
        if self.plan.opaque {
            // Cannot bound: every tick while anything moves.
            if !self.contact.decaying(self.model) && self.plan.days.is_empty() {
                return None;
            }
            let stop = last.min(first + SCAN_TICKS - 1);
            for k in first..=stop {
                if self.changes_at(self.tick_time(k)) {
                    return Some(self.tick_time(k));
                }
            }
            return (stop < last).then(|| self.tick_time(stop));
        }
        if !self.plan.reads_moving || !self.contact.decaying(self.model) {
            return None;
        }
        self.bisect(start, first, last).map(|k| self.tick_time(k))
    }

    /// The first tick in `lo..=hi` whose conditions differ from those at
    /// `from` (which equal the state's), knowing every tick before `lo` and
    /// after `from` agrees with them.
    fn bisect(&self, from: Timestamp, lo: i64, hi: i64) -> Option<i64> {
        let (fit, e_lo, e_hi) =
            self.contact
                .engagement_range(self.model, from, self.tick_time(hi), false);
        if !self.plan.may_cross(self.model, fit, e_lo, e_hi) {
            return None;
        }
        if lo == hi {
            return self.changes_at(self.tick_time(lo)).then_some(lo);
        }
        let mid = lo + (hi - lo) / 2;
        self.bisect(from, lo, mid)
            .or_else(|| self.bisect(self.tick_time(mid), mid + 1, hi))
    }
}

#[cfg(test)]
mod tests;
