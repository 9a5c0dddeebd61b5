//! The event log by own id on SQLite, without an index (migration V11
//! says why): each own id's event positions are found in runs,
//! `log_runs (own_id, first_seq, seqs)`, one row for the positions of
//! its events appended over a while.
//!
//! An import writes one run per own id and batch. The server's writer
//! keeps the positions it appends in memory ([`Memory`]) and writes one
//! run per own id once they are [`super::deferred::WRITE_AFTER`] old (or
//! past its budget), so that a contact sending an event every two seconds
//! costs one run in thirty seconds instead of an index entry per event.
//! Readers of the writer's process find positions not yet in a run
//! there too; other readers, and the next writer after a crash, find them
//! in the log itself past `deferred_rows.log_from` ([`scan_positions`],
//! [`mend`]).
//!
//! A run may name an event whose message was since replaced by a copy
//! with another own id (the new own id's positions gain it): readers keep
//! only the events whose stored own id is the one asked for. A position
//! may be in two runs (a message replaced back): readers drop repeats.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection};
use rustc_hash::{FxHashMap, FxHashSet};
use smol_str::SmolStr;

use super::borrowed::{Param, Prepared};
use super::contacts::{parse_positions, push_position};
use super::deferred;
use crate::prefetch::prefetch;
use crate::Result;

/// Positions of events appended (or moved by a replaced message) by one
/// transaction, by own id, in the order noted.
pub(super) type Logged = FxHashMap<String, Vec<i64>>;

/// Notes that the event at `seq` has `own_id`.
pub(super) fn log(logged: &mut Logged, own_id: &str, seq: i64) {
    match logged.get_mut(own_id) {
        Some(seqs) => seqs.push(seq),
        None => {
            logged.insert(own_id.to_string(), vec![seq]);
        }
    }
}

/// Writes a run of positions of `own_id` (in increasing order), through
/// the statements kept in `prepared` when given (the writer's and an
/// import's transactions). A run starting at the same position (a message
/// replaced back to this own id) takes them on instead, after its own:
/// the one case of a run out of order (readers sort).
pub(super) fn add_run(
    conn: &Connection,
    prepared: Option<&Prepared>,
    own_id: &str,
    seqs: &[i64],
) -> Result<()> {
    // Not an upsert: SQLite gives one a statement journal.
    const INSERT: &str =
        "INSERT OR IGNORE INTO log_runs (own_id, first_seq, seqs) VALUES (?1, ?2, ?3)";
    const APPEND: &str =
        "UPDATE log_runs SET seqs = seqs || ',' || ?3 WHERE own_id = ?1 AND first_seq = ?2";
    let sorted;
    let seqs = if seqs.is_sorted() {
        seqs
    } else {
        // Moved positions come after those appended with them.
        sorted = {
            let mut s = seqs.to_vec();
            s.sort_unstable();
            s
        };
        &sorted
    };
    let Some(first) = seqs.first() else {
        return Ok(());
    };
    let mut text = String::with_capacity(seqs.len() * 8);
    for seq in seqs {
        push_position(&mut text, *seq);
    }
    let values = [Param::Text(own_id), (*first).into(), Param::Text(&text)];
    let run = |sql: &'static str| match prepared {
        Some(prepared) => prepared.statement(conn, sql)?.execute(&values),
        None => conn
            .prepare_cached(sql)?
            .execute(rusqlite::params_from_iter(&values)),
    };
    if run(INSERT)? == 0 {
        run(APPEND)?;
    }
    Ok(())
}

/// The positions the runs of `own_id` hold (in no particular order).
pub(super) fn run_positions(conn: &Connection, own_id: &str) -> Result<Vec<i64>> {
    let mut seqs = Vec::new();
    let mut runs = conn.prepare_cached("SELECT seqs FROM log_runs WHERE own_id = ?1")?;
    let texts = runs.query_map([own_id], |r| r.get::<_, String>(0))?;
    for text in texts {
        seqs.extend(parse_positions(&text?)?);
    }
    Ok(seqs)
}

/// The positions of `own_id`'s events at or past `from`, read from the log
/// itself (for a reader that cannot see the writer's memory: the log past
/// `from` is about 30 s of the writer's appends, scanned).
pub(super) fn scan_positions(conn: &Connection, own_id: &str, from: i64) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached("SELECT seq FROM events WHERE seq >= ?1 AND own_id = ?2")?;
    let seqs = stmt.query_map(params![from, own_id], |r| r.get(0))?;
    Ok(seqs.collect::<Result<_, _>>()?)
}

/// Deletes every run of `own_id`.
pub(super) fn delete_runs(conn: &Connection, own_id: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM log_runs WHERE own_id = ?1")?
        .execute([own_id])?;
    Ok(())
}

/// Writes runs of the positions at or past `from` that no run holds: what
/// a writer kept in memory and did not write (a crash), or cannot write
/// itself (another connection settling its rows).
pub(super) fn mend(conn: &Connection, from: i64) -> Result<()> {
    let mut found: FxHashMap<String, Vec<i64>> = FxHashMap::default();
    {
        let mut stmt = conn.prepare("SELECT own_id, seq FROM events WHERE seq >= ?1")?;
        let rows = stmt.query_map([from], |r| Ok((r.get::<_, String>(0)?, r.get(1)?)))?;
        for row in rows {
            let (own_id, seq) = row?;
            found.entry(own_id).or_default().push(seq);
        }
    }
    let mut found: Vec<(String, Vec<i64>)> = found.into_iter().collect();
    found.sort_unstable();
    for (own_id, mut seqs) in found {
        let held: FxHashSet<i64> = run_positions(conn, &own_id)?
            .into_iter()
            .filter(|s| *s >= from)
            .collect();
        seqs.retain(|s| !held.contains(s));
        seqs.sort_unstable();
        add_run(conn, None, &own_id, &seqs)?;
    }
    Ok(())
}

/// How long positions stay in [`Memory`] after they are in runs: a reader
/// whose snapshot is older than that reads them from the log instead.
const KEEP_FOR: Duration = Duration::from_secs(10);

/// The positions of the events the writer of this process appended, by
/// own id: those in no run yet (pending, written in runs later), and for
/// readers of this process those written in a run less than [`KEEP_FOR`]
/// ago too.
#[derive(Debug, Default)]
pub(super) struct Memory {
    /// Every event at or past this position that a transaction of this
    /// writer appended has its position here (`None`: not known).
    from: Option<i64>,
    by_own: FxHashMap<SmolStr, Own>,
    /// Own ids in the order their first appended position became
    /// pending, with that time and a serial number (an entry whose own id
    /// was written since, or became pending again, is skipped): in the
    /// order of those positions, but for those of one transaction.
    order: VecDeque<(SmolStr, u64, Instant)>,
    /// Positions moved to an own id by a replaced message (older than the
    /// positions appended with them) and pending, with the own id.
    moved: BTreeSet<(i64, String)>,
    /// How many own ids have positions pending.
    pending: usize,
    serial: u64,
    /// What the writer recorded as the oldest position pending, and when
    /// (the front one at least [`KEEP_FOR`] old, once any is).
    marks: VecDeque<(Instant, i64)>,
    /// Own ids whose positions were written in runs, by the greatest
    /// position written, least first: they go once that is below the
    /// front mark ([`Memory::mark`]). So pruning visits only own ids
    /// written, not every one held (a pass over 100,000 own ids took the
    /// writer 10 ms, inside a transaction, each second).
    written: BinaryHeap<Reverse<(i64, SmolStr)>>,
}

/// One own id's positions in [`Memory`].
#[derive(Debug, Default)]
struct Own {
    /// In the order they were appended: those before `unwritten` are in
    /// runs.
    seqs: Vec<i64>,
    unwritten: usize,
    /// Its entry in the order, while any position is pending.
    serial: u64,
    /// The first pending position appended (not moved).
    first: Option<i64>,
}

impl Own {
    fn pending(&self) -> &[i64] {
        &self.seqs[self.unwritten..]
    }
}

impl Memory {
    /// The writer starts with every position before `next` in runs.
    pub(super) fn start(&mut self, next: i64) {
        self.from.get_or_insert(next);
    }

    pub(super) fn clear(&mut self) {
        *self = Memory::default();
    }

    /// The positions of `own_id` here, if this holds every position past
    /// `from` (the oldest a reader's snapshot may lack in runs).
    pub(super) fn positions(&self, own_id: &str, from: i64) -> Option<&[i64]> {
        if self.from.is_none_or(|f| f > from) {
            return None;
        }
        Some(
            self.by_own
                .get(own_id)
                .map_or(&[], |own| own.seqs.as_slice()),
        )
    }

    /// The positions of `own_id` pending, and how many of its positions
    /// are in runs once those are ([`Memory::written`]).
    pub(super) fn pending(&self, own_id: &str) -> (&[i64], usize) {
        self.by_own
            .get(own_id)
            .map_or((&[], 0), |own| (own.pending(), own.seqs.len()))
    }

    /// Whether the order's entry is the current one of its own id.
    fn current(&self, (own_id, serial, _): &(SmolStr, u64, Instant)) -> bool {
        self.by_own
            .get(own_id)
            .is_some_and(|own| own.serial == *serial && own.unwritten < own.seqs.len())
    }

    /// The own ids whose positions are due in a run: pending since
    /// `cutoff` or before, and the oldest beyond `budget` own ids, paced
    /// as the kept rows are ([`deferred::paced`]).
    pub(super) fn due(&self, cutoff: Option<Instant>, budget: usize) -> Vec<SmolStr> {
        let old = cutoff.map_or(0, |cutoff| {
            self.order.partition_point(|(_, _, at)| *at <= cutoff)
        });
        let take = deferred::paced(old.max(self.pending.saturating_sub(budget)));
        self.order
            .iter()
            .filter(|e| self.current(e))
            .take(take)
            .map(|(own_id, _, _)| own_id.clone())
            .collect()
    }

    /// When the first own id with positions pending became so (`None`
    /// inside: at once, more than `budget` own ids have positions
    /// pending); `None` when none has.
    pub(super) fn first_pending(&self, budget: usize) -> Option<Option<Instant>> {
        if self.pending > budget {
            return Some(None);
        }
        let (_, _, at) = self.order.iter().find(|e| self.current(e))?;
        Some(Some(*at))
    }

    /// Every own id with positions pending.
    pub(super) fn all(&self) -> Vec<SmolStr> {
        let mut all: Vec<SmolStr> = self
            .by_own
            .iter()
            .filter(|(_, own)| own.unwritten < own.seqs.len())
            .map(|(own_id, _)| own_id.clone())
            .collect();
        all.sort_unstable();
        all
    }

    /// The oldest position pending, less those of the own ids in `skip`.
    pub(super) fn oldest(&self, skip: &FxHashSet<&str>) -> Option<i64> {
        let mut oldest: Option<i64> = None;
        let mut at = None;
        for e in &self.order {
            if !self.current(e) || skip.contains(e.0.as_str()) {
                continue;
            }
            // Those of one transaction, in no particular order.
            if at.is_some_and(|at| at != e.2) {
                break;
            }
            at = Some(e.2);
            if let Some(first) = self.by_own[&e.0].first {
                oldest = Some(oldest.map_or(first, |o| o.min(first)));
            }
        }
        let moved = self
            .moved
            .iter()
            .find(|(_, own_id)| !skip.contains(own_id.as_str()))
            .map(|(seq, _)| *seq);
        match (oldest, moved) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Queues `own_id`'s entry in the order, its first pending appended
    /// position `first`. The order holds the id `by_own` holds (a long one
    /// shared, not copied); an own id not there has nothing to queue.
    fn queue(&mut self, own_id: &str, first: Option<i64>, now: Instant) {
        let Some((key, _)) = self.by_own.get_key_value(own_id) else {
            return;
        };
        let key = key.clone();
        self.serial += 1;
        let serial = self.serial;
        self.order.push_back((key, serial, now));
        if let Some(own) = self.by_own.get_mut(own_id) {
            own.serial = serial;
            own.first = first;
        }
    }

    /// Adds a transaction's positions: those before `start` were moved by
    /// replaced messages, the others appended (`at`: the transaction's
    /// time in the order).
    #[cfg(test)]
    fn append(&mut self, logged: Logged, start: i64, at: Instant) {
        for (own_id, seqs) in logged {
            for seq in seqs {
                self.note(&own_id, seq, start, at);
            }
        }
    }

    /// Asks for what noting positions of `own_ids` will change
    /// ([`crate::prefetch`]): looked up one after another with nothing in
    /// between, the lookups' cache misses overlap, where those of notes,
    /// each waiting for the one before, do not.
    pub(super) fn prefetch<'a>(&self, own_ids: impl Iterator<Item = &'a str>) {
        for own_id in own_ids {
            if let Some(own) = self.by_own.get(own_id) {
                prefetch(own);
                if let Some(last) = own.seqs.last() {
                    prefetch(last);
                }
            }
        }
    }

    /// Adds the position of an event the writer's transaction (started at
    /// log position `start`, at `at`) appended or moved to `own_id`, before
    /// it commits: a transaction that then fails leaves positions of no
    /// event, which readers skip and a run may name harmlessly.
    pub(super) fn note(&mut self, own_id: &str, seq: i64, start: i64, at: Instant) {
        let appended = (seq >= start).then_some(seq);
        if appended.is_none() {
            self.moved.insert((seq, own_id.to_string()));
        }
        let (was_pending, had_first) = match self.by_own.get_mut(own_id) {
            Some(own) => {
                let state = (own.unwritten < own.seqs.len(), own.first.is_some());
                own.seqs.push(seq);
                // A position this transaction appended under another own
                // id, moved here by a replaced message after later ones.
                if let (Some(seq), Some(first)) = (appended, own.first) {
                    own.first = Some(first.min(seq));
                }
                state
            }
            None => {
                let own = Own {
                    seqs: vec![seq],
                    ..Own::default()
                };
                self.by_own.insert(SmolStr::new(own_id), own);
                (false, false)
            }
        };
        if !was_pending {
            self.pending += 1;
        }
        // In the order by first appended position: anew when it had only
        // moved ones.
        if !was_pending || (!had_first && appended.is_some()) {
            self.queue(own_id, appended, at);
        }
    }

    /// A committed transaction wrote `own_id`'s first `upto` positions in
    /// runs ([`Memory::pending`] as it began); those it appended itself
    /// (from `start` on, or moved) stay pending, in the order with the
    /// others it appended (`at`: the time [`Memory::append`] was given).
    pub(super) fn written(&mut self, own_id: &str, upto: usize, start: i64, at: Instant) {
        let Some(own) = self.by_own.get_mut(own_id) else {
            return;
        };
        own.unwritten = upto.min(own.seqs.len());
        let last = own.seqs[..own.unwritten].iter().max().copied();
        let left = own.pending().iter().copied().filter(|s| *s >= start).min();
        let pending = own.unwritten < own.seqs.len();
        own.first = None;
        if !self.moved.is_empty() {
            let still = own.pending();
            self.moved
                .retain(|(seq, o)| o != own_id || still.contains(seq));
        }
        if pending {
            self.queue(own_id, left, at);
        } else {
            self.pending -= 1;
        }
        while self.order.front().is_some_and(|e| !self.current(e)) {
            self.order.pop_front();
        }
        // The id `by_own` holds (a long one shared, not copied).
        if let (Some(last), Some((key, _))) = (last, self.by_own.get_key_value(own_id)) {
            self.written.push(Reverse((last, key.clone())));
        }
    }

    /// Forgets an erased own id.
    pub(super) fn forget(&mut self, own_id: &str) {
        if let Some(own) = self.by_own.remove(own_id) {
            if own.unwritten < own.seqs.len() {
                self.pending -= 1;
            }
        }
        if !self.moved.is_empty() {
            self.moved.retain(|(_, o)| o != own_id);
        }
    }

    /// The writer recorded `log_from` at `now`: positions below what it
    /// recorded [`KEEP_FOR`] ago go. They are all in runs: every pending
    /// one is at or past `log_from`.
    pub(super) fn mark(&mut self, now: Instant, log_from: i64) {
        if self.marks.back().is_none_or(|(_, f)| *f != log_from) {
            self.marks.push_back((now, log_from));
        }
        let Some(cutoff) = now.checked_sub(KEEP_FOR) else {
            return;
        };
        // The newest mark at least KEEP_FOR old stays at the front.
        while self.marks.get(1).is_some_and(|(at, _)| *at <= cutoff) {
            self.marks.pop_front();
        }
        let Some(&(at, below)) = self.marks.front() else {
            return;
        };
        if at > cutoff || self.from.is_none_or(|f| f >= below) {
            return;
        }
        while let Some(Reverse((last, _))) = self.written.peek() {
            if *last >= below {
                break;
            }
            let Some(Reverse((_, own_id))) = self.written.pop() else {
                break;
            };
            let Some(own) = self.by_own.get_mut(&own_id) else {
                continue; // forgotten
            };
            let mut kept = 0;
            for i in 0..own.unwritten {
                if own.seqs[i] >= below {
                    own.seqs[kept] = own.seqs[i];
                    kept += 1;
                }
            }
            own.seqs.drain(kept..own.unwritten);
            own.unwritten = kept;
            if own.seqs.is_empty() {
                self.by_own.remove(&own_id);
            }
        }
        self.from = Some(below);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logged(pairs: &[(&str, i64)]) -> Logged {
        let mut logged = Logged::default();
        for (own_id, seq) in pairs {
            log(&mut logged, own_id, *seq);
        }
        logged
    }

    #[test]
    fn pending_positions_come_due_oldest_first() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(5);
        let mut memory = Memory::default();
        memory.start(1);
        memory.append(logged(&[("a", 1), ("b", 2), ("a", 3)]), 1, t0);
        memory.append(logged(&[("c", 4), ("a", 5)]), 4, later);
        assert_eq!(memory.pending("a"), (&[1, 3, 5][..], 3));
        // Nothing old enough, all within budget.
        assert!(memory.due(None, 10).is_empty());
        // Pending since t0: a and b.
        assert_eq!(memory.due(Some(t0), 10), ["a", "b"]);
        // Beyond a budget of one own id: the two oldest.
        assert_eq!(memory.due(None, 1), ["a", "b"]);
        let skip: FxHashSet<&str> = ["a"].into_iter().collect();
        assert_eq!(memory.oldest(&skip), Some(2));
        // a written by a transaction that appended 6 to it.
        memory.append(logged(&[("a", 6)]), 6, later);
        memory.written("a", 3, 6, later);
        assert_eq!(memory.oldest(&FxHashSet::default()), Some(2));
        assert_eq!(memory.pending("a").0, [6]);
        assert_eq!(memory.positions("a", 1), Some(&[1, 3, 5, 6][..]));
        // At the back now.
        assert_eq!(memory.due(None, 0), ["b", "c", "a"]);
        assert_eq!(memory.all(), ["a", "b", "c"]);
        memory.written("b", 1, 7, later);
        assert_eq!(memory.oldest(&FxHashSet::default()), Some(4));
        assert_eq!(memory.all(), ["a", "c"]);
        memory.forget("c");
        assert_eq!(memory.all(), ["a"]);
        assert_eq!(memory.pending, 1);
    }

    /// An own id past what `SmolStr` holds inline is copied once, into
    /// `by_own`; the order shares it, also when it is queued again.
    #[test]
    fn a_long_own_id_is_held_once() {
        let (t0, long) = (Instant::now(), "3f1c9a52-7b1e-4c55-9d2a-0c8e2f6b1a44");
        let mut memory = Memory::default();
        memory.start(1);
        let shared = |memory: &Memory| {
            let held = memory.by_own.get_key_value(long).unwrap().0.as_ptr();
            memory.order.len() == 1 && memory.order[0].0.as_ptr() == held
        };
        memory.note(long, 1, 1, t0);
        memory.note(long, 2, 1, t0);
        assert!(shared(&memory), "queued by its first position");
        // The first written, the second still pending: queued again.
        memory.written(long, 1, 2, t0);
        assert_eq!(memory.pending(long).0, [2]);
        assert!(shared(&memory), "queued again");
    }

    #[test]
    fn the_oldest_pending_position_is_found_whatever_the_order() {
        let t0 = Instant::now();
        let mut memory = Memory::default();
        // One transaction's own ids come in no particular order.
        let many: Vec<(String, i64)> = (0..50).map(|i| (format!("id{i}"), 100 - i)).collect();
        let pairs: Vec<(&str, i64)> = many.iter().map(|(o, s)| (o.as_str(), *s)).collect();
        memory.append(logged(&pairs), 51, t0);
        memory.append(logged(&[("late", 120)]), 101, t0 + Duration::from_secs(1));
        assert_eq!(memory.oldest(&FxHashSet::default()), Some(51));
        let skip: FxHashSet<&str> = ["id49"].into_iter().collect();
        assert_eq!(memory.oldest(&skip), Some(52));
        // A replaced message moves an older position to an own id.
        memory.append(logged(&[("late", 130), ("late", 7)]), 130, t0);
        assert_eq!(memory.oldest(&FxHashSet::default()), Some(7));
        let skip: FxHashSet<&str> = ["late"].into_iter().collect();
        assert_eq!(memory.oldest(&skip), Some(51));
        memory.written("late", 3, 131, t0);
        assert_eq!(memory.oldest(&FxHashSet::default()), Some(51));
        // An own id given only a moved position is pending, and written.
        memory.append(logged(&[("moved", 3)]), 200, t0);
        assert_eq!(memory.oldest(&FxHashSet::default()), Some(3));
        assert!(memory.all().iter().any(|id| id == "moved"));
        memory.append(logged(&[("moved", 201)]), 201, t0);
        assert_eq!(memory.pending("moved").0, [3, 201]);
        for i in 0..50 {
            memory.written(&format!("id{i}"), 1, 300, t0);
        }
        assert_eq!(memory.oldest(&FxHashSet::default()), Some(3));
        memory.written("moved", 2, 300, t0);
        assert_eq!(memory.oldest(&FxHashSet::default()), None);
        assert_eq!(memory.pending, 0);
    }

    #[test]
    fn positions_appended_by_the_transaction_that_wrote_their_own_id_stay_oldest_first() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        let mut memory = Memory::default();
        memory.append(logged(&[("a", 1)]), 1, t0);
        // The next transaction writes a's run and appends 3 to a, 4 to b.
        memory.append(logged(&[("b", 4), ("a", 3)]), 3, t1);
        memory.written("a", 1, 3, t1);
        assert_eq!(memory.oldest(&FxHashSet::default()), Some(3));
        assert_eq!(memory.due(None, 0), ["b", "a"]);
    }

    #[test]
    fn a_position_noted_out_of_order_is_still_the_oldest() {
        let t0 = Instant::now();
        let mut memory = Memory::default();
        // One transaction (from 3 on) appends 3 under `b`, then 5 under
        // `a`, then a replaced message moves 3 to `a`.
        memory.note("a", 5, 3, t0);
        memory.note("a", 3, 3, t0);
        memory.note("b", 4, 3, t0);
        assert_eq!(memory.oldest(&FxHashSet::default()), Some(3));
    }

    #[test]
    fn positions_stay_a_while_after_they_are_written() {
        let t0 = Instant::now();
        let mut memory = Memory::default();
        assert_eq!(memory.positions("a", 1), None, "not started");
        memory.start(1);
        memory.append(logged(&[("a", 1), ("b", 2)]), 1, t0);
        memory.append(logged(&[("a", 3)]), 3, t0);
        assert_eq!(memory.positions("a", 1), Some(&[1, 3][..]));
        assert_eq!(memory.positions("c", 1), Some(&[][..]));
        // Everything before 3 is in runs from t0 on; kept KEEP_FOR more.
        memory.written("a", 1, 4, t0);
        memory.written("b", 1, 4, t0);
        memory.mark(t0, 3);
        memory.mark(t0 + KEEP_FOR / 2, 3);
        assert_eq!(memory.positions("a", 1), Some(&[1, 3][..]));
        memory.mark(t0 + KEEP_FOR, 3);
        assert_eq!(
            memory.positions("a", 1),
            None,
            "a reader from 1 reads the log"
        );
        assert_eq!(memory.positions("a", 3), Some(&[3][..]));
        assert_eq!(memory.pending("a").0, [3], "pending ones stay");
        assert_eq!(memory.positions("b", 3), Some(&[][..]));
        memory.forget("a");
        assert_eq!(memory.positions("a", 3), Some(&[][..]));
    }

    #[test]
    fn positions_go_by_the_greatest_written_whatever_the_order_written() {
        let t0 = Instant::now();
        let mut memory = Memory::default();
        memory.start(1);
        memory.append(logged(&[("a", 1), ("b", 2), ("a", 5)]), 1, t0);
        memory.append(logged(&[("c", 6)]), 6, t0);
        // "a" is written first, up to 5; "b" after it, up to 2.
        memory.written("a", 2, 7, t0);
        memory.written("b", 1, 7, t0);
        memory.mark(t0, 3);
        memory.mark(t0 + KEEP_FOR, 6);
        assert_eq!(memory.positions("b", 3), Some(&[][..]), "b's 2 went");
        // Until all of them can (a reader skips those it has in runs).
        assert_eq!(memory.positions("a", 3), Some(&[1, 5][..]), "a's stay");
        assert_eq!(memory.positions("c", 3), Some(&[6][..]), "pending");
        memory.mark(t0 + 2 * KEEP_FOR, 6);
        assert_eq!(memory.positions("a", 6), Some(&[][..]));
        assert_eq!(memory.positions("c", 6), Some(&[6][..]));
    }

    #[test]
    fn runs_are_read_back_and_mended_from_the_log() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE events (seq INTEGER PRIMARY KEY, own_id TEXT NOT NULL);
             CREATE TABLE log_runs (own_id TEXT NOT NULL, first_seq INTEGER NOT NULL,
                 seqs TEXT NOT NULL, PRIMARY KEY (own_id, first_seq)) WITHOUT ROWID;
             INSERT INTO events VALUES (1, 'a'), (2, 'b'), (3, 'a'), (4, 'a'), (5, 'b');",
        )
        .unwrap();
        add_run(&conn, None, "a", &[1]).unwrap();
        // A run starting at the same position takes the new ones on.
        add_run(&conn, None, "a", &[1, 3]).unwrap();
        let mut a = run_positions(&conn, "a").unwrap();
        a.sort_unstable();
        assert_eq!(a, [1, 1, 3]);
        assert_eq!(scan_positions(&conn, "b", 3).unwrap(), [5]);
        // Positions from 3 on that no run holds: a's 4, b's 5.
        mend(&conn, 3).unwrap();
        let mut a = run_positions(&conn, "a").unwrap();
        a.sort_unstable();
        assert_eq!(a, [1, 1, 3, 4]);
        assert_eq!(run_positions(&conn, "b").unwrap(), [5]);
        // Written in order, keyed by the first.
        add_run(&conn, None, "c", &[9, 7]).unwrap();
        let c: (i64, String) = conn
            .query_row(
                "SELECT first_seq, seqs FROM log_runs WHERE own_id = 'c'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(c, (7, "7,9".to_string()));
        delete_runs(&conn, "a").unwrap();
        assert!(run_positions(&conn, "a").unwrap().is_empty());
    }
}
