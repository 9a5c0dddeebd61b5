//! `[[tier]]`, `[[grade]]` and `[[stage]]`: names for score (or fit) ranges.

use schemars::JsonSchema;
use serde::Deserialize;
use smol_str::SmolStr;
use toml::Spanned;

use crate::model::Build;

/// A tier, grade or stage as written in the model.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelConfig {
    /// The label's name (unique within its kind).
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// The lowest score (fit total for grades) that gets this label.
    pub min: f64,
}

/// Compiled labels of one kind, sorted by `min` ascending.
#[derive(Debug, Clone, Default)]
pub struct Labels {
    /// Shared with every score that carries one (no copy of a long name).
    names: Vec<SmolStr>,
    mins: Vec<f64>,
}

impl Labels {
    pub(crate) fn build(kind: &str, configs: &[LabelConfig], b: &mut Build<'_>) -> Labels {
        let mut pairs: Vec<(f64, String)> = Vec::new();
        for config in configs {
            let name = config.name.get_ref();
            let here = Some(name.as_str());
            if name.is_empty() {
                b.errors.span(
                    config.name.span(),
                    here,
                    format!("{kind} name must not be empty"),
                );
            }
            b.finite(config.min, config.name.span(), name, "min");
            if pairs.iter().any(|(_, n)| n == name) {
                b.errors.span(
                    config.name.span(),
                    here,
                    format!("duplicate {kind} name {name:?}"),
                );
            }
            if pairs.iter().any(|(m, _)| *m == config.min) {
                b.errors.span(
                    config.name.span(),
                    here,
                    format!("another {kind} already starts at min = {}", config.min),
                );
            }
            pairs.push((config.min, name.clone()));
        }
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        Labels {
            mins: pairs.iter().map(|p| p.0).collect(),
            names: pairs.into_iter().map(|p| SmolStr::from(p.1)).collect(),
        }
    }

    /// The rank (index by ascending `min`) of the highest label with
    /// `min <= value`, if any.
    pub fn rank_of(&self, value: f64) -> Option<usize> {
        self.mins.iter().rposition(|min| *min <= value)
    }

    /// The `min` of a rank, if it exists.
    pub fn min_of(&self, rank: usize) -> Option<f64> {
        self.mins.get(rank).copied()
    }

    /// The name of a rank.
    pub fn name(&self, rank: usize) -> &SmolStr {
        &self.names[rank]
    }

    /// The name for `value`, or `""`.
    pub fn name_for(&self, value: f64) -> SmolStr {
        self.rank_of(value)
            .map_or_else(SmolStr::default, |r| self.name(r).clone())
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Names and minimums, ascending.
    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> {
        self.names
            .iter()
            .map(SmolStr::as_str)
            .zip(self.mins.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use crate::model::Model;

    /// A name comes back whole whatever its length, and a long one (past
    /// what `SmolStr` holds inline) is shared with the model, not copied.
    #[test]
    fn names_of_any_length_come_back_whole_and_shared() {
        let long = "sales-qualified-lead-priority-one";
        let text = format!(
            "[model]\nname = 'm'\n[[tier]]\nname = 'cold'\nmin = 0\n[[tier]]\nname = '{long}'\nmin = 10\n"
        );
        let model = Model::from_toml("m.toml", &text).unwrap();
        assert_eq!(model.tiers.name_for(-1.0), "");
        assert_eq!(model.tiers.name_for(5.0), "cold");
        let name = model.tiers.name_for(12.0);
        assert_eq!(name, long);
        assert!(name.is_heap_allocated());
        assert_eq!(name.as_ptr(), model.tiers.name(1).as_ptr());
    }
}
