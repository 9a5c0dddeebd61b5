//! What scoring produces: a contact's [`Score`] and its [`Explanation`].

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
pub use smol_str::SmolStr;

use crate::time::Timestamp;

/// Whether the contact is scored normally or excluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// No exclusion applies.
    Active,
    /// At least one exclusion applies: no tier, grade, stage or triggers.
    Excluded,
}

impl Status {
    /// `active` or `excluded`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Excluded => "excluded",
        }
    }

    /// Reads [`Status::as_str`] back.
    pub fn parse(text: &str) -> Option<Status> {
        match text {
            "active" => Some(Status::Active),
            "excluded" => Some(Status::Excluded),
            _ => None,
        }
    }
}

/// A contact's score as of t (SPEC §4 columns).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Score {
    /// `raw` clamped to the model's `[min, max]`.
    pub score: f64,
    /// `fit + engagement`.
    pub raw: f64,
    /// Sum of fit rules.
    pub fit: f64,
    /// Sum of engagement, streak and inactivity rules.
    pub engagement: f64,
    /// Tier name, or empty.
    #[schemars(with = "String")]
    pub tier: SmolStr,
    /// Grade name, or empty.
    #[schemars(with = "String")]
    pub grade: SmolStr,
    /// Highest stage reached, or empty.
    #[schemars(with = "String")]
    pub stage: SmolStr,
    /// `active` or `excluded`.
    pub status: Status,
    /// Exclusion reasons in file order.
    pub reasons: Vec<String>,
}

/// The kind of a contributing rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RuleKind {
    /// `[[fit]]`.
    Fit,
    /// `[[engagement]]`.
    Engagement,
    /// `[[streak]]`.
    Streak,
    /// `[[inactivity]]`.
    Inactivity,
}

impl RuleKind {
    /// The kind's name as in the model file.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::Fit => "fit",
            RuleKind::Engagement => "engagement",
            RuleKind::Streak => "streak",
            RuleKind::Inactivity => "inactivity",
        }
    }
}

/// One rule's part in a score.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Contribution {
    /// Rule id.
    pub id: String,
    /// Rule kind.
    pub kind: RuleKind,
    /// Points the rule contributes at t (after decay and cap).
    pub points: f64,
    /// Points before decay and cap (sum of awards).
    pub undecayed: f64,
    /// Number of awards (1 for a matching fit rule or an applying inactivity rule).
    pub awards: u32,
    /// Time of the first award.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::score::rfc3339"
    )]
    pub first_award: Option<Timestamp>,
    /// Time of the last award.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::score::rfc3339"
    )]
    pub last_award: Option<Timestamp>,
    /// Message ids that earned the awards, in order (empty unless traced).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub message_ids: Vec<String>,
    /// Why, in words: the matching fit case, the cap, the quiet period.
    pub detail: String,
}

/// An exclusion that applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ExcludedBy {
    /// Rule id.
    pub id: String,
    /// Its reason.
    pub reason: String,
}

/// Every point of a score, traced to its rules and events.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Explanation {
    /// Contributing rules, in model order (fit, engagement, streak, inactivity).
    pub rules: Vec<Contribution>,
    /// Exclusions that apply, in file order.
    pub excluded_by: Vec<ExcludedBy>,
}

#[allow(clippy::ref_option)]
pub(crate) fn rfc3339<S: serde::Serializer>(
    t: &Option<Timestamp>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.collect_str(t),
        None => s.serialize_none(),
    }
}
