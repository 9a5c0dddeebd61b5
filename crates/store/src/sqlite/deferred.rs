//! Live rows written later: the server's writer keeps the updates of live
//! rows in memory and writes each one paced, some seconds later, instead of
//! in every acknowledged transaction (the event log, identities, the ledger,
//! firings and new rows still go there). A contact touched again meanwhile
//! is written once for all its changes. Readers in this process read the
//! rows through this memory; after a crash the store re-derives the rows
//! from the log ([`recover`]). `docs/storage.md`, "Live rows written later".
//! The positions of the events it appends are kept the same way, by own
//! id, and written in runs later ([`logruns`]).
//!
//! The protocol, in the database's `deferred_rows` table (V10): one row
//! while the writer holds unwritten rows or positions, with the epoch of
//! its memory, where the log and the ledger stood when its oldest
//! unwritten row was first kept, and (V11) the oldest position in no run.
//! Readers use the memory only while its epoch is the one in their
//! snapshot. (V12) The `message_ids` entries of the random messageIds it
//! appends are kept too and written in sorted generations ([`msgids`]),
//! with the oldest position the table may lack. Any other connection that
//! writes live rows (another process, an activation) first re-derives
//! every contact the row names and deletes it; the writer, finding it
//! gone, forgets its memory.

use std::collections::hash_map::Entry as Slot;
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use leadscore_core::model::Model;
use leadscore_core::time::Timestamp;
use rusqlite::{params, Connection, OptionalExtension};
use rustc_hash::{FxHashMap, FxHashSet};
use smol_str::SmolStr;

use super::borrowed::Prepared;
use super::contacts;
use super::logruns::{self, Memory};
use super::msgids::{self, Entries, Pending};
use super::rows::Sql;
use crate::engine::{self, Positions, Row, Tx};
use crate::prefetch::prefetch;
use crate::Result;

/// How long a changed live row stays in memory before it is written, unless
/// the memory holds more than its budget.
pub(super) const WRITE_AFTER: Duration = Duration::from_secs(30);

/// Which transaction writes what is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Writes {
    /// One that requests wait for (an ingest, an erasure, …): what is due,
    /// or, once the writer writes in its idle moments ([`Owner::idle`]),
    /// what is due half [`WRITE_AFTER`] longer than that, which only a
    /// writer without idle moments leaves to it.
    Acked,
    /// One of the writer's idle moments ([`super::SqliteStore::write_idle`]):
    /// what is due.
    Idle,
    /// Everything kept (a writer closing, an activation).
    All,
}

/// Rows written per transaction at least, once any is due: about 5,000 a
/// second at the server's 300 commits a second, the pace that session 20's
/// measurements found costs the acknowledgements least
/// (`docs/performance.md`).
const ROWS_PER_COMMIT: usize = 16;

/// A due backlog is written at this fraction per transaction on top.
const BACKLOG_SHARE: usize = 64;

/// Replaced entries the writer drops per idle moment, at most
/// ([`Owner::bury`]): about 0.2 ms (4.6 % of a writer busy 50 s a minute,
/// for about 50,000 a second).
pub(super) const IDLE_DROPS: usize = 256;

/// Replaced entries left to the idle moments, at most (about a third of a
/// second of replacements at 50k events/s, some 25 MB): beyond, a commit
/// drops them itself.
const UNBURIED_MAX: usize = 16_384;

/// How many of a due `backlog` (rows, or own ids' positions) one
/// transaction writes: at least [`ROWS_PER_COMMIT`] and a
/// [`BACKLOG_SHARE`]th of it, at most all of it.
pub(super) fn paced(backlog: usize) -> usize {
    (ROWS_PER_COMMIT + backlog / BACKLOG_SHARE).min(backlog)
}

/// Batches of replaced entries the graveyard's thread may lag behind by
/// (about half a second of commits at the server's pace); beyond, the
/// writer drops them itself, as without one.
const GRAVE_BATCHES: usize = 256;

/// Where the writer's commits send the entries they replaced, to be
/// dropped on a thread of their own (`leadscore-bury`): freeing a row's
/// allocations reads memory long out of the caches, 5.3 % of the server
/// writer's time in its idle moments (`perf`, docs/performance.md,
/// session 44), time the other core had spare.
#[derive(Debug)]
pub(super) struct Graveyard {
    to: std::sync::mpsc::SyncSender<Vec<Arc<Entry>>>,
}

impl Graveyard {
    /// The thread started, or `None` when it cannot be (the writer then
    /// drops what it replaces itself).
    fn start() -> Option<Graveyard> {
        let (to, from) = std::sync::mpsc::sync_channel::<Vec<Arc<Entry>>>(GRAVE_BATCHES);
        std::thread::Builder::new()
            .name("leadscore-bury".into())
            .spawn(move || from.into_iter().for_each(drop))
            .ok()?;
        Some(Graveyard { to })
    }

    /// Hands `entries` over; gives them back when the thread lags too far
    /// behind, or is gone.
    fn take(&self, entries: Vec<Arc<Entry>>) -> std::result::Result<(), Vec<Arc<Entry>>> {
        use std::sync::mpsc::TrySendError;
        self.to.try_send(entries).map_err(|e| match e {
            TrySendError::Full(back) | TrySendError::Disconnected(back) => back,
        })
    }
}

/// A live row kept in memory.
#[derive(Debug)]
pub(super) struct Entry {
    /// The row as it is now.
    pub row: Arc<Row>,
    /// Its ledger positions not in a run (`seq,seq,…`).
    pub history: Option<Positions>,
    /// The stored row: where it is, and its score and due time (the
    /// indexed columns) as stored.
    pub rowid: i64,
    pub stored_score: f64,
    pub stored_due: Option<Timestamp>,
    /// When the row was first kept unwritten: the log and ledger positions
    /// then, the time, and a serial number of that keeping.
    pub since: Since,
}

/// When a row was first kept unwritten.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Since {
    pub events: i64,
    pub ledger: i64,
    pub at: Instant,
    pub serial: u64,
}

/// The entry `id` has: `staged`'s change to it if it made one (`None`:
/// written or deleted), else the one kept in `rows`.
fn entry_in<'a>(
    staged: Option<&'a Staged>,
    rows: &'a FxHashMap<SmolStr, Arc<Entry>>,
    id: &str,
) -> Option<&'a Arc<Entry>> {
    match staged.and_then(|s| s.changes.get(id)) {
        Some(change) => change.as_ref(),
        None => rows.get(id),
    }
}

/// The rows a process's writer keeps unwritten, for the database at one
/// path: the writer's own, shared with every other connection this process
/// opens on it (readers, activations).
#[derive(Debug, Default)]
pub(super) struct Overlay {
    inner: RwLock<Inner>,
    /// Whether a writer keeps its rows here (one at a time).
    owned: std::sync::atomic::AtomicBool,
    /// Set by the writer from just before a commit until the overlay holds
    /// what it committed.
    applying: std::sync::atomic::AtomicBool,
    /// At most the earliest due time of a kept row (its nanoseconds): the
    /// writer's evaluation of due triggers looks through the kept rows
    /// only once one may be due.
    min_due: std::sync::atomic::AtomicI64,
    /// The `message_ids` entries the writer appended and has not written
    /// ([`msgids`]): the writer's alone (readers never look messageIds
    /// up), so out of `inner`'s lock.
    ids: Mutex<Pending>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The epoch in `deferred_rows` that `rows` go with (0: none).
    epoch: i64,
    rows: FxHashMap<SmolStr, Arc<Entry>>,
    /// Positions the writer appended, by own id ([`logruns`]).
    log: Memory,
    /// Contacts in the order they were first kept, with that keeping's
    /// serial and time (an entry whose row was written since, or kept
    /// again, is skipped).
    order: VecDeque<(SmolStr, u64, Instant)>,
}

/// Overlays by database path, so that every connection a process opens on
/// one database shares its writer's.
static OVERLAYS: Mutex<Option<HashMap<PathBuf, Weak<Overlay>>>> = Mutex::new(None);

impl Overlay {
    /// The overlay of the database at `path` (an existing file).
    /// A path that names no file (an in-memory database) gets an overlay
    /// of its own.
    pub(super) fn of(path: &Path) -> Arc<Overlay> {
        let Ok(key) = std::fs::canonicalize(path) else {
            return Arc::new(Overlay::default());
        };
        let mut overlays = OVERLAYS.lock().unwrap_or_else(|e| e.into_inner());
        let overlays = overlays.get_or_insert_with(HashMap::new);
        overlays.retain(|_, overlay| overlay.strong_count() > 0);
        if let Some(overlay) = overlays.get(&key).and_then(Weak::upgrade) {
            return overlay;
        }
        let overlay = Arc::new(Overlay::default());
        overlays.insert(key, Arc::downgrade(&overlay));
        overlay
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The writer's pending `message_ids` entries.
    pub(super) fn ids(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.ids.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The overlay as a reader whose snapshot `conn` reads sees it: `None`
    /// unless it holds rows of the epoch recorded there.
    pub(super) fn view<'o>(&'o self, conn: &Connection) -> Result<Option<&'o Overlay>> {
        if self.read().epoch == 0 {
            return Ok(None);
        }
        Ok(self.view_of(recorded(conn)?.map(|r| r.epoch)))
    }

    /// [`Self::view`] for a reader that read the recorded epoch itself
    /// (`None`: no row in `deferred_rows`).
    pub(super) fn view_of(&self, recorded: Option<i64>) -> Option<&Overlay> {
        let epoch = self.read().epoch;
        (epoch != 0 && recorded == Some(epoch)).then_some(self)
    }

    /// The entry kept for `id`.
    pub(super) fn get(&self, id: &str) -> Option<Arc<Entry>> {
        self.read().rows.get(id).cloned()
    }

    /// The entries of `ids`, as [`Self::get`] gives them, or
    /// `staged`'s where it changes them ([`Staged::entry`]). Looked up
    /// together: under one lock, and with the lookups free to overlap,
    /// each a cache miss or two once the overlay is large. Their
    /// reference counts, atomic operations that would wait for those
    /// misses one at a time, are taken after all are found.
    pub(super) fn get_all<'a>(
        &self,
        staged: Option<&Staged>,
        ids: impl Iterator<Item = &'a str>,
    ) -> Vec<Option<Arc<Entry>>> {
        let inner = self.read();
        let found: Vec<Option<&Arc<Entry>>> =
            ids.map(|id| entry_in(staged, &inner.rows, id)).collect();
        found
            .into_iter()
            .map(Option::<&Arc<Entry>>::cloned)
            .collect()
    }

    /// Every entry kept (for a listing that must see them all).
    pub(super) fn entries(&self) -> Vec<Arc<Entry>> {
        self.read().rows.values().cloned().collect()
    }

    /// The kept rows due at `now` (due time and id), less those `skip`
    /// names; for the writer's evaluation of due triggers, which alone
    /// calls it (it then notes the earliest due time).
    pub(super) fn due_at(
        &self,
        now: Timestamp,
        skip: impl Fn(&str) -> bool,
    ) -> Vec<(Timestamp, SmolStr)> {
        use std::sync::atomic::Ordering;
        if self.min_due.load(Ordering::Acquire) > now.0 {
            return Vec::new();
        }
        let inner = self.read();
        let mut earliest = i64::MAX;
        let mut due = Vec::new();
        for (id, entry) in &inner.rows {
            let Some(at) = entry.row.due else {
                continue;
            };
            earliest = earliest.min(at.0);
            if at <= now && !skip(id) {
                due.push((at, id.clone()));
            }
        }
        self.min_due.store(earliest, Ordering::Release);
        due
    }

    /// Whether the kept rows are exactly those the writer of `epoch` has
    /// committed, for a connection that holds the database's write lock
    /// (the writer then cannot commit): it waits up to a second for the
    /// writer to finish applying its last commit.
    fn current_for(&self, epoch: i64) -> bool {
        use std::sync::atomic::Ordering;
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.applying.load(Ordering::Acquire) {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        self.read().epoch == epoch
    }

    /// How many rows are kept.
    pub(super) fn len(&self) -> usize {
        self.read().rows.len()
    }

    /// Adds to `seqs` the positions of `own_id`'s events the writer
    /// appended lately, holding every one no run holds in a snapshot that
    /// recorded `check` (epoch, oldest position left in memory); `false`
    /// when they cannot be known here. Without `check`, for the writer
    /// itself.
    pub(super) fn log_positions(
        &self,
        own_id: &str,
        check: Option<(i64, i64)>,
        seqs: &mut Vec<i64>,
    ) -> bool {
        let inner = self.read();
        let from = match check {
            Some((epoch, from)) if epoch == inner.epoch => from,
            Some(_) => return false,
            None => i64::MAX,
        };
        match inner.log.positions(own_id, from) {
            Some(held) => {
                seqs.extend_from_slice(held);
                true
            }
            None => false,
        }
    }

    /// Forgets every row and position (they are written, or re-derived by
    /// another connection).
    pub(super) fn clear(&self) {
        let mut inner = self.write();
        inner.epoch = 0;
        inner.rows.clear();
        inner.order.clear();
        inner.log.clear();
        drop(inner);
        self.ids().clear();
    }
}

/// What `deferred_rows` records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Recorded {
    pub epoch: i64,
    /// Where the log and the ledger stood when the oldest row kept was
    /// first kept (`i64::MAX`: no row is kept, only positions).
    pub events_from: i64,
    pub ledger_from: i64,
    /// The oldest position of the log that may be in no run
    /// ([`logruns`]; `None`: every one is).
    pub log_from: Option<i64>,
    /// (V12) The oldest position of the log that may lack its entry in
    /// `message_ids` ([`msgids`]; `None`: every one has it).
    pub ids_from: Option<i64>,
}

/// The `deferred_rows` row in `conn`'s snapshot.
pub(super) fn recorded(conn: &Connection) -> Result<Option<Recorded>> {
    Ok(conn
        .prepare_cached(
            "SELECT epoch, events_from, ledger_from, log_from, ids_from FROM deferred_rows",
        )?
        .query_row([], |r| {
            Ok(Recorded {
                epoch: r.get(0)?,
                events_from: r.get(1)?,
                ledger_from: r.get(2)?,
                log_from: r.get(3)?,
                ids_from: r.get(4)?,
            })
        })
        .optional()?)
}

/// Sets or clears the `deferred_rows` row (an update, else an insert: an
/// upsert would give the statement a journal of its own).
fn record(conn: &Connection, r: Option<Recorded>) -> Result<()> {
    let Some(r) = r else {
        conn.prepare_cached("DELETE FROM deferred_rows")?
            .execute([])?;
        return Ok(());
    };
    let values = params![
        r.epoch,
        r.events_from,
        r.ledger_from,
        r.log_from,
        r.ids_from
    ];
    let updated = conn
        .prepare_cached(
            "UPDATE deferred_rows SET epoch = ?1, events_from = ?2, ledger_from = ?3,
                log_from = ?4, ids_from = ?5",
        )?
        .execute(values)?;
    if updated == 0 {
        conn.prepare_cached(
            "INSERT INTO deferred_rows (only, epoch, events_from, ledger_from, log_from, ids_from)
             VALUES (1, ?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(values)?;
    }
    Ok(())
}

/// A transaction's changes to the overlay, applied once it commits: a
/// contact's new entry, or `None` for a row written or deleted.
#[derive(Debug)]
pub(super) struct Staged {
    /// The log and ledger positions at the transaction's start, and when.
    start: (i64, i64, Instant),
    changes: FxHashMap<SmolStr, Option<Arc<Entry>>>,
    next_serial: u64,
    /// What the transaction records in `deferred_rows`, once it decided.
    record: Option<Option<Recorded>>,
    /// The greatest position it appended or moved.
    noted: Option<i64>,
    /// The positions it appended or moved, in the order noted
    /// ([`Staged::note`]), each with where its own id is in `note_ids`
    /// (one buffer: no allocation for each long id).
    notes: Vec<(std::ops::Range<usize>, i64)>,
    note_ids: String,
    /// Own ids whose pending positions it wrote in runs, and how many
    /// positions that took.
    flushed: Vec<(SmolStr, usize)>,
    /// Own ids it erased.
    forgotten: Vec<SmolStr>,
    /// Every position before this is in a run once it commits; the
    /// others are in the writer's memory ([`Memory`]).
    log_from: i64,
    /// The `message_ids` entries it appended, those of events it erased,
    /// where the frozen generation is written up to once it commits
    /// (`None`: where it was), and whether it wrote every pending entry
    /// and its own.
    pub(super) ids: Entries,
    pub(super) ids_erased: Vec<(i64, i64)>,
    ids_written: Option<usize>,
    ids_all: bool,
    /// Its deletions took the last positions of the log or the ledger
    /// ([`Staged::check_positions`]).
    restart: bool,
}

impl Staged {
    /// After deletions (an erasure): whether they took the last positions
    /// of the log or the ledger. SQLite appends one above the largest
    /// rowid, so the next appends would take positions that the memory and
    /// `deferred_rows` hold to be behind them (its marks, the kept rows'
    /// starts, the pending `message_ids` entries): such a transaction
    /// writes everything kept ([`Staged::writes_all`]), and the memory
    /// starts again once it commits ([`Owner::committed`]).
    pub(super) fn check_positions(&mut self, conn: &Connection) -> Result<()> {
        self.restart = next_seq(conn, NEXT_EVENT)? < self.start.0
            || next_seq(conn, NEXT_ENTRY)? < self.start.1;
        Ok(())
    }

    /// Whether the transaction wrote anything kept: a row, a run of
    /// positions, `message_ids` entries.
    pub(super) fn wrote_kept(&self) -> bool {
        self.changes.values().any(Option::is_none)
            || !self.flushed.is_empty()
            || self.ids_written.is_some()
            || self.ids_all
    }

    /// Whether the transaction must write everything kept.
    pub(super) fn writes_all(&self) -> bool {
        self.restart
    }

    /// The entry `id` has in this transaction: staged, else kept.
    pub(super) fn entry(&self, overlay: &Overlay, id: &str) -> Option<Arc<Entry>> {
        entry_in(Some(self), &overlay.read().rows, id).cloned()
    }

    /// Keeps `row` unwritten: `kept` is its entry so far, else `stored`
    /// says what the stored row holds (rowid, score, due).
    pub(super) fn keep(
        &mut self,
        row: Arc<Row>,
        history: Option<Positions>,
        kept: Option<&Entry>,
        stored: (i64, f64, Option<Timestamp>),
    ) {
        let (rowid, stored_score, stored_due, since) = match kept {
            Some(e) => (e.rowid, e.stored_score, e.stored_due, e.since),
            None => {
                let (events, ledger, at) = self.start;
                self.next_serial += 1;
                let since = Since {
                    events,
                    ledger,
                    at,
                    serial: self.next_serial,
                };
                (stored.0, stored.1, stored.2, since)
            }
        };
        let id = row.id.clone();
        let entry = Entry {
            row,
            history,
            rowid,
            stored_score,
            stored_due,
            since,
        };
        self.changes.insert(id, Some(Arc::new(entry)));
    }

    /// The row of `id` is written or gone.
    pub(super) fn drop_row(&mut self, id: &str) {
        self.changes.insert(SmolStr::new(id), None);
    }

    /// `own_id` is erased: its pending positions go once this commits.
    pub(super) fn forget(&mut self, own_id: &str) {
        self.forgotten.push(SmolStr::new(own_id));
    }

    /// The event at `seq` (appended, or moved by a replaced message) has
    /// `own_id`: noted here until [`Staged::put_notes`] puts the
    /// transaction's notes in the overlay's memory together.
    pub(super) fn note(&mut self, own_id: &str, seq: i64) {
        let start = self.note_ids.len();
        self.note_ids.push_str(own_id);
        self.notes.push((start..self.note_ids.len(), seq));
        self.noted = Some(self.noted.map_or(seq, |most| most.max(seq)));
    }

    /// The positions noted for `own_id` and not yet in the memory.
    pub(super) fn notes_of<'a>(&'a self, own_id: &'a str) -> impl Iterator<Item = i64> + 'a {
        self.notes
            .iter()
            .filter(move |(id, _)| &self.note_ids[id.clone()] == own_id)
            .map(|(_, seq)| *seq)
    }

    /// Puts the positions noted in `overlay`'s memory, where readers of
    /// the process find them from now on (a snapshot without this
    /// transaction's commit finds no event there), and the writer's
    /// choice of what is due sees them. Once, before the commit: under one
    /// lock, and with the contacts' lookups (a cache miss or two each,
    /// once the memory holds many) free to overlap, where a lock and a
    /// lookup for each event as it came took a twentieth of the writer's
    /// time with a batch's contacts spread.
    pub(super) fn put_notes(&mut self, overlay: &Overlay) {
        if self.notes.is_empty() {
            return;
        }
        let mut inner = overlay.write();
        let ids = &self.note_ids;
        inner
            .log
            .prefetch(self.notes.iter().map(|(id, _)| &ids[id.clone()]));
        for (id, seq) in self.notes.drain(..) {
            inner.log.note(&ids[id], seq, self.start.0, self.start.2);
        }
        self.note_ids.clear();
    }

    /// Whether this transaction changed what is kept for `id`.
    pub(super) fn changes_row(&self, id: &str) -> bool {
        self.changes.contains_key(id)
    }

    /// The entries this transaction kept.
    pub(super) fn kept_here(&self) -> impl Iterator<Item = Arc<Entry>> + '_ {
        self.changes.values().flatten().cloned()
    }
}

/// The writer's side of the overlay.
#[derive(Debug)]
pub(super) struct Owner {
    pub overlay: Arc<Overlay>,
    epoch: i64,
    /// What this writer last recorded in `deferred_rows` (committed).
    recorded: Option<Recorded>,
    serial: u64,
    /// Rows kept at most before they are written regardless of age.
    budget: usize,
    /// Rows the last committed transaction changed: the next one's staging
    /// starts that large (ingest groups change about as many each time).
    last_changes: usize,
    /// How long what is kept waits before it is due ([`WRITE_AFTER`]).
    write_after: Duration,
    /// Whether the writer writes what is due in its idle moments
    /// ([`Owner::idle`]).
    idles: bool,
    /// Added to the clock (tests: time passing without sleeping).
    shift: Duration,
    /// Entries that commits replaced or removed and the graveyard did not
    /// take, left for the idle moments to drop ([`Owner::bury`]): dropping
    /// a row frees its state's allocations, 4.6 % of the server writer's
    /// time in `committed` (`perf`, docs/performance.md), and did so
    /// holding the lock readers wait for.
    unburied: Vec<Arc<Entry>>,
    /// At most this many are left ([`UNBURIED_MAX`]; tests lower it).
    pub(super) unburied_max: usize,
    /// Where they go first, if it started (tests take it away).
    pub(super) graveyard: Option<Graveyard>,
    /// SQLite's `data_version` at this writer's last transaction: it
    /// changes when another connection commits.
    data_version: Option<i64>,
}

impl Owner {
    /// A writer keeping at most about `budget` rows unwritten in
    /// `overlay`; an error when another writer of this process keeps rows
    /// there (of the same database).
    pub(super) fn new(
        overlay: Arc<Overlay>,
        budget: usize,
        write_after: Duration,
    ) -> Result<Owner> {
        use std::sync::atomic::Ordering;
        if overlay
            .owned
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(crate::StoreError::Database(
                "another connection of this process already keeps live rows of this database in memory".into(),
            ));
        }
        // Any positive number unlikely to be another writer's.
        let mut bytes = [0u8; 8];
        if getrandom::fill(&mut bytes).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1);
            bytes = (nanos ^ u64::from(std::process::id())).to_le_bytes();
        }
        Ok(Owner {
            overlay,
            epoch: (i64::from_le_bytes(bytes) & i64::MAX).max(1),
            recorded: None,
            serial: 0,
            budget: budget.max(1),
            last_changes: 0,
            write_after,
            idles: false,
            shift: Duration::ZERO,
            unburied: Vec::new(),
            unburied_max: UNBURIED_MAX,
            graveyard: Graveyard::start(),
            data_version: None,
        })
    }

    /// SQLite's `data_version` as this writer's transaction began
    /// ([`Owner::begin`]; `None` before its first): what says whether
    /// another connection committed since, for the writer's cache too.
    pub(super) fn data_version(&self) -> Option<i64> {
        self.data_version
    }

    /// The writer's clock.
    pub(super) fn now(&self) -> Instant {
        Instant::now() + self.shift
    }

    /// Moves the writer's clock on by `by` (tests).
    pub(super) fn advance(&mut self, by: Duration) {
        self.shift += by;
    }

    /// Drops up to `most` of the entries commits replaced; returns whether
    /// any is left.
    pub(super) fn bury(&mut self, most: usize) -> bool {
        let left = self.unburied.len().saturating_sub(most);
        self.unburied.truncate(left);
        left > 0
    }

    /// Whatever was kept at or before the returned time is due for a
    /// transaction of kind `writes` at `now`.
    fn cutoff(&self, writes: Writes, now: Instant) -> Option<Instant> {
        let after = match writes {
            Writes::Acked if self.idles => self.write_after + self.write_after / 2,
            _ => self.write_after,
        };
        now.checked_sub(after)
    }

    /// The writer has an idle moment at `now`: from now on what is due is
    /// written in such moments first ([`Writes::Idle`]). Returns how long
    /// until something is due: zero when something is, `None` when nothing
    /// is kept.
    pub(super) fn idle(&mut self, now: Instant) -> Option<Duration> {
        self.idles = true;
        let cutoff = now.checked_sub(self.write_after);
        let since = |at: Instant| match cutoff {
            Some(cutoff) => at.saturating_duration_since(cutoff),
            None => self.write_after,
        };
        if self.over_budget() {
            return Some(Duration::ZERO);
        }
        // Each kind's first pending, as `first_pending` says it.
        let inner = self.overlay.read();
        let rows = inner.order.front().map(|(_, _, at)| Some(*at));
        let log = inner.log.first_pending(self.budget);
        drop(inner);
        let ids = self.overlay.ids().first_pending();
        [rows, log, ids]
            .into_iter()
            .flatten()
            .map(|first| first.map_or(Duration::ZERO, since))
            .min()
    }

    /// Whether the memory holds more rows or log positions than its
    /// budget: what is due is then written whatever else waits.
    pub(super) fn over_budget(&self) -> bool {
        let inner = self.overlay.read();
        inner.rows.len() > self.budget || inner.log.first_pending(self.budget) == Some(None)
    }

    /// Starts a write transaction `conn` has open: checks that the memory
    /// still goes with the database, forgetting it when another connection
    /// re-derived the rows, and re-deriving what a writer before this one
    /// left (`model`: the active one). Returns the staging.
    pub(super) fn begin(
        &mut self,
        conn: &Connection,
        model: Option<(&Model, u32)>,
    ) -> Result<Staged> {
        // Another connection's commit may have added `message_ids` entries
        // that the filter of this writer's memory lacks.
        let version: i64 = conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |r| r.get(0))?;
        if let Some(was) = self.data_version.replace(version).filter(|v| *v != version) {
            tracing::debug!(
                was,
                version,
                "another connection committed: message-id filter dropped"
            );
            self.overlay.ids().forget_filter();
        }
        let found = recorded(conn)?;
        if found != self.recorded {
            self.overlay.clear();
            self.recorded = None;
            if found.is_some() {
                recover(conn, model)?;
            }
        }
        let start = (
            next_seq(conn, NEXT_EVENT)?,
            next_seq(conn, NEXT_ENTRY)?,
            self.now(),
        );
        // Every position before the first transaction's is in a run.
        self.overlay.write().log.start(start.0);
        Ok(Staged {
            start,
            changes: FxHashMap::with_capacity_and_hasher(self.last_changes, Default::default()),
            next_serial: self.serial,
            record: None,
            noted: None,
            notes: Vec::new(),
            note_ids: String::new(),
            flushed: Vec::new(),
            forgotten: Vec::new(),
            log_from: start.0,
            ids: Entries::default(),
            ids_erased: Vec::new(),
            ids_written: None,
            ids_all: false,
            restart: false,
        })
    }

    /// The rows due to be written by a transaction of kind `writes` at
    /// `now`, oldest first: those kept longer than [`WRITE_AFTER`] (see
    /// [`Writes`]) and those beyond the budget, at least
    /// [`ROWS_PER_COMMIT`] of them and a [`BACKLOG_SHARE`]th of that
    /// backlog.
    pub(super) fn due(&self, staged: &Staged, writes: Writes, now: Instant) -> Vec<SmolStr> {
        let inner = self.overlay.read();
        let new = staged
            .changes
            .iter()
            .filter(|(id, change)| change.is_some() && !inner.rows.contains_key(*id))
            .count();
        let over_budget = (inner.rows.len() + new).saturating_sub(self.budget);
        // Kept in time order, so those kept long enough are a prefix (with
        // the entries of rows written since: an upper bound).
        let old = match self.cutoff(writes, now) {
            Some(cutoff) => inner.order.partition_point(|(_, _, at)| *at <= cutoff),
            None => 0,
        };
        let take = paced(old.max(over_budget));
        let mut due = Vec::with_capacity(take);
        for (id, serial, _) in &inner.order {
            if due.len() >= take {
                break;
            }
            if inner.rows.get(id).is_none_or(|e| e.since.serial != *serial) {
                continue; // written since
            }
            if matches!(staged.changes.get(id), Some(None)) {
                continue; // written or deleted by this transaction
            }
            due.push(id.clone());
        }
        due
    }

    /// Writes, in the transaction `conn` has open, the runs of the
    /// pending positions of the own ids due and the next slice of the
    /// frozen generation of `message_ids` entries, freezing the pending
    /// ones first when they are due, as a transaction of kind `writes` at
    /// `now` does ([`Writes::All`]: every own id's positions, and every
    /// pending entry with the transaction's own).
    pub(super) fn write_due(
        &self,
        conn: &Connection,
        prepared: Option<&Prepared>,
        staged: &mut Staged,
        writes: Writes,
        now: Instant,
    ) -> Result<()> {
        let all = writes == Writes::All;
        let cutoff = self.cutoff(writes, now);
        let inner = self.overlay.read();
        let due = if all {
            inner.log.all()
        } else {
            inner.log.due(cutoff, self.budget)
        };
        for own_id in due {
            if staged.forgotten.contains(&own_id) {
                continue;
            }
            let (seqs, upto) = inner.log.pending(&own_id);
            logruns::add_run(conn, prepared, &own_id, seqs)?;
            staged.flushed.push((own_id, upto));
        }
        drop(inner);
        let mut ids = self.overlay.ids();
        let skip = &staged.ids_erased;
        if all {
            for entries in [ids.unwritten(), staged.ids.sorted()] {
                msgids::write(conn, prepared, &entries, skip)?;
            }
            staged.ids_all = true;
            return Ok(());
        }
        ids.freeze_if_due(cutoff);
        // The idle moments write the slices, unless the next generation
        // is due and waits for them.
        if writes == Writes::Acked && self.idles && !ids.fresh_due(cutoff) {
            return Ok(());
        }
        let (slice, written) = ids.slice();
        if !slice.is_empty() {
            msgids::write(conn, prepared, slice, skip)?;
            staged.ids_written = Some(written);
        }
        Ok(())
    }

    /// Records in `deferred_rows` where the oldest row still kept, the
    /// oldest position in no run and the oldest without its `message_ids`
    /// entry after this transaction stand (or that there is none), inside
    /// it.
    pub(super) fn record(&self, conn: &Connection, staged: &mut Staged) -> Result<()> {
        let skip: FxHashSet<&str> = staged
            .flushed
            .iter()
            .map(|(own_id, _)| own_id)
            .chain(&staged.forgotten)
            .map(SmolStr::as_str)
            .collect();
        let pending = self.overlay.read().log.oldest(&skip);
        // This transaction's positions are in the memory already.
        staged.log_from = match pending {
            Some(oldest) => oldest,
            None => staged.start.0.max(staged.noted.map_or(0, |last| last + 1)),
        };
        let rows = self.oldest(staged);
        let ids_from = if staged.ids_all {
            None
        } else {
            let ids = self.overlay.ids();
            let written = staged.ids_written.unwrap_or(ids.written());
            // The transaction's own entries come after every pending one.
            ids.oldest(written).or_else(|| staged.ids.min_seq())
        };
        let want = (rows.is_some() || pending.is_some() || ids_from.is_some()).then(|| Recorded {
            epoch: self.epoch,
            events_from: rows.map_or(i64::MAX, |since| since.events),
            ledger_from: rows.map_or(i64::MAX, |since| since.ledger),
            log_from: Some(staged.log_from),
            ids_from,
        });
        if want != self.recorded {
            record(conn, want)?;
        }
        staged.record = Some(want);
        Ok(())
    }

    /// Where the oldest row still kept after this transaction stands.
    fn oldest(&self, staged: &Staged) -> Option<Since> {
        let inner = self.overlay.read();
        for (id, serial, _) in &inner.order {
            let Some(entry) = inner.rows.get(id).filter(|e| e.since.serial == *serial) else {
                continue;
            };
            match staged.changes.get(id) {
                Some(None) => continue,
                _ => return Some(entry.since),
            }
        }
        // Kept first by this transaction.
        staged
            .changes
            .values()
            .flatten()
            .map(|e| e.since)
            .min_by_key(|s| s.serial)
    }

    /// The transaction is about to commit (see [`Overlay::current_for`]);
    /// [`Owner::committed`] or [`Owner::not_committed`] follows.
    pub(super) fn committing(&self) {
        self.overlay
            .applying
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// The commit failed: nothing it staged happened.
    pub(super) fn not_committed(&self) {
        self.overlay
            .applying
            .store(false, std::sync::atomic::Ordering::Release);
    }

    /// The transaction committed: its changes are what the rows are.
    pub(super) fn committed(&mut self, staged: Staged) {
        self.last_changes = staged.changes.len();
        let restart = staged.restart;
        let now = self.now();
        let mut inner = self.overlay.write();
        for (own_id, upto) in &staged.flushed {
            inner
                .log
                .written(own_id, *upto, staged.start.0, staged.start.2);
        }
        for own_id in &staged.forgotten {
            inner.log.forget(own_id);
        }
        inner.log.mark(now, staged.log_from);
        {
            let mut ids = self.overlay.ids();
            if staged.ids_all {
                ids.all_written();
            } else {
                let written = staged.ids_written.unwrap_or(ids.written());
                ids.committed(written, staged.ids, &staged.ids_erased, staged.start.2);
            }
        }
        let held = &mut *inner;
        for id in staged.changes.keys() {
            if let Some(kept) = held.rows.get(id) {
                prefetch::<Entry>(kept);
            }
        }
        for (id, change) in staged.changes {
            match change {
                Some(entry) => {
                    if let Some(due) = entry.row.due {
                        self.overlay
                            .min_due
                            .fetch_min(due.0, std::sync::atomic::Ordering::AcqRel);
                    }
                    let (serial, at) = (entry.since.serial, entry.since.at);
                    match held.rows.entry(id) {
                        Slot::Occupied(mut kept) => {
                            if kept.get().since.serial != serial {
                                held.order.push_back((kept.key().clone(), serial, at));
                            }
                            self.unburied.push(kept.insert(entry));
                        }
                        Slot::Vacant(slot) => {
                            held.order.push_back((slot.key().clone(), serial, at));
                            slot.insert(entry);
                        }
                    }
                }
                None => {
                    if let Some(gone) = held.rows.remove(&id) {
                        self.unburied.push(gone);
                    }
                }
            }
        }
        // Entries written or kept again since go from the front.
        while let Some((id, serial, _)) = inner.order.front() {
            if inner
                .rows
                .get(id)
                .is_some_and(|e| e.since.serial == *serial)
            {
                break;
            }
            inner.order.pop_front();
        }
        self.serial = staged.next_serial;
        if let Some(record) = staged.record {
            self.recorded = record;
        }
        inner.epoch = self.recorded.map_or(0, |r| r.epoch);
        drop(inner);
        // Out of the lock, to the graveyard; those it cannot take are left
        // to the idle moments while the writer has any (beyond a bound,
        // the overflow goes now).
        if let (Some(graveyard), false) = (&self.graveyard, self.unburied.is_empty()) {
            let replaced =
                std::mem::replace(&mut self.unburied, Vec::with_capacity(self.last_changes));
            if let Err(back) = graveyard.take(replaced) {
                self.unburied = back;
            }
        }
        let most = if self.idles { self.unburied_max } else { 0 };
        self.bury(self.unburied.len().saturating_sub(most));
        // Everything kept was written (nothing is recorded): what the
        // memory holds may name positions the log gives again.
        if restart && self.recorded.is_none() {
            self.overlay.clear();
        }
        self.not_committed();
    }

    /// Whether this writer recorded kept rows in `deferred_rows`.
    pub(super) fn has_recorded(&self) -> bool {
        self.recorded.is_some()
    }

    /// Every kept row, for a transaction that writes them all (the end of
    /// the writer's life: the next start then has nothing to re-derive).
    pub(super) fn all(&self, staged: &Staged) -> Vec<SmolStr> {
        let mut ids: Vec<SmolStr> = self.overlay.read().rows.keys().cloned().collect();
        ids.extend(
            staged
                .changes
                .iter()
                .filter(|(_, c)| c.is_some())
                .map(|(id, _)| id.clone()),
        );
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.overlay
            .owned
            .store(false, std::sync::atomic::Ordering::Release);
    }
}

/// The next position of the log, and of the ledger.
const NEXT_EVENT: &str = "SELECT coalesce(max(seq), 0) + 1 FROM events";
const NEXT_ENTRY: &str = "SELECT coalesce(max(seq), 0) + 1 FROM ledger";

/// The next position of the log or the ledger (`sql`).
fn next_seq(conn: &Connection, sql: &str) -> Result<i64> {
    Ok(conn.prepare_cached(sql)?.query_row([], |r| r.get(0))?)
}

/// Before a connection other than the keeping writer writes live rows, in
/// the write transaction `conn` has open: writes the rows the writer of
/// this process keeps (`overlay`), when they are exactly what it committed,
/// and clears the record; otherwise (another process's writer, or one that
/// crashed) derives them again ([`recover`]).
pub(super) fn settle(
    conn: &Connection,
    overlay: &Overlay,
    model: Option<(&Model, u32)>,
) -> Result<()> {
    let Some(found) = recorded(conn)? else {
        return Ok(());
    };
    if !overlay.current_for(found.epoch) {
        return recover(conn, model);
    }
    let mut sql = Sql::new(conn);
    for entry in overlay.entries() {
        sql.write_entry(&entry)?;
    }
    if let Some(from) = found.log_from {
        logruns::mend(conn, from)?;
    }
    if let Some(from) = found.ids_from {
        msgids::mend(conn, from)?;
    }
    record(conn, None)
}

/// Re-derives the live rows a writer left unwritten (`deferred_rows`), in
/// the write transaction `conn` has open, and clears the record: every
/// contact with an event at or past `events_from` is folded again from its
/// log under the active `model` ([`engine::rederive`]), after its row gets
/// back the positions of its ledger entries from `ledger_from` on that no
/// run holds.
pub(super) fn recover(conn: &Connection, model: Option<(&Model, u32)>) -> Result<()> {
    let Some(found) = recorded(conn)? else {
        return Ok(());
    };
    // First: the re-derivation reads the logs.
    if let Some(from) = found.log_from {
        logruns::mend(conn, from)?;
    }
    if let Some(from) = found.ids_from {
        msgids::mend(conn, from)?;
    }
    if let Some((model, version)) = model {
        let mut sql = Sql::new(conn);
        let mut contacts = FxHashSet::default();
        {
            let mut stmt = conn.prepare("SELECT DISTINCT own_id FROM events WHERE seq >= ?1")?;
            let ids = stmt.query_map([found.events_from], |r| r.get::<_, String>(0))?;
            for id in ids {
                if let Some(contact) = sql.identity(&id?)? {
                    contacts.insert(contact);
                }
            }
        }
        let mut positions: FxHashMap<String, Vec<i64>> = FxHashMap::default();
        {
            let mut stmt = conn.prepare("SELECT seq, contact FROM ledger WHERE seq >= ?1")?;
            let rows = stmt.query_map([found.ledger_from], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })?;
            for row in rows {
                let (seq, contact) = row?;
                positions.entry(contact).or_default().push(seq);
            }
        }
        // Positions first: a contact's later entries may belong to a row
        // whose contact has no event past the mark (its score moved by a
        // firing's campaign entry, say).
        let mut mended: Vec<(String, Vec<i64>)> = positions.into_iter().collect();
        mended.sort();
        for (contact, seqs) in mended {
            contacts::mend_history(conn, &contact, seqs)?;
        }
        let mut contacts: Vec<String> = contacts.into_iter().collect();
        contacts.sort();
        let now = crate::now();
        for contact in contacts {
            engine::rederive(&mut sql, model, version, &contact, now)?;
        }
    }
    record(conn, None)
}
