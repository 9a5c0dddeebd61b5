//! `leadscore evaluate`: point-in-time evaluation on recorded outcomes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use leadscore_core::batch::ContactLog;
use leadscore_core::model::Model;
use leadscore_core::time::Timestamp;
use leadscore_eval::evaluate::{
    drift, outcome_values, points, report, Known, OutcomeValues, Points, Policy, Report, Settings,
};
use leadscore_store::Outcome;

use crate::args::Input;
use crate::load;

/// Reads outcomes: CSV (`contact_id,outcome,at[,value]`) or JSON lines.
pub(crate) fn read_outcomes(path: &Path) -> Result<Vec<Outcome>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read outcomes {}", path.display()))?;
    // A byte order mark (Windows tools write one) is neither JSON nor a header.
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(&text);
    let name = path.display();
    let not_empty = |o: Option<&Outcome>, line: usize| match o {
        Some(o) if o.contact_id.trim().is_empty() || o.outcome.trim().is_empty() => {
            bail!("{name}:{line}: contact_id and outcome must not be empty")
        }
        _ => Ok(()),
    };
    let parse_at = |text: &str, line: usize| {
        load::as_of(Some(text)).with_context(|| format!("{name}:{line}: field `at`"))
    };
    let mut out = Vec::new();
    if text.trim_start().starts_with('{') {
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let v: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("{name}:{}: invalid JSON", i + 1))?;
            let field = |f: &str| {
                v[f].as_str().map(str::to_string).with_context(|| {
                    format!("{name}:{}: field `{f}` missing or not a string", i + 1)
                })
            };
            let value = match &v["value"] {
                serde_json::Value::Null => None,
                number => Some(number.as_f64().with_context(|| {
                    format!("{name}:{}: field `value`: not a number: {number}", i + 1)
                })?),
            };
            out.push(Outcome {
                contact_id: field("contact_id")?,
                outcome: field("outcome")?,
                value,
                at: parse_at(&field("at")?, i + 1)?,
            });
            not_empty(out.last(), i + 1)?;
        }
        return Ok(out);
    }
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers()?.clone();
    let column = |name: &str| headers.iter().position(|h| h == name);
    let (Some(id), Some(outcome), Some(at)) =
        (column("contact_id"), column("outcome"), column("at"))
    else {
        bail!("{name}: expected columns contact_id, outcome, at (and optionally value)");
    };
    let value = column("value");
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = record.with_context(|| format!("{name}:{line}"))?;
        let get = |k: usize| record.get(k).unwrap_or_default().to_string();
        out.push(Outcome {
            contact_id: get(id),
            outcome: get(outcome),
            value: value
                .map(&get)
                .filter(|v| !v.is_empty())
                .map(|v| {
                    v.parse()
                        .with_context(|| format!("{name}:{line}: field `value`: {v:?}"))
                })
                .transpose()?,
            at: parse_at(&get(at), line)?,
        });
        not_empty(out.last(), line)?;
    }
    Ok(out)
}

/// Where outcomes come from and what they mean.
pub struct Labels<'a> {
    pub outcomes: Option<&'a Path>,
    pub policy: &'a str,
    pub positive: &'a [String],
    /// An event that is the outcome (instead of an outcomes file).
    pub event: Option<&'a str>,
}

impl<'a> Labels<'a> {
    /// The labels of the common outcome arguments.
    pub fn of(args: &'a crate::args::OutcomeArgs) -> Labels<'a> {
        Labels {
            outcomes: args.outcomes.as_deref(),
            policy: &args.as_of_policy,
            positive: &args.positive,
            event: args.outcome_event.as_deref(),
        }
    }
}

/// Outcomes from an event: a contact converted at its first `event`; one
/// without it did not, as of the last message of the whole log (the end of
/// the observation). Contacts are added block by block.
#[derive(Default)]
pub(crate) struct EventOutcomes {
    /// Each contact and the time of its first `event`, if any.
    firsts: Vec<(String, Option<Timestamp>)>,
    /// The log's last message.
    end: Timestamp,
}

impl EventOutcomes {
    pub(crate) fn add(&mut self, contacts: &[ContactLog], event: &str) {
        for c in contacts {
            if let Some(last) = c.messages.last() {
                self.end = self.end.max(last.timestamp);
            }
            let first = c.messages.iter().find(|m| m.rule_name() == Some(event));
            self.firsts.push((c.id.clone(), first.map(|m| m.timestamp)));
        }
    }

    pub(crate) fn outcomes(self) -> Vec<Outcome> {
        let end = self.end;
        self.firsts
            .into_iter()
            .map(|(contact_id, first)| Outcome {
                contact_id,
                outcome: if first.is_some() {
                    "converted"
                } else {
                    "not converted"
                }
                .to_string(),
                value: None,
                at: first.unwrap_or(end),
            })
            .collect()
    }
}

/// [`EventOutcomes`] of contacts held at once.
fn outcomes_from_event(contacts: &[ContactLog], event: &str) -> Vec<Outcome> {
    let mut outcomes = EventOutcomes::default();
    outcomes.add(contacts, event);
    outcomes.outcomes()
}

/// Each contact's outcome: its first positive one, else its first.
pub fn known(
    db: &Path,
    labels: &Labels<'_>,
    contacts: &[ContactLog],
) -> Result<(Policy, BTreeMap<String, Known>)> {
    known_from(db, labels, |event| Ok(outcomes_from_event(contacts, event)))
}

/// [`known`], with `from_event` deriving the outcomes from the log when
/// the labels name an event.
pub(crate) fn known_from(
    db: &Path,
    labels: &Labels<'_>,
    from_event: impl FnOnce(&str) -> Result<Vec<Outcome>>,
) -> Result<(Policy, BTreeMap<String, Known>)> {
    let policy = Policy::parse(labels.policy).map_err(anyhow::Error::msg)?;
    let outcomes = match (labels.event, labels.outcomes) {
        (Some(event), _) => from_event(event)?,
        (None, Some(path)) => read_outcomes(path)?,
        (None, None) => crate::store::open_existing(db)?.outcomes()?,
    };
    if outcomes.is_empty() {
        match (labels.event, labels.outcomes) {
            (Some(_), _) => {}
            (None, Some(path)) => bail!("{}: no outcome in the file", path.display()),
            (None, None) => bail!(
                "the store has no recorded outcomes: pass --outcomes FILE or --outcome-event NAME, \
                 or record them (`leadscore import --outcomes FILE`, POST /api/v1/outcomes)"
            ),
        }
    }
    let converted = ["converted".to_string()];
    let positive = if labels.event.is_some() {
        &converted[..]
    } else {
        labels.positive
    };
    if labels.event.is_none() {
        note_values(&outcome_values(
            outcomes.iter().map(|o| o.outcome.as_str()),
            positive,
        ));
    }
    let known = leadscore_eval::evaluate::outcomes_by_contact(
        outcomes
            .iter()
            .map(|o| (o.contact_id.as_str(), o.outcome.as_str(), o.at)),
        positive,
    );
    Ok((policy, known))
}

/// Which contact ids of the outcomes some contact of the log holds, to
/// say how many outcomes name an id found nowhere in it (a CRM export keyed
/// by email against events keyed by user id is evaluated on nobody).
#[derive(Default)]
pub(crate) struct Matched(std::collections::BTreeSet<String>);

impl Matched {
    /// Notes the ids of `contacts` that outcomes name.
    pub(crate) fn add(&mut self, contacts: &[ContactLog], known: &BTreeMap<String, Known>) {
        for id in contacts.iter().flat_map(leadscore_eval::evaluate::ids_of) {
            if known.contains_key(id) && !self.0.contains(id) {
                self.0.insert(id.to_string());
            }
        }
    }

    /// Says on standard error how many outcomes named no id of the log.
    pub(crate) fn note(&self, known: &BTreeMap<String, Known>) {
        let mut unmatched = known.keys().filter(|id| !self.0.contains(*id));
        if let Some(example) = unmatched.next() {
            eprintln!(
                "note: {} of {} contacts with an outcome are not in the log (e.g. {example:?}): they are left out; are the outcomes keyed by another id?",
                1 + unmatched.count(),
                known.len()
            );
        }
    }
}

/// Says on standard error which recorded outcome values count as
/// converted, and warns about values that look like a conversion but are
/// not named by `--positive` (a CRM's `Closed Won`).
fn note_values(values: &OutcomeValues) {
    let list = |counts: &BTreeMap<String, u64>| {
        super::counted(counts.iter().map(|(value, n)| (value.as_str(), *n)), 8)
    };
    eprintln!(
        "outcomes: converted {}; not converted {}",
        list(&values.converted),
        list(&values.not_converted)
    );
    for value in &values.suspicious {
        eprintln!(
            "warning: outcome {value:?} counts as not converted: if it is a conversion, add it to --positive"
        );
    }
}

/// The points of the input's model and of each of `others`, every contact
/// with an outcome scored as of its decision time (the same times for all).
/// Without `--events`, the store's log is read one contact at a time
/// ([`load::store_blocks`]; twice when the outcomes come from an event,
/// whose first pass finds them) and the points ordered by contact id, as
/// from a whole log.
fn scored(
    input: &Input,
    db: &Path,
    labels: &Labels<'_>,
    others: &[&Model],
) -> Result<(Arc<Model>, Vec<Points>)> {
    if !input.log.events.is_empty() {
        let loaded = load::input(input, db, None)?;
        load::report_skipped(&loaded.skipped);
        let (policy, known) = known(db, labels, &loaded.contacts)?;
        let mut matched = Matched::default();
        matched.add(&loaded.contacts, &known);
        matched.note(&known);
        let models = std::iter::once(loaded.model.as_ref()).chain(others.iter().copied());
        let points = models
            .map(|model| points(model, &loaded.contacts, &known, policy))
            .collect::<Result<_, String>>()
            .map_err(anyhow::Error::msg)?;
        return Ok((loaded.model, points));
    }
    let (policy, known) = known_from(db, labels, |event| {
        let mut outcomes = EventOutcomes::default();
        load::store_blocks(input, db, &mut |_, _, block| outcomes.add(&block, event))?;
        Ok(outcomes.outcomes())
    })?;
    let mut scored = vec![Points::default(); 1 + others.len()];
    let mut failed: Option<String> = None;
    let mut matched = Matched::default();
    let model = load::store_blocks(input, db, &mut |model, _, block| {
        matched.add(&block, &known);
        let models = std::iter::once(model).chain(others.iter().copied());
        for (all, model) in scored.iter_mut().zip(models) {
            match points(model, &block, &known, policy) {
                Ok(p) => all.append(p),
                Err(e) => failed = failed.take().or(Some(e)),
            }
        }
    })?;
    if let Some(e) = failed {
        bail!(e);
    }
    matched.note(&known);
    for p in &mut scored {
        p.sort_by_id();
    }
    Ok((model, scored))
}

pub fn run(
    input: &Input,
    db: &Path,
    labels: &Labels<'_>,
    settings: Settings,
    monthly: bool,
    html: Option<&Path>,
    json: bool,
) -> Result<ExitCode> {
    let (model, mut scored) = scored(input, db, labels, &[])?;
    let points = scored.remove(0);
    let windows = monthly.then(|| drift(&points));
    let report = report(&model, points, &settings).map_err(anyhow::Error::msg)?;
    if let Some(path) = html {
        let title = format!("leadscore evaluation of {}", model.name);
        std::fs::write(path, leadscore_eval::html::report_html(&title, &report))
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("report written to {}", path.display());
    }
    if json {
        let mut value = serde_json::to_value(&report)?;
        if let Some(windows) = &windows {
            value["monthly"] = serde_json::to_value(windows)?;
        }
        super::emit(&format!("{}\n", serde_json::to_string_pretty(&value)?))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = table(&report)?;
    if let Some(windows) = windows {
        writeln!(
            out,
            "\n{:<8} {:>8} {:>9} {:>7} {:>7} {:>6}",
            "month", "contacts", "converted", "AUC", "mean", "PSI"
        )?;
        for w in windows {
            let auc = w.auc.map_or("-".to_string(), |a| format!("{a:.3}"));
            writeln!(
                out,
                "{:<8} {:>8} {:>9} {:>7} {:>7.1} {:>6.3}{}",
                w.month,
                w.contacts,
                w.positives,
                auc,
                w.mean_score,
                w.psi,
                if w.shifted { "  population shift" } else { "" }
            )?;
        }
    }
    super::emit(&out)?;
    Ok(ExitCode::SUCCESS)
}

pub fn compare(
    input: &Input,
    challenger: &Path,
    db: &Path,
    labels: &Labels<'_>,
    top_share: f64,
    settings: Settings,
    json: bool,
) -> Result<ExitCode> {
    let candidate = load::model(challenger)?;
    let (_, mut scored) = scored(input, db, labels, &[&candidate])?;
    let (a, b) = (scored.remove(0), scored.remove(0));
    let c = leadscore_eval::evaluate::compare(&a, &b, top_share, &settings)
        .map_err(anyhow::Error::msg)?;
    if json {
        super::emit(&format!("{}\n", serde_json::to_string_pretty(&c)?))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = String::new();
    writeln!(
        out,
        "{} contacts, {} converted, scored as of {}",
        c.contacts, c.positives, labels.policy
    )?;
    writeln!(
        out,
        "{:<28} {:>9} {:>11} {:>28}",
        "", "champion", "challenger", "difference (95% CI)"
    )?;
    writeln!(
        out,
        "{:<28} {:>9.4} {:>11.4} {:>+9.4} ({:+.4} to {:+.4})",
        "ROC AUC",
        c.champion_auc,
        c.challenger_auc,
        c.auc_difference.estimate,
        c.auc_difference.low,
        c.auc_difference.high
    )?;
    writeln!(
        out,
        "{:<28} {:>8.1}% {:>10.1}% {:>+8.1}% ({:+.1}% to {:+.1}%)",
        format!("conversion in top {:.0}%", c.top_share * 100.0),
        c.champion_top_rate * 100.0,
        c.challenger_top_rate * 100.0,
        c.top_rate_difference.estimate * 100.0,
        c.top_rate_difference.low * 100.0,
        c.top_rate_difference.high * 100.0
    )?;
    writeln!(out, "\nverdict: {}", c.verdict)?;
    super::emit(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// Conversion and lift per bucket (decile or tier), with each bucket's
/// score range when `scores`.
fn buckets(
    out: &mut String,
    label: &str,
    rows: &[leadscore_eval::metrics::Bucket],
    scores: bool,
) -> std::fmt::Result {
    let range = if scores { "  scores" } else { "" };
    writeln!(
        out,
        "\n{label:<8} {:>8} {:>9} {:>7} {:>6}{range}",
        "contacts", "converted", "rate", "lift"
    )?;
    for b in rows {
        write!(
            out,
            "{:<8} {:>8} {:>9} {:>6.1}% {:>6.2}",
            b.name,
            b.contacts,
            b.positives,
            b.rate * 100.0,
            b.lift
        )?;
        if scores {
            write!(out, "  {:.1}–{:.1}", b.min_score, b.max_score)?;
        }
        writeln!(out)?;
    }
    Ok(())
}

fn table(r: &Report) -> Result<String> {
    let mut out = String::new();
    writeln!(
        out,
        "{} contacts evaluated, {} converted ({:.1}%)",
        r.contacts,
        r.positives,
        100.0 * r.positives as f64 / r.contacts.max(1) as f64
    )?;
    for (why, n) in &r.left_out {
        writeln!(out, "  left out: {n} ({why})")?;
    }
    writeln!(
        out,
        "ROC AUC {:.4} (95% CI {:.4}–{:.4}), PR AUC {:.4}",
        r.auc.estimate, r.auc.low, r.auc.high, r.pr_auc
    )?;
    if let Some(days) = r.velocity_days {
        writeln!(
            out,
            "median days from reaching the top tier to converting: {days:.1}"
        )?;
    }
    buckets(&mut out, "decile", &r.deciles, true)?;
    buckets(&mut out, "tier", &r.tiers, false)?;
    writeln!(
        out,
        "\n{:<8} {:<6} {:>8} {:>9} {:>7}",
        "tier", "grade", "contacts", "converted", "rate"
    )?;
    for c in &r.matrix {
        writeln!(
            out,
            "{:<8} {:<6} {:>8} {:>9} {:>6.1}%",
            c.tier,
            c.grade,
            c.contacts,
            c.positives,
            c.rate * 100.0
        )?;
    }
    writeln!(
        out,
        "\n{:>9} {:>9} {:>9} {:>7}",
        "threshold", "MQLs", "precision", "recall"
    )?;
    for t in &r.thresholds {
        writeln!(
            out,
            "{:>9.1} {:>9} {:>8.1}% {:>6.1}%",
            t.threshold,
            t.qualified,
            t.precision * 100.0,
            t.recall * 100.0
        )?;
    }
    for w in &r.warnings {
        writeln!(out, "\nwarning: {w}")?;
    }
    Ok(out)
}
