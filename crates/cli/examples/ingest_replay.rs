//! Ingests messages the way the server's writer does (batches of a group
//! commit's size, durability deferred, so the writer's cache of live rows
//! on) into an existing store, and prints the CPU time of the ingesting
//! thread: the writer's work per event without the HTTP workers and the
//! load generator beside it on the same two cores, whose contention moves
//! `bench/server/cpu.sh`'s figures by more than most changes do
//! (docs/performance.md, session 22).
//!
//! ```sh
//! cp base.db replay.db   # a store with the model active (modified in place)
//! target/release/examples/ingest_replay replay.db events.jsonl WARM COUNT [BATCH [CACHE]]
//! ```
//!
//! The first WARM messages are ingested unmeasured (they fill the cache and
//! SQLite's pages), then the next COUNT are measured, BATCH per call
//! (default 500), with the writer's cache of CACHE contacts (default
//! `serve`'s, `DEFAULT_LIVE_CONTACTS`). Under callgrind,
//! `--toggle-collect='ingest_replay::measured'` counts the instructions of
//! the measured part only. It also prints the allocations per measured
//! message (every thread's, counted by a wrapper around the allocator; the
//! writer's checkpointer and cache threads allocate little), an exact
//! figure where the CPU time moves with the machine.

use std::alloc::{GlobalAlloc, Layout};
use std::fs::File;
use std::io::BufReader;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use leadscore_input::{read_messages, ReadOptions};
use leadscore_store::{Flush, Incoming, Store};

/// The binary's allocator (mimalloc), counting allocations: an exact
/// figure per message beside the CPU time, which this shared machine
/// moves by more than most changes do (docs/performance.md, session 34).
struct Counting;

/// Allocations and reallocations since the start, by every thread.
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to mimalloc's allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's guarantees, passed on.
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's guarantees, passed on.
        unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's guarantees, passed on.
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's guarantees, passed on.
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Nanoseconds this thread has run on a CPU (Linux's schedstat).
fn thread_cpu_ns() -> Result<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat")
        .context("reading /proc/thread-self/schedstat (Linux only)")?;
    let first = text.split_whitespace().next().unwrap_or_default();
    Ok(first.parse()?)
}

/// Ingests `messages`, `batch` per call, each flushed: messages accepted.
fn ingest_all(
    store: &mut dyn Store,
    flush: &mut Option<Box<dyn Flush>>,
    messages: Vec<Incoming>,
    batch: usize,
) -> Result<u64> {
    let mut accepted = 0;
    let mut messages = messages.into_iter();
    loop {
        let chunk: Vec<Incoming> = messages.by_ref().take(batch).collect();
        if chunk.is_empty() {
            return Ok(accepted);
        }
        accepted += store.ingest(chunk)?.accepted;
        if let Some(flush) = flush {
            flush.flush()?;
        }
    }
}

/// The measured part, a function of its own for callgrind's
/// `--toggle-collect` (the result goes through `black_box` so that the
/// call is not a tail jump, which the toggle would miss).
#[inline(never)]
fn measured(
    store: &mut dyn Store,
    flush: &mut Option<Box<dyn Flush>>,
    messages: Vec<Incoming>,
    batch: usize,
) -> Result<u64> {
    let accepted = ingest_all(store, flush, messages, batch)?;
    Ok(std::hint::black_box(accepted))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [db, events, warm, count, rest @ ..] = args.as_slice() else {
        bail!("usage: ingest_replay STORE EVENTS.jsonl WARM COUNT [BATCH [CACHE]]");
    };
    let warm: usize = warm.parse().context("WARM")?;
    let count: usize = count.parse().context("COUNT")?;
    let batch: usize = match rest.first() {
        Some(b) => b.parse().context("BATCH")?,
        None => 500,
    };
    let cache: usize = match rest.get(1) {
        Some(c) => c.parse().context("CACHE")?,
        None => leadscore_store::DEFAULT_LIVE_CONTACTS,
    };
    let file = File::open(events).with_context(|| format!("opening {events}"))?;
    let (messages, _) = read_messages(
        BufReader::new(file),
        events,
        &ReadOptions::default(),
        |_| {},
    )?;
    if messages.len() < warm + count {
        bail!(
            "{events} has {} messages, fewer than WARM + COUNT",
            messages.len()
        );
    }
    let mut incoming: Vec<Incoming> = messages.into_iter().map(Incoming::new).collect();
    incoming.truncate(warm + count);
    let tail = incoming.split_off(warm);
    let mut store = leadscore_store::open(std::path::Path::new(db))?;
    let mut flush = store.defer_durability(cache)?;
    ingest_all(store.as_mut(), &mut flush, incoming, batch)?;
    let (cpu, wall) = (thread_cpu_ns()?, Instant::now());
    let allocations = ALLOCATIONS.load(Ordering::Relaxed);
    let accepted = measured(store.as_mut(), &mut flush, tail, batch)?;
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - allocations;
    let cpu = thread_cpu_ns()? - cpu;
    println!(
        "{count} messages ({accepted} new) in batches of {batch}: CPU {:.3} s ({:.2} µs per message), wall {:.3} s, {:.1} allocations per message",
        cpu as f64 / 1e9,
        cpu as f64 / 1e3 / count as f64,
        wall.elapsed().as_secs_f64(),
        allocations as f64 / count as f64
    );
    Ok(())
}
