//! `[[exclude]]`: conditions that make a contact `excluded` (no tier, grade,
//! stage or triggers; scores still computed so restoring consent restores them).

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use crate::condition::{Condition, Place, Scope};
use crate::model::Build;

/// An exclusion rule as written in the model.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExcludeConfig {
    /// Stable rule id (unique across all rules).
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    /// CEL condition on `traits` and `company` as of t (`count()` and
    /// `days_since()` available).
    #[schemars(with = "String")]
    pub when: Spanned<String>,
    /// Shown in the contact's `reasons` when the condition holds.
    pub reason: String,
}

/// A compiled exclusion rule.
#[derive(Debug, Clone)]
pub struct Exclusion {
    /// Rule id.
    pub id: String,
    /// The condition.
    pub when: Condition,
    /// The reason reported.
    pub reason: String,
}

impl ExcludeConfig {
    pub(crate) fn build(&self, b: &mut Build<'_>) -> Option<Exclusion> {
        let id = self.id.get_ref();
        let when = b.condition(&self.when, Place::Contact, id);
        if self.reason.trim().is_empty() {
            b.errors
                .span(self.id.span(), Some(id), "`reason` must not be empty");
        }
        Some(Exclusion {
            id: id.clone(),
            when: when?,
            reason: self.reason.clone(),
        })
    }
}

impl Exclusion {
    /// Whether the contact is excluded by this rule.
    pub fn applies(&self, scope: &Scope<'_>) -> bool {
        self.when.holds(scope)
    }
}
