//! Features from contacts' traits: one indicator per category (rare ones
//! grouped as "other", a "missing" indicator for absent values) and per
//! quantile bin of numeric columns. Learned on training rows only, so that
//! cross-validation does not leak the test rows' levels or bins.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::logistic::Row;

/// Settings of the feature builder.
#[derive(Debug, Clone)]
pub struct FeatureConfig {
    /// Levels seen fewer times than this are grouped as "other".
    pub min_support: usize,
    /// Quantile bins of numeric columns.
    pub bins: usize,
    /// Values that mean "missing" (form defaults such as `Select`).
    pub missing: Vec<String>,
    /// Columns left out (identifiers, the label, leaking columns).
    pub exclude: Vec<String>,
}

impl Default for FeatureConfig {
    fn default() -> FeatureConfig {
        FeatureConfig {
            min_support: 30,
            bins: 5,
            missing: vec!["Select".to_string()],
            exclude: Vec::new(),
        }
    }
}

/// Traits named `count:EVENT` hold how many `EVENT`s a contact had: they
/// become one linear feature each (an engagement rule in a written model).
pub const COUNT_PREFIX: &str = "count:";

/// How one column becomes indicators.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// Categories: one indicator per kept level, then "other", then
    /// "missing".
    Categorical {
        /// Trait name.
        name: String,
        /// Kept levels, most frequent first.
        levels: Vec<String>,
    },
    /// Numbers: one indicator per bin (`< edges[0]`, `< edges[1]`, …,
    /// `>= last`), then "missing".
    Numeric {
        /// Trait name.
        name: String,
        /// Increasing bin edges.
        edges: Vec<f64>,
    },
    /// How many of an event: one linear feature (absent = 0).
    Count {
        /// Trait name (`count:EVENT`).
        name: String,
        /// The event name.
        event: String,
        /// The 95th percentile of the count among contacts that had one.
        p95: f64,
    },
}

impl Column {
    /// The trait name.
    pub fn name(&self) -> &str {
        match self {
            Column::Categorical { name, .. }
            | Column::Numeric { name, .. }
            | Column::Count { name, .. } => name,
        }
    }

    /// Number of indicators.
    pub fn width(&self) -> usize {
        match self {
            Column::Categorical { levels, .. } => levels.len() + 2,
            Column::Numeric { edges, .. } => edges.len() + 2,
            Column::Count { .. } => 1,
        }
    }

    /// Labels of the indicators, in order.
    pub fn labels(&self) -> Vec<String> {
        match self {
            Column::Categorical { levels, .. } => levels
                .iter()
                .cloned()
                .chain(["(other)".to_string(), "(missing)".to_string()])
                .collect(),
            Column::Numeric { edges, .. } => {
                let mut labels = Vec::new();
                for (i, e) in edges.iter().enumerate() {
                    labels.push(match i {
                        0 => format!("< {e}"),
                        _ => format!("{} – {e}", edges[i - 1]),
                    });
                }
                labels.push(format!(">= {}", edges.last().copied().unwrap_or(0.0)));
                labels.push("(missing)".to_string());
                labels
            }
            Column::Count { event, .. } => vec![format!("each {event}")],
        }
    }
}

/// The columns of a feature set and where each starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    /// Columns in name order.
    pub columns: Vec<Column>,
    /// Values meaning "missing".
    pub missing: Vec<String>,
    offsets: Vec<usize>,
}

/// A value as a category (`None`: missing).
fn category(value: Option<&Value>, missing: &[String]) -> Option<String> {
    let text = match value? {
        Value::Null => return None,
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    (!text.is_empty() && !missing.contains(&text)).then_some(text)
}

impl Features {
    /// Learns the columns from training rows.
    pub fn learn(rows: &[&Map<String, Value>], config: &FeatureConfig) -> Features {
        let mut names: BTreeMap<&str, ()> = BTreeMap::new();
        for row in rows {
            for key in row.keys() {
                names.insert(key, ());
            }
        }
        let mut columns = Vec::new();
        for name in names
            .keys()
            .filter(|n| !config.exclude.iter().any(|e| e == *n))
        {
            let values: Vec<Option<&Value>> = rows.iter().map(|r| r.get(*name)).collect();
            if let Some(event) = name.strip_prefix(COUNT_PREFIX) {
                let mut counts: Vec<f64> = values
                    .iter()
                    .filter_map(|v| v.and_then(Value::as_f64))
                    .collect();
                counts.sort_by(f64::total_cmp);
                if counts.len() >= config.min_support {
                    columns.push(Column::Count {
                        name: name.to_string(),
                        event: event.to_string(),
                        p95: counts[(counts.len() - 1) * 95 / 100],
                    });
                }
                continue;
            }
            let numbers: Vec<f64> = values
                .iter()
                .filter_map(|v| v.and_then(Value::as_f64))
                .collect();
            let present = values
                .iter()
                .filter(|v| category(**v, &config.missing).is_some())
                .count();
            let mut distinct = numbers.clone();
            distinct.sort_by(f64::total_cmp);
            distinct.dedup();
            if present > 0 && numbers.len() == present && distinct.len() > config.bins {
                let mut sorted = numbers;
                sorted.sort_by(f64::total_cmp);
                let mut edges: Vec<f64> = (1..config.bins)
                    .map(|b| sorted[b * sorted.len() / config.bins])
                    .collect();
                edges.dedup();
                edges.retain(|e| *e > sorted[0]);
                columns.push(Column::Numeric {
                    name: name.to_string(),
                    edges,
                });
                continue;
            }
            let mut counts: BTreeMap<String, usize> = BTreeMap::new();
            for v in &values {
                if let Some(c) = category(*v, &config.missing) {
                    *counts.entry(c).or_default() += 1;
                }
            }
            let mut levels: Vec<(String, usize)> = counts
                .into_iter()
                .filter(|(_, n)| *n >= config.min_support)
                .collect();
            levels.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            // A constant column carries nothing.
            if levels.len() <= 1 && present == rows.len() {
                continue;
            }
            columns.push(Column::Categorical {
                name: name.to_string(),
                levels: levels.into_iter().map(|l| l.0).collect(),
            });
        }
        let mut offsets = Vec::with_capacity(columns.len());
        let mut at = 0;
        for c in &columns {
            offsets.push(at);
            at += c.width();
        }
        Features {
            columns,
            missing: config.missing.clone(),
            offsets,
        }
    }

    /// Number of indicators.
    pub fn dims(&self) -> usize {
        self.columns.iter().map(Column::width).sum()
    }

    /// The indicator of `column` for a row.
    pub fn slot(&self, column: usize, row: &Map<String, Value>) -> usize {
        let c = &self.columns[column];
        let value = row.get(c.name());
        let local = match c {
            Column::Categorical { levels, .. } => match category(value, &self.missing) {
                None => levels.len() + 1,
                Some(v) => levels.iter().position(|l| *l == v).unwrap_or(levels.len()),
            },
            Column::Numeric { edges, .. } => match value.and_then(Value::as_f64) {
                None => edges.len() + 1,
                Some(x) => edges.partition_point(|e| *e <= x),
            },
            Column::Count { .. } => 0,
        };
        self.offsets[column] + local
    }

    /// Where a column's indicators start.
    pub fn offset(&self, column: usize) -> usize {
        self.offsets[column]
    }

    /// The sparse row of a contact's traits.
    pub fn encode(&self, row: &Map<String, Value>) -> Row {
        (0..self.columns.len())
            .filter_map(|c| match &self.columns[c] {
                Column::Count { name, .. } => row
                    .get(name)
                    .and_then(Value::as_f64)
                    .filter(|n| *n != 0.0)
                    .map(|n| (self.offsets[c], n)),
                _ => Some((self.slot(c, row), 1.0)),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn categories_numbers_rare_levels_and_missing() {
        let mut rows = Vec::new();
        for i in 0..100 {
            let source = match i % 10 {
                0..=5 => "Google",
                6..=8 => "Direct",
                _ => {
                    if i == 9 {
                        "testone"
                    } else {
                        "Select"
                    }
                }
            };
            rows.push(map(
                json!({"id": i, "source": source, "visits": i % 20, "flag": true}),
            ));
        }
        rows[0].remove("visits");
        let refs: Vec<&Map<String, Value>> = rows.iter().collect();
        let config = FeatureConfig {
            min_support: 5,
            bins: 4,
            exclude: vec!["id".into()],
            ..FeatureConfig::default()
        };
        let f = Features::learn(&refs, &config);
        let names: Vec<&str> = f.columns.iter().map(Column::name).collect();
        assert_eq!(
            names,
            ["source", "visits"],
            "constant `flag` and excluded `id` dropped"
        );
        assert_eq!(
            f.columns[0],
            Column::Categorical {
                name: "source".into(),
                levels: vec!["Google".into(), "Direct".into()]
            }
        );
        assert_eq!(
            f.columns[1],
            Column::Numeric {
                name: "visits".into(),
                edges: vec![5.0, 10.0, 15.0]
            }
        );
        assert_eq!(f.dims(), 4 + 5);
        assert_eq!(
            f.encode(&rows[1]),
            vec![(0, 1.0), (4, 1.0)],
            "Google, visits 1"
        );
        assert_eq!(f.slot(0, &rows[9]), 2, "a rare level is other");
        assert_eq!(f.slot(0, &rows[19]), 3, "Select is missing");
        assert_eq!(f.slot(1, &rows[0]), 4 + 4, "absent number is missing");
        assert_eq!(f.slot(1, &rows[15]), 4 + 3, "15 is in the last bin");
        assert_eq!(f.columns[1].labels()[3], ">= 15");
    }
}
