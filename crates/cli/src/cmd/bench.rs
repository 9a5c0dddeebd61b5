//! `leadscore bench`: throughput figures on generated data, each stage timed
//! in this process, plus a SQLite baseline for the plain event-count part.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use leadscore_core::batch::{contacts_as_of_chunks, ContactLog};
use leadscore_core::fold::ContactState;
use leadscore_core::model::Model;
use leadscore_core::time::Timestamp;
use leadscore_input::{read_message_chunks, ReadOptions};
use leadscore_synth::{write_events, Config};
use serde_json::json;

use crate::args::Format;

const B2B: &str = include_str!("../../../../examples/b2b.toml");

fn rate(n: u64, seconds: f64) -> f64 {
    n as f64 / seconds
}

pub fn run(contacts: u64, days: u32, out: Option<&Path>) -> Result<ExitCode> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let model = Model::from_toml("examples/b2b.toml", B2B).map_err(|e| anyhow::anyhow!("{e}"))?;
    let config = Config::new(contacts, days, 1);
    let dir = std::env::temp_dir().join(format!("leadscore-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("events.jsonl");

    let started = Instant::now();
    let mut file = BufWriter::with_capacity(1 << 20, File::create(&path)?);
    let events = write_events(&config, &mut file, |_| {})?;
    std::io::Write::flush(&mut file)?;
    drop(file);
    let generate_s = started.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(&path)?.len();

    // End to end: read + parse + group + fold + write CSV (to a sink), all cores.
    let t = Timestamp::from_seconds(config.end());
    let started = Instant::now();
    let reader = BufReader::with_capacity(1 << 20, File::open(&path)?);
    let options = ReadOptions::default();
    let (chunks, _) = read_message_chunks(reader, "events.jsonl", &options, |_| {})?;
    let parse_s = started.elapsed().as_secs_f64();
    let grouped = contacts_as_of_chunks(chunks, Vec::new(), t);
    let group_s = started.elapsed().as_secs_f64() - parse_s;
    let scored_events: u64 = grouped.iter().map(|c| c.messages.len() as u64).sum();
    let fold_started = Instant::now();
    super::score::write_scores(&model, t, grouped, std::io::sink(), Format::Csv, false)?;
    let score_s = fold_started.elapsed().as_secs_f64();
    let end_to_end_s = started.elapsed().as_secs_f64();

    // The same log again (untimed) for the in-memory measurements below.
    let reader = BufReader::with_capacity(1 << 20, File::open(&path)?);
    let (chunks, _) = read_message_chunks(reader, "events.jsonl", &options, |_| {})?;
    let logs = contacts_as_of_chunks(chunks, Vec::new(), t);

    // The fold alone, one thread, in-memory events. The first pass also
    // parses the `properties` that conditions read (kept as raw JSON until
    // then); the second finds them parsed.
    let fold_pass = || {
        let started = Instant::now();
        let mut checksum = 0.0;
        for contact in &logs {
            let state = ContactState::fold(&model, None, &contact.messages);
            checksum += state.score_at(&model, t).map(|s| s.raw).unwrap_or_default();
        }
        (started.elapsed().as_secs_f64(), checksum)
    };
    let (fold_cold_s, _) = fold_pass();
    let (fold_s, checksum) = fold_pass();

    // Size of the stored rule state (traits are stored separately).
    let mut sizes: Vec<usize> = logs
        .iter()
        .map(|c| {
            ContactState::fold(&model, None, &c.messages)
                .encode(&model)
                .len()
        })
        .collect();
    sizes.sort_unstable();
    let percentile = |p: f64| {
        sizes
            .get(((sizes.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0)
    };

    // SQLite: the plain event-count part (points per matching event name, no
    // conditions, nth, limits, decay or caps), same events, in memory.
    let sqlite = sqlite_baseline(&model, &logs).context("SQLite baseline")?;
    std::fs::remove_dir_all(&dir).ok();

    let figures = json!({
        "machine_cores": cores,
        "model": "examples/b2b.toml",
        "contacts": logs.len(),
        "messages_generated": events,
        "messages_scored": scored_events,
        "file_bytes": bytes,
        "generate_messages_per_s": rate(events, generate_s),
        "parse_messages_per_s": rate(events, parse_s),
        "group_messages_per_s": rate(events, group_s),
        "score_all_cores_messages_per_s": rate(scored_events, score_s),
        "end_to_end_messages_per_s": rate(events, end_to_end_s),
        "fold_one_core_messages_per_s": rate(scored_events, fold_s),
        "fold_one_core_first_pass_messages_per_s": rate(scored_events, fold_cold_s),
        "sqlite_count_query_messages_per_s": rate(scored_events, sqlite.query_s),
        "sqlite_load_messages_per_s": rate(scored_events, sqlite.load_s),
        "fold_one_core_vs_sqlite_count_query": sqlite.query_s / fold_s,
        "state_snapshot_bytes_median": percentile(0.5),
        "state_snapshot_bytes_p90": percentile(0.9),
        "state_snapshot_bytes_max": percentile(1.0),
        "checksum_raw_total": checksum,
    });
    let mut text = format!("leadscore bench ({cores} cores, {contacts} contacts x {days} days, {events} messages, {:.1} MB)\n", bytes as f64 / 1e6);
    for (label, key) in [
        ("generate (all cores)", "generate_messages_per_s"),
        ("parse JSONL (all cores)", "parse_messages_per_s"),
        ("group + stitch (1 core)", "group_messages_per_s"),
        (
            "fold + write CSV (all cores)",
            "score_all_cores_messages_per_s",
        ),
        ("end to end score (all cores)", "end_to_end_messages_per_s"),
        (
            "fold, first pass (1 core)",
            "fold_one_core_first_pass_messages_per_s",
        ),
        ("fold only (1 core)", "fold_one_core_messages_per_s"),
        (
            "SQLite count query (1 core)",
            "sqlite_count_query_messages_per_s",
        ),
    ] {
        text += &format!(
            "  {label:<32} {:>12.0} messages/s\n",
            figures[key].as_f64().unwrap_or_default()
        );
    }
    text += &format!(
        "  fold (full model) vs SQLite count-only query: {:.2}x\n",
        sqlite.query_s / fold_s
    );
    text += &format!(
        "  contact state snapshot: median {} bytes, p90 {}, max {}\n",
        percentile(0.5),
        percentile(0.9),
        percentile(1.0)
    );
    super::emit(&text)?;
    if let Some(out) = out {
        std::fs::write(out, serde_json::to_string_pretty(&figures)? + "\n")?;
    }
    Ok(ExitCode::SUCCESS)
}

struct Sqlite {
    load_s: f64,
    query_s: f64,
}

fn sqlite_baseline(model: &Model, contacts: &[ContactLog]) -> rusqlite::Result<Sqlite> {
    let db = rusqlite::Connection::open_in_memory()?;
    db.execute_batch(
        "CREATE TABLE events(contact TEXT NOT NULL, name TEXT, ts INTEGER NOT NULL);",
    )?;
    let started = Instant::now();
    {
        let tx = db.unchecked_transaction()?;
        let mut insert = tx.prepare("INSERT INTO events VALUES (?1, ?2, ?3)")?;
        for contact in contacts {
            for m in &contact.messages {
                insert.execute(rusqlite::params![contact.id, m.rule_name(), m.timestamp.0])?;
            }
        }
        drop(insert);
        tx.commit()?;
    }
    let load_s = started.elapsed().as_secs_f64();
    let cases: Vec<String> = model
        .engagements
        .iter()
        .map(|r| format!("WHEN '{}' THEN {}", r.event.replace('\'', "''"), r.points))
        .collect();
    let query = format!(
        "SELECT contact, SUM(CASE name {} ELSE 0 END) FROM events GROUP BY contact",
        cases.join(" ")
    );
    let started = Instant::now();
    let mut statement = db.prepare(&query)?;
    let rows = statement.query_map([], |row| row.get::<_, f64>(1))?.count();
    let query_s = started.elapsed().as_secs_f64();
    assert_eq!(rows, contacts.len());
    Ok(Sqlite { load_s, query_s })
}
