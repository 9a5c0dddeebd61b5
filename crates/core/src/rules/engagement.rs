//! `[[engagement]]`: points for what the contact did, with `nth`, `limit`,
//! `cap` and decay (SPEC §3.2 steps 1–3).

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use crate::condition::{Condition, Place};
use crate::model::Build;
use crate::rules::awards::Awards;
use crate::time::{Duration, Timestamp};

/// An engagement rule as written in the model.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EngagementConfig {
    /// Stable rule id (unique across all rules).
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    /// Track event name, or `$page` / `$screen`.
    #[schemars(with = "String")]
    pub event: Spanned<String>,
    /// Optional CEL condition on `event`, `properties`, `context`, `traits`, `company`.
    #[schemars(with = "Option<String>")]
    pub when: Option<Spanned<String>>,
    /// Points per award (negative for negative scoring).
    pub points: f64,
    /// Occurrence numbers that count: `"N"`, `"N.."` or `"N..M"` (1-based, inclusive).
    #[schemars(with = "Option<String>")]
    pub nth: Option<Spanned<String>>,
    /// At most `count` awards in any window of length `per`.
    pub limit: Option<LimitConfig>,
    /// The rule's contribution is clamped to `[-cap, cap]` after decay.
    pub cap: Option<f64>,
    /// Overrides the model's half-life; `"none"` disables decay.
    #[schemars(with = "Option<String>")]
    pub half_life: Option<Spanned<String>>,
}

/// `limit = { count = 3, per = "1d" }`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    /// Maximum awards per window (>= 1).
    pub count: u32,
    /// Window length, e.g. `"1d"`.
    #[schemars(with = "String")]
    pub per: Spanned<String>,
}

/// Which occurrence numbers count (inclusive, 1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nth {
    /// First occurrence that counts.
    pub from: u32,
    /// Last occurrence that counts, if bounded.
    pub to: Option<u32>,
}

impl Nth {
    /// Every occurrence.
    pub const ALL: Nth = Nth { from: 1, to: None };

    /// Parses `"N"`, `"N.."` or `"N..M"`.
    pub fn parse(text: &str) -> Result<Nth, String> {
        let expected =
            || format!("expected \"N\", \"N..\" or \"N..M\" with 1 <= N <= M, found {text:?}");
        let number = |s: &str| s.parse::<u32>().ok().filter(|n| *n >= 1);
        let nth = match text.split_once("..") {
            None => {
                let n = number(text).ok_or_else(expected)?;
                Nth {
                    from: n,
                    to: Some(n),
                }
            }
            Some((from, "")) => Nth {
                from: number(from).ok_or_else(expected)?,
                to: None,
            },
            Some((from, to)) => Nth {
                from: number(from).ok_or_else(expected)?,
                to: Some(number(to).ok_or_else(expected)?),
            },
        };
        match nth.to {
            Some(to) if to < nth.from => Err(expected()),
            _ => Ok(nth),
        }
    }

    /// Whether occurrence `n` counts.
    pub fn contains(self, n: u32) -> bool {
        n >= self.from && self.to.is_none_or(|to| n <= to)
    }
}

/// A compiled `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Maximum awards per window.
    pub count: u32,
    /// Window length.
    pub per: Duration,
}

/// A compiled engagement rule.
#[derive(Debug, Clone)]
pub struct Engagement {
    /// Rule id.
    pub id: String,
    /// The event name it matches.
    pub event: String,
    /// Extra condition on the event.
    pub when: Option<Condition>,
    /// Points per award.
    pub points: f64,
    /// Occurrences that count.
    pub nth: Nth,
    /// Rate limit.
    pub limit: Option<Limit>,
    /// Cap on the absolute contribution.
    pub cap: Option<f64>,
    /// Effective half-life in seconds (`None`: no decay).
    pub half_life: Option<f64>,
}

/// One contact's progress on one engagement rule.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngagementState {
    /// Matching occurrences so far (for `nth`).
    pub occurrences: u32,
    /// Times of the last `limit.count` awards, oldest first (for `limit`).
    pub recent: Vec<Timestamp>,
    /// The awards.
    pub awards: Awards,
}

impl EngagementConfig {
    pub(crate) fn build(&self, b: &mut Build<'_>) -> Option<Engagement> {
        let id = self.id.get_ref();
        let here = Some(id.as_str());
        b.finite(self.points, self.id.span(), id, "points");
        if self.event.get_ref().is_empty() {
            b.errors
                .span(self.event.span(), here, "`event` must not be empty");
        }
        let when = b.optional_condition(self.when.as_ref(), Place::Event, id);
        let nth = match &self.nth {
            None => Some(Nth::ALL),
            Some(text) => Nth::parse(text.get_ref())
                .map_err(|e| b.errors.span(text.span(), here, format!("`nth`: {e}")))
                .ok(),
        };
        let limit = match &self.limit {
            None => Some(None),
            Some(limit) => {
                if limit.count == 0 {
                    b.errors
                        .span(limit.per.span(), here, "`limit.count` must be at least 1");
                }
                b.duration(&limit.per, id, "limit.per").map(|per| {
                    Some(Limit {
                        count: limit.count.max(1),
                        per,
                    })
                })
            }
        };
        let cap = b.cap(self.cap, &self.id, id);
        let half_life = b.half_life(self.half_life.as_ref(), id);
        Some(Engagement {
            id: id.clone(),
            event: self.event.get_ref().clone(),
            when: when?,
            points: self.points,
            nth: nth?,
            limit: limit?,
            cap: cap?,
            half_life: half_life?,
        })
    }
}

impl Engagement {
    /// Counts a matching occurrence at `at` and awards it if `nth` and
    /// `limit` allow. Occurrences must come in (timestamp, messageId) order.
    pub fn occur(&self, state: &mut EngagementState, at: Timestamp) -> bool {
        state.occurrences = state.occurrences.saturating_add(1);
        if !self.nth.contains(state.occurrences) {
            return false;
        }
        if let Some(limit) = self.limit {
            // Awarded occurrences in (at - per, at]: `recent` holds the last
            // `count` awards, so the window is full iff all of them are in it.
            let window_start = at.minus(limit.per);
            let in_window = state.recent.iter().filter(|t| **t > window_start).count();
            if in_window >= limit.count as usize {
                return false;
            }
            state.recent.push(at);
            if state.recent.len() > limit.count as usize {
                state.recent.remove(0);
            }
        }
        state.awards.add(self.points, at, self.half_life);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(nth: Nth, limit: Option<Limit>) -> Engagement {
        Engagement {
            id: "r".into(),
            event: "E".into(),
            when: None,
            points: 5.0,
            nth,
            limit,
            cap: None,
            half_life: None,
        }
    }

    #[test]
    fn nth_ranges() {
        assert_eq!(
            Nth::parse("1").unwrap(),
            Nth {
                from: 1,
                to: Some(1)
            }
        );
        assert_eq!(Nth::parse("2..").unwrap(), Nth { from: 2, to: None });
        assert_eq!(
            Nth::parse("2..4").unwrap(),
            Nth {
                from: 2,
                to: Some(4)
            }
        );
        for bad in ["0", "..2", "3..2", "a", "", "1..x", "-1"] {
            assert!(Nth::parse(bad).is_err(), "{bad}");
        }
        let r = rule(Nth::parse("2..3").unwrap(), None);
        let mut s = EngagementState::default();
        let awarded: Vec<bool> = (0..5)
            .map(|i| r.occur(&mut s, Timestamp::from_seconds(i)))
            .collect();
        assert_eq!(awarded, [false, true, true, false, false]);
        assert_eq!(
            s.awards
                .value_at(Timestamp::from_seconds(9), r.half_life, r.cap),
            10.0
        );
    }

    #[test]
    fn limit_window_is_half_open() {
        // 2 per 10s. The window of an occurrence at 10 is (0, 10]: the award
        // at 0 no longer counts, so 10 is awarded; likewise 20 sees only 15.
        let r = rule(
            Nth::ALL,
            Some(Limit {
                count: 2,
                per: Duration::from_seconds(10),
            }),
        );
        let mut s = EngagementState::default();
        let times = [0, 5, 9, 10, 11, 15, 20];
        let awarded: Vec<bool> = times
            .iter()
            .map(|t| r.occur(&mut s, Timestamp::from_seconds(*t)))
            .collect();
        assert_eq!(awarded, [true, true, false, true, false, true, true]);
        assert_eq!(s.awards.count, 5);
        assert_eq!(s.recent.len(), 2);
    }
}
