//! `leadscore check`: validate models, and with `--events` see how each
//! meets a real log.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use leadscore_core::batch::{contacts_as_of_chunks, ContactLog};
use leadscore_core::coverage::Coverage;
use leadscore_core::model::Model;
use leadscore_core::time::Timestamp;

use crate::load;

pub fn run(models: &[PathBuf], events: &[PathBuf], as_of: Option<&str>) -> Result<ExitCode> {
    // The log is read once, for every model.
    let log = if events.is_empty() {
        None
    } else {
        let (messages, skipped) = load::messages(events, false)?;
        load::report_skipped(&skipped);
        let latest = messages.iter().flatten().map(|m| m.timestamp).max();
        let t = match as_of {
            Some(text) => load::as_of(Some(text))?,
            None => latest.unwrap_or(Timestamp(0)),
        };
        Some((contacts_as_of_chunks(messages, Vec::new(), t), t))
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
                if let Some((contacts, t)) = &log {
                    text += &coverage(&model, contacts, *t)?;
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

/// The report of [`Coverage`]: each rule's contacts, the names no rule
/// reads, and the names that look like a rule's misspelt.
fn coverage(model: &Model, contacts: &[ContactLog], t: Timestamp) -> Result<String> {
    let mut coverage = Coverage::new(model);
    coverage.add(model, contacts, t);
    let coverage = coverage.finish(model);
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
    for miss in &coverage.near_misses {
        writeln!(
            out,
            "  warning: {:?} ({} messages) is read by no rule; rules read {:?}: a different spelling?",
            miss.name, miss.messages, miss.rule_name
        )?;
    }
    Ok(out)
}
