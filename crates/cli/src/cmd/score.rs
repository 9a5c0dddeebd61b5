//! `leadscore score`: score every contact as of t, in parallel, in id order.

use std::io::{BufWriter, Write};
use std::process::ExitCode;

use anyhow::Result;
use leadscore_core::fold::ContactState;
use leadscore_core::score::{Contribution, Score};
use rayon::prelude::*;

use crate::args::{Format, Input};
use crate::load;
use crate::output::ScoreWriter;
use crate::progress;

pub fn run(input: &Input, format: Format, explain: bool) -> Result<ExitCode> {
    let loaded = load::input(input)?;
    load::report_skipped(&loaded.skipped);
    let stdout = std::io::stdout().lock();
    write_scores(
        &loaded,
        BufWriter::with_capacity(1 << 20, stdout),
        format,
        explain,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Scores in parallel in blocks (bounded memory for rows), writes in order.
pub fn write_scores(
    loaded: &load::Loaded,
    out: impl Write,
    format: Format,
    explain: bool,
) -> Result<()> {
    let (model, t) = (&loaded.model, loaded.as_of);
    let bar = progress::items(loaded.contacts.len() as u64, "scoring");
    let mut writer = ScoreWriter::new(out, format, explain)?;
    for block in loaded.contacts.chunks(16_384) {
        let rows: Vec<(Score, Option<Vec<Contribution>>)> = block
            .par_iter()
            .map(|contact| {
                let state =
                    ContactState::fold(model, contact.base_traits.as_ref(), &contact.messages);
                let score = state.score_at(model, t).expect("messages are as of t");
                let explanation = explain.then(|| state.explain(model, t, None).rules);
                (score, explanation)
            })
            .collect();
        for (contact, (score, explanation)) in block.iter().zip(&rows) {
            writer.write(&contact.id, score, explanation.as_deref())?;
        }
        bar.inc(block.len() as u64);
    }
    bar.finish_and_clear();
    writer.finish()
}
