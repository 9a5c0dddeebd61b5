//! `leadscore generate`: write a synthetic data set.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use leadscore_synth::{write_contacts, write_events, Config};

use crate::progress;

/// Parses `--end`: a date (its midnight, UTC) or `today`, in seconds since
/// the epoch.
pub fn parse_end(text: &str) -> Result<i64, String> {
    if text == "today" {
        return Ok(super::demo::today());
    }
    let date: jiff::civil::Date = text
        .parse()
        .map_err(|_| format!("expected a date, YYYY-MM-DD, or `today`; got {text:?}"))?;
    date.to_zoned(jiff::tz::TimeZone::UTC)
        .map(|day| day.timestamp().as_second())
        .map_err(|e| format!("{text}: {e}"))
}

/// `end`: where the period ends (seconds since the epoch, a midnight), when
/// not [`leadscore_synth::DEFAULT_START`] + `days`.
pub fn run(contacts: u64, days: u32, seed: u64, end: Option<i64>, out: &Path) -> Result<ExitCode> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let config = match end {
        Some(end) => Config::ending(contacts, days, seed, end),
        None => Config::new(contacts, days, seed),
    };
    let events_path = out.join("events.jsonl");
    let started = Instant::now();
    let file = File::create(&events_path)
        .with_context(|| format!("cannot create {}", events_path.display()))?;
    let mut writer = BufWriter::with_capacity(1 << 20, file);
    let bar = progress::items(contacts, "generating");
    let events = write_events(&config, &mut writer, |done| bar.set_position(done))?;
    std::io::Write::flush(&mut writer)?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let contacts_path = out.join("contacts.csv");
    let mut csv = BufWriter::new(
        File::create(&contacts_path)
            .with_context(|| format!("cannot create {}", contacts_path.display()))?,
    );
    let rows = write_contacts(&config, &mut csv)?;
    std::io::Write::flush(&mut csv)?;
    let day = |seconds: i64| {
        jiff::Timestamp::from_second(seconds)
            .map_or_else(|_| seconds.to_string(), |t| t.strftime("%F").to_string())
    };
    eprintln!(
        "wrote {events} messages for {contacts} contacts over {days} days ({} to {}, UTC) to {} in {seconds:.2}s ({:.0} messages/s), {rows} rows to {}",
        day(config.start),
        day(config.end() - 1),
        events_path.display(),
        events as f64 / seconds,
        contacts_path.display()
    );
    Ok(ExitCode::SUCCESS)
}
