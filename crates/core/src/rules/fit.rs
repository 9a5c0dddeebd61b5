//! `[[fit]]`: who the contact is, evaluated on traits and company as of t.

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use crate::condition::{Condition, Place, Scope};
use crate::model::Build;

/// A fit rule: either `when` + `points`, or `cases` (+ optional `else`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FitConfig {
    /// Stable rule id (unique across all rules).
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    /// CEL condition on `traits`/`company` (with `points`).
    #[schemars(with = "Option<String>")]
    pub when: Option<Spanned<String>>,
    /// Points when `when` holds.
    pub points: Option<f64>,
    /// Alternatives; the first whose condition holds counts.
    pub cases: Option<Vec<CaseConfig>>,
    /// Points when no case holds (only with `cases`).
    #[serde(rename = "else")]
    pub otherwise: Option<f64>,
}

/// One alternative of a fit rule.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaseConfig {
    /// CEL condition.
    #[schemars(with = "String")]
    pub when: Spanned<String>,
    /// Points when it holds.
    pub points: f64,
}

/// A compiled fit rule.
#[derive(Debug, Clone)]
pub struct Fit {
    /// Rule id.
    pub id: String,
    /// Conditions and points, in order.
    pub cases: Vec<(Condition, f64)>,
    /// Points when no case holds.
    pub otherwise: Option<f64>,
}

/// What a fit rule gives a contact.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitMatch {
    /// Points awarded.
    pub points: f64,
    /// Index of the matching case, `None` for `else`.
    pub case: Option<usize>,
}

impl FitConfig {
    pub(crate) fn build(&self, b: &mut Build<'_>) -> Option<Fit> {
        let id = self.id.get_ref();
        let here = Some(id.as_str());
        let mut cases = Vec::new();
        match (&self.when, self.points, &self.cases) {
            (Some(when), Some(points), None) if self.otherwise.is_none() => {
                b.finite(points, self.id.span(), id, "points");
                cases.push((b.condition(when, Place::Contact, id), points));
            }
            (None, None, Some(list)) => {
                if list.is_empty() {
                    b.errors
                        .span(self.id.span(), here, "`cases` must not be empty");
                }
                for case in list {
                    b.finite(case.points, case.when.span(), id, "points");
                    cases.push((b.condition(&case.when, Place::Contact, id), case.points));
                }
            }
            _ => {
                b.errors.span(
                    self.id.span(),
                    here,
                    "a fit rule needs either `when` and `points`, or `cases` (with an optional `else`)",
                );
                return None;
            }
        }
        let cases = cases
            .into_iter()
            .map(|(c, p)| c.map(|c| (c, p)))
            .collect::<Option<Vec<_>>>()?;
        Some(Fit {
            id: id.clone(),
            cases,
            otherwise: self.otherwise,
        })
    }
}

impl Fit {
    /// The points the contact gets: the first matching case, or `else`.
    pub fn evaluate(&self, scope: &Scope<'_>) -> Option<FitMatch> {
        self.cases
            .iter()
            .position(|(when, _)| when.holds(scope))
            .map(|i| FitMatch {
                points: self.cases[i].1,
                case: Some(i),
            })
            .or(self.otherwise.map(|points| FitMatch { points, case: None }))
    }
}
