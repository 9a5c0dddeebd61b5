//! `leadscore check`: validate models, and with `--events` see how each
//! meets a real log.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use leadscore_core::batch::{contacts_as_of_chunks, ContactLog};
use leadscore_core::coverage::Coverage;
use leadscore_core::time::Timestamp;

use crate::load;

/// Where the log to run the models over comes from.
enum Log {
    /// Event files, read once for every model.
    Files(Vec<ContactLog>, Timestamp),
    /// The store's log, read one contact at a time for each model.
    Store(Box<dyn leadscore_store::Store>, Timestamp),
}

pub fn run(
    models: &[PathBuf],
    events: &[PathBuf],
    store: Option<&Path>,
    as_of: Option<&str>,
    strict: bool,
) -> Result<ExitCode> {
    let log = if let Some(db) = store {
        let t = load::as_of(as_of)?;
        Some(Log::Store(crate::store::open_existing(db)?, t))
    } else if events.is_empty() {
        None
    } else {
        let (messages, skipped) = load::messages(events, false)?;
        load::report_skipped(&skipped);
        let latest = messages.iter().flatten().map(|m| m.timestamp).max();
        let t = match as_of {
            Some(text) => load::as_of(Some(text))?,
            None => latest.unwrap_or(Timestamp(0)),
        };
        Some(Log::Files(
            contacts_as_of_chunks(messages, Vec::new(), t),
            t,
        ))
    };
    let mut ok = true;
    for path in models {
        match load::model(path) {
            Ok(model) => {
                let mut text = format!(
                    "{}: ok: model {:?}: {}\n",
                    path.display(),
                    model.name,
                    model.summary()
                );
                if !model.triggers.is_empty() {
                    text += "  note: in a store, triggers record firings into the outbox, delivered by `leadscore serve` or `leadscore outbox deliver` (docs/triggers.md); `leadscore triggers` simulates them offline\n";
                }
                let coverage = match &log {
                    None => None,
                    Some(Log::Files(contacts, t)) => {
                        let mut coverage = Coverage::new(&model);
                        coverage.add(&model, contacts, *t);
                        Some((coverage.finish(&model), *t))
                    }
                    Some(Log::Store(store, t)) => {
                        let mut coverage = Coverage::new(&model);
                        load::blocks(store.as_ref(), Vec::new(), *t, &mut |block| {
                            coverage.add(&model, &block, *t)
                        })?;
                        Some((coverage.finish(&model), *t))
                    }
                };
                if let Some((coverage, t)) = coverage {
                    text += &report(&coverage, t)?;
                    let misspelt = coverage.near_misses.len()
                        + coverage
                            .unset_fields
                            .iter()
                            .filter(|f| f.near.is_some())
                            .count();
                    if strict && misspelt > 0 {
                        ok = false;
                        eprintln!(
                            "{}: {misspelt} name(s) or key(s) spelt another way in the log (--strict)",
                            path.display()
                        );
                    }
                }
                super::emit(&text)?
            }
            Err(e) => {
                ok = false;
                eprintln!("{}: {e:#}", path.display());
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The report of a [`Coverage`]: each rule's contacts, the names no rule
/// reads, and the names that look like a rule's misspelt.
fn report(coverage: &Coverage, t: Timestamp) -> Result<String> {
    let mut out = String::new();
    writeln!(
        out,
        "  over the log as of {t}: {} contacts, {} messages",
        coverage.contacts, coverage.messages
    )?;
    let width = coverage.rules.iter().map(|r| r.id.len()).max().unwrap_or(0);
    for rule in &coverage.rules {
        let never = match (&rule.event, rule.contacts) {
            (Some(event), 0) if coverage.messages_named(event) == 0 => {
                format!("   never: no {event:?} in the log")
            }
            (_, 0) => "   never applies".to_string(),
            _ => String::new(),
        };
        writeln!(
            out,
            "    {:<10} {:<width$} {:>8} contacts{never}",
            rule.kind, rule.id, rule.contacts
        )?;
    }
    if !coverage.unread.is_empty() {
        let unread = coverage.unread.iter().map(|(name, n)| (name.as_str(), *n));
        writeln!(
            out,
            "  events no rule reads: {}",
            super::counted(unread, 10)
        )?;
    }
    let never: Vec<String> = coverage
        .unset_fields
        .iter()
        .filter(|f| f.near.is_none())
        .map(|f| format!("{}.{} ({})", f.object, f.key, f.rules.join(", ")))
        .collect();
    if !never.is_empty() {
        writeln!(
            out,
            "  read by rules, set by nothing in the log: {}",
            never.join(", ")
        )?;
    }
    for field in &coverage.unset_fields {
        if let Some((near, calls)) = &field.near {
            writeln!(
                out,
                "  warning: {obj}.{key} (read by {rules}) is set by nothing in the log, {obj}.{near} is ({calls} calls): a different spelling?",
                obj = field.object,
                key = field.key,
                rules = field.rules.join(", "),
            )?;
        }
    }
    for miss in &coverage.near_misses {
        writeln!(
            out,
            "  warning: {:?} ({} messages) is read by no rule; rules read {:?}: a different spelling?",
            miss.name, miss.messages, miss.rule_name
        )?;
    }
    Ok(out)
}
