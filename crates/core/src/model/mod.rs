//! Models: the TOML file (`file`), its checking and compilation (`Build`) into
//! the runtime [`Model`] that the fold uses: conditions compiled, durations in
//! seconds, rules dispatched by interned event name.

mod error;
mod file;

use std::collections::HashMap;

use rustc_hash::FxHashMap;
use std::ops::Range;

use toml::Spanned;

pub(crate) use error::Errors;
pub use error::{line_column, ModelError, ModelErrors};
pub use file::{ModelFile, ModelSection, ScoreSection};

use crate::condition::{Condition, Names, Place};
use crate::event::{Message, MessageKind, PAGE_EVENT, SCREEN_EVENT};
use crate::rules::engagement::Engagement;
use crate::rules::exclude::Exclusion;
use crate::rules::fit::Fit;
use crate::rules::inactivity::Inactivity;
use crate::rules::labels::Labels;
use crate::rules::streak::Streak;
use crate::rules::trigger::Trigger;
use crate::time::Duration;

/// Index of an interned event name.
pub type EventId = u32;

/// The rules an event name concerns, found once per event by its interned id.
#[derive(Debug, Clone, Default)]
pub struct Dispatch {
    /// Engagement rules matching the name.
    pub engagements: Vec<u32>,
    /// Streak rules counting the name.
    pub streak_counts: Vec<u32>,
    /// Streak rules reset by the name.
    pub streak_resets: Vec<u32>,
    /// `count()`/`days_since()` slots of the name.
    pub activity_slots: Vec<u32>,
    /// Inactivity rules (with an `events` list) that the name keeps active.
    pub inactivities: Vec<u32>,
}

/// A validated, compiled scoring model.
#[derive(Debug, Clone)]
pub struct Model {
    /// `[model] name`.
    pub name: String,
    /// `[model] description`.
    pub description: String,
    /// Lowest score.
    pub min: f64,
    /// Highest score.
    pub max: f64,
    /// Exclusion rules in file order.
    pub exclusions: Vec<Exclusion>,
    /// Fit rules.
    pub fits: Vec<Fit>,
    /// Engagement rules.
    pub engagements: Vec<Engagement>,
    /// Streak rules.
    pub streaks: Vec<Streak>,
    /// Inactivity rules.
    pub inactivities: Vec<Inactivity>,
    /// Tiers (over the score).
    pub tiers: Labels,
    /// Grades (over the fit total).
    pub grades: Labels,
    /// Stages (over the score, forward only).
    pub stages: Labels,
    /// Triggers (validated; fired by the trigger engine).
    pub triggers: Vec<Trigger>,
    /// Trigger re-evaluation tick.
    pub tick: Duration,
    names: FxHashMap<String, EventId>,
    /// The ids of `$page` and `$screen` (no hashing for the most common
    /// messages).
    page_id: Option<EventId>,
    screen_id: Option<EventId>,
    dispatch: Vec<Dispatch>,
    activity_names: Vec<String>,
    contact_rules_use_activity: bool,
    contact_rules_use_time: bool,
    contact_parts: [ContactPart; CONTACT_INPUTS],
    trigger_plan: crate::triggers::TriggerPlan,
    /// What stored states of this model are checked against.
    snapshot_fingerprint: u32,
}

/// What the contact-level rules (exclude, fit) read, for keeping their
/// results between messages: an identify only changes what reads `traits`,
/// a group what reads `company`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContactInput {
    /// Only `traits`.
    Traits = 0,
    /// Only `company`.
    Company = 1,
    /// Both, neither, or `count()`/`days_since()`.
    Other = 2,
}

/// Number of [`ContactInput`]s.
pub(crate) const CONTACT_INPUTS: usize = 3;

impl ContactInput {
    /// Every input, in the order their parts are summed.
    pub(crate) const ALL: [ContactInput; CONTACT_INPUTS] = [
        ContactInput::Traits,
        ContactInput::Company,
        ContactInput::Other,
    ];

    fn of<'c>(conditions: impl Iterator<Item = &'c Condition>) -> ContactInput {
        let (mut traits, mut company, mut activity) = (false, false, false);
        for c in conditions {
            traits |= c.reads_traits();
            company |= c.reads_company();
            activity |= c.uses_activity();
        }
        match (traits, company, activity) {
            (true, false, false) => ContactInput::Traits,
            (false, true, false) => ContactInput::Company,
            _ => ContactInput::Other,
        }
    }
}

/// The exclude and fit rules (indexes, in model order) of one input.
#[derive(Debug, Clone, Default)]
pub(crate) struct ContactPart {
    /// Indexes into [`Model::exclusions`].
    pub(crate) exclusions: Vec<usize>,
    /// Indexes into [`Model::fits`].
    pub(crate) fits: Vec<usize>,
}

/// Picks one of a [`Dispatch`]'s lists.
type RouteList = fn(&mut Dispatch) -> &mut Vec<u32>;

/// Event names used by `count()`/`days_since()`, by slot.
#[derive(Default)]
struct Slots(Vec<String>);

impl Names for Slots {
    fn slot(&mut self, name: &str) -> usize {
        match self.0.iter().position(|n| n == name) {
            Some(i) => i,
            None => {
                self.0.push(name.to_string());
                self.0.len() - 1
            }
        }
    }
}

/// Shared state while a model is checked and compiled.
pub(crate) struct Build<'s> {
    pub(crate) errors: Errors<'s>,
    slots: Slots,
    default_half_life: Option<f64>,
    /// Also refuse models that would run but cannot be what was meant
    /// (not for versions a store accepted earlier).
    pub(crate) lint: bool,
}

impl Build<'_> {
    /// Compiles a condition, recording an error at its place in the file.
    pub(crate) fn condition(
        &mut self,
        text: &Spanned<String>,
        place: Place,
        rule: &str,
    ) -> Option<Condition> {
        match Condition::compile(text.get_ref(), place, &mut self.slots) {
            Ok(c) => Some(c),
            Err(e) => {
                let start = self.errors.string_content_start(&text.span());
                self.errors.at(start + e.offset, Some(rule), e.message);
                None
            }
        }
    }

    /// Compiles an optional condition: `Some(None)` when absent, `None` on error.
    pub(crate) fn optional_condition(
        &mut self,
        text: Option<&Spanned<String>>,
        place: Place,
        rule: &str,
    ) -> Option<Option<Condition>> {
        match text {
            None => Some(None),
            Some(text) => self.condition(text, place, rule).map(Some),
        }
    }

    /// Parses a duration field.
    pub(crate) fn duration(
        &mut self,
        text: &Spanned<String>,
        rule: &str,
        field: &str,
    ) -> Option<Duration> {
        Duration::parse(text.get_ref())
            .map_err(|e| {
                self.errors
                    .span(text.span(), Some(rule), format!("`{field}`: {e}"))
            })
            .ok()
    }

    /// A rule's effective half-life in seconds: its own, `"none"`, or the model's.
    pub(crate) fn half_life(
        &mut self,
        text: Option<&Spanned<String>>,
        rule: &str,
    ) -> Option<Option<f64>> {
        match text {
            None => Some(self.default_half_life),
            Some(t) if t.get_ref() == "none" => Some(None),
            Some(t) => self
                .duration(t, rule, "half_life")
                .map(|d| Some(d.seconds() as f64)),
        }
    }

    /// Checks a `cap` (must be positive).
    pub(crate) fn cap(
        &mut self,
        cap: Option<f64>,
        id: &Spanned<String>,
        rule: &str,
    ) -> Option<Option<f64>> {
        match cap {
            Some(c) if !(c.is_finite() && c > 0.0) => {
                self.errors.span(
                    id.span(),
                    Some(rule),
                    format!("`cap` must be a positive number, found {c}"),
                );
                None
            }
            other => Some(other),
        }
    }

    /// Checks that a number is finite.
    pub(crate) fn finite(&mut self, value: f64, span: Range<usize>, rule: &str, field: &str) {
        if !value.is_finite() {
            self.errors.span(
                span,
                Some(rule),
                format!("`{field}` must be a finite number, found {value}"),
            );
        }
    }
}

impl Model {
    /// Parses, checks and compiles a model. `file` is used in error places.
    pub fn from_toml(file: &str, source: &str) -> Result<Model, ModelErrors> {
        Model::parse(file, source, true)
    }

    /// [`Model::from_toml`] for a version a store accepted earlier: without
    /// the checks that refuse models that would run but cannot be what was
    /// meant (a trigger on a tier the model does not have), so that a store
    /// keeps working when a later release adds such a check. New models are
    /// always checked with [`Model::from_toml`].
    pub fn from_stored_toml(file: &str, source: &str) -> Result<Model, ModelErrors> {
        Model::parse(file, source, false)
    }

    fn parse(file: &str, source: &str, lint: bool) -> Result<Model, ModelErrors> {
        let mut errors = Errors::new(file, source);
        let parsed: ModelFile = match toml::from_str(source) {
            Ok(parsed) => parsed,
            Err(e) => {
                let offset = e.span().map_or(0, |s| s.start);
                let rule = enclosing_rule_id(source, offset);
                errors.at(offset, rule.as_deref(), e.message().trim_end().to_string());
                return Err(ModelErrors(errors.list));
            }
        };
        Model::compile(&parsed, errors, lint)
    }

    fn compile(file: &ModelFile, errors: Errors<'_>, lint: bool) -> Result<Model, ModelErrors> {
        let mut b = Build {
            errors,
            slots: Slots::default(),
            default_half_life: None,
            lint,
        };
        if file.model.name.get_ref().trim().is_empty() {
            b.errors.span(
                file.model.name.span(),
                None,
                "`[model] name` must not be empty",
            );
        }
        let score = &file.score;
        if !(score.min.is_finite() && score.max.is_finite() && score.min < score.max) {
            let at = b.errors.source().find("[score]").unwrap_or(0);
            b.errors.at(
                at,
                None,
                format!(
                    "`[score]` needs min < max, found min = {} and max = {}",
                    score.min, score.max
                ),
            );
        }
        b.default_half_life = match &score.half_life {
            None => None,
            Some(t) if t.get_ref() == "none" => None,
            Some(t) => b
                .duration(t, "[score]", "half_life")
                .map(|d| d.seconds() as f64),
        };
        check_unique_ids(file, &mut b.errors);

        let exclusions: Vec<_> = file.exclude.iter().map(|c| c.build(&mut b)).collect();
        let fits: Vec<_> = file.fit.iter().map(|c| c.build(&mut b)).collect();
        let engagements: Vec<_> = file.engagement.iter().map(|c| c.build(&mut b)).collect();
        let streaks: Vec<_> = file.streak.iter().map(|c| c.build(&mut b)).collect();
        let inactivities: Vec<_> = file.inactivity.iter().map(|c| c.build(&mut b)).collect();
        let tiers = Labels::build("tier", &file.tier, &mut b);
        let grades = Labels::build("grade", &file.grade, &mut b);
        let stages = Labels::build("stage", &file.stage, &mut b);
        let triggers: Vec<_> = file
            .trigger
            .iter()
            .map(|c| c.build(&mut b, [&tiers, &grades, &stages]))
            .collect();
        let tick = file.triggers.tick(&mut b);
        if !b.errors.list.is_empty() {
            return Err(ModelErrors(b.errors.list));
        }
        let mut model = Model {
            name: file.model.name.get_ref().clone(),
            description: file.model.description.clone(),
            min: score.min,
            max: score.max,
            exclusions: all(exclusions),
            fits: all(fits),
            engagements: all(engagements),
            streaks: all(streaks),
            inactivities: all(inactivities),
            tiers,
            grades,
            stages,
            triggers: all(triggers),
            tick,
            names: FxHashMap::default(),
            page_id: None,
            screen_id: None,
            dispatch: Vec::new(),
            activity_names: b.slots.0,
            contact_rules_use_activity: false,
            contact_rules_use_time: false,
            contact_parts: Default::default(),
            trigger_plan: Default::default(),
            snapshot_fingerprint: 0,
        };
        let contact_conditions = || {
            model
                .fits
                .iter()
                .flat_map(|f| f.cases.iter().map(|(c, _)| c))
                .chain(model.exclusions.iter().map(|e| &e.when))
        };
        model.contact_rules_use_activity = contact_conditions().any(Condition::uses_activity);
        model.contact_rules_use_time = contact_conditions().any(Condition::uses_time);
        for (i, rule) in model.exclusions.iter().enumerate() {
            let input = ContactInput::of(std::iter::once(&rule.when));
            model.contact_parts[input as usize].exclusions.push(i);
        }
        for (i, rule) in model.fits.iter().enumerate() {
            let input = ContactInput::of(rule.cases.iter().map(|(c, _)| c));
            model.contact_parts[input as usize].fits.push(i);
        }
        model.build_dispatch();
        model.trigger_plan = crate::triggers::TriggerPlan::new(&model);
        model.snapshot_fingerprint = crate::fold::fingerprint(&model);
        Ok(model)
    }

    fn build_dispatch(&mut self) {
        let mut names = FxHashMap::default();
        let mut dispatch: Vec<Dispatch> = Vec::new();
        let mut entry = |name: &str| -> usize {
            let next = names.len() as EventId;
            let id = *names.entry(name.to_string()).or_insert(next);
            if id as usize == dispatch.len() {
                dispatch.push(Dispatch::default());
            }
            id as usize
        };
        let mut routes: Vec<(usize, RouteList, u32)> = Vec::new();
        for (i, r) in self.engagements.iter().enumerate() {
            routes.push((entry(&r.event), |d| &mut d.engagements, i as u32));
        }
        for (i, r) in self.streaks.iter().enumerate() {
            routes.push((entry(&r.event), |d| &mut d.streak_counts, i as u32));
            for reset in &r.reset {
                routes.push((entry(reset), |d| &mut d.streak_resets, i as u32));
            }
        }
        for (i, name) in self.activity_names.iter().enumerate() {
            routes.push((entry(name), |d| &mut d.activity_slots, i as u32));
        }
        for (i, r) in self.inactivities.iter().enumerate() {
            for name in r.events.iter().flatten() {
                routes.push((entry(name), |d| &mut d.inactivities, i as u32));
            }
        }
        for (id, list, rule) in routes {
            let list = list(&mut dispatch[id]);
            if !list.contains(&rule) {
                list.push(rule);
            }
        }
        self.page_id = names.get(PAGE_EVENT).copied();
        self.screen_id = names.get(SCREEN_EVENT).copied();
        self.names = names;
        self.dispatch = dispatch;
    }

    /// Every event name some rule concerns (`$page`, `$screen` for those).
    pub fn event_names(&self) -> impl Iterator<Item = &str> {
        self.names.keys().map(String::as_str)
    }

    /// The interned id of an event name, if any rule concerns it.
    pub fn event_id(&self, name: &str) -> Option<EventId> {
        self.names.get(name).copied()
    }

    /// The interned id of the name rules match `message` by
    /// ([`Message::rule_name`]), if any rule concerns it.
    pub fn message_event_id(&self, message: &Message) -> Option<EventId> {
        match message.kind {
            MessageKind::Page => self.page_id,
            MessageKind::Screen => self.screen_id,
            _ => message.rule_name().and_then(|name| self.event_id(name)),
        }
    }

    /// The rules concerned by an interned event name.
    pub fn dispatch(&self, id: EventId) -> &Dispatch {
        &self.dispatch[id as usize]
    }

    /// Number of `count()`/`days_since()` slots.
    pub fn activity_slots(&self) -> usize {
        self.activity_names.len()
    }

    /// Whether fit or exclusion conditions read `count()`/`days_since()`
    /// (then they change with activity and time, not only with traits).
    pub fn contact_rules_use_activity(&self) -> bool {
        self.contact_rules_use_activity
    }

    /// The JSON Schema of model files, generated from [`ModelFile`].
    pub fn json_schema() -> String {
        let schema = schemars::schema_for!(ModelFile);
        let mut text = serde_json::to_string_pretty(&schema).expect("a schema serialises");
        text.push('\n');
        text
    }

    /// The fingerprint of the state layout (computed once; every encoded
    /// state carries it).
    pub(crate) fn snapshot_fingerprint(&self) -> u32 {
        self.snapshot_fingerprint
    }

    /// What the trigger engine needs to know about the conditions.
    pub fn trigger_plan(&self) -> &crate::triggers::TriggerPlan {
        &self.trigger_plan
    }

    /// Whether fit or exclusion conditions read `days_since()` (then they
    /// change with t alone).
    pub fn contact_rules_use_time(&self) -> bool {
        self.contact_rules_use_time
    }

    /// Whether a contact's score can change with time alone, between its
    /// messages: decaying engagement or streak points, inactivity rules, or
    /// fit and exclusion conditions reading `days_since()`. When false, the
    /// score as of a contact's latest message is its score at every later
    /// time.
    pub fn moves_with_time(&self) -> bool {
        self.contact_rules_use_time
            || !self.inactivities.is_empty()
            || self.engagements.iter().any(|r| r.half_life.is_some())
            || self.streaks.iter().any(|r| r.half_life.is_some())
    }

    /// The exclude and fit rules that read only `input`.
    pub(crate) fn contact_part(&self, input: ContactInput) -> &ContactPart {
        &self.contact_parts[input as usize]
    }

    /// A one-line summary of the rules by kind.
    pub fn summary(&self) -> String {
        format!(
            "{} exclude, {} fit, {} engagement, {} streak, {} inactivity, {} tier, {} grade, {} stage, {} trigger",
            self.exclusions.len(),
            self.fits.len(),
            self.engagements.len(),
            self.streaks.len(),
            self.inactivities.len(),
            self.tiers.len(),
            self.grades.len(),
            self.stages.len(),
            self.triggers.len()
        )
    }
}

/// Every rule compiled: a `None` means an error was recorded, and the caller
/// has already returned when any was.
fn all<T>(built: Vec<Option<T>>) -> Vec<T> {
    built.into_iter().flatten().collect()
}

/// Rule ids are unique across every kind of rule.
fn check_unique_ids(file: &ModelFile, errors: &mut Errors<'_>) {
    let ids = file
        .exclude
        .iter()
        .map(|r| &r.id)
        .chain(file.fit.iter().map(|r| &r.id))
        .chain(file.engagement.iter().map(|r| &r.id))
        .chain(file.streak.iter().map(|r| &r.id))
        .chain(file.inactivity.iter().map(|r| &r.id))
        .chain(file.trigger.iter().map(|r| &r.id));
    let mut seen: HashMap<&str, Range<usize>> = HashMap::new();
    for id in ids {
        let name = id.get_ref().as_str();
        if name.trim().is_empty() {
            errors.span(id.span(), None, "rule `id` must not be empty");
            continue;
        }
        match seen.get(name) {
            Some(first) => {
                let (line, _) = line_column(errors.source(), first.start);
                let message = format!(
                    "duplicate rule id {name:?} (first used at {}:{line})",
                    errors.file()
                );
                errors.span(id.span(), Some(name), message);
            }
            None => {
                seen.insert(name, id.span());
            }
        }
    }
}

/// Best effort: the `id` of the `[[kind]]` table that contains `offset`, so a
/// TOML-level error (unknown key, wrong type) can name its rule.
fn enclosing_rule_id(source: &str, offset: usize) -> Option<String> {
    let offset = offset.min(source.len());
    let header_start = source[..offset]
        .match_indices("\n[[")
        .last()
        .map(|(i, _)| i + 1)
        .or_else(|| source.starts_with("[[").then_some(0))?;
    let table = &source[header_start..];
    let table_end = table[2..].find("\n[").map_or(table.len(), |i| i + 2);
    table[..table_end].lines().skip(1).find_map(|line| {
        let rest = line
            .trim_start()
            .strip_prefix("id")?
            .trim_start()
            .strip_prefix('=')?
            .trim();
        let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
        let inner = &rest[1..];
        Some(inner[..inner.find(quote)?].to_string())
    })
}

#[cfg(test)]
mod tests;
