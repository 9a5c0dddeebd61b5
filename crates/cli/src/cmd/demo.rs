//! `leadscore demo`: the README's first command. Generates a small data set
//! in memory, scores it with `examples/ecommerce.toml`, shows the top
//! contacts and one explanation, then loads the same events into an embedded
//! SQLite store (live scores, history) and shows the top contact from it.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use leadscore_core::batch::contacts_as_of;
use leadscore_core::model::Model;
use leadscore_core::score::Status;
use leadscore_core::time::Timestamp;
use leadscore_input::{read_messages, ReadOptions};
use leadscore_store::{Incoming, SqliteStore, Store};
use leadscore_synth::{write_events, Config};
use rayon::prelude::*;

use super::explain::table;

const MODEL: &str = include_str!("../../../../examples/ecommerce.toml");

/// Where the demo's store goes.
pub const STORE: &str = "leadscore-demo.db";

/// Today's midnight UTC, seconds since the epoch.
pub(crate) fn today() -> i64 {
    leadscore_store::now().0.div_euclid(1_000_000_000 * 86_400) * 86_400
}

/// Midnight UTC 30 days ago: a time to list the demo store as of.
pub fn month_ago() -> Timestamp {
    Timestamp::from_seconds(today() - 30 * 86_400)
}

/// The generated data's settings: 240 days ending at today's midnight UTC
/// (so that a server over the demo store shows scores that are alive now,
/// not decayed since some fixed date), seed 42.
fn config(contacts: u64) -> Config {
    const DAYS: u32 = 240;
    Config::ending(contacts, DAYS, 42, today())
}

pub fn run(contacts: u64, store_path: &Path) -> Result<ExitCode> {
    // The store first: a path the demo may not replace is refused before
    // anything is generated or printed.
    let mut store = fresh_store(store_path)?;
    let model =
        Model::from_toml("examples/ecommerce.toml", MODEL).map_err(|e| anyhow::anyhow!("{e}"))?;
    let config = config(contacts);
    let mut jsonl = Vec::new();
    let generated = write_events(&config, &mut jsonl, |_| {})?;
    let (messages, _) = read_messages(&jsonl[..], "<demo>", &ReadOptions::default(), |_| {})
        .context("reading generated events")?;
    let t = Timestamp::from_seconds(config.end());
    let contacts = contacts_as_of(messages, Vec::new(), t);
    let mut scored: Vec<_> = contacts
        .par_iter()
        .map(|c| (c, c.score_as_of(&model, t)))
        .collect();
    let mut out = String::new();
    writeln!(
        out,
        "leadscore demo: {generated} synthetic messages, {} contacts, model {:?}, as of {t}\n",
        contacts.len(),
        model.name
    )?;
    let active: Vec<_> = scored
        .iter()
        .filter(|(_, s)| s.status == Status::Active)
        .collect();
    writeln!(
        out,
        "{} active, {} excluded",
        active.len(),
        scored.len() - active.len()
    )?;
    for (name, min) in model.tiers.iter().collect::<Vec<_>>().into_iter().rev() {
        let n = active.iter().filter(|(_, s)| s.tier == name).count();
        writeln!(out, "  tier {name:<6} (score >= {min:>3}): {n:>6} contacts")?;
    }
    scored.sort_by(|a, b| {
        (b.1.status == Status::Active)
            .cmp(&(a.1.status == Status::Active))
            .then(b.1.score.total_cmp(&a.1.score))
            .then(b.1.raw.total_cmp(&a.1.raw))
            .then(a.0.id.cmp(&b.0.id))
    });
    writeln!(
        out,
        "\ntop contacts:\n{:<12} {:>7} {:>7} {:>11} {:<6} {:<8}",
        "contact", "score", "fit", "engagement", "tier", "stage"
    )?;
    for (contact, s) in scored.iter().take(10) {
        writeln!(
            out,
            "{:<12} {:>7.2} {:>7.2} {:>11.2} {:<6} {:<8}",
            contact.id, s.score, s.fit, s.engagement, s.tier, s.stage
        )?;
    }
    if let Some((top, _)) = scored.first() {
        let (score, explanation) = top.explain_as_of(&model, t);
        writeln!(out, "\nwhy {} is on top:\n", top.id)?;
        out.push_str(&table(&model, top, t, &score, &explanation));
    }
    super::emit(&out)?;

    // The same events in the embedded store: live scores and history.
    let version = store.add_model("examples/ecommerce.toml", MODEL)?.version;
    store.activate(version, &mut |_, _| {})?;
    let incoming: Vec<Incoming> =
        read_messages(&jsonl[..], "<demo>", &ReadOptions::default(), |_| {})?
            .0
            .into_par_iter()
            .map(Incoming::new)
            .collect();
    let report = store.ingest(incoming)?;
    let mut out = String::new();
    writeln!(
        out,
        "\nstore {}: {} messages imported, live scores for {} contacts, {} history entries",
        store_path.display(),
        report.accepted,
        store.stats()?.contacts,
        report.ledger_entries
    )?;
    if let Some((top, batch)) = scored.first() {
        let (_, live) = store
            .score_at(&top.id, t)?
            .context("the top contact is in the store")?;
        writeln!(
            out,
            "{}: live score {:.2} (batch {:.2}), last changes:",
            top.id, live.score, batch.score
        )?;
        let history = store.history(&top.id)?;
        for entry in history.iter().rev().take(4).rev() {
            let at = entry.at.map_or_else(|| "-".to_string(), |t| t.to_string());
            let new = entry
                .new
                .as_ref()
                .map_or_else(|| "-".to_string(), ToString::to_string);
            writeln!(out, "  {at}  {new:<20} {}", entry.cause)?;
        }
        let db = store_path.display();
        writeln!(out, "\nexplore: leadscore --db {db} contact {}", top.id)?;
        writeln!(
            out,
            "         leadscore --db {db} history --contact {}",
            top.id
        )?;
        writeln!(out, "         leadscore --db {db} top --tier hot")?;
        writeln!(out, "         leadscore --db {db} top --summary")?;
        writeln!(
            out,
            "         leadscore --db {db} model dry-run examples/b2b.toml"
        )?;
    }
    super::emit(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// Opens a new store at `path`, replacing an earlier demo store there and
/// refusing to touch anything else: a store of real data at that path
/// (say `leadscore demo --store leadscore.db`) is left as it is.
fn fresh_store(path: &Path) -> Result<SqliteStore> {
    if path.exists() {
        let existing = SqliteStore::open(path).with_context(|| {
            format!(
                "{} exists and is not a leadscore store; choose another path",
                path.display()
            )
        })?;
        // Stores named like the default one were built by the demo before
        // it marked its stores.
        let legacy = path.file_name() == Some(std::ffi::OsStr::new(STORE));
        if !existing.is_demo()? && !legacy {
            bail!(
                "{} is a leadscore store that the demo did not build: the demo replaces only its own stores; choose another path",
                path.display()
            );
        }
        // Deleting the files under a running `serve --demo` would lose what
        // it acknowledged since: refuse while anything has the store open.
        existing.close_exclusive().map_err(|e| {
            anyhow::anyhow!(
                "{} is in use ({e}): stop the server or program using it (a running `leadscore serve --demo`?), or choose another path",
                path.display()
            )
        })?;
        for suffix in ["", "-wal", "-shm"] {
            let file = format!("{}{suffix}", path.display());
            if Path::new(&file).exists() {
                std::fs::remove_file(&file).with_context(|| format!("cannot remove {file}"))?;
            }
        }
    }
    let store = SqliteStore::open(path)?;
    store.mark_as_demo()?;
    Ok(store)
}
