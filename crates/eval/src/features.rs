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
    /// Columns crossed into one categorical column each (their levels
    /// are combinations of the parts' levels: landing page × origin).
    pub crosses: Vec<Vec<String>>,
}

impl Default for FeatureConfig {
    fn default() -> FeatureConfig {
        FeatureConfig {
            min_support: 30,
            bins: 5,
            missing: vec!["Select".to_string()],
            exclude: Vec::new(),
            crosses: Vec::new(),
        }
    }
}

/// Traits named `count:EVENT` hold how many `EVENT`s a contact had: they
/// become one linear feature each (an engagement rule in a written model).
pub const COUNT_PREFIX: &str = "count:";

/// Traits named `recent:HALF_LIFE:EVENT` hold a contact's `EVENT`s counted
/// with exponential decay (each worth `0.5^(age / HALF_LIFE)` at the
/// decision time): one linear feature each, written as an engagement rule
/// with that `half_life`.
pub const RECENT_PREFIX: &str = "recent:";

/// Traits named `days_since:EVENT` hold the days from a contact's latest
/// `EVENT` to the decision time: binned like any number, written as a fit
/// rule on `days_since("EVENT")` (no such event = missing).
pub const DAYS_SINCE_PREFIX: &str = "days_since:";

/// The event and half-life (`None`: no decay) of a counted feature's name.
pub fn counted(name: &str) -> Option<(&str, Option<&str>)> {
    if let Some(event) = name.strip_prefix(COUNT_PREFIX) {
        return Some((event, None));
    }
    let (half_life, event) = name.strip_prefix(RECENT_PREFIX)?.split_once(':')?;
    Some((event, Some(half_life)))
}

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
        /// Each level as a CEL literal of the type it was seen with
        /// (`"DE"`, `1`, `true`), for the written conditions.
        literals: Vec<String>,
    },
    /// Numbers: one indicator per bin (`< edges[0]`, `< edges[1]`, …,
    /// `>= last`), then "missing".
    Numeric {
        /// Trait name.
        name: String,
        /// Increasing bin edges.
        edges: Vec<f64>,
    },
    /// Combinations of categories of several traits: one indicator per
    /// kept combination, then "other" (every part present, a rare
    /// combination), then "missing" (some part missing).
    Cross {
        /// The parts joined by ` × `.
        name: String,
        /// The crossed trait names.
        parts: Vec<String>,
        /// Kept combinations (one category per part), most frequent first.
        levels: Vec<Vec<String>>,
        /// Each combination as CEL literals, one per part.
        literals: Vec<Vec<String>>,
    },
    /// How many of an event (decayed with `half_life` when set): one
    /// linear feature (absent = 0).
    Count {
        /// Trait name (`count:EVENT` or `recent:HALF_LIFE:EVENT`).
        name: String,
        /// The event name.
        event: String,
        /// The decay's half-life as written in the model (`30d`).
        half_life: Option<String>,
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
            | Column::Cross { name, .. }
            | Column::Count { name, .. } => name,
        }
    }

    /// Number of indicators.
    pub fn width(&self) -> usize {
        match self {
            Column::Categorical { levels, .. } => levels.len() + 2,
            Column::Cross { levels, .. } => levels.len() + 2,
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
            Column::Cross { levels, .. } => levels
                .iter()
                .map(|l| l.join(" × "))
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
            Column::Count {
                event, half_life, ..
            } => vec![match half_life {
                None => format!("each {event}"),
                Some(h) => format!("each {event} (half-life {h})"),
            }],
        }
    }

    /// The CEL expression of the column's value: `days_since("EVENT")` for
    /// recency columns, else the trait.
    pub fn expr(&self) -> String {
        let name = self.name();
        match name.strip_prefix(DAYS_SINCE_PREFIX) {
            Some(event) => format!("days_since({})", cel_string(event)),
            None => trait_expr(name),
        }
    }
}

/// The CEL expression of a trait.
pub fn trait_expr(name: &str) -> String {
    format!("traits[{}]", cel_string(name))
}

/// A CEL string literal.
pub fn cel_string(text: &str) -> String {
    serde_json::to_string(text).expect("strings serialise")
}

/// A value as a CEL literal (strings quoted, numbers and booleans bare).
fn cel_literal(value: &Value) -> String {
    match value {
        Value::String(s) => cel_string(s),
        other => other.to_string(),
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

/// The categories of `parts` in a row, or `None` when one is missing.
fn categories(
    row: &Map<String, Value>,
    parts: &[String],
    missing: &[String],
) -> Option<Vec<String>> {
    parts
        .iter()
        .map(|p| category(row.get(p), missing))
        .collect()
}

/// The levels seen at least `min_support` times, most frequent first
/// (ties in level order), each with the literal of its first occurrence.
fn frequent<K: Ord, L>(
    seen: impl Iterator<Item = (K, impl FnOnce() -> L)>,
    min_support: usize,
) -> (Vec<K>, Vec<L>) {
    let mut counts: BTreeMap<K, (usize, L)> = BTreeMap::new();
    for (level, literal) in seen {
        counts.entry(level).or_insert_with(|| (0, literal())).0 += 1;
    }
    let mut levels: Vec<(K, (usize, L))> = counts
        .into_iter()
        .filter(|(_, (n, _))| *n >= min_support)
        .collect();
    levels.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.0.cmp(&b.0)));
    levels
        .into_iter()
        .map(|(level, (_, literal))| (level, literal))
        .unzip()
}

/// The crossed column of `parts` over training rows: combinations seen at
/// least `min_support` times, most frequent first; none when no
/// combination is that frequent (present or missing, the parts tell).
fn cross(rows: &[&Map<String, Value>], parts: &[String], config: &FeatureConfig) -> Option<Column> {
    let seen = rows.iter().filter_map(|row| {
        let literals = move || parts.iter().map(|p| cel_literal(&row[p])).collect();
        categories(row, parts, &config.missing).map(|key| (key, literals))
    });
    let (levels, literals) = frequent(seen, config.min_support);
    if levels.is_empty() {
        return None;
    }
    Some(Column::Cross {
        name: parts.join(" × "),
        parts: parts.to_vec(),
        levels,
        literals,
    })
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
            if let Some((event, half_life)) = counted(name) {
                let mut counts: Vec<f64> = values
                    .iter()
                    .filter_map(|v| v.and_then(Value::as_f64))
                    .collect();
                counts.sort_by(f64::total_cmp);
                if counts.len() >= config.min_support {
                    columns.push(Column::Count {
                        name: name.to_string(),
                        event: event.to_string(),
                        half_life: half_life.map(str::to_string),
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
            // Recency is a number even when it takes few values.
            let min_distinct = if name.starts_with(DAYS_SINCE_PREFIX) {
                1
            } else {
                config.bins
            };
            if present > 0 && numbers.len() == present && distinct.len() > min_distinct {
                let mut sorted = numbers;
                sorted.sort_by(f64::total_cmp);
                let mut edges: Vec<f64> = (1..config.bins)
                    .map(|b| sorted[b * sorted.len() / config.bins])
                    .collect();
                if name.starts_with(DAYS_SINCE_PREFIX) {
                    // Readable thresholds: tenths of a day.
                    edges
                        .iter_mut()
                        .for_each(|e| *e = (*e * 10.0).ceil() / 10.0);
                }
                edges.dedup();
                edges.retain(|e| *e > sorted[0]);
                columns.push(Column::Numeric {
                    name: name.to_string(),
                    edges,
                });
                continue;
            }
            let seen = values
                .iter()
                .flatten()
                .filter_map(|v| category(Some(v), &config.missing).map(|c| (c, || cel_literal(v))));
            let (levels, literals) = frequent(seen, config.min_support);
            // A constant column carries nothing.
            if levels.len() <= 1 && present == rows.len() {
                continue;
            }
            columns.push(Column::Categorical {
                name: name.to_string(),
                levels,
                literals,
            });
        }
        for parts in &config.crosses {
            columns.extend(cross(rows, parts, config));
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
            Column::Cross { parts, levels, .. } => match categories(row, parts, &self.missing) {
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
                levels: vec!["Google".into(), "Direct".into()],
                literals: vec![r#""Google""#.into(), r#""Direct""#.into()],
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

    #[test]
    fn a_cross_keeps_frequent_combinations_and_knows_missing_from_other() {
        let mut rows = Vec::new();
        for i in 0..60 {
            let page = ["p1", "p2", "p3"][i % 3];
            let channel = if i % 2 == 0 { json!("a") } else { json!(7) };
            rows.push(map(json!({"page": page, "channel": channel})));
        }
        rows.push(map(json!({"page": "p9", "channel": "a"})));
        rows.push(map(json!({"page": "p1"})));
        rows.push(map(json!({"page": "p1", "channel": "Select"})));
        let refs: Vec<&Map<String, Value>> = rows.iter().collect();
        let config = FeatureConfig {
            min_support: 5,
            crosses: vec![vec!["page".into(), "channel".into()]],
            ..FeatureConfig::default()
        };
        let f = Features::learn(&refs, &config);
        let c = f.columns.len() - 1;
        let Column::Cross {
            name,
            levels,
            literals,
            ..
        } = &f.columns[c]
        else {
            panic!("{:?}", f.columns);
        };
        assert_eq!(name, "page × channel");
        assert_eq!(levels.len(), 6, "3 pages × 2 channels, p9 too rare");
        // Ten each: ties in category order; numbers stay numbers.
        assert_eq!(literals[0], [r#""p1""#, "7"]);
        assert_eq!(literals[1], [r#""p1""#, r#""a""#]);
        assert_eq!(f.columns[c].width(), 8);
        assert_eq!(f.columns[c].labels()[1], "p1 × a");
        let at = f.offset(c);
        assert_eq!(f.slot(c, &rows[0]), at + 1, "p1 × a");
        assert_eq!(f.slot(c, &rows[60]), at + 6, "a rare combination is other");
        assert_eq!(f.slot(c, &rows[61]), at + 7, "a missing part is missing");
        assert_eq!(f.slot(c, &rows[62]), at + 7, "Select is missing");
    }
}
