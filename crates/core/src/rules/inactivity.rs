//! `[[inactivity]]`: points (usually negative) once a contact has been quiet
//! for `after` (SPEC §3.2 step 5).

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use crate::model::Build;
use crate::time::{Duration, Timestamp};

/// An inactivity rule as written in the model.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InactivityConfig {
    /// Stable rule id (unique across all rules).
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    /// Quiet time after which the rule applies, e.g. `"60d"`.
    #[schemars(with = "String")]
    pub after: Spanned<String>,
    /// Points while it applies (no decay).
    pub points: f64,
    /// Only these events count as activity (default: any track/page/screen).
    #[schemars(with = "Option<Vec<String>>")]
    pub events: Option<Vec<Spanned<String>>>,
}

/// A compiled inactivity rule.
#[derive(Debug, Clone)]
pub struct Inactivity {
    /// Rule id.
    pub id: String,
    /// Quiet time.
    pub after: Duration,
    /// Points.
    pub points: f64,
    /// Event names that count as activity; `None` means all activity.
    pub events: Option<Vec<String>>,
}

impl InactivityConfig {
    pub(crate) fn build(&self, b: &mut Build<'_>) -> Option<Inactivity> {
        let id = self.id.get_ref();
        b.finite(self.points, self.id.span(), id, "points");
        if let Some(events) = &self.events {
            if events.is_empty() {
                b.errors.span(
                    self.id.span(),
                    Some(id),
                    "`events` must not be empty (omit it to count all activity)",
                );
            }
        }
        let after = b.duration(&self.after, id, "after");
        Some(Inactivity {
            id: id.clone(),
            after: after?,
            points: self.points,
            events: self
                .events
                .as_ref()
                .map(|e| e.iter().map(|n| n.get_ref().clone()).collect()),
        })
    }
}

impl Inactivity {
    /// The contribution at `t` given the latest relevant activity.
    pub fn value_at(&self, latest: Option<Timestamp>, t: Timestamp) -> f64 {
        match latest {
            Some(latest) if t >= latest.plus(self.after) => self.points,
            _ => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_from_exactly_after() {
        let r = Inactivity {
            id: "dormant".into(),
            after: Duration::from_seconds(60),
            points: -15.0,
            events: None,
        };
        let t = Timestamp::from_seconds;
        assert_eq!(r.value_at(None, t(1000)), 0.0, "never active: no penalty");
        assert_eq!(r.value_at(Some(t(0)), t(59)), 0.0);
        assert_eq!(r.value_at(Some(t(0)), t(60)), -15.0, "boundary is >=");
    }
}
