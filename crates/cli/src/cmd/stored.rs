//! Commands on the store: contact, history, top, rescore, erase, export
//! (import is in `import`).

use std::fmt::Write as _;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use leadscore_store::{ContactAt, ScoreQuery};
use serde_json::{json, Value};

use crate::{load, progress, store};

pub fn contact(db: &Path, id: &str, as_of: Option<&str>, json: bool) -> Result<ExitCode> {
    let store = store::open_existing(db)?;
    let t = load::as_of(as_of)?;
    let Some(ContactAt {
        id: canonical,
        score,
        record,
    }) = store.contact_at(id, t)?
    else {
        bail!("no contact {id:?} with events at or before {t}");
    };
    let ids = store
        .contact_messages(&canonical)?
        .map(|log| log.ids)
        .unwrap_or_default();
    if json {
        let value = json!({
            "contact_id": canonical,
            "as_of": t,
            "score": score,
            "ids": ids,
            "last_event": record.as_ref().and_then(|r| r.last_event),
            "traits": record.as_ref().map(|r| &r.traits),
            "company": record.as_ref().map(|r| &r.company),
        });
        super::emit(&(serde_json::to_string_pretty(&value)? + "\n"))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = String::new();
    writeln!(out, "contact {canonical} as of {t}")?;
    writeln!(out, "  ids         {}", ids.join(", "))?;
    writeln!(
        out,
        "  score       {:.2} (raw {:.2} = fit {:.2} + engagement {:.2})",
        score.score, score.raw, score.fit, score.engagement
    )?;
    for (label, value) in [
        ("tier", &score.tier),
        ("grade", &score.grade),
        ("stage", &score.stage),
    ] {
        writeln!(
            out,
            "  {label:<11} {}",
            if value.is_empty() { "-" } else { value }
        )?;
    }
    writeln!(out, "  status      {}", score.status.as_str())?;
    if !score.reasons.is_empty() {
        writeln!(out, "  reasons     {}", score.reasons.join("; "))?;
    }
    if let Some(record) = record {
        if let Some(last) = record.last_event {
            writeln!(out, "  last event  {last}")?;
        }
        for (label, map) in [("traits", &record.traits), ("company", &record.company)] {
            if !map.is_empty() {
                writeln!(out, "  {label:<11} {}", Value::Object(map.clone()))?;
            }
        }
    }
    super::emit(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// The store's leaderboard as of `query.at`.
pub fn top(db: &Path, query: &ScoreQuery, json: bool) -> Result<ExitCode> {
    let store = store::open_existing(db)?;
    let Some((_, model)) = store.active_model()? else {
        bail!("no active model: `leadscore model add FILE --activate` first");
    };
    query.check(&model).map_err(|e| anyhow::anyhow!("--{e}"))?;
    let rows = store.scores(query)?;
    let at = query.at.expect("the leaderboard is as of a time");
    let mut out = String::new();
    if json {
        for r in &rows {
            let line = json!({"contact_id": r.id, "as_of": at, "score": r.score, "last_event": r.last_event});
            writeln!(out, "{line}")?;
        }
        super::emit(&out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let filters: Vec<String> = [
        ("tier", query.tier.clone()),
        ("grade", query.grade.clone()),
        ("stage", query.stage.clone()),
        ("status", query.status.map(|s| s.as_str().to_string())),
        ("min", query.min.map(|m| m.to_string())),
        ("max", query.max.map(|m| m.to_string())),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.map(|v| format!("{name} {v}")))
    .collect();
    let order = if query.ascending { "lowest" } else { "top" };
    write!(out, "{order} {} as of {at}", rows.len())?;
    if !filters.is_empty() {
        write!(out, " ({})", filters.join(", "))?;
    }
    writeln!(out)?;
    let dash = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.to_string()
        }
    };
    let width = rows.iter().map(|r| r.id.len()).max().unwrap_or(0).max(7);
    writeln!(
        out,
        "{:>4}  {:<width$}  {:>7}  {:<8} {:<6} {:<8} last event",
        "#", "contact", "score", "tier", "grade", "stage"
    )?;
    for (i, r) in rows.iter().enumerate() {
        let last = r
            .last_event
            .map_or_else(|| "-".to_string(), |t| t.to_string());
        writeln!(
            out,
            "{:>4}  {:<width$}  {:>7.2}  {:<8} {:<6} {:<8} {last}",
            i + 1,
            r.id,
            r.score.score,
            dash(&r.score.tier),
            dash(&r.score.grade),
            dash(&r.score.stage),
        )?;
    }
    super::emit(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// Contacts per tier × grade and the score histogram, as of `query.at`
/// (its filters are not used).
pub fn summary(db: &Path, query: &ScoreQuery, json: bool) -> Result<ExitCode> {
    let store = store::open_existing(db)?;
    let Some((_, model)) = store.active_model()? else {
        bail!("no active model: `leadscore model add FILE --activate` first");
    };
    let at = query.at.expect("the summary is as of a time");
    let summary = store.summary(Some(at), query.rewind)?;
    if json {
        super::emit(&(serde_json::to_string_pretty(&summary)? + "\n"))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = String::new();
    writeln!(
        out,
        "{} contacts as of {at}, {} excluded",
        summary.contacts, summary.excluded
    )?;
    // Tiers down, grades across, highest first; "-" for none.
    let highest_first = |labels: &leadscore_core::rules::labels::Labels| -> Vec<String> {
        let mut names: Vec<String> = labels.iter().map(|(n, _)| n.to_string()).collect();
        names.reverse();
        names.push(String::new());
        names
    };
    let (tiers, grades) = (highest_first(&model.tiers), highest_first(&model.grades));
    let count = |tier: &str, grade: &str| {
        summary
            .tier_grade
            .iter()
            .find(|c| c.tier == tier && c.grade == grade)
            .map_or(0, |c| c.contacts)
    };
    fn label(s: &str) -> &str {
        if s.is_empty() {
            "-"
        } else {
            s
        }
    }
    write!(out, "\n{:<10}", "tier/grade")?;
    for g in &grades {
        write!(out, " {:>8}", label(g))?;
    }
    writeln!(out)?;
    for t in &tiers {
        write!(out, "{:<10}", label(t))?;
        for g in &grades {
            write!(out, " {:>8}", count(t, g))?;
        }
        writeln!(out)?;
    }
    writeln!(out, "\nscore")?;
    let most = summary
        .histogram
        .iter()
        .map(|b| b.contacts)
        .max()
        .unwrap_or(0)
        .max(1);
    for b in &summary.histogram {
        let bar = "#".repeat((b.contacts * 40).div_ceil(most) as usize);
        writeln!(
            out,
            "{:>7.1} - {:<7.1} {:>8}  {bar}",
            b.from, b.to, b.contacts
        )?;
    }
    super::emit(&out)?;
    Ok(ExitCode::SUCCESS)
}

pub fn history(db: &Path, id: &str, json: bool) -> Result<ExitCode> {
    let store = store::open_existing(db)?;
    let entries = store.history(id)?;
    if entries.is_empty() {
        bail!("no history for contact {id:?}");
    }
    let mut out = String::new();
    if json {
        for e in &entries {
            writeln!(out, "{}", serde_json::to_string(e)?)?;
        }
    } else {
        writeln!(
            out,
            "{:<26} {:<4} {:<24} {:<24} cause",
            "as of", "v", "old", "new"
        )?;
        let show = |f: &Option<leadscore_store::ScoreFields>| {
            f.as_ref()
                .map_or_else(|| "-".to_string(), ToString::to_string)
        };
        for e in &entries {
            let at = e.at.map_or_else(|| "-".to_string(), |t| t.to_string());
            let cause = if e.contact == entries[entries.len() - 1].contact {
                e.cause.clone()
            } else {
                format!("{} (as {})", e.cause, e.contact)
            };
            writeln!(
                out,
                "{at:<26} {:<4} {:<24} {:<24} {cause}",
                e.model_version,
                show(&e.old),
                show(&e.new)
            )?;
        }
    }
    super::emit(&out)?;
    Ok(ExitCode::SUCCESS)
}

pub fn status(db: &Path, json: bool) -> Result<ExitCode> {
    let store = store::open_existing(db)?;
    let stats = store.stats()?;
    let active = store.models()?.into_iter().find(|m| m.active);
    if json {
        let value = json!({"db": db.display().to_string(), "stats": stats, "active_model": active});
        super::emit(&(serde_json::to_string_pretty(&value)? + "\n"))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = String::new();
    writeln!(out, "store          {}", db.display())?;
    writeln!(out, "events         {}", stats.events)?;
    writeln!(out, "contacts       {}", stats.contacts)?;
    writeln!(out, "history        {} entries", stats.ledger_entries)?;
    writeln!(out, "outcomes       {}", stats.outcomes)?;
    writeln!(out, "size           {:.1} MB", stats.bytes as f64 / 1e6)?;
    match active {
        Some(m) => writeln!(out, "active model   v{} {}", m.version, m.name)?,
        None => writeln!(out, "active model   none")?,
    }
    super::emit(&out)?;
    Ok(ExitCode::SUCCESS)
}

pub fn rescore(db: &Path) -> Result<ExitCode> {
    let mut store = store::open_existing(db)?;
    let Some((version, _)) = store.active_model()? else {
        bail!("no active model: run `leadscore model add FILE --activate`");
    };
    super::model::activate_with_bar(store.as_mut(), version, "rescoring")?;
    Ok(ExitCode::SUCCESS)
}

pub fn erase(db: &Path, id: &str) -> Result<ExitCode> {
    let mut store = store::open_existing(db)?;
    let Some(report) = store.erase(id)? else {
        bail!("no contact {id:?} in the store");
    };
    eprintln!(
        "erased contact {} (ids {}): {} event(s), {} history entries, {} outcome(s); its ids are tombstoned (hashed) so replayed events are ignored",
        report.contact,
        report.ids.join(", "),
        report.events,
        report.ledger_entries,
        report.outcomes
    );
    Ok(ExitCode::SUCCESS)
}

pub fn export(db: &Path, id: &str) -> Result<ExitCode> {
    let store = store::open_existing(db)?;
    let Some(value) = leadscore_store::export_contact(store.as_ref(), id)? else {
        bail!("no contact {id:?} in the store");
    };
    super::emit(&(serde_json::to_string_pretty(&value)? + "\n"))?;
    Ok(ExitCode::SUCCESS)
}

/// `export` without `--contact`: the whole log as Segment JSON lines (one
/// contact's messages at a time, as stored), or with `outcomes` the
/// recorded outcomes as CSV; to standard output, or to `out`: written
/// beside it, synced and renamed into place once complete, so no
/// half-written file is ever left under that name.
pub fn export_all(db: &Path, outcomes: bool, out: Option<&Path>) -> Result<ExitCode> {
    let store = store::open_existing(db)?;
    let write = |sink: &mut dyn Write| {
        if outcomes {
            write_outcomes(store.as_ref(), sink)
        } else {
            write_log(store.as_ref(), sink)
        }
    };
    let summary = match out {
        None => {
            let mut sink = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
            let summary = write(&mut sink)?;
            sink.flush()?;
            summary
        }
        Some(out) => {
            let mut name = out.as_os_str().to_owned();
            name.push(".partial");
            let partial = PathBuf::from(name);
            let written = (|| -> Result<String> {
                let file = File::create(&partial)
                    .with_context(|| format!("cannot create {}", partial.display()))?;
                let mut sink = std::io::BufWriter::with_capacity(1 << 20, file);
                let summary = write(&mut sink)?;
                sink.into_inner().map_err(|e| e.into_error())?.sync_all()?;
                Ok(summary)
            })();
            if written.is_err() {
                let _ = std::fs::remove_file(&partial);
            }
            let summary = written?;
            std::fs::rename(&partial, out).with_context(|| {
                format!("cannot move {} to {}", partial.display(), out.display())
            })?;
            summary
        }
    };
    eprintln!("exported {summary}");
    Ok(ExitCode::SUCCESS)
}

/// Every stored message, one JSON line each; what was written.
fn write_log(store: &dyn leadscore_store::Store, out: &mut dyn Write) -> Result<String> {
    let (mut messages, mut contacts) = (0u64, 0u64);
    let mut failed: Option<std::io::Error> = None;
    let bar = progress::count("contacts");
    store.each_log(&mut |log| {
        if failed.is_some() {
            return;
        }
        contacts += 1;
        bar.inc(1);
        for m in &log.messages {
            if let Err(e) = writeln!(out, "{}", m.stored_json()) {
                failed = Some(e);
                return;
            }
            messages += 1;
        }
    })?;
    bar.finish_and_clear();
    if let Some(e) = failed {
        return Err(e.into());
    }
    Ok(format!("{messages} message(s) of {contacts} contact(s)"))
}

/// The recorded outcomes as CSV (`import --outcomes` reads it back).
fn write_outcomes(store: &dyn leadscore_store::Store, out: &mut dyn Write) -> Result<String> {
    let outcomes = store.outcomes()?;
    let mut csv = csv::Writer::from_writer(out);
    csv.write_record(["contact_id", "outcome", "at", "value"])?;
    for o in &outcomes {
        csv.write_record([
            o.contact_id.clone(),
            o.outcome.clone(),
            o.at.to_string(),
            o.value.map(|v| v.to_string()).unwrap_or_default(),
        ])?;
    }
    csv.flush()?;
    Ok(format!("{} outcome(s)", outcomes.len()))
}
