//! `[[streak]]`: points when `length` matching events happen without a reset
//! in between (e.g. 4 emails delivered and none opened: -30).

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use crate::condition::{Condition, Place};
use crate::model::Build;
use crate::rules::awards::Awards;
use crate::time::Timestamp;

/// A streak rule as written in the model.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StreakConfig {
    /// Stable rule id (unique across all rules).
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    /// The event that counts (track name, `$page` or `$screen`).
    #[schemars(with = "String")]
    pub event: Spanned<String>,
    /// Optional CEL condition on the counted event.
    #[schemars(with = "Option<String>")]
    pub when: Option<Spanned<String>>,
    /// Events that set the counter back to 0.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub reset: Vec<Spanned<String>>,
    /// Counted events in a row that earn the award (>= 1).
    pub length: u32,
    /// Points per completed streak.
    pub points: f64,
    /// Overrides the model's half-life; `"none"` disables decay.
    #[schemars(with = "Option<String>")]
    pub half_life: Option<Spanned<String>>,
    /// The rule's contribution is clamped to `[-cap, cap]` after decay.
    pub cap: Option<f64>,
}

/// A compiled streak rule.
#[derive(Debug, Clone)]
pub struct Streak {
    /// Rule id.
    pub id: String,
    /// Counted event name.
    pub event: String,
    /// Extra condition on counted events.
    pub when: Option<Condition>,
    /// Reset event names.
    pub reset: Vec<String>,
    /// Streak length.
    pub length: u32,
    /// Points per streak.
    pub points: f64,
    /// Effective half-life in seconds.
    pub half_life: Option<f64>,
    /// Cap on the absolute contribution.
    pub cap: Option<f64>,
}

/// One contact's progress on one streak rule.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreakState {
    /// Counted events since the last reset or award.
    pub counter: u32,
    /// The awards.
    pub awards: Awards,
}

impl StreakConfig {
    pub(crate) fn build(&self, b: &mut Build<'_>) -> Option<Streak> {
        let id = self.id.get_ref();
        let here = Some(id.as_str());
        b.finite(self.points, self.id.span(), id, "points");
        if self.length == 0 {
            b.errors
                .span(self.id.span(), here, "`length` must be at least 1");
        }
        for reset in &self.reset {
            if reset.get_ref() == self.event.get_ref() {
                b.errors.span(
                    reset.span(),
                    here,
                    format!(
                        "event {:?} is both counted and a reset; a streak event cannot reset itself",
                        reset.get_ref()
                    ),
                );
            }
        }
        let when = b.optional_condition(self.when.as_ref(), Place::Event, id);
        let cap = b.cap(self.cap, &self.id, id);
        let half_life = b.half_life(self.half_life.as_ref(), id);
        Some(Streak {
            id: id.clone(),
            event: self.event.get_ref().clone(),
            when: when?,
            reset: self.reset.iter().map(|r| r.get_ref().clone()).collect(),
            length: self.length.max(1),
            points: self.points,
            half_life: half_life?,
            cap: cap?,
        })
    }
}

impl Streak {
    /// A reset event happened.
    pub fn reset(&self, state: &mut StreakState) {
        state.counter = 0;
    }

    /// A counted event happened at `at`; returns whether it completed a streak.
    pub fn count(&self, state: &mut StreakState, at: Timestamp) -> bool {
        state.counter += 1;
        if state.counter < self.length {
            return false;
        }
        state.counter = 0;
        state.awards.add(self.points, at, self.half_life);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn awards_every_length_and_resets() {
        let s = Streak {
            id: "ignored".into(),
            event: "Email Delivered".into(),
            when: None,
            reset: vec!["Email Opened".into()],
            length: 2,
            points: -30.0,
            half_life: None,
            cap: None,
        };
        let mut st = StreakState::default();
        let t = Timestamp::from_seconds;
        assert!(!s.count(&mut st, t(1)));
        s.reset(&mut st);
        assert!(!s.count(&mut st, t(2)));
        assert!(s.count(&mut st, t(3)));
        assert_eq!(st.counter, 0, "restarts at 0 after an award");
        assert!(!s.count(&mut st, t(4)));
        assert!(s.count(&mut st, t(5)));
        assert_eq!(st.awards.value_at(t(9), s.half_life, s.cap), -60.0);
        assert_eq!(st.awards.first, t(3));
        assert_eq!(st.awards.last, t(5));
    }
}
