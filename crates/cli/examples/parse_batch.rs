//! Does what the server's HTTP workers do with each `/v1/batch` body —
//! parse it, validate and normalise every message, write its stored JSON
//! (`Incoming::new`) — for a file of messages in bodies of 100, and
//! prints the time per message: the workers' share of ingestion, which
//! runs on the same two cores as the writer (docs/performance.md,
//! session 25). The time printed is wall time of one thread: run it on a
//! quiet machine, or count instructions instead.
//!
//! ```sh
//! target/release/examples/parse_batch events.jsonl COUNT
//! ```
//!
//! Under callgrind, `--toggle-collect='parse_batch::measured'` counts the
//! instructions of the parsing only.

use std::io::BufRead;

use anyhow::{bail, Context, Result};
use leadscore_core::event::{batch_from_text, batch_messages, Names};
use leadscore_store::Incoming;
use serde_json::Value;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Messages per body, as `bench --load` sends them.
const PER_BODY: usize = 100;

/// Parses every body as the server's batch route does; the stored JSON's
/// total length (so that nothing is optimised away).
#[inline(never)]
fn measured(bodies: &[Vec<u8>]) -> Result<usize> {
    let received = leadscore_store::now();
    let mut bytes = 0;
    for (b, body) in bodies.iter().enumerate() {
        // The body's text message by message, else its JSON tree.
        let read = match batch_from_text(body, Some(received), &mut Names::default()) {
            Some(read) => read,
            None => {
                let Value::Object(object) = serde_json::from_slice(body)? else {
                    bail!("body {b} is not an object");
                };
                batch_messages(object, Some(received))?
            }
        };
        for (i, message) in read.into_iter().enumerate() {
            let message =
                message.map_err(|e| anyhow::anyhow!("body {b}, message {i}: {}", e.message))?;
            bytes += std::hint::black_box(Incoming::new(message)).body.len();
        }
    }
    Ok(bytes)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [events, count] = args.as_slice() else {
        bail!("usage: parse_batch EVENTS.jsonl COUNT");
    };
    let count: usize = count.parse().context("COUNT")?;
    let file = std::fs::File::open(events).with_context(|| format!("opening {events}"))?;
    let lines = std::io::BufReader::new(file)
        .lines()
        .take(count)
        .collect::<std::io::Result<Vec<String>>>()?;
    if lines.len() < count {
        bail!("{events} has {} lines, fewer than COUNT", lines.len());
    }
    let bodies: Vec<Vec<u8>> = lines
        .chunks(PER_BODY)
        .map(|c| format!("{{\"batch\":[{}]}}", c.join(",")).into_bytes())
        .collect();
    let started = std::time::Instant::now();
    let bytes = measured(&bodies)?;
    let took = started.elapsed();
    println!(
        "{count} messages ({bytes} bytes stored) in bodies of {PER_BODY}: {:.3} s ({:.2} µs per message)",
        took.as_secs_f64(),
        took.as_secs_f64() * 1e6 / count as f64
    );
    Ok(())
}
