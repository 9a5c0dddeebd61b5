//! `leadscore score`: score every contact as of t, in parallel, in id order.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use leadscore_core::batch::ContactLog;
use leadscore_core::fold::ContactState;
use leadscore_core::model::Model;
use leadscore_core::score::{Contribution, Score};
use leadscore_core::time::Timestamp;
use rayon::prelude::*;

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

/// Scores the store's log one contact's log at a time
/// ([`load::store_blocks`]): memory holds one block of logs and the rows,
/// never the whole log.
fn run_store(input: &Input, db: &Path, format: Format, explain: bool) -> Result<ExitCode> {
    let mut rows: Vec<Row> = Vec::new();
    load::store_blocks(input, db, &mut |model, t, block| {
        rows.extend(fold_block(model, t, block, explain));
    })?;
    rows.par_sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let stdout = std::io::stdout().lock();
    let mut writer = ScoreWriter::new(BufWriter::with_capacity(1 << 20, stdout), format, explain)?;
    for (id, score, explanation) in &rows {
        writer.write(id, score, explanation.as_deref())?;
    }
    writer.finish()?;
    Ok(ExitCode::SUCCESS)
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
