//! Rule-level diff of two model sources: which rules (by kind and id) were
//! added, removed or changed, and which top-level settings changed.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Serialize;
use toml::{Table, Value};

use crate::{Result, StoreError};

/// One difference between two models.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(tag = "change", rename_all = "lowercase")]
pub enum RuleChange {
    /// A rule only in the new model.
    Added {
        /// `engagement`, `fit`, … or `setting`.
        kind: String,
        /// Rule id (or setting name).
        id: String,
    },
    /// A rule only in the old model.
    Removed {
        /// Kind.
        kind: String,
        /// Rule id.
        id: String,
    },
    /// A rule in both, with different fields.
    Changed {
        /// Kind.
        kind: String,
        /// Rule id.
        id: String,
        /// `field: old -> new` for each differing field.
        fields: Vec<String>,
    },
}

/// Rules keyed by (kind, id), and top-level settings as kind `setting`.
fn rules(source: &str, which: &str) -> Result<BTreeMap<(String, String), Table>> {
    let table: Table = toml::from_str(source)
        .map_err(|e| StoreError::Model(format!("{which}: {}", e.message())))?;
    let mut rules = BTreeMap::new();
    for (key, value) in table {
        match value {
            Value::Array(items) if items.iter().all(Value::is_table) => {
                for (i, item) in items.into_iter().enumerate() {
                    let Value::Table(rule) = item else { continue };
                    let id = match rule.get("id").or_else(|| rule.get("name")) {
                        Some(Value::String(id)) => id.clone(),
                        _ => format!("#{}", i + 1),
                    };
                    rules.insert((key.clone(), id), rule);
                }
            }
            Value::Table(section) => {
                rules.insert(("section".into(), key), section);
            }
            value => {
                let mut setting = Table::new();
                setting.insert("value".into(), value);
                rules.insert(("setting".into(), key), setting);
            }
        }
    }
    Ok(rules)
}

fn show(value: Option<&Value>) -> String {
    value.map_or_else(|| "(none)".into(), |v| v.to_string())
}

/// The differences from `old` to `new`, by kind then id.
pub fn diff_models(old: &str, new: &str) -> Result<Vec<RuleChange>> {
    let old = rules(old, "old model")?;
    let new = rules(new, "new model")?;
    let mut changes = Vec::new();
    for ((kind, id), rule) in &old {
        match new.get(&(kind.clone(), id.clone())) {
            None => changes.push(RuleChange::Removed {
                kind: kind.clone(),
                id: id.clone(),
            }),
            Some(other) if other != rule => {
                let mut keys: Vec<&String> = rule.keys().chain(other.keys()).collect();
                keys.sort();
                keys.dedup();
                let fields = keys
                    .into_iter()
                    .filter(|k| rule.get(*k) != other.get(*k))
                    .map(|k| format!("{k}: {} -> {}", show(rule.get(k)), show(other.get(k))))
                    .collect();
                changes.push(RuleChange::Changed {
                    kind: kind.clone(),
                    id: id.clone(),
                    fields,
                });
            }
            Some(_) => {}
        }
    }
    for (kind, id) in new.keys() {
        if !old.contains_key(&(kind.clone(), id.clone())) {
            changes.push(RuleChange::Added {
                kind: kind.clone(),
                id: id.clone(),
            });
        }
    }
    changes.sort_by(|a, b| key(a).cmp(&key(b)));
    Ok(changes)
}

fn key(c: &RuleChange) -> (&str, &str) {
    match c {
        RuleChange::Added { kind, id }
        | RuleChange::Removed { kind, id }
        | RuleChange::Changed { kind, id, .. } => (kind, id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_matched_by_kind_and_id() {
        let old = r#"
min = 0
[[engagement]]
id = "view"
event = "Product Viewed"
points = 5
[[engagement]]
id = "gone"
event = "X"
points = 1
"#;
        let new = r#"
min = -10
[[engagement]]
id = "view"
event = "Product Viewed"
points = 8
[[fit]]
id = "country"
when = 'traits.country == "DE"'
points = 3
"#;
        let changes = diff_models(old, new).unwrap();
        assert_eq!(
            changes,
            vec![
                RuleChange::Removed {
                    kind: "engagement".into(),
                    id: "gone".into()
                },
                RuleChange::Changed {
                    kind: "engagement".into(),
                    id: "view".into(),
                    fields: vec!["points: 5 -> 8".into()]
                },
                RuleChange::Added {
                    kind: "fit".into(),
                    id: "country".into()
                },
                RuleChange::Changed {
                    kind: "setting".into(),
                    id: "min".into(),
                    fields: vec!["value: 0 -> -10".into()]
                },
            ]
        );
        assert!(diff_models(new, new).unwrap().is_empty());
    }
}
