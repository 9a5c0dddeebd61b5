//! `leadscore train`: fit points learned from outcomes.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use leadscore_core::batch::ContactLog;
use leadscore_core::time::Timestamp;
use leadscore_eval::evaluate::{EventFeatures, Known, Policy};
use leadscore_eval::features::FeatureConfig;
use leadscore_eval::suggest::{train_table, TrainConfig};
use leadscore_input::read_contacts;
use serde_json::{Map, Value};

/// `--events` and what goes with it.
pub struct Events<'a> {
    pub files: &'a [std::path::PathBuf],
    pub contacts: Option<&'a Path>,
    pub labels: super::evaluate::Labels<'a>,
    /// Half-lives of decayed counts (`30d`).
    pub recent: &'a [String],
    /// Days since each event's latest occurrence.
    pub recency: bool,
}

impl Events<'_> {
    /// The event features asked for, half-lives checked.
    fn features(&self) -> Result<EventFeatures> {
        let mut half_lives = Vec::new();
        for text in self.recent {
            let duration = leadscore_core::time::Duration::parse(text)
                .map_err(|e| anyhow::anyhow!("--recent {text:?}: {e}"))?;
            if duration.seconds() <= 0 {
                bail!("--recent {text:?}: the half-life must be positive");
            }
            half_lives.push((text.clone(), duration.seconds() as f64));
        }
        Ok(EventFeatures {
            half_lives,
            recency: self.recency,
        })
    }
}

pub struct Args<'a> {
    /// The store read when neither `--table` nor `--events` is given.
    pub db: &'a Path,
    pub table: Option<&'a Path>,
    pub events: Events<'a>,
    pub id_column: &'a str,
    pub label: Option<&'a str>,
    pub positives: Option<&'a Path>,
    pub exclude: Vec<String>,
    pub missing: Vec<String>,
    pub dates: Vec<String>,
    /// Each `--cross` as written (`A,B`).
    pub crosses: Vec<String>,
    pub min_support: usize,
    pub bins: usize,
    pub l2: f64,
    pub folds: usize,
    pub seed: u64,
    pub repeats: usize,
    pub out: Option<&'a Path>,
    pub json: bool,
}

/// 1/true/yes (any case) is a positive; 0/false/no and empty are negative.
fn outcome(value: Option<&Value>, row: usize, column: &str) -> Result<bool> {
    Ok(match value {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) if n.as_f64() == Some(1.0) => true,
        Some(Value::Number(n)) if n.as_f64() == Some(0.0) => false,
        Some(Value::String(s)) if ["yes", "y", "true"].contains(&s.to_lowercase().as_str()) => true,
        Some(Value::String(s)) if ["no", "n", "false", ""].contains(&s.to_lowercase().as_str()) => {
            false
        }
        Some(other) => {
            bail!("row {row}: column {column:?}: expected 1/0, true/false or yes/no, found {other}")
        }
    })
}

/// Month, weekday and day number (days since 1970-01-01, binned like any
/// number) of a `YYYY-MM-DD…` value.
fn date_parts(value: &Value) -> Option<(String, String, i64)> {
    let text = value.as_str()?;
    let date: jiff::civil::Date = text.get(..10)?.parse().ok()?;
    let day = date.since(jiff::civil::date(1970, 1, 1)).ok()?.get_days();
    Some((
        format!("{:02}", date.month()),
        format!("{:?}", date.weekday()),
        i64::from(day),
    ))
}

/// Training rows from event logs, or from the store's log without
/// `--events`, and how to score a written model on them (folding each
/// contact's messages up to its decision time).
fn from_events(
    events: &Events<'_>,
    id_column: &str,
    db: &Path,
    config: &TrainConfig,
) -> Result<leadscore_eval::suggest::TrainReport> {
    let extra = events.features()?;
    let contacts_file = crate::load::contacts_rows(events.contacts, id_column)?;
    let end = Timestamp(i64::MAX);
    let (contacts, policy, known) = if events.files.is_empty() {
        from_store(events, db, contacts_file)?
    } else {
        if events.labels.outcomes.is_none() && events.labels.event.is_none() {
            bail!("--events needs --outcomes FILE or --outcome-event NAME");
        }
        let (messages, skipped) = crate::load::messages(events.files, false)?;
        crate::load::report_skipped(&skipped);
        let contacts = leadscore_core::batch::contacts_as_of_chunks(messages, contacts_file, end);
        let (policy, known) = super::evaluate::known(db, &events.labels, &contacts)?;
        (contacts, policy, known)
    };
    let mut matched = super::evaluate::Matched::default();
    matched.add(&contacts, &known);
    matched.note(&known);
    let (rows, labels, at) =
        leadscore_eval::evaluate::training_rows(&contacts, &known, policy, &extra);
    let score = |model: &leadscore_core::model::Model, i: usize| {
        let (c, t) = at[i];
        contacts[c].score_as_of(model, t).score
    };
    leadscore_eval::suggest::train_rows(&rows, &labels, config, &score).map_err(anyhow::Error::msg)
}

/// The store's contacts that have an outcome (from `--outcomes`, from
/// `--outcome-event`, else the store's recorded outcomes), read one
/// contact's log at a time and ordered by id as from a whole log: memory
/// holds the contacts trained on, not the whole log.
fn from_store(
    events: &Events<'_>,
    db: &Path,
    contacts_file: Vec<(String, serde_json::Map<String, Value>)>,
) -> Result<(Vec<ContactLog>, Policy, BTreeMap<String, Known>)> {
    let store = crate::store::open_existing(db)?;
    let end = Timestamp(i64::MAX);
    let (policy, known) = super::evaluate::known_from(db, &events.labels, |event| {
        let mut outcomes = super::evaluate::EventOutcomes::default();
        crate::load::blocks(store.as_ref(), contacts_file.clone(), end, &mut |block| {
            outcomes.add(&block, event)
        })?;
        Ok(outcomes.outcomes())
    })?;
    let mut contacts = Vec::new();
    crate::load::blocks(store.as_ref(), contacts_file, end, &mut |block| {
        contacts.extend(
            block
                .into_iter()
                .filter(|c| leadscore_eval::evaluate::outcome_of(c, &known).is_some()),
        )
    })?;
    contacts.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    Ok((contacts, policy, known))
}

pub fn run(args: Args<'_>) -> Result<ExitCode> {
    let mut missing = args.missing.clone();
    if missing.is_empty() {
        missing.push("Select".to_string());
    }
    let name = args
        .out
        .and_then(|p| p.file_stem())
        .map_or("suggested".to_string(), |s| {
            s.to_string_lossy().into_owned()
        });
    let config = TrainConfig {
        features: FeatureConfig {
            min_support: args.min_support,
            bins: args.bins,
            missing,
            exclude: args.exclude.clone(),
            crosses: args
                .crosses
                .iter()
                .map(|c| c.split(',').map(|p| p.trim().to_string()).collect())
                .collect(),
        },
        lambda: args.l2,
        folds: args.folds,
        seed: args.seed,
        repeats: args.repeats,
        name,
    };
    let report = match args.table {
        Some(table) => from_table(&args, table, &config)?,
        None => from_events(&args.events, args.id_column, args.db, &config)?,
    };
    write_report(&args, &config, &report)
}

fn from_table(
    args: &Args<'_>,
    table_path: &Path,
    config: &TrainConfig,
) -> Result<leadscore_eval::suggest::TrainReport> {
    let file = File::open(table_path)
        .with_context(|| format!("cannot open table {}", table_path.display()))?;
    let table = read_contacts(
        BufReader::new(file),
        &table_path.display().to_string(),
        args.id_column,
    )?;
    let positives: Option<BTreeSet<String>> = match args.positives {
        None => None,
        Some(path) => {
            let mut reader = csv::Reader::from_path(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            let mut ids = BTreeSet::new();
            for (i, record) in reader.records().enumerate() {
                let record =
                    record.with_context(|| format!("{}: row {}", path.display(), i + 2))?;
                ids.insert(record.get(0).unwrap_or_default().to_string());
            }
            Some(ids)
        }
    };
    let mut rows: Vec<Map<String, Value>> = Vec::with_capacity(table.len());
    let mut labels = Vec::with_capacity(table.len());
    let mut label_seen = false;
    for (n, (id, mut traits)) in table.into_iter().enumerate() {
        let label = match (&positives, args.label) {
            (Some(ids), _) => ids.contains(&id),
            (None, Some(column)) => {
                label_seen |= traits.contains_key(column);
                outcome(traits.remove(column).as_ref(), n + 2, column)?
            }
            (None, None) => bail!("pass --label COLUMN or --positives FILE"),
        };
        for date in &args.dates {
            if let Some(value) = traits.remove(date) {
                if let Some((month, weekday, day)) = date_parts(&value) {
                    traits.insert(format!("{date} month"), Value::String(month));
                    traits.insert(format!("{date} weekday"), Value::String(weekday));
                    traits.insert(format!("{date} day"), Value::from(day));
                }
            }
        }
        labels.push(label);
        rows.push(traits);
    }
    if let (Some(column), false) = (args.label, label_seen || args.positives.is_some()) {
        bail!("no column {column:?} in {}", table_path.display());
    }
    train_table(&rows, &labels, config).map_err(anyhow::Error::msg)
}

fn write_report(
    args: &Args<'_>,
    config: &TrainConfig,
    report: &leadscore_eval::suggest::TrainReport,
) -> Result<ExitCode> {
    if let Some(out) = args.out {
        std::fs::write(out, &report.toml)
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    if args.json {
        super::emit(&format!("{}\n", serde_json::to_string_pretty(report)?))?;
    } else {
        let list = |v: &[f64]| {
            v.iter()
                .map(|a| format!("{a:.4}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        // One split: each fold's AUC; repeated: each repetition's mean.
        let (heading, spread) = if report.repeats == 1 {
            (
                format!("{} folds, seed {}", report.folds, config.seed),
                "folds",
            )
        } else {
            let last = config.seed.wrapping_add(report.repeats as u64 - 1);
            let heading = format!(
                "{} folds, {} repetitions, seeds {}–{last}",
                report.folds, report.repeats, config.seed
            );
            (heading, "repetitions")
        };
        let detail = |v: &[f64]| {
            if report.repeats == 1 {
                return list(v);
            }
            let means: Vec<f64> = v
                .chunks(report.folds)
                .map(|c| c.iter().sum::<f64>() / c.len() as f64)
                .collect();
            let lo = means.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = means.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            format!("{lo:.4}–{hi:.4}: {}", list(&means))
        };
        super::emit(&format!(
            "{} contacts, {} converted ({:.1}%), {} features\n\
             cross-validated AUC ({heading}):\n  \
             logistic regression  {:.4}   {spread}: {}\n  \
             written model file   {:.4}   {spread}: {}\n{}",
            report.rows,
            report.positives,
            100.0 * report.positives as f64 / report.rows as f64,
            report.features,
            report.cv_auc_model,
            detail(&report.fold_auc_model),
            report.cv_auc_toml,
            detail(&report.fold_auc_toml),
            args.out
                .map(|p| format!("model written to {}\n", p.display()))
                .unwrap_or_default()
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}
