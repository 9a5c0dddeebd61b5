//! `[[trigger]]`: conditions that fire actions on false→true edges (SPEC §3.3).
//! This module parses and validates triggers; [`crate::triggers`] evaluates
//! them.

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use crate::condition::{Condition, Label, Place};
use crate::model::Build;
use crate::rules::labels::Labels;
use crate::time::Duration;

/// A trigger as written in the model.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerConfig {
    /// Stable trigger id (unique across all rules).
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    /// CEL condition on traits, company, activity and the score variables.
    #[schemars(with = "String")]
    pub when: Spanned<String>,
    /// What to do when it fires (at least one).
    pub actions: Vec<ActionConfig>,
    /// Fire at most once per contact, ever.
    #[serde(default)]
    pub once: bool,
    /// What to do with a firing that would have happened in the past
    /// (late events, downtime): `"fire"` it now marked late (default) or `"skip"` it.
    #[serde(default)]
    pub late: LatePolicy,
}

/// Handling of firings discovered late.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LatePolicy {
    /// Fire now, marked late.
    #[default]
    Fire,
    /// Do not fire.
    Skip,
}

/// An action of a trigger.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ActionConfig {
    /// POST a signed JSON body to `url`.
    Webhook {
        /// Destination URL (http or https).
        url: String,
        /// Name of the environment variable holding the HMAC secret.
        secret_env: Option<String>,
    },
    /// Enrol the contact in a campaign list kept by leadscore.
    Campaign {
        /// Campaign name.
        campaign: String,
    },
    /// Update the contact's score fields in a CRM.
    Crm {
        /// Which CRM's request shape to use.
        system: CrmSystem,
    },
    /// Write the firing to the log (for trying models out).
    Log {},
}

impl ActionConfig {
    /// A short description: `webhook <url>`, `campaign <name>`, `crm <system>`, `log`.
    pub fn describe(&self) -> String {
        match self {
            ActionConfig::Webhook { url, .. } => format!("webhook {url}"),
            ActionConfig::Campaign { campaign } => format!("campaign {campaign}"),
            ActionConfig::Crm { system } => format!("crm {}", system.as_str()),
            ActionConfig::Log {} => "log".to_string(),
        }
    }
}

/// Supported CRMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CrmSystem {
    /// HubSpot contacts API v3.
    Hubspot,
    /// Salesforce sObject Lead/Contact.
    Salesforce,
    /// Zoho CRM v2 Leads.
    Zoho,
}

impl CrmSystem {
    /// Its name in models.
    pub fn as_str(self) -> &'static str {
        match self {
            CrmSystem::Hubspot => "hubspot",
            CrmSystem::Salesforce => "salesforce",
            CrmSystem::Zoho => "zoho",
        }
    }
}

/// `[triggers]` settings.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerSettings {
    /// Period of the decay tick at which trigger conditions are re-evaluated (default `1h`).
    #[schemars(with = "Option<String>")]
    pub tick: Option<Spanned<String>>,
}

/// A compiled trigger.
#[derive(Debug, Clone)]
pub struct Trigger {
    /// Trigger id.
    pub id: String,
    /// Condition.
    pub when: Condition,
    /// Actions.
    pub actions: Vec<ActionConfig>,
    /// At most once per contact.
    pub once: bool,
    /// Late firing policy.
    pub late: LatePolicy,
}

impl TriggerConfig {
    /// The trigger, with its condition's label names checked against the
    /// model's `[tiers, grades, stages]`.
    pub(crate) fn build(&self, b: &mut Build<'_>, labels: [&Labels; 3]) -> Option<Trigger> {
        let id = self.id.get_ref();
        let here = Some(id.as_str());
        if self.actions.is_empty() {
            b.errors
                .span(self.id.span(), here, "a trigger needs at least one action");
        }
        for action in &self.actions {
            match action {
                ActionConfig::Webhook { url, .. }
                    if !(url.starts_with("http://") || url.starts_with("https://")) =>
                {
                    b.errors.span(
                        self.id.span(),
                        here,
                        format!("webhook url must start with http:// or https://, found {url:?}"),
                    )
                }
                ActionConfig::Campaign { campaign } if campaign.trim().is_empty() => {
                    b.errors
                        .span(self.id.span(), here, "campaign name must not be empty")
                }
                _ => {}
            }
        }
        let when = b.condition(&self.when, Place::Trigger, id)?;
        // A name the label never takes (a typo, a renamed tier) would make
        // the trigger fire never, or always.
        let checked = if b.lint {
            when.label_literals()
        } else {
            Vec::new()
        };
        for (label, name) in checked {
            let (kind, plural, names): (&str, &str, Vec<&str>) = match label {
                Label::Tier => ("tier", "tiers", labels[0].iter().map(|(n, _)| n).collect()),
                Label::Grade => (
                    "grade",
                    "grades",
                    labels[1].iter().map(|(n, _)| n).collect(),
                ),
                Label::Stage => (
                    "stage",
                    "stages",
                    labels[2].iter().map(|(n, _)| n).collect(),
                ),
                Label::Status => ("status", "statuses", vec!["active", "excluded"]),
            };
            // "" is a label's value for none (never a status's).
            let none = label != Label::Status;
            if !(names.contains(&name.as_str()) || (none && name.is_empty())) {
                let mut known: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
                if none {
                    known.push("\"\" for none".into());
                }
                b.errors.span(
                    self.when.span(),
                    here,
                    format!(
                        "`{kind}` is never {name:?}: the model's {plural} are {}",
                        known.join(", ")
                    ),
                );
            }
        }
        Some(Trigger {
            id: id.clone(),
            when,
            actions: self.actions.clone(),
            once: self.once,
            late: self.late,
        })
    }
}

impl TriggerSettings {
    pub(crate) fn tick(&self, b: &mut Build<'_>) -> Duration {
        match &self.tick {
            None => Duration::from_seconds(3_600),
            Some(text) => b
                .duration(text, "[triggers]", "tick")
                .unwrap_or(Duration::from_seconds(3_600)),
        }
    }
}
