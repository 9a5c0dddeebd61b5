//! `leadscore model …`: versions in the store.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use leadscore_store::{diff_models, RuleChange, Store};

use crate::args::ModelCommand;
use crate::{load, progress, store};

pub fn run(db: &Path, command: &ModelCommand) -> Result<ExitCode> {
    match command {
        ModelCommand::Add { file, activate } => add(db, file, *activate),
        ModelCommand::List => list(db),
        ModelCommand::Show { number } => {
            let store = store::open_existing(db)?;
            super::emit(&store.model_source(*number)?)?;
            Ok(ExitCode::SUCCESS)
        }
        ModelCommand::Diff { old, new } => diff(db, *old, *new),
        ModelCommand::DryRun { file, as_of, json } => dry_run(db, file, as_of.as_deref(), *json),
        ModelCommand::Activate { number } => {
            let mut store = store::open_existing(db)?;
            activate_with_bar(store.as_mut(), *number, "activating")?;
            Ok(ExitCode::SUCCESS)
        }
        ModelCommand::Rollback => {
            let mut store = store::open_existing(db)?;
            let Some(previous) = store.previous_version()? else {
                bail!("no previously active version to roll back to");
            };
            activate_with_bar(store.as_mut(), previous, "rolling back")?;
            Ok(ExitCode::SUCCESS)
        }
        ModelCommand::Challenger { number, detach: _ } => {
            let mut store = store::open_existing(db)?;
            store.set_challenger(*number)?;
            match number {
                Some(v) => eprintln!("version {v} attached as the challenger"),
                None => eprintln!("challenger detached"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn add(db: &Path, file: &Path, activate: bool) -> Result<ExitCode> {
    let source = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read model {}", file.display()))?;
    let mut store = store::open(db)?;
    let name = file.display().to_string();
    let added = store
        .add_model(&name, &source)
        .map_err(|e| anyhow::anyhow!("invalid model\n{e}"))?;
    eprintln!(
        "model {} stored as version {} ({})",
        name,
        added.version,
        &added.hash[..12]
    );
    if activate {
        activate_with_bar(store.as_mut(), added.version, "activating")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Activates a version with a progress bar and reports what changed.
pub fn activate_with_bar(store: &mut dyn Store, version: u32, what: &str) -> Result<()> {
    let bar = progress::items(0, what);
    let report = store.activate(version, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })?;
    bar.finish_and_clear();
    eprintln!(
        "version {version} active: {} contact(s) scored, {} changed{}",
        report.contacts,
        report.changed,
        if report.resumed {
            " (resumed an interrupted activation)"
        } else {
            ""
        }
    );
    Ok(())
}

fn list(db: &Path) -> Result<ExitCode> {
    let store = store::open_existing(db)?;
    let mut out = String::new();
    writeln!(
        out,
        "{:<8} {:<7} {:<14} {:<26} name",
        "version", "active", "hash", "added"
    )?;
    for m in store.models()? {
        writeln!(
            out,
            "{:<8} {:<7} {:<14} {:<26} {}",
            m.version,
            if m.active { "*" } else { "" },
            &m.hash[..12],
            m.added_at.to_string(),
            m.name
        )?;
    }
    super::emit(&out)?;
    Ok(ExitCode::SUCCESS)
}

fn diff(db: &Path, old: u32, new: u32) -> Result<ExitCode> {
    let store = store::open_existing(db)?;
    let changes = diff_models(&store.model_source(old)?, &store.model_source(new)?)?;
    let mut out = String::new();
    if changes.is_empty() {
        writeln!(out, "versions {old} and {new} have the same rules")?;
    }
    for change in changes {
        match change {
            RuleChange::Added { kind, id } => writeln!(out, "+ {kind} {id}")?,
            RuleChange::Removed { kind, id } => writeln!(out, "- {kind} {id}")?,
            RuleChange::Changed { kind, id, fields } => {
                writeln!(out, "~ {kind} {id}")?;
                for field in fields {
                    writeln!(out, "    {field}")?;
                }
            }
        }
    }
    super::emit(&out)?;
    Ok(ExitCode::SUCCESS)
}

fn dry_run(db: &Path, file: &Path, as_of: Option<&str>, json: bool) -> Result<ExitCode> {
    let candidate = load::model(file)?;
    let at = load::as_of(as_of)?;
    let store = store::open_existing(db)?;
    let bar = progress::items(0, "dry run");
    let report = store.dry_run(&candidate, at, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })?;
    bar.finish_and_clear();
    if json {
        super::emit(&(serde_json::to_string_pretty(&report)? + "\n"))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = String::new();
    writeln!(
        out,
        "dry run of {} over {} contact(s), both models as of {}",
        file.display(),
        report.contacts,
        report.as_of
    )?;
    writeln!(out, "contacts changing tier: {}", report.tier_changes)?;
    writeln!(out, "\n{:<16} {:>8} {:>8}", "tier", "now", "after")?;
    let mut tiers: Vec<&String> = report
        .tiers_before
        .keys()
        .chain(report.tiers_after.keys())
        .collect();
    tiers.sort();
    tiers.dedup();
    for tier in tiers {
        let count = |m: &std::collections::BTreeMap<String, u64>| m.get(tier).copied().unwrap_or(0);
        let name = if tier.is_empty() { "(none)" } else { tier };
        writeln!(
            out,
            "{name:<16} {:>8} {:>8}",
            count(&report.tiers_before),
            count(&report.tiers_after)
        )?;
    }
    let (b, a) = (report.score_before, report.score_after);
    writeln!(out, "\n{:<16} {:>8} {:>8}", "score", "now", "after")?;
    for (label, x, y) in [
        ("mean", b.mean, a.mean),
        ("median", b.p50, a.p50),
        ("p90", b.p90, a.p90),
    ] {
        writeln!(out, "{label:<16} {x:>8.2} {y:>8.2}")?;
    }
    if !report.top_movers.is_empty() {
        writeln!(out, "\ntop movers")?;
        for m in &report.top_movers {
            writeln!(
                out,
                "  {:<24} {:>8.2} -> {:<8.2} {} -> {}",
                m.contact,
                m.before,
                m.after,
                if m.tier_before.is_empty() {
                    "-"
                } else {
                    &m.tier_before
                },
                if m.tier_after.is_empty() {
                    "-"
                } else {
                    &m.tier_after
                }
            )?;
        }
    }
    super::emit(&out)?;
    Ok(ExitCode::SUCCESS)
}
