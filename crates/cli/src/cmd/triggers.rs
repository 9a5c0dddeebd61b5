//! `leadscore triggers`: the firings a model's triggers would have made on
//! history (SPEC §3.3), computed in parallel per contact.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Result};
use leadscore_core::batch::ContactLog;
use leadscore_core::fold::sort_log;
use leadscore_core::model::Model;
use leadscore_core::time::Timestamp;
use leadscore_core::triggers::simulate;
use rayon::prelude::*;
use serde::Serialize;

use crate::args::{Format, Input};
use crate::load;

/// One printed firing.
#[derive(Serialize)]
struct Row {
    at: Timestamp,
    trigger: String,
    contact_id: String,
    score: f64,
    tier: String,
    grade: String,
    stage: String,
    actions: String,
}

pub fn run(input: &Input, db: &Path, from: Option<&str>, format: Format) -> Result<ExitCode> {
    let from = from.map(|t| load::as_of(Some(t))).transpose()?;
    let to = load::as_of(input.as_of.as_deref())?;
    if let Some(from) = from.filter(|from| *from > to) {
        bail!("--from {from} is after the end of the period ({to})");
    }
    let mut rows: Vec<Row> = Vec::new();
    if input.log.events.is_empty() {
        // The store's log, one contact at a time.
        load::store_blocks(input, db, &mut |model, to, block| {
            rows.extend(firings(model, to, from, block));
        })?;
    } else {
        let loaded = load::input(input, db, None)?;
        load::report_skipped(&loaded.skipped);
        rows = firings(&loaded.model, loaded.as_of, from, loaded.contacts);
    }
    rows.sort_by(|a, b| (a.at, &a.contact_id, &a.trigger).cmp(&(b.at, &b.contact_id, &b.trigger)));
    let mut out = BufWriter::new(std::io::stdout().lock());
    match format {
        Format::Csv => {
            let mut csv = csv::Writer::from_writer(&mut out);
            csv.write_record([
                "at",
                "trigger",
                "contact_id",
                "score",
                "tier",
                "grade",
                "stage",
                "actions",
            ])?;
            for r in &rows {
                csv.write_record([
                    r.at.to_string(),
                    r.trigger.clone(),
                    r.contact_id.clone(),
                    r.score.to_string(),
                    r.tier.clone(),
                    r.grade.clone(),
                    r.stage.clone(),
                    r.actions.clone(),
                ])?;
            }
            csv.flush()?;
        }
        Format::Jsonl => {
            for r in &rows {
                serde_json::to_writer(&mut out, r)?;
                out.write_all(b"\n")?;
            }
        }
    }
    out.flush()?;
    eprintln!("{} firing(s)", rows.len());
    Ok(ExitCode::SUCCESS)
}

/// Every firing of `contacts` up to `to` (from `from` on), in parallel.
fn firings(
    model: &Model,
    to: Timestamp,
    from: Option<Timestamp>,
    contacts: Vec<ContactLog>,
) -> Vec<Row> {
    contacts
        .into_par_iter()
        .flat_map_iter(|mut contact| {
            sort_log(&mut contact.messages);
            let (_, _, firings) =
                simulate(model, contact.base_traits.as_ref(), &contact.messages, to);
            let id = contact.id;
            firings
                .into_iter()
                .filter(|f| from.is_none_or(|from| f.at >= from))
                .map(|f| {
                    let trigger = &model.triggers[f.trigger];
                    Row {
                        at: f.at,
                        trigger: trigger.id.clone(),
                        contact_id: id.clone(),
                        score: f.score.score,
                        tier: f.score.tier.into(),
                        grade: f.score.grade.into(),
                        stage: f.score.stage.into(),
                        actions: trigger
                            .actions
                            .iter()
                            .map(|a| a.describe())
                            .collect::<Vec<_>>()
                            .join(";"),
                    }
                })
                .collect::<Vec<_>>()
        })
        .collect()
}
