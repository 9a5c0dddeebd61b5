//! The index of random messageIds on SQLite, written later (migration V12
//! says why). A messageId that is a random UUID ([`random`]) is indexed in
//! `message_ids (hash, seq)`: the xxh3-64 hash of the id ([`key`]) with
//! its log position; a lookup takes every position under the hash and
//! keeps the one whose stored messageId is the one asked for. Every other
//! messageId (Segment's JavaScript `ajs-next-<ms>-<uuid>`, a generator's
//! `<seed>-<contact>-<n>`) stays in the log's partial unique index, where
//! new ones land beside recent ones.
//!
//! A random id's entry lands anywhere: an import, and any connection but
//! the server's writer, writes its transaction's entries in key order as
//! it ends, and the server's writer keeps them in memory ([`Pending`]) and
//! writes them in generations: once about [`FREEZE_AT`] are pending (or
//! the oldest is [`super::deferred::WRITE_AFTER`] old) they are frozen,
//! sorted, and written a slice of keys per transaction
//! ([`Pending::slice`]), so that each slice lands on a few neighbouring
//! leaves instead of every event dirtying a random leaf. Before it looks
//! in its memory and the table, the server's writer asks a Bloom filter
//! of every key in both ([`Filter`], [`Pending::filter`]): a new id,
//! nearly every one, then costs no lookup. The next writer
//! after a crash, and another connection that writes, first index the log
//! past `deferred_rows.ids_from` themselves ([`mend`]).

use std::time::Instant;

use rusqlite::{Connection, OptionalExtension};
use rustc_hash::FxHashMap;

use super::borrowed::{Param, Prepared};
use crate::Result;

/// Pending entries that make the writer freeze a generation.
const FREEZE_AT: usize = 131_072;

/// A frozen generation is written in this many slices at most (one per
/// transaction), each at least [`MIN_SLICE`] entries.
const SLICES: usize = 128;
const MIN_SLICE: usize = 1024;

/// Whether a messageId is a random UUID (version 4, as RudderStack's SDKs
/// and Segment's mobile, Python and Java libraries make them), exactly as
/// SQLite's `message_id GLOB random_glob!()` says.
pub(super) fn random(id: &str) -> bool {
    random_bytes(id.as_bytes())
}

fn random_bytes(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            14 => *c == b'4',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Replaces SQLite's `glob(pattern, text)` (the `GLOB` operator) on
/// `conn` with one that answers the random-id pattern ([`random_glob!`])
/// on text with [`random`], and anything else by asking SQLite's own GLOB
/// (on an in-memory connection of this thread). The log's partial index
/// evaluates that pattern at every insert: for a UUID, 32 character
/// classes that SQLite's matcher reads one character at a time, 3.7 % of
/// the server writer's time (`docs/performance.md`, session 46). The
/// answers are the built-in's (a test compares them), so connections
/// without it agree.
pub(super) fn faster_glob(conn: &Connection) -> Result<()> {
    use rusqlite::functions::FunctionFlags;
    use rusqlite::types::{ToSqlOutput, ValueRef};
    thread_local! {
        static BUILTIN: Option<Connection> = Connection::open_in_memory().ok();
    }
    let flags = FunctionFlags::SQLITE_UTF8
        | FunctionFlags::SQLITE_DETERMINISTIC
        | FunctionFlags::SQLITE_INNOCUOUS;
    conn.create_scalar_function("glob", 2, flags, |ctx| {
        let (pattern, text) = (ctx.get_raw(0), ctx.get_raw(1));
        if let (ValueRef::Text(p), ValueRef::Text(t)) = (pattern, text) {
            if p == random_glob!().as_bytes() {
                return Ok(Some(random_bytes(t)));
            }
        }
        BUILTIN.with(|builtin| {
            let builtin = builtin.as_ref().ok_or_else(|| {
                rusqlite::Error::UserFunctionError("no in-memory SQLite for GLOB".into())
            })?;
            builtin.prepare_cached("SELECT ?2 GLOB ?1")?.query_row(
                [ToSqlOutput::Borrowed(pattern), ToSqlOutput::Borrowed(text)],
                |r| r.get::<_, Option<bool>>(0),
            )
        })
    })?;
    Ok(())
}

/// The key a random messageId is indexed under: its xxh3-64 hash.
pub(super) fn key(message_id: &str) -> i64 {
    xxhash_rust::xxh3::xxh3_64(message_id.as_bytes()) as i64
}

/// A Bloom filter of the keys in `message_ids` and in the writer's
/// memory, so that a new random messageId (nearly every one) is known to
/// be absent without a lookup in the table: one 64-bit word a key, three
/// bits set in it, about 16 bits a key (under 1 % false positives, which
/// look in the table as before). A full filter gets a second one twice
/// as large for the keys that come after, and so on, instead of being
/// built again from the table (a scan that would stall the writer).
#[derive(Debug)]
pub(super) struct Filter {
    parts: Vec<Part>,
}

/// The least room a [`Filter`] is built with, in keys (16 MB): each part
/// costs a lookup of a new key one more cache miss, so a store that grows
/// from a few random ids to millions should not go through a part for each
/// doubling (1 M, 2 M, 4 M: three misses a key at 4 M).
const FILTER_MIN_KEYS: usize = 8 << 20;

impl Filter {
    /// Room for about `keys` keys (at least [`FILTER_MIN_KEYS`]) before a
    /// second part.
    fn with_room(keys: usize) -> Filter {
        Filter {
            parts: vec![Part::with_room(keys.max(FILTER_MIN_KEYS))],
        }
    }

    pub(super) fn insert(&mut self, key: i64) {
        let last = self.parts.last_mut().expect("one part at least");
        if last.full() {
            let room = last.words.len() * 8;
            self.parts.push(Part::with_room(room));
        }
        self.parts.last_mut().expect("one").insert(key);
    }

    /// `false`: the key is in neither the table nor the memory.
    pub(super) fn may_hold(&self, key: i64) -> bool {
        self.parts.iter().any(|p| p.may_hold(key))
    }
}

/// One part of a [`Filter`].
#[derive(Debug)]
struct Part {
    words: Vec<u64>,
    keys: usize,
}

impl Part {
    /// Room for about `keys` keys at 16 bits each.
    fn with_room(keys: usize) -> Part {
        let words = (keys / 4).next_power_of_two();
        Part {
            words: vec![0; words],
            keys: 0,
        }
    }

    fn probe(&self, key: i64) -> (usize, u64) {
        let h = (key as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        // The bits from the low 18 bits, the word from the 40 above them.
        let word = (h >> 24) as usize & (self.words.len() - 1);
        let bits = 1 << (h & 63) | 1 << ((h >> 6) & 63) | 1 << ((h >> 12) & 63);
        (word, bits)
    }

    fn insert(&mut self, key: i64) {
        let (word, bits) = self.probe(key);
        self.words[word] |= bits;
        self.keys += 1;
    }

    fn may_hold(&self, key: i64) -> bool {
        let (word, bits) = self.probe(key);
        self.words[word] & bits == bits
    }

    /// At 16 bits a key.
    fn full(&self) -> bool {
        self.keys >= self.words.len() * 4
    }
}

/// Entries `(hash, seq)`, found by hash: the first position of each hash
/// in a map, the rare others (two messageIds with one hash) beside it.
#[derive(Debug, Default)]
pub(super) struct Entries {
    first: FxHashMap<i64, i64>,
    more: Vec<(i64, i64)>,
}

impl Entries {
    pub(super) fn insert(&mut self, hash: i64, seq: i64) {
        if let Some(first) = self.first.get(&hash) {
            if *first != seq && !self.more.contains(&(hash, seq)) {
                self.more.push((hash, seq));
            }
        } else {
            self.first.insert(hash, seq);
        }
    }

    /// Pushes the positions under `hash` onto `out`.
    pub(super) fn find(&self, hash: i64, out: &mut Vec<i64>) {
        if let Some(seq) = self.first.get(&hash) {
            out.push(*seq);
            out.extend(self.more.iter().filter(|(h, _)| *h == hash).map(|e| e.1));
        }
    }

    pub(super) fn remove(&mut self, hash: i64, seq: i64) {
        if self.first.get(&hash) == Some(&seq) {
            self.first.remove(&hash);
            if let Some(i) = self.more.iter().position(|(h, _)| *h == hash) {
                let (_, other) = self.more.swap_remove(i);
                self.first.insert(hash, other);
            }
        } else {
            self.more.retain(|e| *e != (hash, seq));
        }
    }

    pub(super) fn len(&self) -> usize {
        self.first.len() + self.more.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.first.is_empty()
    }

    /// The smallest position held.
    pub(super) fn min_seq(&self) -> Option<i64> {
        self.first
            .values()
            .chain(self.more.iter().map(|e| &e.1))
            .min()
            .copied()
    }

    /// Every entry, in no particular order.
    fn iter(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.first
            .iter()
            .map(|(h, s)| (*h, *s))
            .chain(self.more.iter().copied())
    }

    /// Every entry, in key order.
    pub(super) fn sorted(&self) -> Vec<(i64, i64)> {
        let mut all: Vec<(i64, i64)> = self.iter().collect();
        all.sort_unstable();
        all
    }

    fn drain_sorted(&mut self) -> Vec<(i64, i64)> {
        let all = self.sorted();
        *self = Entries::default();
        all
    }
}

/// The entries the server's writer appended and `message_ids` may lack.
#[derive(Debug)]
pub(super) struct Pending {
    /// Appended since the last generation froze, the smallest position,
    /// and when the first was added.
    fresh: Entries,
    fresh_from: Option<i64>,
    fresh_since: Option<Instant>,
    /// The frozen generation, in key order: those before `written` are in
    /// the table. `frozen_from`: its smallest position.
    frozen: Vec<(i64, i64)>,
    written: usize,
    frozen_from: i64,
    /// [`FREEZE_AT`] and [`MIN_SLICE`] (smaller in tests).
    pub(super) freeze_at: usize,
    pub(super) min_slice: usize,
    /// Every key of `message_ids` and of this memory, once built (see
    /// [`Pending::filter`]).
    filter: Option<Filter>,
}

impl Default for Pending {
    fn default() -> Pending {
        Pending {
            fresh: Entries::default(),
            fresh_from: None,
            fresh_since: None,
            frozen: Vec::new(),
            written: 0,
            frozen_from: 0,
            freeze_at: FREEZE_AT,
            min_slice: MIN_SLICE,
            filter: None,
        }
    }
}

impl Pending {
    /// Forgets every entry (indexed by another connection), and the
    /// filter with them.
    pub(super) fn clear(&mut self) {
        *self = Pending {
            freeze_at: self.freeze_at,
            min_slice: self.min_slice,
            ..Pending::default()
        };
    }

    /// Every entry was written by this writer: they are forgotten, the
    /// filter (which holds them) is kept.
    pub(super) fn all_written(&mut self) {
        let filter = self.filter.take();
        self.clear();
        self.filter = filter;
    }

    /// The filter of every key in `message_ids` and here, built from the
    /// table through `conn` when there is none. The writer
    /// adds the keys it appends ([`Pending::added`]); it drops the filter
    /// when another connection may have written the table
    /// ([`Pending::forget_filter`]).
    pub(super) fn filter(&mut self, conn: &Connection) -> Result<&Filter> {
        if self.filter.is_none() {
            let started = Instant::now();
            let mut keys = Vec::new();
            let mut stmt = conn.prepare("SELECT hash FROM message_ids")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                keys.push(r.get::<_, i64>(0)?);
            }
            let stored = keys.len();
            let pending = self.fresh.iter().chain(self.frozen.iter().copied());
            keys.extend(pending.map(|(key, _)| key));
            let mut filter = Filter::with_room(2 * keys.len());
            for key in keys {
                filter.insert(key);
            }
            tracing::debug!(
                stored,
                in_memory = self.fresh.len() + self.frozen.len(),
                ms = started.elapsed().as_secs_f64() * 1e3,
                "message-id filter built"
            );
            self.filter = Some(filter);
        }
        Ok(self.filter.as_ref().expect("built"))
    }

    /// The writer appended an event with a random id of this key.
    pub(super) fn added(&mut self, key: i64) {
        if let Some(filter) = &mut self.filter {
            filter.insert(key);
        }
    }

    /// Another connection may have written `message_ids`.
    pub(super) fn forget_filter(&mut self) {
        self.filter = None;
    }

    /// Pushes the positions under `hash` onto `out`.
    pub(super) fn find(&self, hash: i64, out: &mut Vec<i64>) {
        self.fresh.find(hash, out);
        let at = self.frozen.partition_point(|(h, _)| *h < hash);
        out.extend(
            self.frozen[at..]
                .iter()
                .take_while(|(h, _)| *h == hash)
                .map(|e| e.1),
        );
    }

    /// Where the frozen generation is written up to.
    pub(super) fn written(&self) -> usize {
        self.written
    }

    /// How many entries are pending (frozen and not written, or fresh).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.frozen.len() - self.written + self.fresh.len()
    }

    /// Every entry not written, in key order (for a transaction that
    /// writes them all).
    pub(super) fn unwritten(&self) -> Vec<(i64, i64)> {
        let mut all = self.frozen[self.written..].to_vec();
        all.extend(self.fresh.sorted());
        all.sort_unstable();
        all
    }

    /// Freezes the fresh entries when no generation is being written and
    /// they are [`FREEZE_AT`] many, or the first came before `cutoff`.
    /// Nothing is lost if the transaction then fails: the entries are
    /// found in the generation as well.
    pub(super) fn freeze_if_due(&mut self, cutoff: Option<Instant>) {
        if self.written < self.frozen.len() || self.fresh.is_empty() {
            return;
        }
        if self.fresh_due(cutoff) {
            self.frozen_from = self.fresh_from.unwrap_or(0);
            self.frozen = self.fresh.drain_sorted();
            self.written = 0;
            self.fresh_from = None;
            self.fresh_since = None;
        }
    }

    /// When the entries pending became due to be written: `None` inside
    /// when a slice of a frozen generation is left to write or a
    /// generation is full; the time the oldest fresh one was added
    /// otherwise; `None` when none is pending.
    pub(super) fn first_pending(&self) -> Option<Option<Instant>> {
        if self.written < self.frozen.len() || self.fresh.len() >= self.freeze_at {
            return Some(None);
        }
        self.fresh_since.map(Some)
    }

    /// Whether the fresh entries are due to freeze (once no generation is
    /// being written): they are a generation's worth, or the first came
    /// at or before `cutoff`.
    pub(super) fn fresh_due(&self, cutoff: Option<Instant>) -> bool {
        self.fresh.len() >= self.freeze_at
            || matches!((self.fresh_since, cutoff), (Some(since), Some(cut)) if since <= cut)
    }

    /// The slice of the frozen generation a transaction writes next, and
    /// where the written part ends after it.
    pub(super) fn slice(&self) -> (&[(i64, i64)], usize) {
        let rest = &self.frozen[self.written..];
        let take = rest
            .len()
            .min(self.min_slice.max(self.frozen.len().div_ceil(SLICES)));
        (&rest[..take], self.written + take)
    }

    /// The oldest position `message_ids` may lack once the frozen
    /// generation is written up to `written`, before this transaction's
    /// own entries (`None`: none).
    pub(super) fn oldest(&self, written: usize) -> Option<i64> {
        if written < self.frozen.len() {
            Some(self.frozen_from)
        } else {
            self.fresh_from
        }
    }

    /// A transaction committed: the frozen generation is written up to
    /// `written` (the first transaction of a generation may have frozen
    /// it), `appended` are its own entries (none when it wrote them), and
    /// `erased` entries are gone.
    pub(super) fn committed(
        &mut self,
        written: usize,
        appended: Entries,
        erased: &[(i64, i64)],
        at: Instant,
    ) {
        self.written = written.min(self.frozen.len());
        if self.written == self.frozen.len() {
            self.frozen = Vec::new();
            self.written = 0;
        }
        if !appended.is_empty() {
            if let Some(min) = appended.min_seq() {
                self.fresh_from = Some(self.fresh_from.map_or(min, |f| f.min(min)));
            }
            self.fresh_since.get_or_insert(at);
            if self.fresh.is_empty() {
                self.fresh = appended;
            } else {
                for (hash, seq) in appended.iter() {
                    self.fresh.insert(hash, seq);
                }
            }
        }
        for &(hash, seq) in erased {
            self.fresh.remove(hash, seq);
            if let Ok(i) = self.frozen[self.written..].binary_search(&(hash, seq)) {
                self.frozen.remove(self.written + i);
            }
        }
        if self.fresh.is_empty() {
            self.fresh_from = None;
            self.fresh_since = None;
        }
    }
}

/// Writes `entries` (in key order) into `message_ids`, but those in
/// `skip`, through the statements kept in `prepared` when given.
pub(super) fn write(
    conn: &Connection,
    prepared: Option<&Prepared>,
    entries: &[(i64, i64)],
    skip: &[(i64, i64)],
) -> Result<()> {
    const INSERT: &str = "INSERT OR IGNORE INTO message_ids (hash, seq) VALUES (?1, ?2)";
    let kept = entries.iter().filter(|e| !skip.contains(e));
    match prepared {
        Some(prepared) => {
            let mut stmt = prepared.statement(conn, INSERT)?;
            for &(hash, seq) in kept {
                stmt.execute(&[Param::from(hash), seq.into()])?;
            }
        }
        None => {
            let mut stmt = conn.prepare_cached(INSERT)?;
            for &(hash, seq) in kept {
                stmt.execute([hash, seq])?;
            }
        }
    }
    Ok(())
}

/// Pushes the positions `message_ids` holds under `hash` onto `out`.
pub(super) fn find_stored(conn: &Connection, hash: i64, out: &mut Vec<i64>) -> Result<()> {
    let mut stmt = conn.prepare_cached("SELECT seq FROM message_ids WHERE hash = ?1")?;
    let mut rows = stmt.query([hash])?;
    while let Some(r) = rows.next()? {
        out.push(r.get(0)?);
    }
    Ok(())
}

/// The messageId of the event at `seq`, if there is one.
pub(super) fn stored_id(conn: &Connection, seq: i64) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT message_id FROM events WHERE seq = ?1")?
        .query_row([seq], |r| r.get(0))
        .optional()?)
}

/// Deletes the entry `(key, seq)`.
pub(super) fn delete(conn: &Connection, key: i64, seq: i64) -> Result<()> {
    conn.prepare_cached("DELETE FROM message_ids WHERE hash = ?1 AND seq = ?2")?
        .execute([key, seq])?;
    Ok(())
}

/// Indexes every event with a random messageId at or past `from` that
/// `message_ids` lacks: what a writer kept in memory and did not write (a
/// crash), or cannot write itself (another connection), and the whole log
/// after migration V12.
pub(super) fn mend(conn: &Connection, from: i64) -> Result<()> {
    let mut found = Vec::new();
    {
        let mut stmt = conn.prepare(concat!(
            "SELECT seq, message_id FROM events WHERE seq >= ?1 AND message_id GLOB '",
            random_glob!(),
            "'"
        ))?;
        let mut rows = stmt.query([from])?;
        while let Some(r) = rows.next()? {
            let seq: i64 = r.get(0)?;
            let id: String = r.get(1)?;
            found.push((key(&id), seq));
        }
    }
    found.sort_unstable();
    write(conn, None, &found, &[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn random_uuids_are_told_apart_as_sqlite_glob_does() {
        let conn = Connection::open_in_memory().unwrap();
        for (id, want) in [
            ("3f6c1e2a-8b1d-4c3e-9a7f-0d2b4e6a8c10", true),
            ("3F6C1E2A-8B1D-4C3E-9A7F-0D2B4E6A8C10", true),
            ("00000000-0000-4000-8000-000000000000", true),
            // Version 7, 1, a wrong length, a stray character, no hyphens.
            ("0193929c-4a00-7cc2-98c4-3a1f2b9e7d51", false),
            ("3f6c1e2a-8b1d-1c3e-9a7f-0d2b4e6a8c10", false),
            ("3f6c1e2a-8b1d-4c3e-9a7f-0d2b4e6a8c1", false),
            ("3f6c1e2a-8b1d-4c3e-9a7f-0d2b4e6a8c10x", false),
            ("3f6c1e2g-8b1d-4c3e-9a7f-0d2b4e6a8c10", false),
            ("3f6c1e2a08b1d-4c3e-9a7f-0d2b4e6a8c10", false),
            ("3f6c1e2a8b1d4c3e9a7f0d2b4e6a8c10", false),
            (
                "ajs-next-1733300000000-3f6c1e2a-8b1d-4c3e-9a7f-0d2b4e6a8c10",
                false,
            ),
            ("m1", false),
            ("", false),
        ] {
            assert_eq!(random(id), want, "{id}");
            let glob: bool = conn
                .query_row(
                    concat!("SELECT ?1 GLOB '", random_glob!(), "'"),
                    [id],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(glob, want, "{id}");
        }
        // The migration's pattern is this one.
        let migration = include_str!("../../migrations/sqlite/V12__message_ids.sql");
        assert_eq!(migration.matches(random_glob!()).count(), 3);
    }

    /// `faster_glob` answers as SQLite's own GLOB: the random-id pattern
    /// on ids of every shape the test above names and on mutations of a
    /// UUID at every position, other patterns, NULLs and numbers.
    #[test]
    fn the_faster_glob_answers_as_sqlites() {
        let builtin = Connection::open_in_memory().unwrap();
        let faster = Connection::open_in_memory().unwrap();
        faster_glob(&faster).unwrap();
        let uuid = "3f6c1e2a-8b1d-4c3e-9a7f-0d2b4e6a8c10";
        let mut subjects: Vec<String> = vec![
            uuid.into(),
            uuid.to_uppercase(),
            "ajs-next-1733300000000-3f6c1e2a-8b1d-4c3e-9a7f-0d2b4e6a8c10".into(),
            "7-12-3".into(),
            "".into(),
            "héllo".into(),
        ];
        for i in 0..uuid.len() {
            for c in ['0', 'f', 'F', 'g', '-', '4', 'é'] {
                let mut s: Vec<char> = uuid.chars().collect();
                s[i] = c;
                subjects.push(s.into_iter().collect());
            }
            subjects.push(uuid[..i].to_string());
            subjects.push(format!("{uuid}{}", &uuid[..i]));
        }
        let patterns = [random_glob!(), "*", "a*", "[0-9]*", "?é*", "*[^a-f]*", ""];
        let ask = |conn: &Connection, p: &dyn rusqlite::ToSql, t: &dyn rusqlite::ToSql| {
            conn.query_row("SELECT ?2 GLOB ?1", [p, t], |r| r.get::<_, Option<bool>>(0))
                .unwrap()
        };
        for p in patterns {
            for t in &subjects {
                assert_eq!(ask(&faster, &p, t), ask(&builtin, &p, t), "{t} GLOB {p}");
            }
            assert_eq!(ask(&faster, &p, &None::<String>), None);
            assert_eq!(ask(&faster, &p, &12), ask(&builtin, &p, &12), "12 GLOB {p}");
            assert_eq!(
                ask(&faster, &p, &1.5),
                ask(&builtin, &p, &1.5),
                "1.5 GLOB {p}"
            );
        }
        // The log's partial index takes it (a deterministic function).
        faster
            .execute_batch(concat!(
                "CREATE TABLE e (id TEXT);
                 CREATE UNIQUE INDEX e_id ON e (id) WHERE NOT (id GLOB '",
                random_glob!(),
                "');
                 INSERT INTO e VALUES ('a'), ('3f6c1e2a-8b1d-4c3e-9a7f-0d2b4e6a8c10'),
                                      ('3f6c1e2a-8b1d-4c3e-9a7f-0d2b4e6a8c10');"
            ))
            .unwrap();
        assert!(faster.execute("INSERT INTO e VALUES ('a')", []).is_err());
    }

    #[test]
    fn the_filter_holds_what_it_was_given_and_little_else() {
        let mut filter = Filter {
            parts: vec![Part::with_room(1 << 20)],
        };
        let keys: Vec<i64> = (0..100_000).map(|i| key(&format!("k{i}"))).collect();
        for k in &keys {
            filter.insert(*k);
        }
        assert!(keys.iter().all(|k| filter.may_hold(*k)));
        let others = (0..100_000)
            .filter(|i| filter.may_hold(key(&format!("other{i}"))))
            .count();
        assert!(others < 1_000, "{others} false positives in 100,000");
        assert_eq!(filter.parts.len(), 1);
        // Past its room: a second part, twice as large; still under 2 %.
        let more: Vec<i64> = (0..2_000_000).map(|i| key(&format!("m{i}"))).collect();
        for k in &more {
            filter.insert(*k);
        }
        assert_eq!(filter.parts.len(), 2);
        assert_eq!(filter.parts[1].words.len(), 2 * filter.parts[0].words.len());
        assert!(keys.iter().chain(&more).all(|k| filter.may_hold(*k)));
        let others = (0..100_000)
            .filter(|i| filter.may_hold(key(&format!("other{i}"))))
            .count();
        assert!(others < 2_000, "{others} false positives in 100,000");
        // A filter built for few keys has room for many before a part.
        let built = Filter::with_room(10);
        assert_eq!(built.parts[0].words.len() * 4, FILTER_MIN_KEYS);
    }

    /// Written by the writer itself, the entries leave its memory and
    /// stay in the filter; forgotten (another connection indexed them),
    /// the filter goes with them.
    #[test]
    fn the_filter_outlives_entries_written_not_entries_forgotten() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE message_ids (hash INTEGER NOT NULL, seq INTEGER NOT NULL,
                 PRIMARY KEY (hash, seq)) WITHOUT ROWID;
             INSERT INTO message_ids VALUES (7, 1);",
        )
        .unwrap();
        let mut p = Pending::default();
        assert!(p.filter(&conn).unwrap().may_hold(7));
        p.added(8);
        p.all_written();
        assert!(p.filter.as_ref().is_some_and(|f| f.may_hold(8)));
        p.clear();
        assert!(p.filter.is_none());
    }

    #[test]
    fn entries_keep_every_position_of_a_hash() {
        let mut e = Entries::default();
        e.insert(7, 1);
        e.insert(7, 3);
        e.insert(9, 2);
        e.insert(7, 3);
        let mut out = Vec::new();
        e.find(7, &mut out);
        assert_eq!(out, [1, 3]);
        assert_eq!(e.len(), 3);
        assert_eq!(e.min_seq(), Some(1));
        assert_eq!(e.sorted(), [(7, 1), (7, 3), (9, 2)]);
        // Removing the first keeps the other.
        e.remove(7, 1);
        out.clear();
        e.find(7, &mut out);
        assert_eq!(out, [3]);
        e.remove(9, 2);
        out.clear();
        e.find(9, &mut out);
        assert!(out.is_empty());
        assert_eq!(e.len(), 1);
    }

    fn entries(pairs: &[(i64, i64)]) -> Entries {
        let mut e = Entries::default();
        for (h, s) in pairs {
            e.insert(*h, *s);
        }
        e
    }

    #[test]
    fn a_generation_freezes_and_is_written_in_slices() {
        let t0 = Instant::now();
        let mut p = Pending::default();
        let n = (MIN_SLICE * 2 + 10) as i64;
        let pairs: Vec<(i64, i64)> = (0..n).map(|i| ((i * 7919) % n, 100 + i)).collect();
        p.committed(0, entries(&pairs), &[], t0);
        assert_eq!(p.len(), pairs.len());
        assert_eq!(p.oldest(0), Some(100));
        // Not due: neither many nor old.
        p.freeze_if_due(None);
        assert!(p.frozen.is_empty());
        // Old: frozen in key order, found there.
        p.freeze_if_due(Some(t0 + Duration::from_secs(1)));
        assert_eq!(p.frozen.len(), pairs.len());
        assert!(p.frozen.is_sorted());
        let mut out = Vec::new();
        p.find(pairs[5].0, &mut out);
        assert_eq!(out, [pairs[5].1]);
        let (slice, written) = p.slice();
        assert_eq!(slice.len(), MIN_SLICE);
        assert_eq!(written, MIN_SLICE);
        // A commit that wrote the first slice and appended more: the
        // generation's oldest stands until it is all written.
        p.committed(written, entries(&[(-5, 5000)]), &[], t0);
        assert_eq!(p.oldest(p.written), Some(100));
        p.freeze_if_due(Some(t0 + Duration::from_secs(9)));
        assert_eq!(p.frozen.len(), pairs.len(), "one generation at a time");
        assert_eq!(p.unwritten().len(), pairs.len() - MIN_SLICE + 1);
        assert!(p.unwritten().is_sorted());
        let (slice, written) = p.slice();
        assert_eq!(slice.len(), MIN_SLICE);
        let (_, written) = {
            p.committed(written, Entries::default(), &[], t0);
            p.slice()
        };
        assert_eq!(written, pairs.len());
        assert_eq!(p.oldest(written), Some(5000));
        p.committed(written, Entries::default(), &[(-5, 5000)], t0);
        assert!(p.frozen.is_empty());
        assert_eq!(p.len(), 0);
        assert_eq!(p.oldest(0), None);
    }

    #[test]
    fn the_log_is_mended_into_the_index() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE events (seq INTEGER PRIMARY KEY, message_id TEXT NOT NULL);
             CREATE TABLE message_ids (hash INTEGER NOT NULL, seq INTEGER NOT NULL,
                 PRIMARY KEY (hash, seq)) WITHOUT ROWID;
             INSERT INTO events VALUES
                 (1, '00000000-0000-4000-8000-00000000000a'),
                 (2, '00000000-0000-4000-8000-00000000000b'),
                 (3, '00000000-0000-4000-8000-00000000000c'),
                 (4, 'm4');",
        )
        .unwrap();
        let hash = key;
        let [a, b, c] = [
            "00000000-0000-4000-8000-00000000000a",
            "00000000-0000-4000-8000-00000000000b",
            "00000000-0000-4000-8000-00000000000c",
        ];
        write(&conn, None, &[(hash(a), 1)], &[]).unwrap();
        mend(&conn, 2).unwrap();
        // Random ids only.
        assert_eq!(
            conn.query_row("SELECT count(*) FROM message_ids", [], |r| r
                .get::<_, i64>(0))
                .unwrap(),
            3
        );
        for (id, seq) in [(a, 1), (b, 2), (c, 3)] {
            let mut out = Vec::new();
            find_stored(&conn, hash(id), &mut out).unwrap();
            assert_eq!(out, [seq], "{id}");
            assert_eq!(stored_id(&conn, seq).unwrap().as_deref(), Some(id));
        }
        delete(&conn, hash(b), 2).unwrap();
        let mut out = Vec::new();
        find_stored(&conn, hash(b), &mut out).unwrap();
        assert!(out.is_empty());
        // Skipped entries are not written.
        write(&conn, None, &[(hash(b), 2)], &[(hash(b), 2)]).unwrap();
        find_stored(&conn, hash(b), &mut out).unwrap();
        assert!(out.is_empty());
    }
}
