//! Where a slow ingest transaction, or one of the writer's idle moments
//! ([`crate::Store::write_idle`]), spent its time, for the log: each
//! phase's wall time, reported at debug level when the whole took at least
//! [`SLOW`] (`leadscore serve` with
//! `LEADSCORE_LOG=info,leadscore_store=debug`). The server's latency
//! outliers are a few slow transactions a minute; this says which part of
//! them was slow (docs/performance.md, session 31).

use std::time::{Duration, Instant};

/// A transaction at least this long is reported.
pub(super) const SLOW: Duration = Duration::from_millis(10);

/// The phases of [`crate::Store::ingest`] on SQLite, in order.
#[derive(Debug, Clone, Copy)]
pub(super) enum Phase {
    /// Opening the transaction, the model, the writer's memory.
    Begin,
    /// Deduplicating, stitching and scoring the messages.
    Messages,
    /// Writing the rows, ledger entries and runs that are due.
    Rows,
    /// Committing, and the writer's memory taking what was committed.
    Commit,
    /// The cache of live states taking what was committed.
    Cache,
    /// Restarting the WAL when large, waking the checkpointer.
    After,
}

const PHASES: usize = Phase::After as usize + 1;

/// The clock of one transaction.
pub(super) struct Phases {
    /// `ingest` or `idle`.
    kind: &'static str,
    messages: usize,
    started: Instant,
    last: Instant,
    spent: [Duration; PHASES],
    /// The thread's time waiting for a CPU so far, when reports are on.
    waited: Option<u64>,
}

/// Nanoseconds the calling thread has waited runnable for a CPU (Linux's
/// schedstat), if known: a slow transaction whose phases all took longer
/// may simply not have run.
fn run_delay() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}

impl Phases {
    /// The clock of a transaction of `kind` (`ingest`, `idle`) of
    /// `messages` messages, started now.
    pub(super) fn start(kind: &'static str, messages: usize) -> Phases {
        let now = Instant::now();
        Phases {
            kind,
            messages,
            started: now,
            last: now,
            spent: [Duration::ZERO; PHASES],
            waited: tracing::enabled!(tracing::Level::DEBUG)
                .then(run_delay)
                .flatten(),
        }
    }

    /// `phase` ends now.
    pub(super) fn mark(&mut self, phase: Phase) {
        let now = Instant::now();
        self.spent[phase as usize] = now - self.last;
        self.last = now;
    }

    /// Whether the transaction so far took long enough to report.
    fn slow(&self) -> bool {
        self.last - self.started >= SLOW
    }

    /// Logs the phases if the transaction was slow, with the WAL's frames
    /// not yet copied into the database file (if known) after it; and at
    /// trace level every transaction, with the WAL frames its commit
    /// added (`wal_added`, as of the last commit that wrote any), which
    /// says what each kind of transaction costs the checkpointer.
    pub(super) fn report(&self, wal_uncopied: Option<i64>, wal_added: Option<i64>) {
        tracing::trace!(
            kind = self.kind,
            messages = self.messages,
            wal_added,
            "transaction"
        );
        if !self.slow() {
            return;
        }
        let ms = |phase: Phase| self.spent[phase as usize].as_secs_f64() * 1e3;
        let waited = self
            .waited
            .zip(run_delay())
            .map(|(before, now)| now.saturating_sub(before) as f64 / 1e6);
        tracing::debug!(
            kind = self.kind,
            messages = self.messages,
            total_ms = (self.last - self.started).as_secs_f64() * 1e3,
            begin_ms = ms(Phase::Begin),
            messages_ms = ms(Phase::Messages),
            rows_ms = ms(Phase::Rows),
            commit_ms = ms(Phase::Commit),
            cache_ms = ms(Phase::Cache),
            after_ms = ms(Phase::After),
            waited_for_cpu_ms = waited,
            wal_uncopied_frames = wal_uncopied,
            "slow transaction"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_phase_gets_the_time_since_the_one_before() {
        let mut phases = Phases::start("ingest", 3);
        phases.mark(Phase::Begin);
        std::thread::sleep(Duration::from_millis(12));
        phases.mark(Phase::Messages);
        phases.mark(Phase::Rows);
        assert!(phases.spent[Phase::Messages as usize] >= Duration::from_millis(12));
        let total: Duration = phases.spent.iter().sum();
        assert_eq!(total, phases.last - phases.started);
        assert!(phases.slow());
        assert!(!Phases::start("idle", 0).slow());
    }
}
