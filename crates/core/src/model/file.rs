//! The model file as written: serde types that mirror the TOML one to one
//! (unknown keys are errors) and generate the JSON Schema.

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use crate::rules::engagement::EngagementConfig;
use crate::rules::exclude::ExcludeConfig;
use crate::rules::fit::FitConfig;
use crate::rules::inactivity::InactivityConfig;
use crate::rules::labels::LabelConfig;
use crate::rules::streak::StreakConfig;
use crate::rules::trigger::{TriggerConfig, TriggerSettings};

/// A leadscore scoring model (one TOML file).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "leadscore model")]
pub struct ModelFile {
    /// Name and description.
    pub model: ModelSection,
    /// Score range and default decay.
    #[serde(default)]
    pub score: ScoreSection,
    /// Exclusions: contacts matching any are `excluded`.
    #[serde(default)]
    pub exclude: Vec<ExcludeConfig>,
    /// Fit rules on traits and company.
    #[serde(default)]
    pub fit: Vec<FitConfig>,
    /// Engagement rules on events.
    #[serde(default)]
    pub engagement: Vec<EngagementConfig>,
    /// Streak rules (n events in a row without a reset).
    #[serde(default)]
    pub streak: Vec<StreakConfig>,
    /// Inactivity rules.
    #[serde(default)]
    pub inactivity: Vec<InactivityConfig>,
    /// Tiers over the score.
    #[serde(default)]
    pub tier: Vec<LabelConfig>,
    /// Grades over the fit total.
    #[serde(default)]
    pub grade: Vec<LabelConfig>,
    /// Lifecycle stages over the score (only move forward).
    #[serde(default)]
    pub stage: Vec<LabelConfig>,
    /// Triggers.
    #[serde(default)]
    pub trigger: Vec<TriggerConfig>,
    /// Trigger settings.
    #[serde(default)]
    pub triggers: TriggerSettings,
}

/// `[model]`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// Model name.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// What the model is for.
    #[serde(default)]
    pub description: String,
}

/// `[score]`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScoreSection {
    /// Lowest score (default 0).
    #[serde(default = "default_min")]
    pub min: f64,
    /// Highest score (default 100).
    #[serde(default = "default_max")]
    pub max: f64,
    /// Default half-life of engagement and streak awards, e.g. `"90d"`;
    /// omit (or `"none"`) for no decay.
    #[schemars(with = "Option<String>")]
    pub half_life: Option<Spanned<String>>,
}

fn default_min() -> f64 {
    0.0
}

fn default_max() -> f64 {
    100.0
}

impl Default for ScoreSection {
    fn default() -> Self {
        ScoreSection {
            min: default_min(),
            max: default_max(),
            half_life: None,
        }
    }
}
