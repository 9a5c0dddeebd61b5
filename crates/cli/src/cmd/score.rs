//! `leadscore score`: score every contact as of t, in parallel, in id order.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use leadscore_core::batch::{contacts_as_of, ContactLog};
use leadscore_core::fold::ContactState;
use leadscore_core::model::Model;
use leadscore_core::score::{Contribution, Score};
use leadscore_core::time::Timestamp;
use rayon::prelude::*;
use serde_json::{Map, Value};

use crate::args::{Format, Input};
use crate::load;
use crate::output::ScoreWriter;
use crate::progress;

pub fn run(input: &Input, db: &Path, format: Format, explain: bool) -> Result<ExitCode> {
    if input.log.events.is_empty() {
        return run_store(input, db, format, explain);
    }
    let loaded = load::input(input, db, None)?;
    load::report_skipped(&loaded.skipped);
    let stdout = std::io::stdout().lock();
    let out = BufWriter::with_capacity(1 << 20, stdout);
    write_scores(
        &loaded.model,
        loaded.as_of,
        loaded.contacts,
        out,
        format,
        explain,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Contacts scored per parallel block: small enough that the memory of one
/// block's logs, freed as soon as they are folded, is reused by the next.
const BLOCK: usize = 1_024;

/// A scored row: contact id, score, explanation when asked for.
type Row = (String, Score, Option<Vec<Contribution>>);

/// Scores the store's log, one contact's log at a time: each is grouped
/// again as of t (its ids now are a superset of its ids then, so the
/// contacts it held at t come out exactly as from the whole log), so memory
/// holds one block of logs and the rows, never the whole log.
fn run_store(input: &Input, db: &Path, format: Format, explain: bool) -> Result<ExitCode> {
    let t = load::as_of(input.as_of.as_deref())?;
    let (model, store) = load::model_and_store(input, db)?;
    let store = store.expect("a store is opened when --events is absent");
    let mut file = FileRows::new(load::contacts_file(input)?);
    let bar = progress::count("scoring");
    let mut rows: Vec<Row> = Vec::new();
    let mut block: Vec<ContactLog> = Vec::new();
    store.each_log(&mut |log| {
        let base = file.take(&log.ids);
        block.extend(contacts_as_of(log.messages, base, t));
        if block.len() >= BLOCK {
            let done = fold_block(&model, t, std::mem::take(&mut block), explain);
            bar.inc(done.len() as u64);
            rows.extend(done);
        }
    })?;
    // Contacts-file rows whose ids the store never saw.
    block.extend(contacts_as_of(Vec::new(), file.rest(), t));
    rows.extend(fold_block(&model, t, block, explain));
    bar.finish_and_clear();
    rows.par_sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let stdout = std::io::stdout().lock();
    let mut writer = ScoreWriter::new(BufWriter::with_capacity(1 << 20, stdout), format, explain)?;
    for (id, score, explanation) in &rows {
        writer.write(id, score, explanation.as_deref())?;
    }
    writer.finish()?;
    Ok(ExitCode::SUCCESS)
}

/// Contacts-file rows by id, each with its place in the file: rows for two
/// ids of one contact apply in file order, as when the whole log is
/// grouped at once.
struct FileRows(HashMap<String, Vec<(usize, Traits)>>);

/// A contact's traits from the contacts file.
type Traits = Map<String, Value>;

impl FileRows {
    fn new(rows: Vec<(String, Traits)>) -> FileRows {
        let mut by_id: HashMap<String, Vec<_>> = HashMap::new();
        for (i, (id, traits)) in rows.into_iter().enumerate() {
            by_id.entry(id).or_default().push((i, traits));
        }
        FileRows(by_id)
    }

    /// Removes the rows of `ids`, in file order.
    fn take(&mut self, ids: &[String]) -> Vec<(String, Traits)> {
        let mut rows: Vec<(usize, String, Traits)> = ids
            .iter()
            .filter_map(|id| self.0.remove_entry(id))
            .flat_map(|(id, rows)| rows.into_iter().map(move |(i, m)| (i, id.clone(), m)))
            .collect();
        rows.sort_by_key(|r| r.0);
        rows.into_iter().map(|(_, id, m)| (id, m)).collect()
    }

    /// Removes every row left, in file order.
    fn rest(&mut self) -> Vec<(String, Traits)> {
        let ids: Vec<String> = self.0.keys().cloned().collect();
        self.take(&ids)
    }
}

/// Folds a block of contacts on all cores.
fn fold_block(model: &Model, t: Timestamp, block: Vec<ContactLog>, explain: bool) -> Vec<Row> {
    block
        .into_par_iter()
        .map(|contact| {
            let state = ContactState::fold(model, contact.base_traits.as_ref(), &contact.messages);
            let score = state.score_at(model, t).expect("messages are as of t");
            let explanation = explain.then(|| state.explain(model, t, None).rules);
            (contact.id, score, explanation)
        })
        .collect()
}

/// Scores in parallel, block by block, and writes rows in id order. Each
/// contact's log is dropped once folded, so `score` never holds the parsed
/// `properties` of more than one block at a time.
pub fn write_scores(
    model: &Model,
    t: Timestamp,
    contacts: Vec<ContactLog>,
    out: impl Write,
    format: Format,
    explain: bool,
) -> Result<()> {
    let bar = progress::items(contacts.len() as u64, "scoring");
    let mut writer = ScoreWriter::new(out, format, explain)?;
    let mut contacts = contacts.into_iter();
    loop {
        let block: Vec<ContactLog> = contacts.by_ref().take(BLOCK).collect();
        if block.is_empty() {
            break;
        }
        let rows = fold_block(model, t, block, explain);
        for (id, score, explanation) in &rows {
            writer.write(id, score, explanation.as_deref())?;
        }
        bar.inc(rows.len() as u64);
    }
    bar.finish_and_clear();
    writer.finish()
}
