//! `leadscore bench --store`: the store's figures on generated data — raw
//! append rate and import with live scoring, full rescore, stored state
//! size, point reads, segment summaries now and of the past, database size
//! per million events.

use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use leadscore_core::time::{Duration, Timestamp};

use leadscore_synth::{write_events, Config};
use serde_json::json;

use super::import::{run as import, Import};

pub(super) fn import_into(db: &Path, events: &Path) -> Result<f64> {
    let started = Instant::now();
    import(
        db,
        Import {
            files: &[events.to_path_buf()],
            contacts: None,
            outcomes: None,
            id_column: "id",
            map: &[],
            skip_invalid: false,
            batch: 10_000,
            report_commits: false,
        },
    )?;
    Ok(started.elapsed().as_secs_f64())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted
        .get(((sorted.len().max(1) - 1) as f64 * p).round() as usize)
        .copied()
        .unwrap_or_default()
}

/// Where the bench's two stores go: temporary SQLite files, or two fresh
/// schemas of the PostgreSQL database named by `--db`.
fn targets(dir: &Path, db: &Path) -> Result<(PathBuf, PathBuf, &'static str)> {
    let url = db.to_string_lossy();
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Ok((dir.join("raw.db"), dir.join("live.db"), "SQLite"));
    }
    let mut admin = postgres::Client::connect(&url, postgres::NoTls)?;
    let mut schema = |name: &str| -> Result<PathBuf> {
        admin.batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"
        ))?;
        let sep = if url.contains('?') { '&' } else { '?' };
        Ok(PathBuf::from(format!(
            "{url}{sep}options=-c%20search_path%3D{name}"
        )))
    };
    Ok((
        schema("leadscore_bench_raw")?,
        schema("leadscore_bench_live")?,
        "PostgreSQL",
    ))
}

pub fn run(db: &Path, contacts: u64, days: u32, out: Option<&Path>) -> Result<ExitCode> {
    let dir = tempfile::tempdir()?;
    let (raw_db, live_db, backend) = targets(dir.path(), db)?;
    let config = Config::new(contacts, days, 1);
    let events = dir.path().join("events.jsonl");
    let mut file = BufWriter::with_capacity(1 << 20, std::fs::File::create(&events)?);
    let generated = write_events(&config, &mut file, |_| {})?;
    drop(file);

    // Raw append: no active model, the log and identities only.
    let raw_s = import_into(&raw_db, &events)?;
    std::fs::remove_file(&raw_db).ok();

    // Import with live scoring under examples/b2b.toml.
    let db = live_db;
    let mut store = crate::store::open(&db)?;
    let version = super::bench_triggers::activate_b2b(store.as_mut())?;
    drop(store);
    let live_s = import_into(&db, &events)?;

    let mut store = crate::store::open(&db)?;
    let stats = store.stats()?;
    let started = Instant::now();
    let rescored = store.activate(version, &mut |_, _| {})?;
    let rescore_s = started.elapsed().as_secs_f64();

    // Stored state sizes and ids, in pages.
    let mut sizes = Vec::new();
    let mut ids = Vec::new();
    let mut lasts = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.contacts(after.as_deref(), 5_000)?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        for record in page {
            sizes.push(record.state_bytes as f64);
            lasts.extend(record.last_event);
            ids.push(record.id);
        }
    }
    sizes.sort_by(f64::total_cmp);

    // Point reads: a contact's score now, from its live state.
    let now = crate::load::as_of(None)?;
    let mut reads = Vec::new();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..10_000.min(ids.len() * 10) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let id = &ids[(state % ids.len() as u64) as usize];
        let started = Instant::now();
        let found = store.score_at(id, now)?;
        reads.push(started.elapsed().as_secs_f64() * 1e6);
        anyhow::ensure!(found.is_some(), "contact {id} not found");
    }
    reads.sort_by(f64::total_cmp);

    // Segment summaries: now (each stored state moved to now), the day
    // before the latest event and the median contact's latest event (the
    // contacts with later messages re-grouped from their logs).
    lasts.sort_unstable();
    let latest = lasts.last().copied().unwrap_or(now);
    let timed = |at: Timestamp, rewind: bool| -> Result<(f64, u64)> {
        let started = Instant::now();
        let summary = store.summary(Some(at), rewind)?;
        Ok((started.elapsed().as_secs_f64(), summary.contacts))
    };
    let (summary_now_s, _) = timed(now, false)?;
    let (summary_day_s, _) = timed(latest.minus(Duration::from_seconds(86_400)), true)?;
    let halfway = lasts.get(lasts.len() / 2).copied().unwrap_or(now);
    let (summary_halfway_s, halfway_contacts) = timed(halfway, true)?;

    let figures = json!({
        "machine_cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "backend": backend,
        "model": "examples/b2b.toml",
        "contacts": stats.contacts,
        "messages": generated,
        "events_stored": stats.events,
        "import_raw_messages_per_s": generated as f64 / raw_s,
        "import_live_messages_per_s": generated as f64 / live_s,
        "live_scoring_overhead": live_s / raw_s,
        "rescore_s": rescore_s,
        "rescore_events_per_s": stats.events as f64 / rescore_s,
        "rescore_contacts": rescored.contacts,
        "state_bytes_median": percentile(&sizes, 0.5),
        "state_bytes_p90": percentile(&sizes, 0.9),
        "point_read_us_p50": percentile(&reads, 0.5),
        "point_read_us_p99": percentile(&reads, 0.99),
        "summary_now_s": summary_now_s,
        "summary_day_before_latest_s": summary_day_s,
        "summary_halfway_s": summary_halfway_s,
        "summary_halfway_contacts": halfway_contacts,
        "summary_halfway_over_rescore": summary_halfway_s / rescore_s,
        "db_bytes": stats.bytes,
        "db_bytes_per_million_events": stats.bytes as f64 / stats.events.max(1) as f64 * 1e6,
        "ledger_entries": stats.ledger_entries,
    });
    let f = |key: &str| figures[key].as_f64().unwrap_or_default();
    let text = format!(
        "leadscore bench --store ({backend}, {} contacts, {} messages)\n  import, raw append             {:>10.0} messages/s\n  import, live scoring           {:>10.0} messages/s ({:.2}x the raw time)\n  full rescore                   {:>10.0} events/s ({:.1} s)\n  stored state                   median {:.0} bytes, p90 {:.0}\n  point read (score now)         p50 {:.0} us, p99 {:.0} us\n  segment summary                now {:.3} s, a day back {:.3} s, halfway {:.3} s ({:.2}x the rescore)\n  database                       {:.0} MB per million events ({} history entries)\n",
        stats.contacts,
        generated,
        f("import_raw_messages_per_s"),
        f("import_live_messages_per_s"),
        f("live_scoring_overhead"),
        f("rescore_events_per_s"),
        rescore_s,
        f("state_bytes_median"),
        f("state_bytes_p90"),
        f("point_read_us_p50"),
        f("point_read_us_p99"),
        summary_now_s,
        summary_day_s,
        summary_halfway_s,
        f("summary_halfway_over_rescore"),
        f("db_bytes_per_million_events") / 1e6,
        stats.ledger_entries,
    );
    super::emit(&text)?;
    if let Some(out) = out {
        std::fs::write(out, serde_json::to_string_pretty(&figures)? + "\n")?;
    }
    Ok(ExitCode::SUCCESS)
}
