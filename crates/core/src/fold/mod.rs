//! The fold (SPEC §3.2): a contact's [`ContactState`] absorbs its messages in
//! log order and answers its score at any t not before the last message.
//!
//! Log order is `(timestamp, class, messageId)` where identify/group/alias
//! messages (class 0) come before activity (class 1) at the same timestamp:
//! an event's conditions see traits "as of the event's timestamp", which
//! includes an identify stamped with the very same instant. Among activities
//! the order is SPEC's `(timestamp, messageId)`.
//!
//! Absorbing is O(rules concerned by the event): nothing re-reads history. An
//! older message than the last absorbed one is refused ([`OutOfOrder`]); the
//! caller re-folds from its log ([`crate::incremental`] shows how).

use std::sync::{Arc, OnceLock};

use serde_json::{Map, Value};

use crate::condition::{Activity, Scope};
use crate::event::{Message, MessageKind};
use crate::model::{ContactInput, EventId, Model, CONTACT_INPUTS};
use crate::rules::engagement::EngagementState;
use crate::rules::streak::StreakState;
use crate::score::RuleKind;
use crate::time::{Timestamp, SECONDS_PER_DAY};

/// Where a message sits in a contact's log.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogKey<'a> {
    /// Its timestamp.
    pub timestamp: Timestamp,
    /// 0 for identify/group/alias, 1 for track/page/screen.
    pub class: u8,
    /// Its message id.
    pub message_id: &'a str,
}

impl<'a> LogKey<'a> {
    /// The key of a message.
    pub fn of(message: &'a Message) -> LogKey<'a> {
        LogKey {
            timestamp: message.timestamp,
            class: u8::from(message.kind.is_activity()),
            message_id: &message.message_id,
        }
    }
}

/// Sorts messages into log order.
pub fn sort_log(messages: &mut [Message]) {
    messages.sort_unstable_by(|a, b| LogKey::of(a).cmp(&LogKey::of(b)));
}

/// A message older than (or equal in order to a different message than) the
/// last one absorbed: the contact must be re-folded from its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfOrder;

/// Receives every award as it is made (to explain which messages earned it).
pub trait Recorder {
    /// Rule `rule` of `kind` awarded points for `message`.
    fn award(&mut self, kind: RuleKind, rule: usize, message: &Message);
}

impl Recorder for () {
    #[inline]
    fn award(&mut self, _: RuleKind, _: usize, _: &Message) {}
}

/// Message ids behind each engagement and streak rule's awards.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    engagement: Vec<Vec<String>>,
    streak: Vec<Vec<String>>,
}

impl Recorder for Trace {
    fn award(&mut self, kind: RuleKind, rule: usize, message: &Message) {
        let lists = match kind {
            RuleKind::Engagement => &mut self.engagement,
            RuleKind::Streak => &mut self.streak,
            _ => return,
        };
        if lists.len() <= rule {
            lists.resize(rule + 1, Vec::new());
        }
        lists[rule].push(message.message_id.clone());
    }
}

impl Trace {
    fn ids(&self, kind: RuleKind, rule: usize) -> Vec<String> {
        let lists = match kind {
            RuleKind::Engagement => &self.engagement,
            RuleKind::Streak => &self.streak,
            _ => return Vec::new(),
        };
        lists.get(rule).cloned().unwrap_or_default()
    }
}

/// Everything the fold keeps about one contact.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactState {
    /// Shared with the rows written from the state ([`Traits`]).
    traits: Traits,
    company: Traits,
    last_timestamp: Option<Timestamp>,
    last_class: u8,
    last_message_id: String,
    engagements: Vec<EngagementState>,
    streaks: Vec<StreakState>,
    activity_counts: Vec<u64>,
    activity_last: Vec<Option<Timestamp>>,
    last_activity: Option<Timestamp>,
    inactivity_last: Vec<Option<Timestamp>>,
    /// Highest stage rank reached at a committed evaluation point.
    stage: Option<usize>,
    /// The latest evaluation point, not committed while messages with the
    /// same timestamp may still arrive.
    pending_point: Option<Timestamp>,
    /// Fit total and exclusion as of the last message, while nothing they
    /// depend on has changed (derived data: never persisted or compared).
    contact_cache: ContactCache,
    /// The most engagement and streak awards can add at any later time
    /// until the next award: their undecayed sums at first, their positive
    /// values at the last evaluated stage point once there is one (derived,
    /// like `contact_cache`).
    awarded_bound: Derived<f64>,
}

/// Traits or company traits, shared: a state's are copied into every row
/// written from it, once per message at the server's pace, and a deep copy
/// of their keys and values cost the writer an allocation and a cache miss
/// each (docs/performance.md, session 31). Changed copy-on-write.
pub type Traits = Arc<Map<String, Value>>;

/// A cache inside a value: ignored by equality.
#[derive(Debug, Clone, Copy, Default)]
struct Derived<T>(Option<T>);

impl<T> PartialEq for Derived<T> {
    fn eq(&self, _: &Derived<T>) -> bool {
        true
    }
}

/// The event ids of the track names met while folding one log, by the
/// address of their shared name: a log read through [`crate::event::Names`]
/// holds each distinct name once, so most lookups are one pointer
/// comparison instead of hashing the name. Only valid while the log is
/// borrowed (a live `Arc` is never at the address of another live one).
#[derive(Default)]
struct NameCache {
    slots: [(usize, Option<EventId>); NAME_SLOTS],
}

const NAME_SLOTS: usize = 16;

impl NameCache {
    fn event_id(&mut self, model: &Model, message: &Message) -> Option<EventId> {
        let (MessageKind::Track, Some(name)) = (message.kind, &message.name) else {
            return model.message_event_id(message);
        };
        let address = Arc::as_ptr(name).cast::<u8>() as usize;
        let slot = &mut self.slots[(address >> 4) % NAME_SLOTS];
        if slot.0 != address {
            *slot = (address, model.message_event_id(message));
        }
        slot.1
    }
}

/// Fit total and exclusion as of the last message, filled by the first
/// reader (`score_at` takes `&self`; a score is often asked for several
/// times between two messages, by the caller and by trigger searches).
///
/// Kept whole and in one part per [`ContactInput`], so that an identify
/// keeps what only reads `company` and a group what only reads `traits`.
#[derive(Debug, Clone, Default)]
struct ContactCache {
    whole: OnceLock<ContactEval>,
    parts: [OnceLock<ContactEval>; CONTACT_INPUTS],
}

impl ContactCache {
    /// Forgets the parts that read `input` (and the mixed part).
    fn changed(&mut self, input: ContactInput) {
        self.whole = OnceLock::new();
        self.parts[input as usize] = OnceLock::new();
        self.parts[ContactInput::Other as usize] = OnceLock::new();
    }
}

impl PartialEq for ContactCache {
    fn eq(&self, _: &ContactCache) -> bool {
        true
    }
}

/// The contact-level part of a score: fit total and exclusion.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ContactEval {
    fit: f64,
    excluded: bool,
}

impl ContactEval {
    /// The whole from its parts, always summed in the same order (so every
    /// path to a fit total gives the same bits).
    fn combine(parts: [ContactEval; CONTACT_INPUTS]) -> ContactEval {
        let [a, b, c] = parts;
        ContactEval {
            // `+ 0.0` turns an empty sum's -0.0 into 0.0.
            fit: a.fit + b.fit + c.fit + 0.0,
            excluded: a.excluded || b.excluded || c.excluded,
        }
    }
}

/// Score components at one instant.
#[derive(Debug, Clone, Copy)]
struct Totals {
    fit: f64,
    engagement: f64,
    raw: f64,
    score: f64,
    excluded: bool,
}

/// `count()` and `days_since()` of a state at t.
struct ActivityAt<'s> {
    state: &'s ContactState,
    t: Timestamp,
}

impl Activity for ActivityAt<'_> {
    fn count(&self, slot: usize) -> u64 {
        self.state.activity_counts[slot]
    }

    fn days_since(&self, slot: usize) -> Option<f64> {
        self.state.activity_last[slot].map(|last| self.t.seconds_since(last) / SECONDS_PER_DAY)
    }
}

impl ContactState {
    /// A contact with no messages yet; `base_traits` come from a contacts
    /// file and act as identify calls older than any message.
    pub fn new(model: &Model, base_traits: Option<&Map<String, Value>>) -> ContactState {
        let mut traits = Traits::default();
        if let Some(base) = base_traits {
            merge(&mut traits, base);
        }
        ContactState {
            traits,
            company: Traits::default(),
            last_timestamp: None,
            last_class: 0,
            last_message_id: String::new(),
            engagements: vec![EngagementState::default(); model.engagements.len()],
            streaks: vec![StreakState::default(); model.streaks.len()],
            activity_counts: vec![0; model.activity_slots()],
            activity_last: vec![None; model.activity_slots()],
            last_activity: None,
            inactivity_last: vec![None; model.inactivities.len()],
            stage: None,
            pending_point: None,
            contact_cache: ContactCache::default(),
            awarded_bound: Derived(None),
        }
    }

    /// Folds a whole log: sorts a copy of the order, absorbs every message.
    /// `messages` must be deduplicated.
    pub fn fold(
        model: &Model,
        base_traits: Option<&Map<String, Value>>,
        messages: &[Message],
    ) -> ContactState {
        Self::fold_recorded(model, base_traits, messages, &mut ())
    }

    /// [`Self::fold`] that reports every award to `recorder`.
    pub fn fold_recorded(
        model: &Model,
        base_traits: Option<&Map<String, Value>>,
        messages: &[Message],
        recorder: &mut impl Recorder,
    ) -> ContactState {
        if messages.is_sorted_by(|a, b| LogKey::of(a) <= LogKey::of(b)) {
            return Self::fold_sorted(model, base_traits, messages.iter(), recorder);
        }
        let mut order: Vec<&Message> = messages.iter().collect();
        order.sort_unstable_by(|a, b| LogKey::of(a).cmp(&LogKey::of(b)));
        Self::fold_sorted(model, base_traits, order.into_iter(), recorder)
    }

    fn fold_sorted<'m>(
        model: &Model,
        base_traits: Option<&Map<String, Value>>,
        messages: impl Iterator<Item = &'m Message>,
        recorder: &mut impl Recorder,
    ) -> ContactState {
        let mut state = ContactState::new(model, base_traits);
        let mut previous: Option<&Message> = None;
        let mut names = NameCache::default();
        for message in messages {
            // In order by construction: no per-message bookkeeping of the
            // last key, only skipping exact repeats of it.
            if previous.is_some_and(|p| LogKey::of(p) == LogKey::of(message)) {
                continue;
            }
            let event = names.event_id(model, message);
            state.apply(model, message, event, recorder);
            previous = Some(message);
        }
        if let Some(last) = previous {
            state.remember_last(last);
        }
        state
    }

    /// Where the state's own heap buffers are, as (start, bytes): what
    /// absorbing a message and scoring read besides the state itself, for
    /// a caller that asks the processor for them ahead (a prefetch; the
    /// state is not read through these).
    pub fn buffers(&self) -> [(*const u8, usize); 6] {
        fn of<T>(v: &[T]) -> (*const u8, usize) {
            (v.as_ptr().cast(), std::mem::size_of_val(v))
        }
        [
            of(&self.engagements),
            of(&self.streaks),
            of(&self.activity_counts),
            of(&self.activity_last),
            of(&self.inactivity_last),
            of(self.last_message_id.as_bytes()),
        ]
    }

    /// The timestamp of the last absorbed message.
    pub fn last_timestamp(&self) -> Option<Timestamp> {
        self.last_timestamp
    }

    /// Traits as of the last absorbed message.
    pub fn traits(&self) -> &Map<String, Value> {
        &self.traits
    }

    /// Company traits as of the last absorbed message.
    pub fn company(&self) -> &Map<String, Value> {
        &self.company
    }

    /// Traits as of the last absorbed message, shared (a copy is a
    /// reference count).
    pub fn shared_traits(&self) -> &Traits {
        &self.traits
    }

    /// Company traits as of the last absorbed message, shared.
    pub fn shared_company(&self) -> &Traits {
        &self.company
    }

    /// Absorbs the next message of the log.
    pub fn absorb(&mut self, model: &Model, message: &Message) -> Result<(), OutOfOrder> {
        self.absorb_recorded(model, message, &mut ())
    }

    /// [`Self::absorb`] that reports awards to `recorder`.
    pub fn absorb_recorded(
        &mut self,
        model: &Model,
        message: &Message,
        recorder: &mut impl Recorder,
    ) -> Result<(), OutOfOrder> {
        let key = LogKey::of(message);
        if let Some(timestamp) = self.last_timestamp {
            let last = LogKey {
                timestamp,
                class: self.last_class,
                message_id: &self.last_message_id,
            };
            if key <= last {
                return if key == last { Ok(()) } else { Err(OutOfOrder) };
            }
        }
        self.apply(model, message, model.message_event_id(message), recorder);
        self.remember_last(message);
        Ok(())
    }

    fn remember_last(&mut self, message: &Message) {
        self.last_timestamp = Some(message.timestamp);
        self.last_class = u8::from(message.kind.is_activity());
        self.last_message_id.clear();
        self.last_message_id.push_str(&message.message_id);
    }

    /// Folds in the next message of the log (the caller checked the order);
    /// `event` is the message's [`Model::message_event_id`].
    fn apply(
        &mut self,
        model: &Model,
        message: &Message,
        event: Option<EventId>,
        recorder: &mut impl Recorder,
    ) {
        if let Some(point) = self.pending_point {
            if message.timestamp > point {
                self.commit_stage(model, point);
            }
        }
        self.pending_point = Some(message.timestamp);
        match message.kind {
            MessageKind::Identify => {
                if merge(&mut self.traits, &message.traits) {
                    self.contact_cache.changed(ContactInput::Traits);
                }
            }
            MessageKind::Group => {
                if merge(&mut self.company, &message.traits) {
                    self.contact_cache.changed(ContactInput::Company);
                }
            }
            MessageKind::Alias => {}
            MessageKind::Track | MessageKind::Page | MessageKind::Screen => {
                self.absorb_activity(model, message, event, recorder)
            }
        }
    }

    fn absorb_activity(
        &mut self,
        model: &Model,
        message: &Message,
        event: Option<EventId>,
        recorder: &mut impl Recorder,
    ) {
        let at = message.timestamp;
        self.last_activity = Some(at);
        let Some(id) = event else {
            return;
        };
        let dispatch = model.dispatch(id);
        if !dispatch.activity_slots.is_empty() {
            self.contact_cache.changed(ContactInput::Other);
        }
        for &slot in &dispatch.activity_slots {
            self.activity_counts[slot as usize] += 1;
            self.activity_last[slot as usize] = Some(at);
        }
        for &rule in &dispatch.inactivities {
            self.inactivity_last[rule as usize] = Some(at);
        }
        let scope = Scope {
            event: message.name.as_deref(),
            properties: Some(&message.properties),
            context: Some(&message.context),
            traits: Some(&*self.traits),
            company: Some(&*self.company),
            activity: None,
            outcome: None,
        };
        for &i in &dispatch.streak_resets {
            let rule = &model.streaks[i as usize];
            rule.reset(&mut self.streaks[i as usize]);
        }
        for &i in &dispatch.streak_counts {
            let rule = &model.streaks[i as usize];
            if rule.when.as_ref().is_none_or(|c| c.holds(&scope))
                && rule.count(&mut self.streaks[i as usize], at)
            {
                self.awarded_bound = Derived(None);
                recorder.award(RuleKind::Streak, i as usize, message);
            }
        }
        for &i in &dispatch.engagements {
            let rule = &model.engagements[i as usize];
            if rule.when.as_ref().is_none_or(|c| c.holds(&scope))
                && rule.occur(&mut self.engagements[i as usize], at)
            {
                self.awarded_bound = Derived(None);
                recorder.award(RuleKind::Engagement, i as usize, message);
            }
        }
    }

    fn commit_stage(&mut self, model: &Model, point: Timestamp) {
        if model.stages.is_empty() || self.stage == Some(model.stages.len() - 1) {
            return;
        }
        let contact = self.contact_at(model, point);
        // Decay only moves awards toward zero, so this bounds the score at
        // any time from now on; below the next stage there is nothing to do.
        let next_min = model.stages.min_of(self.stage.map_or(0, |s| s + 1));
        if contact.excluded {
            return;
        }
        if let Some(min) = next_min {
            let awarded = match self.awarded_bound.0 {
                Some(cached) => cached,
                None => {
                    let fresh = self.undecayed_bound(model);
                    self.awarded_bound = Derived(Some(fresh));
                    fresh
                }
            };
            if Self::score_bound(model, contact, awarded) < min {
                return;
            }
        }
        let (engagement, positive) = self.engagement_parts(model, point);
        let totals = Self::totals_of(model, contact, engagement);
        self.stage = self.stage.max(model.stages.rank_of(totals.score));
        // Each positive award only decays from here on, so their values now
        // bound them until the next award: a tighter bound than the awards'
        // undecayed sums, which spares evaluating every later point.
        self.awarded_bound = Derived(Some(positive));
    }
}

/// Merges `traits` into `into` (null removes a key); whether anything
/// changed. Equal values are left in place: SDKs resend the same traits with
/// every identify, and an unchanged map keeps the fit/exclusion cache and
/// stays shared with the rows written from it.
fn merge(into: &mut Traits, traits: &Map<String, Value>) -> bool {
    if into.is_empty() {
        // The first identify or group: one bulk copy instead of an insert
        // per key.
        let mut map = traits.clone();
        map.retain(|_, value| !value.is_null());
        let changed = !map.is_empty();
        *into = Arc::new(map);
        return changed;
    }
    let mut changed = false;
    for (key, value) in traits {
        if value.is_null() {
            if into.contains_key(key) {
                Arc::make_mut(into).remove(key);
                changed = true;
            }
        } else if into.get(key) != Some(value) {
            Arc::make_mut(into).insert(key.clone(), value.clone());
            changed = true;
        }
    }
    changed
}

mod score;

mod triggers;

mod snapshot;

pub(crate) use snapshot::fingerprint;

pub use snapshot::SnapshotError;

#[cfg(test)]
mod tests;
