//! Rows in and out of SQLite: the engine's transaction interface ([`Tx`])
//! over one connection, and the decoding of live rows, keys and models.

use std::sync::{Arc, LazyLock};

use leadscore_core::event::Message;
use leadscore_core::model::Model;
use leadscore_core::score::{Score, SmolStr, Status};
use leadscore_core::time::Timestamp;
use rusqlite::{params, Connection, OptionalExtension};

use super::borrowed::{Param, Prepared};
use super::contacts;
use super::deferred::{self, Entry, Overlay, Staged};
use super::logruns::{self, Logged};
use super::msgids::{self, Entries};
use crate::bodies::{self, StoredBody};
use crate::engine::{
    self, FieldsForm, LiveWrite, NewDelivery, NewEntry, NewFiring, Positions, Row, Stored, Table,
    Tx,
};
use crate::{ApiKey, ModelCache, Result, Scope, ScoreFields, StoreError};

pub(super) fn read_key(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<ApiKey>> {
    let scope: String = r.get(1)?;
    Ok(match Scope::parse(&scope) {
        Some(scope) => Ok(ApiKey {
            id: r.get(0)?,
            scope,
            label: r.get(2)?,
            created_at: Timestamp(r.get(3)?),
            revoked: r.get::<_, Option<i64>>(4)?.is_some(),
        }),
        None => Err(StoreError::Corrupt(format!("key scope {scope:?}"))),
    })
}

/// The compiled model of `version`: cached, or compiled from its stored
/// source read through `conn`.
pub(super) fn model_in(cache: &ModelCache, conn: &Connection, version: u32) -> Result<Arc<Model>> {
    cache.get(version, || {
        conn.query_row(
            "SELECT name, source FROM models WHERE version = ?1",
            [version],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .ok_or(StoreError::NoSuchVersion(version))
    })
}

/// A read transaction on a connection: one snapshot for the statements
/// run through it, and one lock of the database for all of them instead
/// of one each. Begun and ended with cached statements: rusqlite's
/// `Transaction` prepares `BEGIN` and its end each time, 6 % of the
/// server's time in a profile of `GET /contacts/{id}` (session 48).
pub(super) struct Snapshot<'c> {
    conn: &'c Connection,
}

impl<'c> Snapshot<'c> {
    pub(super) fn begin(conn: &'c Connection) -> Result<Snapshot<'c>> {
        conn.prepare_cached("BEGIN")?.execute([])?;
        Ok(Snapshot { conn })
    }
}

impl std::ops::Deref for Snapshot<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl Drop for Snapshot<'_> {
    fn drop(&mut self) {
        // A transaction that only read has nothing to lose: should its end
        // fail, it is rolled back, so that the connection's next statement
        // is not inside it.
        let ended = self
            .conn
            .prepare_cached("COMMIT")
            .and_then(|mut end| end.execute([]));
        if ended.is_err() && !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

/// A single non-negative integer result.
pub(super) fn count(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<u64> {
    let n: i64 = conn.query_row(sql, params, |r| r.get(0))?;
    Ok(n.max(0) as u64)
}

pub(super) fn fields(text: &str) -> Result<ScoreFields> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("ledger entry: {e}")))
}

/// An update of a live row ([`UPDATE_LIVE`]): the columns it always sets,
/// `$more` of them, and the row by rowid and id.
macro_rules! update_live {
    ($more:literal) => {
        concat!(
            "UPDATE contacts SET model_version = ?2, state = ?3, traits = ?4, company = ?5, \
             last_ts = ?6, raw = ?8, fit = ?9, engagement = ?10, tier = ?11, grade = ?12, \
             stage = ?13, status = ?14, reasons = ?15, triggers = ?16, history = ?18",
            $more,
            " WHERE rowid = ?19 AND id = ?1"
        )
    };
}

/// The texts a row's parameters borrow besides the row's own.
struct RowTexts {
    traits: String,
    company: String,
    reasons: String,
}

impl RowTexts {
    fn of(row: &Row) -> RowTexts {
        RowTexts {
            traits: row.traits_json(),
            company: row.company_json(),
            reasons: serde_json::to_string(&row.score.reasons).expect("strings serialise"),
        }
    }
}

/// A row's 17 columns as statement parameters (`?1` to `?17`), then
/// `extra`.
fn row_values<'a>(row: &'a Row, texts: &'a RowTexts, extra: &[Param<'a>]) -> Vec<Param<'a>> {
    let mut values = Vec::with_capacity(17 + extra.len());
    values.extend([
        Param::Text(&row.id),
        i64::from(row.model_version).into(),
        Param::Blob(&row.state),
        Param::Text(&texts.traits),
        Param::Text(&texts.company),
        row.last_ts.map(|t| t.0).into(),
        row.score.score.into(),
        row.score.raw.into(),
        row.score.fit.into(),
        row.score.engagement.into(),
        Param::Text(&row.score.tier),
        Param::Text(&row.score.grade),
        Param::Text(&row.score.stage),
        Param::Text(row.score.status.as_str()),
        Param::Text(&texts.reasons),
        Param::Blob(&row.triggers),
        row.due.map(|t| t.0).into(),
    ]);
    values.extend_from_slice(extra);
    values
}

pub(super) const ROW_COLUMNS: &str = "id, model_version, state, traits, company, last_ts, score, raw, fit, engagement, tier, grade, stage, status, reasons, triggers, due";
/// [`ROW_COLUMNS`] for listings: empty traits and company, no trigger state.
pub(super) const ROW_COLUMNS_NO_TRAITS: &str = "id, model_version, state, '{}', '{}', last_ts, score, raw, fit, engagement, tier, grade, stage, status, reasons, NULL, NULL";

/// Reads a contacts row (columns [`ROW_COLUMNS`]).
/// Up to `limit` live rows after id `after`, in id order; without
/// `traits`, only what a listing reads (traits, company and trigger state
/// left empty).
pub(super) fn live_rows(
    conn: &Connection,
    after: Option<&str>,
    limit: usize,
    traits: bool,
) -> Result<Vec<Row>> {
    let columns = if traits {
        ROW_COLUMNS
    } else {
        ROW_COLUMNS_NO_TRAITS
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {columns} FROM contacts WHERE id > ?1 ORDER BY id LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![after.unwrap_or(""), limit as i64], read_row)?;
    rows.map(|row| row?).collect()
}

/// An event's body from its `message_id`, `ts` and `body` columns
/// ([`crate::bodies`]).
fn stored_body(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredBody> {
    Ok(StoredBody::in_row(r.get(2)?, r.get(0)?, r.get(1)?))
}

/// A text column as a `SmolStr` (a tier, grade or stage name, a contact
/// id), read without an intermediate `String`.
fn smol_text(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<SmolStr> {
    let value = r.get_ref(i)?;
    value
        .as_str()
        .map(SmolStr::new)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, value.data_type(), Box::new(e)))
}

pub(super) fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Row>> {
    let traits: String = r.get(3)?;
    let company: String = r.get(4)?;
    let status: String = r.get(13)?;
    let reasons: String = r.get(14)?;
    let row = (|| -> Result<Row> {
        Ok(Row {
            id: smol_text(r, 0)?,
            model_version: r.get(1)?,
            state: r.get(2)?,
            traits: engine::json_traits(&traits)?,
            company: engine::json_traits(&company)?,
            last_ts: r.get::<_, Option<i64>>(5)?.map(Timestamp),
            score: Score {
                score: r.get(6)?,
                raw: r.get(7)?,
                fit: r.get(8)?,
                engagement: r.get(9)?,
                tier: smol_text(r, 10)?,
                grade: smol_text(r, 11)?,
                stage: smol_text(r, 12)?,
                status: Status::parse(&status)
                    .ok_or_else(|| StoreError::Corrupt(format!("status {status:?}")))?,
                reasons: serde_json::from_str(&reasons)
                    .map_err(|e| StoreError::Corrupt(format!("reasons: {e}")))?,
            },
            triggers: r.get::<_, Option<Vec<u8>>>(15)?.unwrap_or_default(),
            due: r.get::<_, Option<i64>>(16)?.map(Timestamp),
        })
    })();
    Ok(row)
}

/// The engine's view of a connection inside a transaction.
pub(super) struct Sql<'c> {
    conn: &'c Connection,
    /// Where the statements run once per message are kept prepared, their
    /// texts bound without a copy ([`super::borrowed`], [`Sql::run`]).
    prepared: Option<&'c Prepared>,
    /// Live rows kept in memory by the server's writer
    /// ([`super::deferred`]), when they go with this snapshot: read in
    /// place of the stored ones.
    overlay: Option<&'c Overlay>,
    /// The writer's changes to them in this transaction: with it, live
    /// rows that exist are kept in memory instead of written.
    staged: Option<Staged>,
    /// Positions of the events this transaction appended, by own id: in
    /// runs when it ends ([`super::finish_writing`]). The server's writer
    /// notes them in its memory instead ([`Staged::note`]).
    logged: Logged,
    /// Where positions of the log in no run are found.
    unstored: Unstored,
    /// The `message_ids` entries of the events with random messageIds this
    /// transaction appended ([`msgids`]): in the table when it ends, or in
    /// the server's writer's memory. And those of the events it erased.
    appended: Entries,
    erased_ids: Vec<(i64, i64)>,
    /// Positions found under a messageId's hash (a buffer).
    candidates: Vec<i64>,
    /// The compact body of the event being written or replaced
    /// ([`bodies`]), a buffer.
    body: String,
    /// The random messageId [`Tx::insert_event`] last found stored, and
    /// where: the engine asks for that event next ([`Tx::stored_event`],
    /// then [`Tx::replace_event`] for a preferred copy).
    duplicate: Option<(String, i64)>,
}

/// Where a transaction finds the positions of the log that its snapshot
/// may hold in no run ([`logruns`]).
#[derive(Debug, Clone, Copy)]
enum Unstored {
    /// Not looked up yet.
    Unknown,
    /// Every position is in a run.
    Nowhere,
    /// In the writer's memory (`None`: this is the writer), else in the
    /// log past a position (epoch and position recorded in the snapshot).
    Memory(Option<(i64, i64)>),
    /// In the log past this position.
    Log(i64),
}

impl<'c> Sql<'c> {
    pub(super) fn new(conn: &'c Connection) -> Sql<'c> {
        Sql {
            conn,
            prepared: None,
            overlay: None,
            staged: None,
            logged: Logged::default(),
            unstored: Unstored::Unknown,
            appended: Entries::default(),
            erased_ids: Vec::new(),
            candidates: Vec::new(),
            body: String::new(),
            duplicate: None,
        }
    }

    /// Reads the rows kept in `overlay` (a view valid in `conn`'s snapshot,
    /// [`Overlay::view`]) in place of the stored ones.
    pub(super) fn viewing(conn: &'c Connection, overlay: Option<&'c Overlay>) -> Sql<'c> {
        Sql {
            overlay,
            ..Sql::new(conn)
        }
    }

    /// The writer's: keeps live rows in `overlay`, staging the changes
    /// (given back by [`Sql::take_staged`]).
    pub(super) fn keeping(conn: &'c Connection, overlay: &'c Overlay, staged: Staged) -> Sql<'c> {
        Sql {
            overlay: Some(overlay),
            staged: Some(staged),
            unstored: Unstored::Memory(None),
            ..Sql::new(conn)
        }
    }

    /// Takes the statements run once per message from `prepared`.
    pub(super) fn preparing(self, prepared: &'c Prepared) -> Sql<'c> {
        Sql {
            prepared: Some(prepared),
            ..self
        }
    }

    /// Runs `sql` with `values`: through [`Sql::preparing`]'s statements
    /// (the writer's and an import's hot path), else through rusqlite's
    /// cache of the connection.
    fn run(&self, sql: &'static str, values: &[Param<'_>]) -> rusqlite::Result<usize> {
        match self.prepared {
            Some(prepared) => prepared.statement(self.conn, sql)?.execute(values),
            None => self
                .conn
                .prepare_cached(sql)?
                .execute(rusqlite::params_from_iter(values)),
        }
    }

    /// Runs `sql` with `row`'s 17 columns as `?1` to `?17`, then `extra`.
    fn run_row(
        &self,
        sql: &'static str,
        row: &Row,
        extra: &[Param<'_>],
    ) -> rusqlite::Result<usize> {
        let texts = RowTexts::of(row);
        self.run(sql, &row_values(row, &texts, extra))
    }

    pub(super) fn conn(&self) -> &'c Connection {
        self.conn
    }

    /// The statements kept prepared for this transaction, if any.
    pub(super) fn prepared(&self) -> Option<&'c Prepared> {
        self.prepared
    }

    pub(super) fn staged_mut(&mut self) -> Option<&mut Staged> {
        self.staged.as_mut()
    }

    pub(super) fn take_staged(&mut self) -> Option<Staged> {
        self.staged.take()
    }

    /// The positions of the events this transaction appended, by own id.
    pub(super) fn take_logged(&mut self) -> Logged {
        std::mem::take(&mut self.logged)
    }

    /// The `message_ids` entries of the events this transaction appended,
    /// and of those it erased.
    pub(super) fn take_ids(&mut self) -> (Entries, Vec<(i64, i64)>) {
        (
            std::mem::take(&mut self.appended),
            std::mem::take(&mut self.erased_ids),
        )
    }

    /// The key of a random `message_id` and the position of its event if
    /// the log has it: the positions under its key (appended by this
    /// transaction, in the writer's memory, in `message_ids`) whose event
    /// has this messageId.
    fn find_random(&mut self, message_id: &str) -> Result<(i64, Option<i64>)> {
        let key = msgids::key(message_id);
        let mut candidates = std::mem::take(&mut self.candidates);
        candidates.clear();
        self.appended.find(key, &mut candidates);
        if let (Some(_), Some(overlay)) = (&self.staged, self.overlay) {
            let mut ids = overlay.ids();
            if candidates.is_empty() && !ids.filter(self.conn)?.may_hold(key) {
                self.candidates = candidates;
                return Ok((key, None));
            }
            ids.find(key, &mut candidates);
        }
        msgids::find_stored(self.conn, key, &mut candidates)?;
        let mut found = None;
        for &seq in &candidates {
            if msgids::stored_id(self.conn, seq)?.as_deref() == Some(message_id) {
                found = Some(seq);
                break;
            }
        }
        self.candidates = candidates;
        Ok((key, found))
    }

    /// The position of the event with `message_id`, if the log has it.
    fn seq_of(&mut self, message_id: &str) -> Result<Option<i64>> {
        if msgids::random(message_id) {
            if let Some((id, seq)) = &self.duplicate {
                if id == message_id {
                    return Ok(Some(*seq));
                }
            }
            return Ok(self.find_random(message_id)?.1);
        }
        // The partial index's condition, for the planner to use it.
        Ok(self
            .conn
            .prepare_cached(concat!(
                "SELECT seq FROM events WHERE message_id = ?1 AND NOT (message_id GLOB '",
                random_glob!(),
                "')"
            ))?
            .query_row([message_id], |r| r.get(0))
            .optional()?)
    }

    /// The event at `seq`, whose messageId is `message_id`, is erased: a
    /// random id's entry goes from `message_ids` (and from the writer's
    /// memory once this commits).
    pub(super) fn erased_event(&mut self, message_id: &str, seq: i64) -> Result<()> {
        if msgids::random(message_id) {
            let key = msgids::key(message_id);
            msgids::delete(self.conn, key, seq)?;
            self.erased_ids.push((key, seq));
        }
        Ok(())
    }

    /// The positions of every event whose own id is (or was) `own_id`, in
    /// increasing order: in runs, appended by this transaction, and those
    /// no run holds in this snapshot.
    pub(super) fn log_positions(&mut self, own_id: &str) -> Result<Vec<i64>> {
        let conn = self.conn;
        let mut seqs = logruns::run_positions(conn, own_id)?;
        if let Some(mine) = self.logged.get(own_id) {
            seqs.extend_from_slice(mine);
        }
        if let Some(staged) = &self.staged {
            seqs.extend(staged.notes_of(own_id));
        }
        if let Unstored::Unknown = self.unstored {
            self.unstored =
                match deferred::recorded(conn)?.and_then(|r| Some((r.epoch, r.log_from?))) {
                    None => Unstored::Nowhere,
                    Some(check) if self.overlay.is_some() => Unstored::Memory(Some(check)),
                    Some((_, from)) => Unstored::Log(from),
                };
        }
        let from = match self.unstored {
            Unstored::Unknown | Unstored::Nowhere => None,
            Unstored::Memory(check) => {
                let held = self
                    .overlay
                    .is_some_and(|o| o.log_positions(own_id, check, &mut seqs));
                if held {
                    None
                } else {
                    check.map(|(_, from)| from)
                }
            }
            Unstored::Log(from) => Some(from),
        };
        if let Some(from) = from {
            seqs.extend(logruns::scan_positions(conn, own_id, from)?);
        }
        seqs.sort_unstable();
        seqs.dedup();
        Ok(seqs)
    }

    /// The event at `seq` has `own_id`.
    fn note_log(&mut self, own_id: &str, seq: i64) {
        match &mut self.staged {
            Some(staged) => staged.note(own_id, seq),
            None => logruns::log(&mut self.logged, own_id, seq),
        }
    }

    /// `own_id` is erased: positions of it kept anywhere go.
    pub(super) fn forget_log(&mut self, own_id: &str) -> Result<()> {
        self.logged.remove(own_id);
        if let Some(staged) = &mut self.staged {
            staged.forget(own_id);
        }
        logruns::delete_runs(self.conn, own_id)
    }

    /// The live row kept in memory for `id`, if any.
    pub(super) fn kept(&self, id: &str) -> Option<Arc<Entry>> {
        let overlay = self.overlay?;
        match &self.staged {
            Some(staged) => staged.entry(overlay, id),
            None => overlay.get(id),
        }
    }

    /// [`Self::kept`] of each of `ids`, looked up together
    /// ([`Overlay::get_all`]).
    fn kept_all<'a>(&self, ids: impl Iterator<Item = &'a str>) -> Vec<Option<Arc<Entry>>> {
        match self.overlay {
            Some(overlay) => overlay.get_all(self.staged.as_ref(), ids),
            None => ids.map(|_| None).collect(),
        }
    }

    /// Whether any live row is kept in memory (as far as this view sees).
    pub(super) fn has_kept(&self) -> bool {
        self.overlay.is_some_and(|o| o.len() > 0)
            || self
                .staged
                .as_ref()
                .is_some_and(|s| s.kept_here().next().is_some())
    }

    /// Every live row kept in memory, as of this transaction.
    pub(super) fn all_kept(&self) -> Vec<Arc<Entry>> {
        let Some(overlay) = self.overlay else {
            return Vec::new();
        };
        let mut all = overlay.entries();
        if let Some(staged) = &self.staged {
            all.retain(|e| !staged.changes_row(&e.row.id));
            all.extend(staged.kept_here());
        }
        all
    }

    /// Keeps a changed `row` (and its positions) in place of a kept
    /// `entry`, in the writer's transaction (nothing otherwise).
    fn keep_again(&mut self, entry: &Entry, row: Arc<Row>, history: Option<Positions>) {
        if let Some(staged) = &mut self.staged {
            staged.keep(row, history, Some(entry), (0, 0.0, None));
        }
    }

    /// Writes the kept row of `id` (if any is kept) to its stored row.
    pub(super) fn write_kept(&mut self, id: &str) -> Result<()> {
        let Some(entry) = self.kept(id) else {
            return Ok(());
        };
        self.write_entry(&entry)?;
        if let Some(staged) = &mut self.staged {
            staged.drop_row(id);
        }
        Ok(())
    }

    /// Writes a kept row to its stored row.
    pub(super) fn write_entry(&mut self, entry: &Entry) -> Result<()> {
        self.update_at(
            &entry.row,
            entry.history.as_deref(),
            entry.rowid,
            entry.stored_score,
            entry.stored_due,
        )
    }

    /// Updates the stored row at `rowid` to `row`, its score and due indexes
    /// only when those changed from what it holds (`score`, `due`).
    fn update_at(
        &mut self,
        row: &Row,
        history: Option<&str>,
        rowid: i64,
        score: f64,
        due: Option<Timestamp>,
    ) -> Result<()> {
        let score = score.to_bits() != row.score.score.to_bits();
        let due = due != row.due;
        let which = usize::from(score) * 2 + usize::from(due);
        // The id is checked too: a row moved since would not match.
        if self.run_row(UPDATE_LIVE[which], row, &[history.into(), rowid.into()])? != 1 {
            return Err(StoreError::Corrupt(format!(
                "live row {:?}, known to the writer at {rowid}, is not there",
                row.id
            )));
        }
        Ok(())
    }

    /// How long a live row's positions grow before they become a run: longer
    /// on the writer that keeps rows in memory ([`contacts::KEPT_RUN_BYTES`]).
    fn run_bytes(&self) -> usize {
        if self.staged.is_some() {
            contacts::KEPT_RUN_BYTES
        } else {
            contacts::RUN_BYTES
        }
    }

    /// Writes a live row, keeping the positions of its ledger entries already
    /// in it and adding `positions` (`seq,seq,…`; [`contacts::note_history`]);
    /// returns what the row then holds. `stored`: what it held, if known.
    ///
    /// A row the writer's cache knows ([`Stored`]) is updated in place, its
    /// score and due indexes only when those changed: a replacement deletes and
    /// inserts the row and both index entries. Any other row's old positions
    /// are read first and the row replaced: SQLite gives a statement with
    /// `RETURNING` or an upsert a statement journal, a copy of every page it
    /// changes, which cost an import about a tenth more time (measured,
    /// `docs/performance.md`). The server's writer keeps a row that exists
    /// in memory instead ([`super::deferred`]).
    fn put_live(
        &mut self,
        row: &Arc<Row>,
        mut stored: Option<Stored>,
        positions: Option<&str>,
        now: bool,
        kept: Option<Arc<Entry>>,
    ) -> Result<Stored> {
        // What the row holds once written (or kept).
        let holds = |history, rowid| Stored {
            score: row.score.score,
            due: row.due,
            history,
            rowid,
        };
        let conn = self.conn;
        let limit = self.run_bytes();
        if now {
            // Written now over what is kept, if anything is.
            if let Some(entry) = kept {
                let history =
                    contacts::history_with(conn, &row.id, entry.history.clone(), positions, limit)?;
                self.update_at(
                    row,
                    history.as_deref(),
                    entry.rowid,
                    entry.stored_score,
                    entry.stored_due,
                )?;
                if let Some(staged) = &mut self.staged {
                    staged.drop_row(&row.id);
                }
                return Ok(holds(history, entry.rowid));
            }
        } else if self.staged.is_some() {
            // Taken: a row kept or known goes no further (and `stored` was
            // `None` for one that does).
            let known = match (&kept, stored.take()) {
                (Some(e), _) => Some((e.history.clone(), (e.rowid, e.stored_score, e.stored_due))),
                (None, Some(s)) => Some((s.history, (s.rowid, s.score, s.due))),
                (None, None) => stored_facts(conn, &row.id)?,
            };
            if let Some((old, facts)) = known {
                let history = contacts::history_with(conn, &row.id, old, positions, limit)?;
                if let Some(staged) = &mut self.staged {
                    staged.keep(Arc::clone(row), history.clone(), kept.as_deref(), facts);
                }
                return Ok(holds(history, facts.0));
            }
        }
        let (history, rowid) = match stored {
            Some(stored) => {
                let history =
                    contacts::history_with(conn, &row.id, stored.history, positions, limit)?;
                self.update_at(
                    row,
                    history.as_deref(),
                    stored.rowid,
                    stored.score,
                    stored.due,
                )?;
                (history, stored.rowid)
            }
            None => {
                let old = contacts::live_history(conn, &row.id)?.flatten();
                let history = contacts::history_with(conn, &row.id, old, positions, limit)?;
                self.run_row(REPLACE_LIVE, row, &[history.as_deref().into()])?;
                (history, conn.last_insert_rowid())
            }
        };
        Ok(holds(history, rowid))
    }
}

/// What a stored live row holds that its next update needs: its
/// positions, and its rowid, score and due time.
#[allow(clippy::type_complexity)]
fn stored_facts(
    conn: &Connection,
    id: &str,
) -> Result<Option<(Option<Positions>, (i64, f64, Option<Timestamp>))>> {
    Ok(conn
        .prepare_cached("SELECT history, rowid, score, due FROM contacts WHERE id = ?1")?
        .query_row([id], |r| {
            Ok((
                contacts::positions_at(r, 0)?,
                (
                    r.get(1)?,
                    r.get(2)?,
                    r.get::<_, Option<i64>>(3)?.map(Timestamp),
                ),
            ))
        })
        .optional()?)
}

impl Tx for Sql<'_> {
    fn has_tombstones(&mut self) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM tombstones LIMIT 1")?
            .exists([])?)
    }

    fn tombstoned(&mut self, id_hash: &str) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM tombstones WHERE id_hash = ?1")?
            .exists([id_hash])?)
    }

    fn insert_event(&mut self, m: &Message, body: &str) -> Result<bool> {
        // A random id is looked up in `message_ids`; any other is a
        // conflict in the log's partial unique index.
        let key = if msgids::random(&m.message_id) {
            let (key, found) = self.find_random(&m.message_id)?;
            if let Some(seq) = found {
                self.duplicate = Some((m.message_id.clone(), seq));
                return Ok(false);
            }
            Some(key)
        } else {
            None
        };
        let own_id = m.own_id();
        let mut compact = std::mem::take(&mut self.body);
        bodies::compact_into(&mut compact, body);
        let n = self.run(
            "INSERT INTO events (message_id, own_id, ts, body) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT DO NOTHING",
            &[
                m.message_id.as_str().into(),
                own_id.into(),
                m.timestamp.0.into(),
                compact.as_str().into(),
            ],
        );
        self.body = compact;
        let n = n?;
        if n == 0 {
            return Ok(false);
        }
        let seq = self.conn.last_insert_rowid();
        if let Some(key) = key {
            self.appended.insert(key, seq);
            if let (Some(_), Some(overlay)) = (&self.staged, self.overlay) {
                overlay.ids().added(key);
            }
        }
        self.note_log(own_id, seq);
        Ok(true)
    }

    fn stored_event(&mut self, message_id: &str) -> Result<Option<Message>> {
        let Some(seq) = self.seq_of(message_id)? else {
            return Ok(None);
        };
        let body = self
            .conn
            .prepare_cached("SELECT message_id, ts, body FROM events WHERE seq = ?1")?
            .query_row([seq], stored_body)?;
        body.parse(&mut Default::default()).map(Some)
    }

    fn replace_event(&mut self, m: &Message, body: &str) -> Result<()> {
        let seq = self.seq_of(&m.message_id)?.ok_or_else(|| {
            StoreError::Corrupt(format!("message {} to replace is missing", m.message_id))
        })?;
        let old: String = self
            .conn
            .prepare_cached("SELECT own_id FROM events WHERE seq = ?1")?
            .query_row([seq], |r| r.get(0))?;
        let mut compact = std::mem::take(&mut self.body);
        bodies::compact_into(&mut compact, body);
        let replaced = self
            .conn
            .prepare_cached("UPDATE events SET own_id = ?2, ts = ?3, body = ?4 WHERE seq = ?1")
            .and_then(|mut s| s.execute(params![seq, m.own_id(), m.timestamp.0, compact]));
        self.body = compact;
        replaced?;
        // The new own id's positions gain it (the old one's keep it: its
        // readers see the own id changed).
        if old != m.own_id() {
            self.note_log(m.own_id(), seq);
        }
        Ok(())
    }

    fn insert_link(&mut self, from: &str, to: &str, ts: Timestamp, message_id: &str) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO links (from_id, ts, message_id, to_id) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT DO NOTHING",
            )?
            .execute(params![from, ts.0, message_id, to])?;
        Ok(())
    }

    fn delete_links_of(&mut self, message_id: &str) -> Result<()> {
        self.conn
            .prepare_cached("DELETE FROM links WHERE message_id = ?1")?
            .execute([message_id])?;
        Ok(())
    }

    fn first_links(&mut self, from_ids: &[String]) -> Result<Vec<(String, String)>> {
        // No ORDER BY in the hot statements: SQLite re-prepares a statement
        // with one on every new binding (measured: every call). The earliest
        // link is chosen here instead.
        let mut stmt = self
            .conn
            .prepare_cached("SELECT ts, message_id, to_id FROM links WHERE from_id = ?1")?;
        let mut links = Vec::new();
        for from in from_ids {
            let rows = stmt.query_map([from], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?;
            let mut first: Option<(i64, String, String)> = None;
            for row in rows {
                let row = row?;
                if first.as_ref().is_none_or(|f| (row.0, &row.1) < (f.0, &f.1)) {
                    first = Some(row);
                }
            }
            if let Some((_, _, to)) = first {
                links.push((from.clone(), to));
            }
        }
        Ok(links)
    }

    fn identity(&mut self, id: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .prepare_cached("SELECT contact FROM identities WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?)
    }

    fn set_identity(&mut self, id: &str, contact: &str) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO identities (id, contact) VALUES (?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET contact = excluded.contact",
            )?
            .execute([id, contact])?;
        Ok(())
    }

    fn members(&mut self, contact: &str) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id FROM identities WHERE contact = ?1")?;
        let rows = stmt.query_map([contact], |r| r.get(0))?;
        let mut ids: Vec<String> = rows.collect::<Result<_, _>>()?;
        ids.sort_unstable();
        Ok(ids)
    }

    fn event_bodies(&mut self, own_id: &str) -> Result<Vec<StoredBody>> {
        let seqs = self.log_positions(own_id)?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT message_id, ts, body FROM events WHERE seq = ?1 AND own_id = ?2",
        )?;
        let mut bodies = Vec::with_capacity(seqs.len());
        for seq in seqs {
            if let Some(body) = stmt
                .query_row(params![seq, own_id], stored_body)
                .optional()?
            {
                bodies.push(body);
            }
        }
        Ok(bodies)
    }

    fn row(&mut self, table: Table, id: &str) -> Result<Option<Row>> {
        if table == Table::Live {
            if let Some(entry) = self.kept(id) {
                return Ok(Some(Row::clone(&entry.row)));
            }
        }
        // Written once: formatting them at each call was 0.2 % of a point
        // read's server (session 48).
        static LIVE: LazyLock<String> =
            LazyLock::new(|| format!("SELECT {ROW_COLUMNS} FROM contacts WHERE id = ?1"));
        static NEXT: LazyLock<String> =
            LazyLock::new(|| format!("SELECT {ROW_COLUMNS} FROM contacts_next WHERE id = ?1"));
        let sql = match table {
            Table::Live => &LIVE,
            Table::Next => &NEXT,
        };
        self.conn
            .prepare_cached(sql)?
            .query_row([id], read_row)
            .optional()?
            .transpose()
    }

    fn put_row(&mut self, table: Table, row: &Row) -> Result<()> {
        match table {
            Table::Live => self
                .put_live(&Arc::new(row.clone()), None, None, true, self.kept(&row.id))
                .map(drop),
            Table::Next => {
                let sql = "INSERT OR REPLACE INTO contacts_next VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, NULL)";
                self.run_row(sql, row, &[])?;
                Ok(())
            }
        }
    }

    fn delete_row(&mut self, table: Table, id: &str) -> Result<()> {
        let sql = match table {
            Table::Live => {
                match self.kept(id) {
                    // Its positions are the kept ones.
                    Some(entry) => {
                        if let Some(history) = &entry.history {
                            contacts::add_run(self.conn, id, history)?;
                        }
                        if let Some(staged) = &mut self.staged {
                            staged.drop_row(id);
                        }
                    }
                    None => contacts::runs_of_rows(self.conn, Some(id))?,
                }
                "DELETE FROM contacts WHERE id = ?1"
            }
            Table::Next => "DELETE FROM contacts_next WHERE id = ?1",
        };
        self.conn.prepare_cached(sql)?.execute([id])?;
        Ok(())
    }

    fn append_ledger(&mut self, entries: &[NewEntry]) -> Result<()> {
        self.put_rows_and_ledger(&mut [], entries)
    }

    fn put_rows_and_ledger(&mut self, rows: &mut [LiveWrite], entries: &[NewEntry]) -> Result<()> {
        // Entries first, so that each row is written once with its entries'
        // positions.
        let seqs = insert_ledger(self, entries)?;
        let mut groups =
            contacts::group_positions(entries.iter().map(|e| e.contact.as_str()).zip(seqs));
        // Each row is one contact's: none changes another's entry.
        let kept = self.kept_all(rows.iter().map(|w| w.row.id.as_str()));
        for (write, kept) in rows.iter_mut().zip(kept) {
            let positions = groups.remove(write.row.id.as_str());
            let stored = self.put_live(
                &write.row,
                write.stored.take(),
                positions.as_deref(),
                write.now,
                kept,
            )?;
            write.stored = Some(stored);
        }
        // Rows kept in memory take their positions there.
        if self.staged.is_some() {
            let kept: Vec<(&str, Arc<Entry>)> = groups
                .keys()
                .filter_map(|id| self.kept(id).map(|e| (*id, e)))
                .collect();
            for (id, entry) in kept {
                let positions = groups.remove(id);
                let history = contacts::history_with(
                    self.conn,
                    id,
                    entry.history.clone(),
                    positions.as_deref(),
                    contacts::KEPT_RUN_BYTES,
                )?;
                self.keep_again(&entry, Arc::clone(&entry.row), history);
            }
        }
        contacts::note_history(self.conn, groups)
    }

    fn live_rows(&mut self, after: Option<&str>, limit: usize, traits: bool) -> Result<Vec<Row>> {
        let mut rows = live_rows(self.conn, after, limit, traits)?;
        if self.overlay.is_some() {
            for row in &mut rows {
                if let Some(entry) = self.kept(&row.id) {
                    *row = Row::clone(&entry.row);
                    if !traits {
                        row.traits = Default::default();
                        row.company = Default::default();
                        row.triggers.clear();
                        row.due = None;
                    }
                }
            }
        }
        Ok(rows)
    }

    fn contacts_after(&mut self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT DISTINCT contact FROM identities WHERE contact > ?1 ORDER BY contact LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![after.unwrap_or(""), limit as i64], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn insert_firing(&mut self, f: &NewFiring) -> Result<Option<i64>> {
        let inserted = self.conn.prepare_cached(
            "INSERT OR IGNORE INTO firings (key, trigger_id, contact, at, recorded_at, late, model_version, score, explanation)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?.execute(params![
            f.key,
            f.trigger,
            f.contact,
            f.at.0,
            f.recorded_at.0,
            f.late,
            f.model_version,
            f.score,
            f.explanation,
        ])?;
        Ok((inserted == 1).then(|| self.conn.last_insert_rowid()))
    }

    fn fired_before(&mut self, contact: &str, trigger: &str) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM firings WHERE contact = ?1 AND trigger_id = ?2 LIMIT 1")?
            .exists(params![contact, trigger])?)
    }

    fn enqueue(&mut self, d: &NewDelivery) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO outbox (firing, key, destination, payload, status, next_attempt, created_at)
                 VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5)",
            )?
            .execute(params![d.firing, d.key, d.destination, d.payload, d.at.0])?;
        Ok(())
    }

    fn enrol(
        &mut self,
        campaign: &str,
        firing: i64,
        contact: &str,
        at: Timestamp,
        now: Timestamp,
    ) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT OR IGNORE INTO campaign_members (campaign, firing, contact, at, enrolled_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![campaign, firing, contact, at.0, now.0])?;
        Ok(())
    }

    fn due_contacts(&mut self, now: Timestamp, limit: usize) -> Result<Vec<String>> {
        // Stored rows in due order, less those kept in memory (their due
        // time is the kept one).
        let mut due: Vec<(Timestamp, SmolStr)> = Vec::new();
        {
            let mut stmt = self.conn.prepare_cached(
                "SELECT due, id FROM contacts WHERE due IS NOT NULL AND due <= ?1 ORDER BY due",
            )?;
            let mut rows = stmt.query([now.0])?;
            while due.len() < limit {
                let Some(r) = rows.next()? else {
                    break;
                };
                let id = smol_text(r, 1)?;
                if self.kept(&id).is_none() {
                    due.push((Timestamp(r.get(0)?), id));
                }
            }
        }
        if let Some(overlay) = self.overlay {
            let staged = self.staged.as_ref();
            due.extend(overlay.due_at(now, |id| staged.is_some_and(|s| s.changes_row(id))));
            for entry in staged.into_iter().flat_map(Staged::kept_here) {
                if let Some(at) = entry.row.due.filter(|at| *at <= now) {
                    due.push((at, entry.row.id.clone()));
                }
            }
        }
        due.sort();
        due.truncate(limit);
        Ok(due.into_iter().map(|(_, id)| id.into()).collect())
    }

    fn set_triggers(
        &mut self,
        contact: &str,
        triggers: &[u8],
        due: Option<Timestamp>,
    ) -> Result<()> {
        if let (Some(entry), true) = (self.kept(contact), self.staged.is_some()) {
            let mut row = Row::clone(&entry.row);
            row.triggers = triggers.to_vec();
            row.due = due;
            self.keep_again(&entry, Arc::new(row), entry.history.clone());
            return Ok(());
        }
        self.conn
            .prepare_cached("UPDATE contacts SET triggers = ?2, due = ?3 WHERE id = ?1")?
            .execute(params![contact, triggers, due.map(|t| t.0)])?;
        Ok(())
    }
}

/// Writes a live row whole ([`row_values`] with its positions as `?18`).
const REPLACE_LIVE: &str = "INSERT OR REPLACE INTO contacts VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)";

/// Updates a stored live row (parameters as [`REPLACE_LIVE`]'s, and its
/// rowid as `?19`), by whether its score and its due time changed:
/// unchanged, due, score, both. A column an update does not set leaves its
/// index alone. The row is found by rowid (no lookup of the id in its
/// index), and matches only if it still holds that id.
const UPDATE_LIVE: [&str; 4] = [
    update_live!(""),
    update_live!(", due = ?17"),
    update_live!(", score = ?7"),
    update_live!(", score = ?7, due = ?17"),
];

/// Appends ledger entries in order; their positions.
fn insert_ledger<'e>(sql: &Sql<'_>, entries: &'e [NewEntry]) -> Result<Vec<i64>> {
    // Many rows per statement: one statement step per 64 entries.
    const ROWS: usize = 64;
    macro_rules! insert {
        () => {
            "INSERT INTO ledger (contact, at, recorded_at, model_version, old, new, cause) VALUES "
        };
    }
    macro_rules! row {
        () => {
            "(?, ?, ?, ?, ?, ?, ?)"
        };
    }
    const ONE: &str = concat!(insert!(), row!());
    static MANY: LazyLock<String> =
        LazyLock::new(|| format!("{}{}", insert!(), vec![row!(); ROWS].join(", ")));
    let conn = sql.conn;
    // The entries' texts borrowed; their JSON texts written for each group
    // into one text, and borrowed from it.
    let mut json = String::new();
    let mut spans: Vec<Option<std::ops::Range<usize>>> = Vec::with_capacity(2 * ROWS);
    let mut run = |statement: &'static str, group: &'e [NewEntry]| {
        json.clear();
        spans.clear();
        for e in group {
            for fields in [&e.old, &e.new] {
                spans.push(fields.as_ref().map(|f| {
                    let start = json.len();
                    engine::push_fields_json(&mut json, f, FieldsForm::Array);
                    start..json.len()
                }));
            }
        }
        let mut values = Vec::with_capacity(7 * group.len());
        for (e, texts) in group.iter().zip(spans.chunks(2)) {
            let text = |i: usize| texts[i].clone().map(|span| &json[span]);
            values.extend([
                Param::Text(&e.contact),
                e.at.map(|t| t.0).into(),
                e.recorded_at.0.into(),
                i64::from(e.model_version).into(),
                text(0).into(),
                text(1).into(),
                Param::Text(&e.cause),
            ]);
        }
        sql.run(statement, &values)
    };
    // Each statement's rows take consecutive positions (one writer, a rowid
    // one above the largest), the last of them the connection's last
    // insert rowid.
    let mut seqs = Vec::with_capacity(entries.len());
    let mut positions = |n: usize| {
        let last = conn.last_insert_rowid();
        seqs.extend((last + 1 - n as i64)..=last);
    };
    let full = entries.len() / ROWS * ROWS;
    for group in entries[..full].chunks(ROWS) {
        run(MANY.as_str(), group)?;
        positions(ROWS);
    }
    for entry in &entries[full..] {
        run(ONE, std::slice::from_ref(entry))?;
        positions(1);
    }
    Ok(seqs)
}
