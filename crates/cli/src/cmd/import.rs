//! `leadscore import`: event files, a contacts file and sales outcomes
//! into the store.

use std::fs::File;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc::SyncSender;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use leadscore_core::event::Message;
use leadscore_core::time::Timestamp;
use leadscore_input::{for_each_chunk, read_contacts_mapped, ColumnMap, ReadOptions, Skipped};
use leadscore_store::{Incoming, IngestReport};
use rayon::prelude::*;
use serde_json::{json, Value};

use crate::{load, progress, store};

/// What `leadscore import` was asked to do.
pub struct Import<'a> {
    pub files: &'a [PathBuf],
    pub contacts: Option<&'a Path>,
    /// Sales outcomes to record (as `POST /api/v1/outcomes`).
    pub outcomes: Option<&'a Path>,
    pub id_column: &'a str,
    pub map: &'a [String],
    pub skip_invalid: bool,
    pub batch: usize,
    pub report_commits: bool,
}

pub fn run(db: &Path, args: Import<'_>) -> Result<ExitCode> {
    if args.files.is_empty() && args.contacts.is_none() && args.outcomes.is_none() {
        bail!(
            "nothing to import: give event files (or `-` for stdin), --contacts FILE and/or --outcomes FILE"
        );
    }
    // Read first, so that a bad outcomes file stops the import before
    // anything is written.
    let outcomes = args
        .outcomes
        .map(super::evaluate::read_outcomes)
        .transpose()?;
    let mut store = store::open(db)?;
    if args.files.is_empty() && args.contacts.is_none() {
        return add_outcomes(store.as_mut(), outcomes.unwrap_or_default());
    }
    store.prepare_bulk_load()?;
    if store.active_model()?.is_none() {
        eprintln!(
            "note: no active model: events are stored but not scored until `leadscore model add FILE --activate`"
        );
    }
    let started = Instant::now();
    // Two stages: this thread reads and prepares messages (in parallel),
    // a writer thread commits them, so parsing overlaps the transactions.
    let (batches, received) = std::sync::mpsc::sync_channel::<Vec<Incoming>>(2);
    let mut dates = OddDates::new(leadscore_store::now());
    let (total, skipped) = std::thread::scope(|scope| -> Result<(IngestReport, Skipped)> {
        let writer = scope.spawn(|| -> Result<IngestReport> {
            let mut total = IngestReport::default();
            let mut committed: u64 = 0;
            for batch in received {
                for i in &batch {
                    dates.see(i.message.timestamp);
                }
                let report = store.ingest(batch)?;
                committed += report.accepted + report.duplicates + report.replaced + report.erased;
                total += report;
                if args.report_commits {
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "committed {committed}")?;
                    out.flush()?;
                }
            }
            Ok(total)
        });
        let read = read_into(&batches, &args);
        drop(batches);
        let total = writer
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))?;
        Ok((total, read?))
    })?;
    load::report_skipped(&skipped);
    let seconds = started.elapsed().as_secs_f64();
    let seen = total.accepted + total.duplicates + total.replaced + total.erased;
    eprintln!(
        "imported {} new message(s) of {seen} in {seconds:.1} s ({:.0} messages/s): {} duplicate(s) ignored, {} replaced by an earlier copy, {} of erased contacts ignored; {} folded in order, {} contact(s) re-folded, {} history entries{}",
        total.accepted,
        seen as f64 / seconds.max(1e-9),
        total.duplicates,
        total.replaced,
        total.erased,
        total.absorbed,
        total.refolded,
        total.ledger_entries,
        if total.scored { "" } else { " (not scored: no active model)" },
    );
    dates.note();
    add_outcomes(store.as_mut(), outcomes.unwrap_or_default())
}

/// The time of the identify calls made of a contacts file's rows: before
/// any event, on purpose (so not an odd date).
const CONTACT_ROWS: Timestamp = Timestamp(0);

/// Messages dated after the import's start or before 2000: a wrong year,
/// or seconds read as milliseconds (1970), said once at the end.
struct OddDates {
    now: Timestamp,
    future: (u64, Option<Timestamp>),
    ancient: (u64, Option<Timestamp>),
}

impl OddDates {
    fn new(now: Timestamp) -> OddDates {
        OddDates {
            now,
            future: (0, None),
            ancient: (0, None),
        }
    }

    fn see(&mut self, t: Timestamp) {
        if t > self.now {
            self.future.0 += 1;
            self.future.1 = self.future.1.max(Some(t));
        } else if t < leadscore_store::IMPLAUSIBLY_OLD && t != CONTACT_ROWS {
            self.ancient.0 += 1;
            self.ancient.1 = Some(self.ancient.1.map_or(t, |e| e.min(t)));
        }
    }

    fn note(&self) {
        if let (n, Some(latest)) = self.future {
            eprintln!(
                "note: {n} message(s) are dated after now, the latest {latest}: they count in scores from those dates on (a wrong year?)"
            );
        }
        if let (n, Some(earliest)) = self.ancient {
            eprintln!(
                "note: {n} message(s) are dated before 2000, the earliest {earliest}: a timestamp in seconds read as milliseconds, or a default date?"
            );
        }
    }
}

/// Records `import --outcomes` in the store (one transaction), saying how
/// many were already there.
fn add_outcomes(
    store: &mut dyn leadscore_store::Store,
    outcomes: Vec<leadscore_store::Outcome>,
) -> Result<ExitCode> {
    if outcomes.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let report = store.add_outcomes(&outcomes)?;
    eprintln!(
        "recorded {} outcome(s) of {}: {} already recorded, {} of erased contacts ignored",
        report.added,
        outcomes.len(),
        report.duplicates,
        report.erased
    );
    Ok(ExitCode::SUCCESS)
}

/// Reads the contacts file and event files into batches for the writer.
/// A closed channel means the writer failed: stop, its error is reported.
fn read_into(batches: &SyncSender<Vec<Incoming>>, args: &Import<'_>) -> Result<Skipped> {
    let send = |messages: Vec<Message>| -> bool {
        let incoming: Vec<Incoming> = messages.into_par_iter().map(Incoming::new).collect();
        let mut incoming = incoming.into_iter();
        loop {
            let batch: Vec<Incoming> = incoming.by_ref().take(args.batch.max(1)).collect();
            if batch.is_empty() {
                return true;
            }
            if batches.send(batch).is_err() {
                return false;
            }
        }
    };
    if let Some(path) = args.contacts {
        let file =
            File::open(path).with_context(|| format!("cannot open contacts {}", path.display()))?;
        let rows = read_contacts_mapped(
            BufReader::new(file),
            &path.display().to_string(),
            args.id_column,
            &column_map(args.map)?,
        )?;
        let messages = rows
            .into_iter()
            .map(|(id, traits)| contact_identify(&id, traits))
            .collect::<Result<Vec<_>>>()?;
        if !send(messages) {
            return Ok(Skipped::default());
        }
    }
    let options = ReadOptions {
        skip_invalid: args.skip_invalid,
        ..ReadOptions::default()
    };
    let mut skipped = Skipped::default();
    for path in args.files {
        let (reader, name, size) = load::open_events(path)?;
        let bar = progress::bytes(size, "importing");
        let mut open = true;
        let more = for_each_chunk(
            BufReader::with_capacity(1 << 20, reader),
            &name,
            &options,
            |chunks, bytes| -> Result<()> {
                open = open && send(chunks.into_iter().flatten().collect());
                bar.set_position(bytes);
                Ok(())
            },
        )?;
        bar.finish_and_clear();
        skipped.count += more.count;
        skipped.first.extend(more.first);
        if !open {
            break;
        }
    }
    Ok(skipped)
}

/// Parses `--map COLUMN=TRAIT` options (`COLUMN=` leaves the column out).
fn column_map(options: &[String]) -> Result<ColumnMap> {
    let mut map = ColumnMap::new();
    for option in options {
        let Some((column, name)) = option.split_once('=') else {
            bail!("--map {option:?}: expected COLUMN=TRAIT (or COLUMN= to leave it out)");
        };
        if column.is_empty() {
            bail!("--map {option:?}: the column name is empty");
        }
        map.insert(
            column.to_string(),
            (!name.is_empty()).then(|| name.to_string()),
        );
    }
    Ok(map)
}

/// A contacts-file row as an identify call at the epoch: traits older than
/// any event, exactly as `leadscore score --contacts` treats them; its
/// derived message id makes re-importing the same row a duplicate.
fn contact_identify(id: &str, traits: serde_json::Map<String, Value>) -> Result<Message> {
    Message::from_json(
        json!({"type": "identify", "userId": id, "traits": traits, "timestamp": CONTACT_ROWS.to_string()}),
        None,
        None,
    )
    .map_err(|e| anyhow::anyhow!("contact {id:?}: {e}"))
}
