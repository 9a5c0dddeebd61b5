//! The event log by own id on SQLite, without an index (migration V11
//! says why): each own id's event positions are found in runs,
//! `log_runs (own_id, first_seq, seqs)`, one row for the positions of
//! its events appended over a while.
//!
//! An import writes one run per own id and batch. The server's writer
//! keeps the positions it appends in memory ([`Pending`]) and writes one
//! run per own id once they are [`super::deferred::WRITE_AFTER`] old (or
//! past its budget), so that a contact sending an event every two seconds
//! costs one run in thirty seconds instead of an index entry per event.
//! Readers of the writer's process find positions not yet in a run in
//! [`Tail`]; other readers, and the next writer after a crash, find them
//! in the log itself past `deferred_rows.log_from` ([`scan_positions`],
//! [`mend`]).
//!
//! A run may name an event whose message was since replaced by a copy
//! with another own id (the new own id's positions gain it): readers keep
//! only the events whose stored own id is the one asked for. A position
//! may be in two runs (a message replaced back): readers drop repeats.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection};
use rustc_hash::{FxHashMap, FxHashSet};

use super::contacts::{parse_positions, push_position};
use crate::Result;

/// Positions of events appended (or moved by a replaced message) by one
/// transaction, by own id, increasing.
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

/// Writes a run of positions of `own_id` (increasing). A run starting at
/// the same position (a message replaced back to this own id) takes them
/// on instead.
pub(super) fn add_run(conn: &Connection, own_id: &str, seqs: &[i64]) -> Result<()> {
    let Some(first) = seqs.first() else {
        return Ok(());
    };
    let mut text = String::with_capacity(seqs.len() * 8);
    for seq in seqs {
        push_position(&mut text, *seq);
    }
    // Not an upsert: SQLite gives one a statement journal.
    let inserted = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO log_runs (own_id, first_seq, seqs) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![own_id, first, text])?;
    if inserted == 0 {
        conn.prepare_cached(
            "UPDATE log_runs SET seqs = seqs || ',' || ?3 WHERE own_id = ?1 AND first_seq = ?2",
        )?
        .execute(params![own_id, first, text])?;
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
/// `from` is at most some seconds of the writer's appends).
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
        add_run(conn, &own_id, &seqs)?;
    }
    Ok(())
}

/// How long positions stay in [`Tail`] after they are in runs: a reader
/// whose snapshot is older than that reads them from the log instead.
const KEEP_FOR: Duration = Duration::from_secs(10);

/// Positions of the events the writer of this process appended lately,
/// by own id, for readers of this process: those not yet in a run, and
/// those written in one less than [`KEEP_FOR`] ago.
#[derive(Debug, Default)]
pub(super) struct Tail {
    /// Every event at or past this position that a transaction of this
    /// writer appended has its position here (`None`: not known).
    from: Option<i64>,
    by_own: FxHashMap<String, Vec<i64>>,
    /// What the writer recorded as the oldest position left in memory,
    /// and when (the front one at least [`KEEP_FOR`] old, once any is).
    marks: VecDeque<(Instant, i64)>,
    pruned: Option<Instant>,
}

impl Tail {
    /// The writer starts with every position before `next` in runs.
    pub(super) fn start(&mut self, next: i64) {
        self.from.get_or_insert(next);
    }

    pub(super) fn clear(&mut self) {
        *self = Tail::default();
    }

    /// Adds a transaction's positions, before it commits.
    pub(super) fn append(&mut self, logged: &Logged) {
        for (own_id, seqs) in logged {
            match self.by_own.get_mut(own_id) {
                Some(all) => all.extend_from_slice(seqs),
                None => {
                    self.by_own.insert(own_id.clone(), seqs.clone());
                }
            }
        }
    }

    /// Forgets an erased own id.
    pub(super) fn forget(&mut self, own_id: &str) {
        self.by_own.remove(own_id);
    }

    /// The positions of `own_id` here, if this holds every position past
    /// `from` (the oldest a reader's snapshot may lack in runs).
    pub(super) fn positions(&self, own_id: &str, from: i64) -> Option<&[i64]> {
        if self.from.is_none_or(|f| f > from) {
            return None;
        }
        Some(self.by_own.get(own_id).map_or(&[], Vec::as_slice))
    }

    /// The writer recorded `log_from` at `now`: positions below what it
    /// recorded [`KEEP_FOR`] ago go (at most once a second).
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
        if at > cutoff
            || self
                .pruned
                .is_some_and(|p| now < p + Duration::from_secs(1))
        {
            return;
        }
        if self.from.is_some_and(|f| f < below) {
            self.by_own.retain(|_, seqs| {
                seqs.retain(|s| *s >= below);
                !seqs.is_empty()
            });
            self.from = Some(below);
        }
        self.pruned = Some(now);
    }
}

/// The positions the writer appended that no run holds yet, by own id.
#[derive(Debug, Default)]
pub(super) struct Pending {
    /// Each own id's positions, with the serial of its entry in `order`
    /// and the first of them appended (not moved by a replaced message).
    by_own: FxHashMap<String, (u64, Vec<i64>, Option<i64>)>,
    /// Own ids in the order their first appended position became pending,
    /// with that time and a serial number (an entry written since, or
    /// pending again, is skipped): in the order of those positions, but
    /// for those of one transaction.
    order: VecDeque<(String, u64, Instant)>,
    /// Positions moved to an own id by a replaced message (older than
    /// those appended with them), with the own id.
    moved: BTreeSet<(i64, String)>,
    serial: u64,
}

impl Pending {
    pub(super) fn clear(&mut self) {
        self.by_own.clear();
        self.order.clear();
        self.moved.clear();
    }

    pub(super) fn positions(&self, own_id: &str) -> Option<&[i64]> {
        self.by_own.get(own_id).map(|(_, seqs, _)| seqs.as_slice())
    }

    /// Whether the order's entry is the current one of its own id.
    fn current(&self, (own_id, serial, _): &(String, u64, Instant)) -> bool {
        self.by_own.get(own_id).is_some_and(|(s, ..)| s == serial)
    }

    /// The own ids whose positions are due in a run: pending since
    /// `cutoff` or before, and the oldest beyond `budget` own ids; at
    /// least `least` of them and a `share`th of that backlog.
    pub(super) fn due(
        &self,
        cutoff: Option<Instant>,
        budget: usize,
        least: usize,
        share: usize,
    ) -> Vec<String> {
        let old = cutoff.map_or(0, |cutoff| {
            self.order.partition_point(|(_, _, at)| *at <= cutoff)
        });
        let backlog = old.max(self.by_own.len().saturating_sub(budget));
        let take = (least + backlog / share).min(backlog);
        let mut due: Vec<String> = self
            .order
            .iter()
            .filter(|e| self.current(e))
            .take(take)
            .map(|(own_id, _, _)| own_id.clone())
            .collect();
        // Own ids with moved positions only are not in the order.
        if due.len() < take {
            let mut more: Vec<String> = self
                .by_own
                .iter()
                .filter(|(_, (_, _, first))| first.is_none())
                .map(|(own_id, _)| own_id.clone())
                .collect();
            more.sort_unstable();
            more.truncate(take - due.len());
            due.extend(more);
        }
        due
    }

    /// Every own id pending.
    pub(super) fn all(&self) -> Vec<String> {
        let mut all: Vec<String> = self.by_own.keys().cloned().collect();
        all.sort_unstable();
        all
    }

    /// The oldest position pending, less those of the own ids in `skip`.
    pub(super) fn oldest(&self, skip: &FxHashSet<&str>) -> Option<i64> {
        let mut oldest = None;
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
            if let Some(first) = self.by_own[&e.0].2 {
                oldest = Some(oldest.map_or(first, |o: i64| o.min(first)));
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

    /// Written in a run, or erased.
    pub(super) fn remove(&mut self, own_id: &str) {
        self.by_own.remove(own_id);
        while self.order.front().is_some_and(|e| !self.current(e)) {
            self.order.pop_front();
        }
        if !self.moved.is_empty() {
            self.moved.retain(|(_, o)| o != own_id);
        }
    }

    /// Adds a committed transaction's positions: those before `start`
    /// were moved by replaced messages, the others appended.
    pub(super) fn add(&mut self, logged: Logged, start: i64, now: Instant) {
        for (own_id, seqs) in logged {
            for seq in seqs.iter().filter(|s| **s < start) {
                self.moved.insert((*seq, own_id.clone()));
            }
            let appended = seqs.iter().copied().filter(|s| *s >= start).min();
            let entry = self.by_own.get_mut(&own_id);
            let ordered = entry.as_ref().is_some_and(|(_, _, first)| first.is_some());
            if !ordered && appended.is_some() {
                self.serial += 1;
                self.order.push_back((own_id.clone(), self.serial, now));
            }
            match entry {
                Some((serial, all, first)) => {
                    all.extend(seqs);
                    if !ordered && appended.is_some() {
                        *serial = self.serial;
                        *first = appended;
                    }
                }
                None => {
                    self.by_own.insert(own_id, (self.serial, seqs, appended));
                }
            }
        }
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
        let mut pending = Pending::default();
        pending.add(logged(&[("a", 1), ("b", 2), ("a", 3)]), 1, t0);
        pending.add(logged(&[("c", 4), ("a", 5)]), 4, later);
        assert_eq!(pending.positions("a"), Some(&[1, 3, 5][..]));
        // Nothing old enough, all within budget.
        assert!(pending.due(None, 10, 16, 64).is_empty());
        // Pending since t0: a and b, at least one of them.
        assert_eq!(pending.due(Some(t0), 10, 1, 64), ["a"]);
        assert_eq!(pending.due(Some(t0), 10, 16, 64), ["a", "b"]);
        // Beyond a budget of one own id: the two oldest.
        assert_eq!(pending.due(None, 1, 16, 64), ["a", "b"]);
        let skip: FxHashSet<&str> = ["a"].into_iter().collect();
        assert_eq!(pending.oldest(&skip), Some(2));
        pending.remove("a");
        assert_eq!(pending.oldest(&FxHashSet::default()), Some(2));
        // Pending again: at the back, with its new positions only.
        pending.add(logged(&[("a", 6)]), 6, later);
        assert_eq!(pending.due(None, 0, 16, 64), ["b", "c", "a"]);
        assert_eq!(pending.positions("a"), Some(&[6][..]));
        assert_eq!(pending.all(), ["a", "b", "c"]);
    }

    #[test]
    fn the_oldest_pending_position_is_found_whatever_the_order() {
        let t0 = Instant::now();
        let mut pending = Pending::default();
        // One transaction's own ids come in no particular order.
        let many: Vec<(String, i64)> = (0..50).map(|i| (format!("id{i}"), 100 - i)).collect();
        let pairs: Vec<(&str, i64)> = many.iter().map(|(o, s)| (o.as_str(), *s)).collect();
        pending.add(logged(&pairs), 51, t0);
        pending.add(logged(&[("late", 120)]), 101, t0 + Duration::from_secs(1));
        assert_eq!(pending.oldest(&FxHashSet::default()), Some(51));
        let skip: FxHashSet<&str> = ["id49"].into_iter().collect();
        assert_eq!(pending.oldest(&skip), Some(52));
        // A replaced message moves an older position to an own id.
        pending.add(logged(&[("late", 130), ("late", 7)]), 130, t0);
        assert_eq!(pending.oldest(&FxHashSet::default()), Some(7));
        let skip: FxHashSet<&str> = ["late"].into_iter().collect();
        assert_eq!(pending.oldest(&skip), Some(51));
        pending.remove("late");
        assert_eq!(pending.oldest(&FxHashSet::default()), Some(51));
        // An own id given only a moved position is still due and written.
        pending.add(logged(&[("moved", 3)]), 200, t0);
        assert_eq!(pending.oldest(&FxHashSet::default()), Some(3));
        assert!(pending.due(None, 0, 100, 64).contains(&"moved".to_string()));
        pending.add(logged(&[("moved", 201)]), 201, t0);
        assert_eq!(pending.positions("moved"), Some(&[3, 201][..]));
        for i in 0..50 {
            pending.remove(&format!("id{i}"));
        }
        assert_eq!(pending.oldest(&FxHashSet::default()), Some(3));
        pending.remove("moved");
        assert_eq!(pending.oldest(&FxHashSet::default()), None);
    }

    #[test]
    fn the_tail_keeps_positions_a_while_after_they_are_written() {
        let t0 = Instant::now();
        let mut tail = Tail::default();
        assert_eq!(tail.positions("a", 1), None, "not started");
        tail.start(1);
        tail.append(&logged(&[("a", 1), ("b", 2)]));
        tail.append(&logged(&[("a", 3)]));
        assert_eq!(tail.positions("a", 1), Some(&[1, 3][..]));
        assert_eq!(tail.positions("c", 1), Some(&[][..]));
        // Everything before 3 is in runs from t0 on; kept KEEP_FOR more.
        tail.mark(t0, 3);
        tail.mark(t0 + KEEP_FOR / 2, 3);
        assert_eq!(tail.positions("a", 1), Some(&[1, 3][..]));
        tail.mark(t0 + KEEP_FOR, 3);
        assert_eq!(
            tail.positions("a", 1),
            None,
            "a reader from 1 reads the log"
        );
        assert_eq!(tail.positions("a", 3), Some(&[3][..]));
        assert_eq!(tail.positions("b", 3), Some(&[][..]));
        tail.forget("a");
        assert_eq!(tail.positions("a", 3), Some(&[][..]));
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
        add_run(&conn, "a", &[1]).unwrap();
        // A run starting at the same position takes the new ones on.
        add_run(&conn, "a", &[1, 3]).unwrap();
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
        delete_runs(&conn, "a").unwrap();
        assert!(run_positions(&conn, "a").unwrap().is_empty());
    }
}
