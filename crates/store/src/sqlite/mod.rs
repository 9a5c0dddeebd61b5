//! The embedded backend: one SQLite file in WAL mode, `synchronous = FULL`
//! (a committed ingest survives a crash of the process or of the machine).
//! Writing transactions begin `IMMEDIATE`: with several connections (the
//! server's worker and an activation), a deferred transaction that read
//! first could not upgrade to writing after another commit, while an
//! immediate one waits its turn (busy timeout).

use std::io::Read;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use leadscore_core::model::Model;
use leadscore_core::score::{Score, Status};
use leadscore_core::time::Timestamp;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::engine::{self, Table, Tx};
use crate::listing::Scan;
use crate::{
    now, ActivateReport, ContactAt, ContactRecord, DryRun, EraseReport, Incoming, IngestReport,
    LedgerEntry, Listed, ModelCache, ModelVersion, Param, Progress, Result, ScoreQuery, Stats,
    Store, StoreError, StoredLog, Summary, SummaryBuilder,
};

/// The SQLite `GLOB` pattern of a random UUID (version 4, lower or upper
/// case hex): those messageIds are indexed in `message_ids`, every other
/// in the log's partial unique index (migration V12, [`msgids::random`]).
macro_rules! random_glob {
    () => {
        "[0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F]-[0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F]-4[0-9a-fA-F][0-9a-fA-F][0-9a-fA-F]-[0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F]-[0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F]"
    };
}

mod activation;
mod admin;
mod borrowed;
mod contacts;
mod deferred;
mod grow;
mod logruns;
mod msgids;
mod outbox;
mod phases;
mod rows;
mod versions;
mod wal;

use deferred::Writes;
use engine::Row;
use phases::{Phase, Phases};
use rows::{count, model_in, read_row, Snapshot, Sql, ROW_COLUMNS, ROW_COLUMNS_NO_TRAITS};
use wal::{wal_path, Checkpointer, WalFlush, WAL_RESTART_BYTES};

mod embedded {
    refinery::embed_migrations!("migrations/sqlite");
}

/// `PRAGMA application_id` of leadscore databases ("LSCR").
const APPLICATION_ID: i64 = 0x4C53_4352;

/// `PRAGMA user_version` of a store built by `leadscore demo` ("DEMO"): the
/// only kind of store the demo may delete and build again.
const DEMO_MARK: i64 = 0x4445_4D4F;

/// The SQLite store.
pub struct SqliteStore {
    /// The statements run once per ingested message, prepared once.
    /// Before `conn`: finalized before it closes.
    prepared: borrowed::Prepared,
    conn: Connection,
    /// The compiled active model, by version (recompiled when another
    /// process activates a different one).
    active: ModelCache,
    /// The compiled challenger, by version (see `active`).
    shadow: ModelCache,
    /// The database file (for the checkpointer's connection).
    path: std::path::PathBuf,
    /// Started by the first ingest; see [`Checkpointer`].
    checkpointer: Option<Checkpointer>,
    /// See [`WAL_RESTART_BYTES`].
    wal_limit: u64,
    /// Bytes of the database file read ahead of its growth (0: none), see
    /// [`SqliteStore::set_grow_ahead`].
    grow_ahead: u64,
    /// Started with the checkpointer when `grow_ahead` is set.
    grow: Option<grow::GrowAhead>,
    /// Live rows as this connection's ingests left them, once durability
    /// is deferred (the server's small commits; an import's large batches
    /// load each row once per batch anyway, and ran 5 % slower with it).
    live: Option<WriterCache>,
    /// Live rows the server's writer keeps in memory, shared by every
    /// connection of this process to the same database ([`deferred`]).
    overlay: Arc<deferred::Overlay>,
    /// Set on the server's writer ([`Store::defer_durability`]): it keeps
    /// updates of live rows in `overlay` and writes them later.
    owner: Option<deferred::Owner>,
    /// How long the writer keeps what it writes later before it is due
    /// ([`deferred::WRITE_AFTER`]; tests shorten it).
    write_after: Duration,
}

/// The writer's [`engine::LiveCache`] and what says it still holds what the
/// rows do: SQLite's `data_version` (changes when another connection
/// commits) and this connection's count of changed rows (changes when any
/// other operation on it writes), both as its last ingest left them.
struct WriterCache {
    states: engine::LiveCache,
    valid_at: Option<(i64, u64)>,
    /// `data_version` read inside the batch's transaction: read after the
    /// commit it could already include another connection's commit.
    batch_version: i64,
}

impl WriterCache {
    fn new(contacts: usize) -> WriterCache {
        WriterCache {
            states: engine::LiveCache::new(contacts),
            valid_at: None,
            batch_version: 0,
        }
    }

    /// The cache for a batch in `conn`'s open write transaction, whose
    /// `data_version` the writer read as it began
    /// ([`deferred::Owner::data_version`]): emptied unless nothing was
    /// written since the last ingest, and saying nothing until this batch
    /// commits ([`WriterCache::committed`]).
    fn for_batch(&mut self, conn: &Connection, data_version: i64) -> &mut engine::LiveCache {
        self.batch_version = data_version;
        let now = (self.batch_version, conn.total_changes());
        match self.valid_at.take() {
            Some(valid) if valid == now => {}
            valid => {
                if let Some((version, changes)) = valid {
                    tracing::debug!(
                        version_was = version,
                        version = now.0,
                        changes_was = changes,
                        changes = now.1,
                        "writer cache emptied: another connection or operation wrote"
                    );
                }
                self.states.clear();
            }
        }
        &mut self.states
    }

    /// The batch committed: the cache holds what `conn` wrote.
    fn committed(&mut self, conn: &Connection) {
        self.states.committed();
        self.valid_at = Some((self.batch_version, conn.total_changes()));
    }

    /// The connection's count of changed rows went from `before` to
    /// `after` writing no live row: a cache valid before still is.
    fn unchanged_across(&mut self, before: u64, after: u64) {
        if let Some((_, changes)) = &mut self.valid_at {
            if *changes == before {
                *changes = after;
            }
        }
    }
}

/// The writer's cache of live states for a transaction that [`writing`]
/// began on `tx` ([`WriterCache::for_batch`]), when this connection is the
/// server's writer and keeps one.
fn writer_cache<'a>(
    live: &'a mut Option<WriterCache>,
    owner: &Option<deferred::Owner>,
    tx: &Connection,
) -> Option<&'a mut engine::LiveCache> {
    let version = owner.as_ref().and_then(deferred::Owner::data_version)?;
    Some(live.as_mut()?.for_batch(tx, version))
}

/// The writer's page cache once durability is deferred (the server), in
/// KiB (SQLite's negative `cache_size`). SQLite's default 2 MiB holds a
/// fraction of the pages that events for contacts spread over the store
/// touch: the writer then spends a fifth of its time re-reading pages from
/// the OS and spilling dirty ones to the WAL mid-transaction. Open-loop
/// `/v1/batch` at 28k events/s over 20k contacts spread by a hash: p50 74
/// ms at 64 MiB against 134 ms at 2 MiB (256 MiB: the same as 64); with
/// consecutive contacts no difference.
const SERVER_CACHE_KIB: i64 = 64 << 10;

/// How much of the database the server's writer and read connections read
/// through a memory map (`PRAGMA mmap_size`; SQLite's own ceiling,
/// `SQLITE_MAX_MMAP_SIZE`, is 0x7fff0000): they then read pages without
/// copying them into their caches. Spread `/v1/batch` at 50k events/s,
/// three interleaved pairs: writer CPU 1.5–1.9 s a minute lower, p99 22.3,
/// 22.0, 113 ms against 361, 24.4, 326 ms (docs/performance.md, session
/// 38). `GET /contacts/{id}` at 10k/s over 100k contacts: server CPU 15 %
/// lower (session 48).
const SERVER_MMAP_BYTES: i64 = 0x7fff_0000;

/// Keeps the live rows' score index (`contacts_score`, `(score, id)`)
/// exactly while `model`, the active one, has scores that stay as stored:
/// building it when missing, dropping it when present. Listings read it
/// only then ([`Scan::of`]); under a model whose scores move with time
/// they score every live state as of their time instead, so there it
/// would only be written, on every change of score (docs/storage.md).
pub(crate) fn fit_score_index(conn: &Connection, model: &Model) -> Result<()> {
    conn.execute_batch(if model.moves_with_time() {
        "DROP INDEX IF EXISTS contacts_score"
    } else {
        "CREATE INDEX IF NOT EXISTS contacts_score ON contacts (score, id)"
    })?;
    Ok(())
}

/// The page cache of a connection importing ([`Store::prepare_bulk_load`]),
/// in KiB. With random (UUID) messageIds each 10,000-message batch touched
/// about 9,000 pages of the message-id index (before V12; since, as many
/// entries of `message_ids`, on about a third as many pages), which
/// SQLite's 2 MiB cache re-read from the OS: 3.6 M messages imported at
/// 43.7k and 50.2k/s against 40.8k and 40.9k/s (alternated; 1 GiB no
/// better), peak RSS about 440 MB against 160; the same speed with ids
/// clustered by contact.
const BULK_CACHE_KIB: i64 = 256 << 10;

/// How long an idle writer waits before it looks again at rows held back
/// while the WAL is past its limit ([`Store::write_idle`]).
const PAST_LIMIT_WAIT: Duration = Duration::from_millis(10);

impl Drop for SqliteStore {
    /// The writer writes the live rows it keeps in memory: a restart then
    /// has none to derive again (after a crash it does,
    /// [`deferred::recover`]). An error leaves them to that.
    fn drop(&mut self) {
        if let Err(e) = self.write_kept_rows() {
            tracing::warn!(error = %e, "live rows kept in memory are left to be derived again on the next start");
        }
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

/// Refuses files that are not SQLite databases before SQLite touches them.
fn check_header(path: &Path) -> Result<()> {
    let foreign = |why: &str| StoreError::Foreign {
        path: path.display().to_string(),
        why: why.to_string(),
    };
    let Ok(mut file) = std::fs::File::open(path) else {
        return Ok(()); // created on open
    };
    let mut header = [0u8; 16];
    match file.read_exact(&mut header) {
        Ok(()) if &header == b"SQLite format 3\0" => Ok(()),
        Ok(()) => Err(foreign("not a SQLite file")),
        Err(_) if file.metadata().map(|m| m.len()).unwrap_or(0) == 0 => Ok(()),
        Err(_) => Err(foreign("file too short to be a SQLite database")),
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and migrates its
    /// schema. A file that is not a leadscore database is refused unchanged.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore> {
        let path = path.as_ref();
        check_header(path)?;
        let foreign = |why: String| StoreError::Foreign {
            path: path.display().to_string(),
            why,
        };
        crate::pcache::install();
        crate::walvfs::install();
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(30))?;
        msgids::faster_glob(&conn)?;
        // Every statement of the ingest path stays prepared.
        conn.set_prepared_statement_cache_capacity(64);
        let app: i64 = conn
            .pragma_query_value(None, "application_id", |r| r.get(0))
            .map_err(|e| foreign(e.to_string()))?;
        if app != APPLICATION_ID {
            let tables: i64 =
                conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))?;
            if app != 0 {
                return Err(foreign(format!("application id {app:#x}")));
            }
            if tables > 0 {
                return Err(foreign(format!(
                    "it already holds {tables} other tables or indexes"
                )));
            }
            conn.pragma_update(None, "application_id", APPLICATION_ID)?;
        }
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Database(format!(
                "cannot use WAL (journal mode {mode})"
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        embedded::migrations::runner()
            .run(&mut conn)
            .map_err(|e| StoreError::Migration(e.to_string()))?;
        let mut store = SqliteStore {
            prepared: borrowed::Prepared::new(&conn),
            conn,
            active: ModelCache::default(),
            shadow: ModelCache::default(),
            path: path.to_path_buf(),
            checkpointer: None,
            wal_limit: WAL_RESTART_BYTES,
            grow_ahead: 0,
            grow: None,
            live: None,
            overlay: deferred::Overlay::of(path),
            owner: None,
            write_after: deferred::WRITE_AFTER,
        };
        store.set_wal_limit(WAL_RESTART_BYTES)?;
        Ok(store)
    }

    /// Sets the WAL size past which ingestion starts the WAL over (1 GiB by
    /// default): smaller means less disk for the
    /// WAL and more frequent catch-ups on the writer. Only before the first
    /// ingest, which starts the checkpointer with it.
    ///
    /// SQLite truncates the WAL file, in the first commit after a restart,
    /// to `journal_size_limit`: twice this limit, so that the file keeps
    /// the blocks each cycle rewrites. At the limit itself that commit cut
    /// the tail that had just grown past it, waiting for the pages still
    /// being written back: 72 and 313 ms in the writer's `ftruncate`,
    /// every 6.5 s at 50k events/s (docs/performance.md, session 40). Past
    /// twice the limit the writer catches up whatever is left, so the file
    /// stays within about twice the limit either way.
    pub fn set_wal_limit(&mut self, bytes: u64) -> Result<()> {
        self.before_first_ingest("the WAL limit")?;
        self.conn.pragma_update(
            None,
            "journal_size_limit",
            bytes.saturating_mul(2).min(i64::MAX as u64) as i64,
        )?;
        self.wal_limit = bytes;
        Ok(())
    }

    /// Refuses a setting (`what`) that the first ingest puts into effect,
    /// once it has.
    fn before_first_ingest(&self, what: &str) -> Result<()> {
        match self.checkpointer {
            Some(_) => Err(StoreError::Database(format!(
                "{what} is set before the first ingest"
            ))),
            None => Ok(()),
        }
    }

    /// Has a thread read up to `bytes` of the database file past the
    /// database's end into the page cache, ahead of the checkpoints that
    /// will write there, and SQLite extend the file four times that at a
    /// time (0, the default: neither). For a server whose host is slow to
    /// supply fresh memory (see the `grow` module). Takes effect with the
    /// first ingest, so it is refused after one.
    pub fn set_grow_ahead(&mut self, bytes: u64) -> Result<()> {
        self.before_first_ingest("the read-ahead of the database file")?;
        self.grow_ahead = bytes;
        Ok(())
    }

    /// Marks this store as demo data, which `leadscore demo` may replace.
    pub fn mark_as_demo(&self) -> Result<()> {
        self.conn.pragma_update(None, "user_version", DEMO_MARK)?;
        Ok(())
    }

    /// Whether [`SqliteStore::mark_as_demo`] marked this store.
    pub fn is_demo(&self) -> Result<bool> {
        Ok(count(&self.conn, "PRAGMA user_version", [])? == DEMO_MARK as u64)
    }

    /// Closes the store after taking it out of WAL mode, which SQLite
    /// allows only to the one connection open on the database: an error
    /// (without waiting) while another one, in this process or another (a
    /// running server), has it open. For a caller about to delete its files,
    /// which would take the data from under that connection.
    pub fn close_exclusive(self) -> Result<()> {
        self.conn.busy_timeout(Duration::ZERO)?;
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("delete") {
            return Err(StoreError::Database(format!(
                "the database stays in {mode} mode: another connection has it open"
            )));
        }
        Ok(())
    }

    /// Caps the database size (SQLite `max_page_count`, for this
    /// connection): a transaction that would grow it further fails with
    /// "database or disk is full" and is rolled back, like a full disk.
    pub fn limit_size(&self, bytes: u64) -> Result<()> {
        let page_size = count(&self.conn, "PRAGMA page_size", [])?.max(1);
        let pages = (bytes / page_size).max(1);
        self.conn
            .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))?;
        Ok(())
    }

    /// Lets this connection's page cache grow to `kib` KiB.
    fn keep_pages(&self, kib: i64) -> Result<()> {
        self.conn.pragma_update(None, "cache_size", -kib)?;
        Ok(())
    }

    /// Drops or builds the live rows' score index as the active model
    /// needs it ([`fit_score_index`]): for a store made before this rule,
    /// when a writer starts.
    fn fit_score_index_to_active(&self) -> Result<()> {
        match self.active_in(&self.conn)? {
            Some((_, model)) => fit_score_index(&self.conn, &model),
            None => Ok(()),
        }
    }

    /// Kept prepared: every ingest asks (preparing it each time was 2.2 %
    /// of the server's writer, `docs/performance.md`, session 43).
    fn active_version(conn: &Connection) -> Result<Option<u32>> {
        Ok(conn
            .prepare_cached("SELECT version FROM activations ORDER BY seq DESC LIMIT 1")?
            .query_row([], |r| r.get(0))
            .optional()?)
    }

    /// The compiled model of `version`, cached.
    fn compiled(&self, version: u32) -> Result<Arc<Model>> {
        model_in(&self.active, &self.conn, version)
    }

    /// The active version and model, read through `conn`.
    fn active_in(&self, conn: &Connection) -> Result<Option<(u32, Arc<Model>)>> {
        active_model(&self.active, conn)
    }

    /// The scan a listing as of `at` needs (see [`Scan::of`]), reading the
    /// active model through `conn`.
    fn scan(&self, conn: &Connection, at: Option<Timestamp>, rewind: bool) -> Result<Option<Scan>> {
        if at.is_none() {
            return Ok(None);
        }
        Ok(Scan::of(at, self.active_in(conn)?, rewind))
    }

    fn job(conn: &Connection) -> Result<Option<(u32, Option<String>)>> {
        // Asked by every ingest: kept prepared (preparing it each time took
        // 1.2 % of the server's writer, session 44).
        Ok(conn
            .prepare_cached("SELECT version, cursor FROM activation_job")?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    /// The engine's view of `conn` for a read: live rows kept in memory by
    /// this process's writer read in place of the stored ones, while they
    /// go with `conn`'s snapshot.
    fn reading<'c>(&'c self, conn: &'c Connection) -> Result<Sql<'c>> {
        Ok(Sql::viewing(conn, self.overlay.view(conn)?))
    }

    /// Opens the store as another process would: without this process's
    /// writer's memory. For tests of what such readers see.
    #[doc(hidden)]
    pub fn open_apart(path: impl AsRef<Path>) -> Result<SqliteStore> {
        let mut store = SqliteStore::open(path)?;
        store.overlay = Arc::new(deferred::Overlay::default());
        Ok(store)
    }

    /// Ends this store as a crash of its process would: the live rows its
    /// writer keeps in memory are lost instead of written, and the next
    /// writer derives them again from the log. For tests of that recovery.
    #[doc(hidden)]
    pub fn crash(mut self) {
        if let Some(owner) = self.owner.take() {
            owner.overlay.clear();
        }
    }

    /// Sets how long a writer that defers durability keeps what it writes
    /// later before it is due (30 s; tests shorten it). Before
    /// [`Store::defer_durability`].
    #[doc(hidden)]
    pub fn set_write_after(&mut self, after: Duration) {
        self.write_after = after;
    }

    /// Moves the writer's clock on by `by`, as if that much time passed
    /// (tests of what is due when).
    #[doc(hidden)]
    pub fn advance_writer_clock(&mut self, by: Duration) {
        if let Some(owner) = &mut self.owner {
            owner.advance(by);
        }
    }

    /// How many live rows the writer keeps in memory (for tests).
    #[doc(hidden)]
    pub fn kept_rows(&self) -> usize {
        self.overlay.len()
    }

    /// Writes every live row the writer keeps in memory (nothing when it
    /// keeps none), so that the next start has nothing to re-derive.
    pub fn write_kept_rows(&mut self) -> Result<()> {
        let Some(owner) = &self.owner else {
            return Ok(());
        };
        if owner.overlay.len() == 0 && !owner.has_recorded() {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let active = active_model(&self.active, &tx)?;
        let model = model_of(&active);
        let sql = writing(&mut self.owner, &self.overlay, &tx, model)?;
        let staged = finish_writing(&self.owner, sql, Writes::All)?;
        commit(tx, &mut self.owner, staged)?;
        Ok(())
    }

    /// After a commit of the writer (an ingest, an idle moment): its
    /// cache takes what was committed, the WAL starts over when large, the
    /// checkpointer is woken, and a slow transaction is logged.
    fn after_commit(&mut self, mut phases: Phases) {
        if let Some(live) = &mut self.live {
            live.committed(&self.conn);
        }
        if let Some(grow) = &self.grow {
            // The database's size after the commit (SQLite reads it from
            // its own header: no I/O).
            let pages = self
                .conn
                .prepare_cached("PRAGMA page_count")
                .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)));
            if let Ok(pages) = pages {
                grow.set_end_pages(pages.max(0) as u64);
            }
        }
        phases.mark(Phase::Cache);
        // Before waking the checkpointer, which would otherwise start a
        // pass that the catch-up then waits for or gives way to.
        self.restart_wal_if_large();
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.poke();
        }
        phases.mark(Phase::After);
        let progress = self.checkpointer.as_ref().map(|c| &c.progress);
        phases.report(
            progress.and_then(|p| p.uncopied()),
            progress.map(|p| p.last_commit.load(Ordering::Acquire)),
        );
    }

    /// The score at `t` of contact `id` from its live row, with the row,
    /// read in one transaction (one snapshot, and one lock of the database
    /// instead of one a statement). When the row cannot give
    /// it, the active model to fold the contact's log with: `id` is not a
    /// canonical id, the contact has no live row, or its row's state is of
    /// another model version or after `t`.
    fn live_score(&self, id: &str, t: Timestamp) -> Result<engine::LiveScore> {
        let snapshot = Snapshot::begin(&self.conn)?;
        let conn: &Connection = &snapshot;
        // The active version, the id's contact and the epoch of the rows
        // the writer keeps in memory, in one statement: each statement
        // costs about a microsecond besides its lookup (session 48).
        let (version, contact, epoch) = conn
            .prepare_cached(
                "SELECT (SELECT version FROM activations ORDER BY seq DESC LIMIT 1),
                        (SELECT contact FROM identities WHERE id = ?1),
                        (SELECT epoch FROM deferred_rows)",
            )?
            .query_row([id], |r| {
                Ok((
                    r.get::<_, Option<u32>>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                ))
            })?;
        let version = version.ok_or(StoreError::NoActiveModel)?;
        let model = model_in(&self.active, conn, version)?;
        if contact.is_some_and(|c| c != id) {
            return Ok(Err(model));
        }
        let mut sql = Sql::viewing(conn, self.overlay.view_of(epoch));
        let Some(row) = sql.row(Table::Live, id)? else {
            return Ok(Err(model));
        };
        Ok(match engine::score_from_row(&model, version, &row, t)? {
            Some(score) => Ok((score, row)),
            None => Err(model),
        })
    }

    fn canonical(conn: &Connection, id: &str) -> Result<String> {
        Ok(Sql::new(conn)
            .identity(id)?
            .unwrap_or_else(|| id.to_string()))
    }
}

/// The text in column `i` of `r`, borrowed.
fn id_text<'r>(r: &'r rusqlite::Row<'_>, i: usize) -> Result<&'r str> {
    r.get_ref(i)?
        .as_str()
        .map_err(|e| StoreError::Corrupt(format!("contact id: {e}")))
}

/// A listing of stored scores while live rows are kept in memory: the
/// stored rows in the query's order, less those kept (whose stored scores
/// are old), merged with the kept ones that the query selects.
fn kept_listing(sql: &mut Sql<'_>, query: &ScoreQuery) -> Result<Vec<Listed>> {
    let unlimited = ScoreQuery {
        limit: usize::MAX,
        ..query.clone()
    };
    let (tail, params) = unlimited.sql(|n| format!("?{n}"));
    let conn = sql.conn();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ROW_COLUMNS_NO_TRAITS} FROM contacts {tail}"
    ))?;
    let values = params.into_iter().map(|p| match p {
        Param::Text(t) => rusqlite::types::Value::Text(t),
        Param::Real(r) => rusqlite::types::Value::Real(r),
        // `usize::MAX` as SQLite's "no limit".
        Param::Int(i) => rusqlite::types::Value::Integer(i.max(-1)),
    });
    let mut listed = Vec::new();
    let mut rows = stmt.query(rusqlite::params_from_iter(values))?;
    while listed.len() < query.limit {
        let Some(r) = rows.next()? else {
            break;
        };
        if sql.kept(id_text(r, 0)?).is_none() {
            listed.push(Listed::from(read_row(r)??));
        }
    }
    for entry in sql.all_kept() {
        if query.matches(&entry.row.id, &entry.row.score) {
            listed.push(Listed::from(Row::clone(&entry.row)));
        }
    }
    listed.sort_by(|a, b| query.order((a.score.score, &a.id), (b.score.score, &b.id)));
    listed.truncate(query.limit);
    Ok(listed)
}

/// The active version and its compiled model (from `cache`), read
/// through `conn`.
fn active_model(cache: &ModelCache, conn: &Connection) -> Result<Option<(u32, Arc<Model>)>> {
    SqliteStore::active_version(conn)?
        .map(|v| Ok((v, model_in(cache, conn, v)?)))
        .transpose()
}

/// The model of [`active_model`]'s answer, as the engine takes it.
fn model_of(active: &Option<(u32, Arc<Model>)>) -> Option<(&Model, u32)> {
    active.as_ref().map(|(version, model)| (&**model, *version))
}

/// The engine's view of `conn` for a write transaction it has open that
/// may touch live rows: the writer (`owner`) keeps them in memory; any
/// other connection first re-derives those a writer left unwritten
/// ([`deferred::settle`]). `model`: the active one, read in this
/// transaction.
fn writing<'c>(
    owner: &mut Option<deferred::Owner>,
    overlay: &'c deferred::Overlay,
    conn: &'c Connection,
    model: Option<(&Model, u32)>,
) -> Result<Sql<'c>> {
    match owner {
        Some(owner) => {
            let staged = owner.begin(conn, model)?;
            Ok(Sql::keeping(conn, overlay, staged))
        }
        None => {
            deferred::settle(conn, overlay, model)?;
            Ok(Sql::new(conn))
        }
    }
}

/// Ends the writer's part of a transaction before its commit: writes the
/// kept rows, the runs of log positions and the `message_ids` entries due
/// for a transaction of kind `writes` ([`Writes::All`]: every one, for a
/// transaction about to replace the live rows wholesale or a writer about
/// to close) and records where the rest stand. Returns what [`commit`]
/// applies after the commit. Any other connection writes the runs of the
/// positions and the `message_ids` entries its transaction appended.
fn finish_writing(
    owner: &Option<deferred::Owner>,
    mut sql: Sql<'_>,
    writes: Writes,
) -> Result<Option<deferred::Staged>> {
    let (appended, erased) = sql.take_ids();
    let Some(owner) = owner else {
        let mut logged: Vec<_> = sql.take_logged().into_iter().collect();
        logged.sort_unstable();
        for (own_id, seqs) in logged {
            logruns::add_run(sql.conn(), sql.prepared(), &own_id, &seqs)?;
        }
        msgids::write(sql.conn(), sql.prepared(), &appended.sorted(), &[])?;
        return Ok(None);
    };
    let now = owner.now();
    // First: what is due depends on them.
    let staged = sql.staged_mut().expect("the writer's");
    staged.put_notes(&owner.overlay);
    let writes = match staged.writes_all() {
        true => Writes::All,
        false => writes,
    };
    let ids = match writes {
        Writes::All => owner.all(staged),
        _ => owner.due(staged, writes, now),
    };
    for id in ids {
        sql.write_kept(&id)?;
    }
    let conn = sql.conn();
    let mut staged = sql.take_staged().expect("the writer's");
    (staged.ids, staged.ids_erased) = (appended, erased);
    owner.write_due(conn, sql.prepared(), &mut staged, writes, now)?;
    owner.record(conn, &mut staged)?;
    Ok(Some(staged))
}

/// Commits a transaction that [`writing`] began, then applies what the
/// writer staged in it.
fn commit(
    tx: rusqlite::Transaction<'_>,
    owner: &mut Option<deferred::Owner>,
    staged: Option<deferred::Staged>,
) -> Result<()> {
    let (Some(owner), Some(staged)) = (owner, staged) else {
        tx.commit()?;
        return Ok(());
    };
    owner.committing();
    if let Err(e) = tx.commit() {
        owner.not_committed();
        return Err(e.into());
    }
    owner.committed(staged);
    Ok(())
}

impl Store for SqliteStore {
    fn prepare_bulk_load(&mut self) -> Result<()> {
        self.fit_score_index_to_active()?;
        self.keep_pages(BULK_CACHE_KIB)
    }

    fn serve_reads(&mut self) -> Result<()> {
        self.conn
            .pragma_update(None, "mmap_size", SERVER_MMAP_BYTES)?;
        Ok(())
    }

    fn defer_durability(&mut self, live_contacts: usize) -> Result<Option<Box<dyn crate::Flush>>> {
        self.fit_score_index_to_active()?;
        self.keep_pages(SERVER_CACHE_KIB)?;
        self.conn
            .pragma_update(None, "mmap_size", SERVER_MMAP_BYTES)?;
        let mut owner =
            deferred::Owner::new(Arc::clone(&self.overlay), live_contacts, self.write_after)?;
        // Rows a writer before this one left unwritten are derived again
        // now (synced: commits are still synchronous here).
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let active = active_model(&self.active, &tx)?;
        owner.begin(&tx, model_of(&active))?;
        tx.commit()?;
        // Last of what can fail: an error leaves commits synchronous and
        // rows written at once, as the caller, told nothing is deferred,
        // expects.
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        self.live = (live_contacts > 0).then(|| WriterCache::new(live_contacts));
        self.owner = Some(owner);
        Ok(Some(Box::new(WalFlush {
            wal: wal_path(&self.path),
        })))
    }

    fn write_idle(&mut self) -> Result<Option<Duration>> {
        let Some(owner) = &mut self.owner else {
            return Ok(None);
        };
        if owner.bury(deferred::IDLE_DROPS) {
            return Ok(Some(Duration::ZERO));
        }
        let now = owner.now();
        match owner.idle(now) {
            Some(wait) if wait.is_zero() => {}
            wait => return Ok(wait),
        }
        // Past the WAL's limit every frame written is one more that the
        // checkpointer must copy before the WAL can start over, and the
        // idle moments' rows are half of them: what is due waits until
        // then (a second or two), unless it is beyond the memory's budget.
        let wal_past_limit = self
            .checkpointer
            .as_ref()
            .is_some_and(|c| c.progress.past_limit());
        if wal_past_limit && !owner.over_budget() {
            return Ok(Some(PAST_LIMIT_WAIT));
        }
        let mut phases = Phases::start("idle", 0);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let active = active_model(&self.active, &tx)?;
        let model = model_of(&active);
        let sql = writing(&mut self.owner, &self.overlay, &tx, model)?.preparing(&self.prepared);
        // The writer's cache stays valid: the rows written hold what it
        // holds (without this, its check would take the changes for
        // another writer's).
        writer_cache(&mut self.live, &self.owner, &tx);
        phases.mark(Phase::Begin);
        let staged = finish_writing(&self.owner, sql, Writes::Idle)?;
        let wrote = staged.as_ref().is_some_and(deferred::Staged::wrote_kept);
        phases.mark(Phase::Rows);
        commit(tx, &mut self.owner, staged)?;
        phases.mark(Phase::Commit);
        self.after_commit(phases);
        let Some(owner) = &mut self.owner else {
            return Ok(None);
        };
        let now = owner.now();
        Ok(match owner.idle(now) {
            // Due, yet nothing was written (not expected): not again at
            // once, so that an idle writer does not spin.
            Some(wait) if wait.is_zero() && !wrote => Some(self.write_after / 2),
            wait => wait,
        })
    }

    fn ingest(&mut self, messages: Vec<Incoming>) -> Result<IngestReport> {
        if self.checkpointer.is_none() {
            let chunk = (self.grow_ahead > 0).then(|| grow::chunk_for(self.grow_ahead));
            let checkpointer = Checkpointer::start(&self.path, self.wal_limit, chunk)?;
            if let Some(chunk) = chunk {
                grow::set_chunk_size(&self.conn, chunk)?;
                let page_size = count(&self.conn, "PRAGMA page_size", [])?;
                self.grow = Some(grow::GrowAhead::start(
                    &self.path,
                    self.grow_ahead,
                    page_size,
                )?);
            }
            self.conn.pragma_update(None, "wal_autocheckpoint", 0)?;
            // After the pragma, which replaces any WAL hook.
            let progress = Arc::clone(&checkpointer.progress);
            self.conn
                .wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, frames| {
                    let frames = i64::from(frames);
                    let before = progress.frames.swap(frames, Ordering::AcqRel);
                    // Fewer than before: the commit started the WAL over.
                    let added = if frames > before {
                        frames - before
                    } else {
                        frames
                    };
                    progress.last_commit.store(added, Ordering::Release);
                    Ok(())
                }))?;
            self.checkpointer = Some(checkpointer);
        }
        let mut phases = Phases::start("ingest", messages.len());
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Read inside the transaction: an activation by another connection
        // may have switched versions since this one last looked.
        let active = active_model(&self.active, &tx)?;
        let activating = Self::job(&tx)?.is_some();
        let model = model_of(&active);
        let mut sql =
            writing(&mut self.owner, &self.overlay, &tx, model)?.preparing(&self.prepared);
        // Inside the (immediate) transaction: nobody else writes until it
        // ends. After `writing`, whose re-derivation would change rows.
        let live = writer_cache(&mut self.live, &self.owner, &tx);
        phases.mark(Phase::Begin);
        let report = engine::ingest(&mut sql, model, activating, messages, now(), live)?;
        phases.mark(Phase::Messages);
        let staged = finish_writing(&self.owner, sql, Writes::Acked)?;
        phases.mark(Phase::Rows);
        commit(tx, &mut self.owner, staged)?;
        phases.mark(Phase::Commit);
        self.after_commit(phases);
        Ok(report)
    }

    fn add_model(&mut self, name: &str, source: &str) -> Result<ModelVersion> {
        self.insert_model(name, source)
    }

    fn models(&self) -> Result<Vec<ModelVersion>> {
        self.model_list()
    }

    fn model_source(&self, version: u32) -> Result<String> {
        self.source_of(version)
    }

    fn active_model(&self) -> Result<Option<(u32, Arc<Model>)>> {
        match Self::active_version(&self.conn)? {
            None => Ok(None),
            Some(v) => Ok(Some((v, self.compiled(v)?))),
        }
    }

    fn previous_version(&self) -> Result<Option<u32>> {
        self.previous_activation()
    }

    fn activate(&mut self, version: u32, progress: Progress<'_>) -> Result<ActivateReport> {
        self.activate_version(version, progress)
    }

    fn dry_run(&self, candidate: &Model, at: Timestamp, progress: Progress<'_>) -> Result<DryRun> {
        let tx = self.conn.unchecked_transaction()?;
        let total = count(&tx, "SELECT count(DISTINCT contact) FROM identities", [])?;
        let active = self.active_in(&tx)?;
        // Bound before returning: the `Sql` (its held statements borrow
        // `tx`) is dropped at the end of this statement, before `tx`.
        let report = engine::dry_run(
            &mut self.reading(&tx)?,
            candidate,
            at,
            active,
            total,
            progress,
        );
        report
    }

    fn contact(&self, id: &str) -> Result<Option<ContactRecord>> {
        let canonical = Self::canonical(&self.conn, id)?;
        Ok(self
            .reading(&self.conn)?
            .row(Table::Live, &canonical)?
            .map(ContactRecord::from))
    }

    fn contacts(&self, after: Option<&str>, limit: usize) -> Result<Vec<ContactRecord>> {
        let tx = self.conn.unchecked_transaction()?;
        let rows = self.reading(&tx)?.live_rows(after, limit, true)?;
        Ok(rows.into_iter().map(ContactRecord::from).collect())
    }

    fn score_at(&self, id: &str, t: Timestamp) -> Result<Option<(String, Score)>> {
        let scored = crate::scored_from(self, self.live_score(id, t)?, id, t)?;
        Ok(scored.map(|(id, score, _)| (id, score)))
    }

    fn contact_at(&self, id: &str, t: Timestamp) -> Result<Option<ContactAt>> {
        let scored = crate::scored_from(self, self.live_score(id, t)?, id, t)?;
        crate::contact_at_from(self, scored)
    }

    fn history(&self, id: &str) -> Result<Vec<LedgerEntry>> {
        self.ledger_of(id)
    }

    fn contact_messages(&self, id: &str) -> Result<Option<StoredLog>> {
        let tx = self.conn.unchecked_transaction()?;
        let Some(canonical) = Sql::new(&tx).identity(id)? else {
            return Ok(None);
        };
        let (ids, messages) = engine::contact_log(&mut self.reading(&tx)?, &canonical)?;
        Ok(Some(StoredLog {
            contact: canonical,
            ids,
            messages,
        }))
    }

    fn each_log(&self, each: &mut dyn FnMut(StoredLog)) -> Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        // Bound before returning, as in `dry_run`.
        let done = engine::each_log(&mut self.reading(&tx)?, each);
        done
    }

    fn erase(&mut self, id: &str) -> Result<Option<EraseReport>> {
        self.erase_contact(id)
    }

    fn scores(&self, query: &ScoreQuery) -> Result<Vec<Listed>> {
        // One snapshot for the model and every step of a scan.
        let tx = self.conn.unchecked_transaction()?;
        let mut sql = self.reading(&tx)?;
        if let Some(scan) = self.scan(&tx, query.at, query.rewind)? {
            return scan.select(query, &mut sql);
        }
        if sql.has_kept() {
            return kept_listing(&mut sql, query);
        }
        let (tail, params) = query.sql(|n| format!("?{n}"));
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {ROW_COLUMNS} FROM contacts {tail}"))?;
        let values = params.into_iter().map(|p| match p {
            Param::Text(t) => rusqlite::types::Value::Text(t),
            Param::Real(r) => rusqlite::types::Value::Real(r),
            Param::Int(i) => rusqlite::types::Value::Integer(i),
        });
        let rows = stmt.query_map(rusqlite::params_from_iter(values), read_row)?;
        rows.map(|r| Ok(Listed::from(r??))).collect()
    }

    fn summary(&self, at: Option<Timestamp>, rewind: bool) -> Result<Summary> {
        let tx = self.conn.unchecked_transaction()?;
        let sql = self.reading(&tx)?;
        if let Some(scan) = self.scan(&tx, at, rewind)? {
            return scan.summary(&mut { sql });
        }
        let model = match Self::active_version(&tx)? {
            Some(version) => Some(model_in(&self.active, &tx, version)?),
            None => None,
        };
        let mut summary = SummaryBuilder::new(model.as_deref());
        let mut stmt = tx.prepare("SELECT tier, grade, status, score, id FROM contacts")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            // A row kept in memory counts as it is there.
            if let Some(entry) = sql.kept(id_text(r, 4)?) {
                let s = &entry.row.score;
                summary.add(&s.tier, &s.grade, s.status, s.score);
                continue;
            }
            let status: String = r.get(2)?;
            let status = Status::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("status {status:?}")))?;
            summary.add(
                &r.get::<_, String>(0)?,
                &r.get::<_, String>(1)?,
                status,
                r.get(3)?,
            );
        }
        Ok(summary.finish(at))
    }

    fn set_challenger(&mut self, version: Option<u32>) -> Result<()> {
        self.attach_challenger(version)
    }

    fn challenger(&self) -> Result<Option<(u32, Arc<Model>)>> {
        self.challenger_model()
    }

    fn stats(&self) -> Result<Stats> {
        let rows = |table: &str| count(&self.conn, &format!("SELECT count(*) FROM {table}"), []);
        let pages = count(&self.conn, "PRAGMA page_count", [])?;
        let page_size = count(&self.conn, "PRAGMA page_size", [])?;
        Ok(Stats {
            events: rows("events")?,
            contacts: rows("contacts")?,
            ledger_entries: rows("ledger")?,
            outcomes: rows("outcomes")?,
            bytes: pages * page_size,
        })
    }
}

#[cfg(test)]
mod tests;
