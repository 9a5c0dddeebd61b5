//! The embedded backend: one SQLite file in WAL mode, `synchronous = FULL`
//! (a committed ingest survives a crash of the process or of the machine).
//! Writing transactions begin `IMMEDIATE`: with several connections (the
//! server's worker and an activation), a deferred transaction that read
//! first could not upgrade to writing after another commit, while an
//! immediate one waits its turn (busy timeout).

use std::cell::RefCell;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leadscore_core::event::Message;
use leadscore_core::fold::ContactState;
use leadscore_core::model::Model;
use leadscore_core::score::{Score, Status};
use leadscore_core::time::Timestamp;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde_json::{Map, Value};

use crate::engine::{self, DryRunBuilder, NewDelivery, NewEntry, NewFiring, Row, Table, Tx};
use crate::listing::Scan;
use crate::{
    compile, id_hash, now, validate, ActivateReport, ApiKey, CampaignMember, ContactRecord,
    Delivery, DeliveryStatus, DryRun, DueReport, EraseReport, FiringQuery, FiringRecord, Incoming,
    IngestReport, Job, JobColumns, JobUpdate, LedgerEntry, Listed, ModelVersion, OutboxCounts,
    OutboxRecord, Outcome, Param, Progress, Result, Scope, ScoreFields, ScoreQuery, Settle, Stats,
    Store, StoreError, StoredLog, Summary, SummaryBuilder,
};

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
    conn: Connection,
    /// The compiled active model, by version (recompiled when another
    /// process activates a different one).
    active: RefCell<Option<(u32, Arc<Model>)>>,
    /// The compiled challenger, by version (see `active`).
    shadow: RefCell<Option<(u32, Arc<Model>)>>,
    /// The database file (for the checkpointer's connection).
    path: std::path::PathBuf,
    /// Started by the first ingest; see [`Checkpointer`].
    checkpointer: Option<Checkpointer>,
    /// See [`WAL_RESTART_BYTES`].
    wal_limit: u64,
    /// Live rows as this connection's ingests left them, once durability
    /// is deferred (the server's small commits; an import's large batches
    /// load each row once per batch anyway, and ran 5 % slower with it).
    live: Option<WriterCache>,
}

/// The writer's [`engine::LiveCache`] and what says it still holds what the
/// rows do: SQLite's `data_version` (changes when another connection
/// commits) and this connection's count of changed rows (changes when any
/// other operation on it writes), both as its last ingest left them.
#[derive(Default)]
struct WriterCache {
    states: engine::LiveCache,
    valid_at: Option<(i64, u64)>,
    /// `data_version` read inside the batch's transaction: read after the
    /// commit it could already include another connection's commit.
    batch_version: i64,
}

impl WriterCache {
    /// The cache for a batch in `conn`'s open write transaction: emptied
    /// unless nothing was written since the last ingest, and saying nothing
    /// until this batch commits ([`WriterCache::committed`]).
    fn for_batch(&mut self, conn: &Connection) -> Result<&mut engine::LiveCache> {
        self.batch_version = conn.query_row("PRAGMA data_version", [], |r| r.get(0))?;
        if self.valid_at.take() != Some((self.batch_version, conn.total_changes())) {
            self.states.clear();
        }
        Ok(&mut self.states)
    }

    /// The batch committed: the cache holds what `conn` wrote.
    fn committed(&mut self, conn: &Connection) {
        self.states.committed();
        self.valid_at = Some((self.batch_version, conn.total_changes()));
    }
}

/// Copies the WAL into the database file from a thread of its own, woken
/// after each ingest commit (and every half second), so that commits never
/// do it. SQLite's
/// automatic checkpoint runs inside the commit that takes the WAL past
/// 1,000 pages, and that commit (and every request waiting on it) then
/// also writes and fsyncs the database file. Passive checkpoints never
/// block the writer or readers; a crash at any point is safe (the WAL
/// stays authoritative until a checkpoint completes).
struct Checkpointer {
    wake: Option<std::sync::mpsc::SyncSender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// How far the WAL and the checkpointer's copying of it have got.
    progress: Arc<WalProgress>,
    /// The WAL file.
    wal: std::path::PathBuf,
}

/// What the writer needs to know to catch a checkpoint up cheaply.
#[derive(Debug, Default)]
struct WalProgress {
    /// Frames in the WAL after the writer's last commit (its WAL hook).
    frames: AtomicI64,
    /// Frames that commit added.
    last_commit: AtomicI64,
    /// Frames in the WAL at the checkpointer's last pass...
    pass_frames: AtomicI64,
    /// ...and how many of them were in the database file after it.
    pass_copied: AtomicI64,
    /// Set by each pass, taken by a catch-up after large commits.
    passed: AtomicBool,
    /// Held for each checkpoint of this store's two connections. SQLite
    /// refuses a checkpoint while another runs, without waiting: a writer
    /// past twice the limit waits here instead, so that a checkpointer
    /// starved of CPU mid-pass (a busy machine, a slow fsync) cannot leave
    /// the WAL growing for as long as it is starved.
    checkpoint: Mutex<()>,
    /// Set while the writer waits for [`WalProgress::checkpoint`]: the
    /// checkpointer skips its passes meanwhile (the lock is not fair).
    writer_waiting: AtomicBool,
}

impl WalProgress {
    /// Takes this store's turn to checkpoint (a panic holding it leaves
    /// nothing to repair: SQLite's own lock guards the WAL).
    fn lock_checkpoints(&self) -> std::sync::MutexGuard<'_, ()> {
        self.checkpoint
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the writer should catch the checkpoint up now: once what is
    /// left to copy is known (the last pass saw the same WAL: one started
    /// over since counts from zero) and at most [`CATCH_UP_FRAMES`]; or,
    /// for a writer whose commits are larger than that (`leadscore import`,
    /// which cares for throughput more than for one wait), right after any
    /// pass: what is left then is about what it committed during the pass.
    fn worth_catching_up(&self) -> bool {
        let frames = self.frames.load(Ordering::Acquire);
        let seen = self.pass_frames.load(Ordering::Acquire);
        let copied = self.pass_copied.load(Ordering::Acquire);
        let large_commits = self.last_commit.load(Ordering::Acquire) > CATCH_UP_FRAMES;
        (frames >= seen && copied > 0 && frames - copied <= CATCH_UP_FRAMES)
            || (large_commits && self.passed.swap(false, Ordering::AcqRel))
    }
}

/// Frames (4 KiB pages) the writer copies itself, at most, to start the WAL
/// over: about 10 ms of waiting.
const CATCH_UP_FRAMES: i64 = 2_048;

/// The WAL file of the database at `path`.
fn wal_path(path: &Path) -> std::path::PathBuf {
    let mut wal = path.to_path_buf().into_os_string();
    wal.push("-wal");
    wal.into()
}

/// A file's size; 0 when it does not exist.
fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Least time between two checkpoints.
const CHECKPOINT_EVERY_MS: u64 = 200;

/// WAL size past which the writer itself finishes the checkpointer's work
/// after a commit, and to which SQLite truncates the WAL file when it
/// starts it over (`journal_size_limit`).
///
/// SQLite writes the WAL from its beginning again only when a write
/// transaction starts while every frame is already in the database file.
/// Beside a writer that commits back to back, the checkpointer's passive
/// checkpoints never see that moment, so the WAL grew for as long as the
/// writer was busy (2 GB in a 3.6 M-message import), each new frame
/// extending the file (the kernel zeroes every new block: 11 % of the
/// writer's time) and every page read searching a longer WAL index. The
/// writer, between two of its own transactions, is the one connection that
/// can catch the checkpoint up to the last frame, and it waits for that
/// copy, so it does it once the checkpointer has little left
/// ([`WalProgress::worth_catching_up`]). 30-second `/v1/batch` runs: 564-580
/// requests/s, p99 16-21 ms; without restarts 400/s, p99 34 ms.
const WAL_RESTART_BYTES: u64 = 1 << 30;

/// The writer's page cache once durability is deferred (the server), in
/// KiB (SQLite's negative `cache_size`). SQLite's default 2 MiB holds a
/// fraction of the pages that events for contacts spread over the store
/// touch: the writer then spends a fifth of its time re-reading pages from
/// the OS and spilling dirty ones to the WAL mid-transaction. Open-loop
/// `/v1/batch` at 28k events/s over 20k contacts spread by a hash: p50 74
/// ms at 64 MiB against 134 ms at 2 MiB (256 MiB: the same as 64); with
/// consecutive contacts no difference.
const SERVER_CACHE_KIB: i64 = 64 << 10;

/// The page cache of a connection importing ([`Store::prepare_bulk_load`]),
/// in KiB. With random (UUID) messageIds each 10,000-message batch touches
/// about 9,000 pages of the message-id index, which SQLite's 2 MiB cache
/// re-reads from the OS: 3.6 M messages imported at 43.7k and 50.2k/s
/// against 40.8k and 40.9k/s (alternated; 1 GiB no better), peak RSS
/// about 440 MB against 160; the same speed with ids clustered by contact.
const BULK_CACHE_KIB: i64 = 256 << 10;

impl Checkpointer {
    /// Starts the thread; `wal_limit` as in [`SqliteStore::set_wal_limit`].
    fn start(path: &Path, wal_limit: u64) -> Result<Checkpointer> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(30))?;
        let (wake, woken) = std::sync::mpsc::sync_channel::<()>(1);
        let progress = Arc::new(WalProgress::default());
        let progress_in_thread = Arc::clone(&progress);
        let wal = wal_path(path);
        let wal_in_thread = wal.clone();
        let thread = std::thread::Builder::new()
            .name("leadscore-checkpoint".into())
            .spawn(move || {
                use std::sync::mpsc::RecvTimeoutError::Disconnected;
                use std::time::Instant;
                // Errors (a full disk) leave the WAL as it is; the next
                // checkpoint tries again.
                let checkpoint = || {
                    if progress_in_thread.writer_waiting.load(Ordering::Acquire) {
                        return; // the writer checkpoints itself
                    }
                    let _turn = progress_in_thread.lock_checkpoints();
                    let pass = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, i64>(2)?,
                        ))
                    });
                    if let Ok((0, frames, copied)) = pass {
                        progress_in_thread
                            .pass_frames
                            .store(frames, Ordering::Release);
                        progress_in_thread
                            .pass_copied
                            .store(copied, Ordering::Release);
                    }
                };
                let mut last = Instant::now();
                let mut open = true;
                while open {
                    // Woken by ingest commits, and twice a second for the
                    // other writers of this connection (activations).
                    open = !matches!(
                        woken.recv_timeout(Duration::from_millis(500)),
                        Err(Disconnected)
                    );
                    // At most one checkpoint per interval: wake-ups until
                    // then coalesce; closing the store ends the wait. Past
                    // the limit, passes follow each other, so that what is
                    // left for the writer to copy (see
                    // `SqliteStore::restart_wal_if_large`) stays short.
                    let every = if file_len(&wal_in_thread) > wal_limit {
                        Duration::ZERO
                    } else {
                        Duration::from_millis(CHECKPOINT_EVERY_MS)
                    };
                    while let Some(left) = (last + every).checked_duration_since(Instant::now()) {
                        if !open || matches!(woken.recv_timeout(left), Err(Disconnected)) {
                            open = false;
                            break;
                        }
                    }
                    checkpoint();
                    last = Instant::now();
                }
            })
            .map_err(|e| StoreError::Database(format!("cannot start the checkpointer: {e}")))?;
        Ok(Checkpointer {
            wake: Some(wake),
            thread: Some(thread),
            progress,
            wal,
        })
    }

    /// Asks for a checkpoint (a no-op when one is already pending).
    fn poke(&self) {
        if let Some(wake) = &self.wake {
            let _ = wake.try_send(());
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.wake.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
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
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(30))?;
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
            conn,
            active: RefCell::new(None),
            shadow: RefCell::new(None),
            path: path.to_path_buf(),
            checkpointer: None,
            wal_limit: WAL_RESTART_BYTES,
            live: None,
        };
        store.set_wal_limit(WAL_RESTART_BYTES)?;
        Ok(store)
    }

    /// Sets the WAL size past which ingestion starts the WAL over (1 GiB by
    /// default): smaller means less disk for the
    /// WAL and more frequent catch-ups on the writer. Only before the first
    /// ingest, which starts the checkpointer with it.
    pub fn set_wal_limit(&mut self, bytes: u64) -> Result<()> {
        if self.checkpointer.is_some() {
            return Err(StoreError::Database(
                "the WAL limit is set before the first ingest".into(),
            ));
        }
        self.conn.pragma_update(
            None,
            "journal_size_limit",
            bytes.min(i64::MAX as u64) as i64,
        )?;
        self.wal_limit = bytes;
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

    /// Checkpoints from the writer's connection when the WAL has grown past
    /// its limit ([`WAL_RESTART_BYTES`]), so that the next transaction
    /// starts it over. Only once the checkpointer (running its passes back
    /// to back past the limit) has left little to copy
    /// ([`WalProgress::worth_catching_up`]), since the writer waits for that
    /// copy, and not while the checkpointer is in a pass; past twice the
    /// limit, whatever is left, after waiting for the checkpointer's pass
    /// to end. Passive: it leaves frames a reader still needs (the WAL then
    /// stays as it is), and a later commit tries again.
    fn restart_wal_if_large(&self) {
        let Some(checkpointer) = &self.checkpointer else {
            return; // SQLite's automatic checkpoints are still on
        };
        let size = file_len(&checkpointer.wal);
        let progress = &checkpointer.progress;
        let _turn = if size > self.wal_limit.saturating_mul(2) {
            // Whatever is left: after the checkpointer's pass, if one runs.
            progress.writer_waiting.store(true, Ordering::Release);
            let turn = progress.lock_checkpoints();
            progress.writer_waiting.store(false, Ordering::Release);
            turn
        } else if size > self.wal_limit && progress.worth_catching_up() {
            match progress.checkpoint.try_lock() {
                Ok(turn) => turn,
                Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return, // in a pass
            }
        } else {
            return;
        };
        let _ = self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
    }

    /// Lets this connection's page cache grow to `kib` KiB.
    fn keep_pages(&self, kib: i64) -> Result<()> {
        self.conn.pragma_update(None, "cache_size", -kib)?;
        Ok(())
    }

    fn active_version(conn: &Connection) -> Result<Option<u32>> {
        Ok(conn
            .query_row(
                "SELECT version FROM activations ORDER BY seq DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The compiled model of `version`, cached.
    fn compiled(&self, version: u32) -> Result<Arc<Model>> {
        model_in(&self.active, &self.conn, version)
    }

    /// The scan a listing as of `at` needs (see [`Scan::of`]), reading the
    /// active model through `conn`.
    fn scan(&self, conn: &Connection, at: Option<Timestamp>) -> Result<Option<Scan>> {
        if at.is_none() {
            return Ok(None);
        }
        let active = match Self::active_version(conn)? {
            Some(version) => Some((version, model_in(&self.active, conn, version)?)),
            None => None,
        };
        Ok(Scan::of(at, active))
    }

    fn job(conn: &Connection) -> Result<Option<(u32, Option<String>)>> {
        Ok(conn
            .query_row("SELECT version, cursor FROM activation_job", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?)
    }

    fn canonical(conn: &Connection, id: &str) -> Result<String> {
        Ok(Sql(conn).identity(id)?.unwrap_or_else(|| id.to_string()))
    }
}

/// Flushes the WAL file: with `synchronous = NORMAL` a commit writes its
/// frames without waiting for the disk, and one `fdatasync` of the WAL
/// makes every commit written before it durable (a checkpoint syncs the
/// WAL before copying it, so frames checkpointed and overwritten since are
/// durable in the database file).
struct WalFlush {
    wal: std::path::PathBuf,
}

impl crate::Flush for WalFlush {
    fn flush(&mut self) -> Result<()> {
        let failed = |e: std::io::Error| {
            StoreError::Database(format!("cannot sync {}: {e}", self.wal.display()))
        };
        // Opened each time (a few microseconds beside the sync): the sync
        // then always reaches the file SQLite is writing.
        match std::fs::File::open(&self.wal) {
            Ok(file) => file.sync_data().map_err(failed),
            // No WAL: the last connection checkpointed it into the database
            // file, synced, and deleted it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(failed(e)),
        }
    }
}

impl Store for SqliteStore {
    fn prepare_bulk_load(&mut self) -> Result<()> {
        self.keep_pages(BULK_CACHE_KIB)
    }

    fn defer_durability(&mut self) -> Result<Option<Box<dyn crate::Flush>>> {
        self.keep_pages(SERVER_CACHE_KIB)?;
        // Last of what can fail: an error leaves commits synchronous, as
        // the caller, told nothing is deferred, expects.
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        self.live.get_or_insert_with(WriterCache::default);
        Ok(Some(Box::new(WalFlush {
            wal: wal_path(&self.path),
        })))
    }

    fn ingest(&mut self, messages: Vec<Incoming>) -> Result<IngestReport> {
        if self.checkpointer.is_none() {
            let checkpointer = Checkpointer::start(&self.path, self.wal_limit)?;
            self.conn.pragma_update(None, "wal_autocheckpoint", 0)?;
            // After the pragma, which replaces any WAL hook.
            let progress = Arc::clone(&checkpointer.progress);
            self.conn
                .wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, frames| {
                    let frames = i64::from(frames);
                    let before = progress.frames.swap(frames, Ordering::AcqRel);
                    if frames > before {
                        progress
                            .last_commit
                            .store(frames - before, Ordering::Release);
                    }
                    Ok(())
                }))?;
            self.checkpointer = Some(checkpointer);
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Read inside the transaction: an activation by another connection
        // may have switched versions since this one last looked.
        let version = Self::active_version(&tx)?;
        let model = version
            .map(|v| model_in(&self.active, &tx, v))
            .transpose()?;
        let activating = Self::job(&tx)?.is_some();
        // Inside the (immediate) transaction: nobody else writes until it ends.
        let live = match &mut self.live {
            Some(live) => Some(live.for_batch(&tx)?),
            None => None,
        };
        let report = engine::ingest(
            &mut Sql(&tx),
            model.as_deref().zip(version),
            activating,
            messages,
            now(),
            live,
        )?;
        tx.commit()?;
        if let Some(live) = &mut self.live {
            live.committed(&self.conn);
        }
        // Before waking the checkpointer, which would otherwise start a
        // pass that the catch-up then waits for or gives way to.
        self.restart_wal_if_large();
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.poke();
        }
        Ok(report)
    }

    fn add_model(&mut self, name: &str, source: &str) -> Result<ModelVersion> {
        let hash = validate(name, source)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO models (name, hash, source, added_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (hash) DO NOTHING",
            params![name, hash, source, now().0],
        )?;
        let version: u32 =
            tx.query_row("SELECT version FROM models WHERE hash = ?1", [&hash], |r| {
                r.get(0)
            })?;
        tx.commit()?;
        self.models()?
            .into_iter()
            .find(|m| m.version == version)
            .ok_or(StoreError::NoSuchVersion(version))
    }

    fn models(&self) -> Result<Vec<ModelVersion>> {
        let active = Self::active_version(&self.conn)?;
        let mut stmt = self
            .conn
            .prepare("SELECT version, name, hash, added_at FROM models ORDER BY version")?;
        let rows = stmt.query_map([], |r| {
            let version: u32 = r.get(0)?;
            Ok(ModelVersion {
                version,
                name: r.get(1)?,
                hash: r.get(2)?,
                added_at: Timestamp(r.get(3)?),
                active: Some(version) == active,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn model_source(&self, version: u32) -> Result<String> {
        self.conn
            .query_row(
                "SELECT source FROM models WHERE version = ?1",
                [version],
                |r| r.get(0),
            )
            .optional()?
            .ok_or(StoreError::NoSuchVersion(version))
    }

    fn active_model(&self) -> Result<Option<(u32, Arc<Model>)>> {
        match Self::active_version(&self.conn)? {
            None => Ok(None),
            Some(v) => Ok(Some((v, self.compiled(v)?))),
        }
    }

    fn previous_version(&self) -> Result<Option<u32>> {
        let active = Self::active_version(&self.conn)?;
        Ok(self
            .conn
            .query_row(
                "SELECT version FROM activations WHERE version IS NOT ?1 ORDER BY seq DESC LIMIT 1",
                [active],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn activate(&mut self, version: u32, progress: Progress<'_>) -> Result<ActivateReport> {
        let started = now();
        let source = self.model_source(version)?;
        let name: String = self.conn.query_row(
            "SELECT name FROM models WHERE version = ?1",
            [version],
            |r| r.get(0),
        )?;
        let model = compile(version, &name, &source)?;
        let mut report = ActivateReport::default();
        let total = count(
            &self.conn,
            "SELECT count(DISTINCT contact) FROM identities",
            [],
        )?;
        // Start, or resume the same version's job.
        let mut cursor = {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let cursor = match Self::job(&tx)? {
                Some((v, cursor)) if v == version => {
                    report.resumed = true;
                    cursor
                }
                _ => {
                    tx.execute("DELETE FROM activation_job", [])?;
                    tx.execute("DELETE FROM contacts_next", [])?;
                    tx.execute(
                        "INSERT INTO activation_job (version, cursor, started_at) VALUES (?1, NULL, ?2)",
                        params![version, now().0],
                    )?;
                    None
                }
            };
            tx.commit()?;
            cursor
        };
        let mut done = match &cursor {
            Some(c) => count(
                &self.conn,
                "SELECT count(DISTINCT contact) FROM identities WHERE contact <= ?1",
                [c],
            )?,
            None => 0,
        };
        progress(done, total);
        // Fill the next rows step by step, each step its own transaction.
        loop {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let Some((last, n)) = engine::activation_step(
                &mut Sql(&tx),
                &model,
                version,
                cursor.as_deref(),
                started,
            )?
            else {
                break;
            };
            tx.execute("UPDATE activation_job SET cursor = ?1", [&last])?;
            tx.commit()?;
            self.restart_wal_if_large();
            cursor = Some(last);
            done += n;
            progress(done.min(total), total);
        }
        // Swap atomically: contacts changed meanwhile are folded here.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let missing: Vec<String> = {
            let mut stmt = tx.prepare(
                "SELECT DISTINCT i.contact FROM identities i
                 WHERE NOT EXISTS (SELECT 1 FROM contacts_next n WHERE n.id = i.contact)",
            )?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        for contact in &missing {
            let state = engine::fold_contact(&mut Sql(&tx), &model, contact)?;
            if let Some(row) = engine::activation_row(&model, version, contact, &state, started) {
                Sql(&tx).put_row(Table::Next, &row)?;
            }
        }
        let fields = |t: &str| {
            format!("json_object('score', {t}.score, 'tier', {t}.tier, 'grade', {t}.grade, 'stage', {t}.stage, 'status', {t}.status)")
        };
        report.changed = tx.execute(
            &format!(
                "INSERT INTO ledger (contact, at, recorded_at, model_version, old, new, cause)
                 SELECT n.id, n.last_ts, ?1, ?2, CASE WHEN c.id IS NULL THEN NULL ELSE {} END, {}, ?3
                 FROM contacts_next n LEFT JOIN contacts c ON c.id = n.id
                 WHERE c.id IS NULL OR c.score IS NOT n.score OR c.tier IS NOT n.tier
                    OR c.grade IS NOT n.grade OR c.stage IS NOT n.stage OR c.status IS NOT n.status
                 ORDER BY n.id",
                fields("c"),
                fields("n")
            ),
            params![now().0, version, format!("activate v{version}")],
        )? as u64;
        tx.execute("DELETE FROM contacts", [])?;
        report.contacts =
            tx.execute("INSERT INTO contacts SELECT * FROM contacts_next", [])? as u64;
        tx.execute("DELETE FROM contacts_next", [])?;
        tx.execute(
            "INSERT INTO activations (version, at) VALUES (?1, ?2)",
            params![version, now().0],
        )?;
        tx.execute("DELETE FROM activation_job", [])?;
        tx.commit()?;
        *self.active.borrow_mut() = Some((version, Arc::new(model)));
        progress(total, total);
        Ok(report)
    }

    fn dry_run(&self, candidate: &Model, progress: Progress<'_>) -> Result<DryRun> {
        let tx = self.conn.unchecked_transaction()?;
        let total = count(&tx, "SELECT count(DISTINCT contact) FROM identities", [])?;
        let mut builder = DryRunBuilder::default();
        let mut cursor: Option<String> = None;
        let mut done = 0;
        loop {
            let contacts = Sql(&tx).contacts_after(cursor.as_deref(), engine::CONTACTS_PER_STEP)?;
            let Some(last) = contacts.last().cloned() else {
                break;
            };
            for (contact, state) in engine::fold_many(&mut Sql(&tx), candidate, &contacts)? {
                let Some(after) = state
                    .last_timestamp()
                    .map(|t| state.score_at(candidate, t).expect("at the last message"))
                else {
                    continue;
                };
                let before = Sql(&tx).row(Table::Live, &contact)?.map(|r| r.score);
                builder.add(&contact, before.as_ref(), &after);
            }
            done += contacts.len() as u64;
            progress(done.min(total), total);
            cursor = Some(last);
        }
        Ok(builder.finish())
    }

    fn contact(&self, id: &str) -> Result<Option<ContactRecord>> {
        let canonical = Self::canonical(&self.conn, id)?;
        Ok(Sql(&self.conn)
            .row(Table::Live, &canonical)?
            .map(ContactRecord::from))
    }

    fn contacts(&self, after: Option<&str>, limit: usize) -> Result<Vec<ContactRecord>> {
        Ok(live_rows(&self.conn, after, limit, true)?
            .into_iter()
            .map(ContactRecord::from)
            .collect())
    }

    fn score_at(&self, id: &str, t: Timestamp) -> Result<Option<(String, Score)>> {
        let (version, model) = self.active_model()?.ok_or(StoreError::NoActiveModel)?;
        let canonical = Self::canonical(&self.conn, id)?;
        if canonical == id {
            if let Some(row) = Sql(&self.conn).row(Table::Live, &canonical)? {
                if row.model_version == version && row.last_ts.is_some_and(|last| last <= t) {
                    let state = ContactState::decode(&model, &row.state, row.traits, row.company)
                        .map_err(|e| {
                        StoreError::Corrupt(format!("contact {canonical}: {e}"))
                    })?;
                    let score = state
                        .score_at(&model, t)
                        .expect("t is after the last message");
                    return Ok(Some((canonical, score)));
                }
            }
        }
        let Some(log) = self.contact_messages(id)? else {
            return Ok(None);
        };
        Ok(engine::score_from_log(&model, id, log.messages, t))
    }

    fn history(&self, id: &str) -> Result<Vec<LedgerEntry>> {
        let tx = self.conn.unchecked_transaction()?;
        let canonical = Self::canonical(&tx, id)?;
        let mut ids = Sql(&tx).members(&canonical)?;
        if !ids.contains(&canonical) {
            ids.push(canonical);
        }
        let mut entries = Vec::new();
        let mut stmt = tx.prepare_cached(
            "SELECT seq, contact, at, recorded_at, model_version, old, new, cause
             FROM ledger WHERE contact = ?1",
        )?;
        for id in &ids {
            let rows = stmt.query_map([id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, u32>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, String>(7)?,
                ))
            })?;
            for row in rows {
                let (seq, contact, at, recorded_at, model_version, old, new, cause) = row?;
                entries.push(LedgerEntry {
                    seq,
                    contact,
                    at: at.map(Timestamp),
                    recorded_at: Timestamp(recorded_at),
                    model_version,
                    old: old.map(|t| fields(&t)).transpose()?,
                    new: new.map(|t| fields(&t)).transpose()?,
                    cause,
                });
            }
        }
        entries.sort_by_key(|e| e.seq);
        Ok(entries)
    }

    fn messages(&self) -> Result<Vec<Message>> {
        let mut stmt = self.conn.prepare("SELECT body FROM events ORDER BY seq")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        rows.map(|body| engine::parse_stored(&body?)).collect()
    }

    fn contact_messages(&self, id: &str) -> Result<Option<StoredLog>> {
        let tx = self.conn.unchecked_transaction()?;
        let Some(canonical) = Sql(&tx).identity(id)? else {
            return Ok(None);
        };
        let (ids, messages) = engine::contact_log(&mut Sql(&tx), &canonical)?;
        Ok(Some(StoredLog {
            contact: canonical,
            ids,
            messages,
        }))
    }

    fn erase(&mut self, id: &str) -> Result<Option<EraseReport>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some(canonical) = Sql(&tx).identity(id)? else {
            return Ok(None);
        };
        let mut ids = Sql(&tx).members(&canonical)?;
        if !ids.contains(&canonical) {
            ids.push(canonical.clone());
        }
        ids.sort();
        let mut report = EraseReport {
            contact: canonical.clone(),
            ..EraseReport::default()
        };
        let erased_at = now().0;
        for member in &ids {
            report.events += tx.execute("DELETE FROM events WHERE own_id = ?1", [member])? as u64;
            tx.execute(
                "DELETE FROM links WHERE from_id = ?1 OR to_id = ?1",
                [member],
            )?;
            tx.execute("DELETE FROM identities WHERE id = ?1", [member])?;
            report.ledger_entries +=
                tx.execute("DELETE FROM ledger WHERE contact = ?1", [member])? as u64;
            tx.execute("DELETE FROM contacts WHERE id = ?1", [member])?;
            tx.execute("DELETE FROM contacts_next WHERE id = ?1", [member])?;
            // Firings carry score snapshots: they go too, with what they queued.
            tx.execute(
                "DELETE FROM outbox WHERE firing IN (SELECT seq FROM firings WHERE contact = ?1)",
                [member],
            )?;
            tx.execute("DELETE FROM firings WHERE contact = ?1", [member])?;
            tx.execute("DELETE FROM campaign_members WHERE contact = ?1", [member])?;
            tx.execute(
                "INSERT INTO tombstones (id_hash, erased_at) VALUES (?1, ?2)
                 ON CONFLICT (id_hash) DO NOTHING",
                params![id_hash(member), erased_at],
            )?;
        }
        tx.commit()?;
        report.ids = ids;
        Ok(Some(report))
    }

    fn scores(&self, query: &ScoreQuery) -> Result<Vec<Listed>> {
        // One snapshot for the model and every step of a scan.
        let tx = self.conn.unchecked_transaction()?;
        if let Some(scan) = self.scan(&tx, query.at)? {
            return scan.select(query, |after, n, traits| live_rows(&tx, after, n, traits));
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

    fn summary(&self, at: Option<Timestamp>) -> Result<Summary> {
        let tx = self.conn.unchecked_transaction()?;
        if let Some(scan) = self.scan(&tx, at)? {
            return scan.summary(|after, n, traits| live_rows(&tx, after, n, traits));
        }
        let model = match Self::active_version(&tx)? {
            Some(version) => Some(model_in(&self.active, &tx, version)?),
            None => None,
        };
        let mut summary = SummaryBuilder::new(model.as_deref());
        let mut stmt = tx.prepare("SELECT tier, grade, status, score FROM contacts")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
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

    fn fire_due(&mut self, now: Timestamp, limit: usize) -> Result<DueReport> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some(version) = Self::active_version(&tx)? else {
            return Ok(DueReport::default());
        };
        let model = model_in(&self.active, &tx, version)?;
        let report = engine::fire_due(&mut Sql(&tx), &model, version, now, limit)?;
        tx.commit()?;
        Ok(report)
    }

    fn next_due(&self) -> Result<Option<Timestamp>> {
        Ok(self
            .conn
            .query_row("SELECT min(due) FROM contacts", [], |r| {
                r.get::<_, Option<i64>>(0)
            })?
            .map(Timestamp))
    }

    fn firings(&self, q: &FiringQuery) -> Result<Vec<FiringRecord>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, key, trigger_id, contact, at, recorded_at, late, model_version, score, explanation
             FROM firings
             WHERE seq > ?1 AND (?2 IS NULL OR trigger_id = ?2) AND (?3 IS NULL OR contact = ?3)
             ORDER BY seq LIMIT ?4",
        )?;
        let rows = stmt.query_map(
            params![q.after.unwrap_or(0), q.trigger, q.contact, q.limit as i64],
            |r| {
                Ok((
                    FiringRecord {
                        seq: r.get(0)?,
                        key: r.get(1)?,
                        trigger: r.get(2)?,
                        contact: r.get(3)?,
                        at: Timestamp(r.get(4)?),
                        recorded_at: Timestamp(r.get(5)?),
                        late: r.get(6)?,
                        model_version: r.get(7)?,
                        score: Value::Null,
                        explanation: Value::Null,
                    },
                    r.get::<_, String>(8)?,
                    r.get::<_, String>(9)?,
                ))
            },
        )?;
        rows.map(|row| {
            let (mut f, score, explanation) = row?;
            f.score = crate::outbox::json_value(&score)?;
            f.explanation = crate::outbox::json_value(&explanation)?;
            Ok(f)
        })
        .collect()
    }

    fn claim(
        &mut self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> Result<Vec<Delivery>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let claimed = {
            let mut stmt = tx.prepare_cached(
                "UPDATE outbox SET next_attempt = ?2, attempts = attempts + 1
                 WHERE id IN (SELECT id FROM outbox WHERE status = 'pending' AND next_attempt <= ?1
                              ORDER BY next_attempt, id LIMIT ?3)
                 RETURNING id, key, destination, payload, attempts",
            )?;
            let rows = stmt.query_map(params![now.0, lease_until.0, limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, u32>(4)?,
                ))
            })?;
            rows.collect::<Result<Vec<_>, _>>()?
        };
        tx.commit()?;
        let mut out = claimed
            .into_iter()
            .map(|(id, key, destination, payload, attempt)| {
                let (action, body) = crate::outbox::split_payload(&payload)?;
                Ok(Delivery {
                    id,
                    key,
                    destination,
                    action,
                    body,
                    attempt,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        out.sort_by_key(|d| d.id);
        Ok(out)
    }

    fn settle(&mut self, results: &[(i64, Settle)], now: Timestamp) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for (id, result) in results {
            match result {
                Settle::Delivered => tx.prepare_cached(
                    "UPDATE outbox SET status = 'delivered', delivered_at = ?2, last_error = NULL WHERE id = ?1",
                )?.execute(params![id, now.0])?,
                Settle::Retry { at, error } => tx.prepare_cached(
                    "UPDATE outbox SET next_attempt = ?2, last_error = ?3 WHERE id = ?1 AND status = 'pending'",
                )?.execute(params![id, at.0, error])?,
                Settle::Dead { error } => tx.prepare_cached(
                    "UPDATE outbox SET status = 'dead', last_error = ?2 WHERE id = ?1 AND status = 'pending'",
                )?.execute(params![id, error])?,
            };
        }
        tx.commit()?;
        Ok(())
    }

    fn outbox(&self, status: Option<DeliveryStatus>, limit: usize) -> Result<Vec<OutboxRecord>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, firing, key, destination, status, attempts, next_attempt, last_error, created_at, delivered_at
             FROM outbox WHERE (?1 IS NULL OR status = ?1) ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![status.map(|s| s.as_str()), limit as i64], |r| {
            Ok((
                r.get::<_, String>(4)?,
                OutboxRecord {
                    id: r.get(0)?,
                    firing: r.get(1)?,
                    key: r.get(2)?,
                    destination: r.get(3)?,
                    status: DeliveryStatus::Pending,
                    attempts: r.get(5)?,
                    next_attempt: Timestamp(r.get(6)?),
                    last_error: r.get(7)?,
                    created_at: Timestamp(r.get(8)?),
                    delivered_at: r.get::<_, Option<i64>>(9)?.map(Timestamp),
                },
            ))
        })?;
        rows.map(|row| {
            let (status, mut record) = row?;
            record.status = DeliveryStatus::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("outbox status {status:?}")))?;
            Ok(record)
        })
        .collect()
    }

    fn retry_dead(&mut self, id: Option<i64>, now: Timestamp) -> Result<u64> {
        Ok(self.conn.execute(
            "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt = ?2
             WHERE status = 'dead' AND (?1 IS NULL OR id = ?1)",
            params![id, now.0],
        )? as u64)
    }

    fn purge_dead(&mut self, id: Option<i64>) -> Result<u64> {
        Ok(self.conn.execute(
            "DELETE FROM outbox WHERE status = 'dead' AND (?1 IS NULL OR id = ?1)",
            params![id],
        )? as u64)
    }

    fn outbox_counts(&self) -> Result<OutboxCounts> {
        let mut counts = OutboxCounts::default();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT status, count(*) FROM outbox GROUP BY status")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
        })?;
        for row in rows {
            let (status, n) = row?;
            counts.add(&status, n)?;
        }
        Ok(counts)
    }

    fn campaign_members(
        &self,
        campaign: &str,
        since: Option<Timestamp>,
        limit: usize,
    ) -> Result<Vec<CampaignMember>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT contact, firing, at, enrolled_at FROM campaign_members
             WHERE campaign = ?1 AND enrolled_at >= ?2 ORDER BY enrolled_at, firing LIMIT ?3",
        )?;
        let rows = stmt.query_map(
            params![campaign, since.map_or(i64::MIN, |t| t.0), limit as i64],
            |r| {
                Ok(CampaignMember {
                    contact: r.get(0)?,
                    firing: r.get(1)?,
                    at: Timestamp(r.get(2)?),
                    enrolled_at: Timestamp(r.get(3)?),
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn set_challenger(&mut self, version: Option<u32>) -> Result<()> {
        if let Some(v) = version {
            self.model_source(v)?;
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute("DELETE FROM challenger", [])?;
        if let Some(v) = version {
            tx.execute(
                "INSERT INTO challenger (version, attached_at) VALUES (?1, ?2)",
                params![v, now().0],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn challenger(&self) -> Result<Option<(u32, Arc<Model>)>> {
        let found: Option<u32> = self
            .conn
            .query_row("SELECT version FROM challenger", [], |r| r.get(0))
            .optional()?;
        found
            .map(|v| Ok((v, model_in(&self.shadow, &self.conn, v)?)))
            .transpose()
    }

    fn add_outcomes(&mut self, outcomes: &[Outcome]) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO outcomes (contact_id, outcome, value, at, recorded_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let recorded = now().0;
            for o in outcomes {
                stmt.execute(params![o.contact_id, o.outcome, o.value, o.at.0, recorded])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn outcomes(&self) -> Result<Vec<Outcome>> {
        let mut stmt = self
            .conn
            .prepare("SELECT contact_id, outcome, value, at FROM outcomes ORDER BY seq")?;
        let rows = stmt.query_map([], |r| {
            Ok(Outcome {
                contact_id: r.get(0)?,
                outcome: r.get(1)?,
                value: r.get(2)?,
                at: Timestamp(r.get(3)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn add_key(&mut self, hash: &str, scope: Scope, label: &str) -> Result<ApiKey> {
        self.conn.execute(
            "INSERT INTO api_keys (hash, scope, label, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![hash, scope.as_str(), label, now().0],
        )?;
        self.key_by_hash(hash)?
            .ok_or_else(|| StoreError::Corrupt("a key just stored is missing".into()))
    }

    fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>> {
        self.conn
            .prepare_cached(
                "SELECT id, scope, label, created_at, revoked_at FROM api_keys WHERE hash = ?1",
            )?
            .query_row([hash], read_key)
            .optional()?
            .transpose()
    }

    fn keys(&self) -> Result<Vec<ApiKey>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, scope, label, created_at, revoked_at FROM api_keys ORDER BY id")?;
        let rows = stmt.query_map([], read_key)?;
        rows.map(|r| r?).collect()
    }

    fn revoke_key(&mut self, id: i64) -> Result<bool> {
        Ok(self.conn.execute(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?2) WHERE id = ?1",
            params![id, now().0],
        )? == 1)
    }

    fn add_job(&mut self, kind: &str, version: Option<u32>) -> Result<Job> {
        let t = now().0;
        self.conn.execute(
            "INSERT INTO jobs (kind, version, state, done, created_at, updated_at) VALUES (?1, ?2, 'running', 0, ?3, ?3)",
            params![kind, version, t],
        )?;
        let id = self.conn.last_insert_rowid();
        self.job(id)?
            .ok_or_else(|| StoreError::Corrupt("a job just stored is missing".into()))
    }

    fn update_job(&mut self, id: i64, update: &JobUpdate) -> Result<()> {
        let JobColumns {
            state,
            done,
            total,
            report,
            error,
        } = update.columns();
        self.conn.execute(
            "UPDATE jobs SET state = ?2, done = coalesce(?3, done), total = coalesce(?4, total), \
             report = coalesce(?5, report), error = coalesce(?6, error), updated_at = ?7 WHERE id = ?1",
            params![id, state, done, total, report, error, now().0],
        )?;
        Ok(())
    }

    fn job(&self, id: i64) -> Result<Option<Job>> {
        self.conn
            .prepare_cached(
                "SELECT id, kind, version, state, done, total, report, error, created_at, updated_at FROM jobs WHERE id = ?1",
            )?
            .query_row([id], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                ))
            })
            .optional()?
            .map(Job::from_row)
            .transpose()
    }

    fn stats(&self) -> Result<Stats> {
        let rows = |table: &str| count(&self.conn, &format!("SELECT count(*) FROM {table}"), []);
        let pages = count(&self.conn, "PRAGMA page_count", [])?;
        let page_size = count(&self.conn, "PRAGMA page_size", [])?;
        Ok(Stats {
            events: rows("events")?,
            contacts: rows("contacts")?,
            ledger_entries: rows("ledger")?,
            bytes: pages * page_size,
        })
    }
}

fn read_key(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<ApiKey>> {
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
fn model_in(
    cache: &RefCell<Option<(u32, Arc<Model>)>>,
    conn: &Connection,
    version: u32,
) -> Result<Arc<Model>> {
    if let Some((v, model)) = &*cache.borrow() {
        if *v == version {
            return Ok(model.clone());
        }
    }
    let (name, source): (String, String) = conn
        .query_row(
            "SELECT name, source FROM models WHERE version = ?1",
            [version],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .ok_or(StoreError::NoSuchVersion(version))?;
    let model = Arc::new(compile(version, &name, &source)?);
    *cache.borrow_mut() = Some((version, model.clone()));
    Ok(model)
}

/// A single non-negative integer result.
fn count(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<u64> {
    let n: i64 = conn.query_row(sql, params, |r| r.get(0))?;
    Ok(n.max(0) as u64)
}

fn fields(text: &str) -> Result<ScoreFields> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("ledger entry: {e}")))
}

fn json_map(text: &str) -> Result<Map<String, Value>> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("traits: {e}")))
}

const ROW_COLUMNS: &str = "id, model_version, state, traits, company, last_ts, score, raw, fit, engagement, tier, grade, stage, status, reasons, triggers, due";
/// [`ROW_COLUMNS`] for listings: empty traits and company, no trigger state.
const ROW_COLUMNS_NO_TRAITS: &str = "id, model_version, state, '{}', '{}', last_ts, score, raw, fit, engagement, tier, grade, stage, status, reasons, NULL, NULL";

/// Reads a contacts row (columns [`ROW_COLUMNS`]).
/// Up to `limit` live rows after id `after`, in id order; without
/// `traits`, only what a listing reads (traits, company and trigger state
/// left empty).
fn live_rows(
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

fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Row>> {
    let traits: String = r.get(3)?;
    let company: String = r.get(4)?;
    let status: String = r.get(13)?;
    let reasons: String = r.get(14)?;
    let row = (|| -> Result<Row> {
        Ok(Row {
            id: r.get(0)?,
            model_version: r.get(1)?,
            state: r.get(2)?,
            traits: json_map(&traits)?,
            company: json_map(&company)?,
            last_ts: r.get::<_, Option<i64>>(5)?.map(Timestamp),
            score: Score {
                score: r.get(6)?,
                raw: r.get(7)?,
                fit: r.get(8)?,
                engagement: r.get(9)?,
                tier: r.get(10)?,
                grade: r.get(11)?,
                stage: r.get(12)?,
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
struct Sql<'c>(&'c Connection);

impl Tx for Sql<'_> {
    fn has_tombstones(&mut self) -> Result<bool> {
        Ok(self
            .0
            .prepare_cached("SELECT 1 FROM tombstones LIMIT 1")?
            .exists([])?)
    }

    fn tombstoned(&mut self, id_hash: &str) -> Result<bool> {
        Ok(self
            .0
            .prepare_cached("SELECT 1 FROM tombstones WHERE id_hash = ?1")?
            .exists([id_hash])?)
    }

    fn insert_event(&mut self, m: &Message, body: &str) -> Result<bool> {
        let n = self
            .0
            .prepare_cached(
                "INSERT INTO events (message_id, own_id, ts, body) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (message_id) DO NOTHING",
            )?
            .execute(params![m.message_id, m.own_id(), m.timestamp.0, body])?;
        Ok(n == 1)
    }

    fn stored_event(&mut self, message_id: &str) -> Result<Option<Message>> {
        let body: Option<String> = self
            .0
            .prepare_cached("SELECT body FROM events WHERE message_id = ?1")?
            .query_row([message_id], |r| r.get(0))
            .optional()?;
        body.map(|b| engine::parse_stored(&b)).transpose()
    }

    fn replace_event(&mut self, m: &Message, body: &str) -> Result<()> {
        self.0
            .prepare_cached(
                "UPDATE events SET own_id = ?2, ts = ?3, body = ?4 WHERE message_id = ?1",
            )?
            .execute(params![m.message_id, m.own_id(), m.timestamp.0, body])?;
        Ok(())
    }

    fn insert_link(&mut self, from: &str, to: &str, ts: Timestamp, message_id: &str) -> Result<()> {
        self.0
            .prepare_cached(
                "INSERT INTO links (from_id, ts, message_id, to_id) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT DO NOTHING",
            )?
            .execute(params![from, ts.0, message_id, to])?;
        Ok(())
    }

    fn delete_links_of(&mut self, message_id: &str) -> Result<()> {
        self.0
            .prepare_cached("DELETE FROM links WHERE message_id = ?1")?
            .execute([message_id])?;
        Ok(())
    }

    fn first_links(&mut self, from_ids: &[String]) -> Result<Vec<(String, String)>> {
        // No ORDER BY in the hot statements: SQLite re-prepares a statement
        // with one on every new binding (measured: every call). The earliest
        // link is chosen here instead.
        let mut stmt = self
            .0
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
            .0
            .prepare_cached("SELECT contact FROM identities WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?)
    }

    fn set_identity(&mut self, id: &str, contact: &str) -> Result<()> {
        self.0
            .prepare_cached(
                "INSERT INTO identities (id, contact) VALUES (?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET contact = excluded.contact",
            )?
            .execute([id, contact])?;
        Ok(())
    }

    fn members(&mut self, contact: &str) -> Result<Vec<String>> {
        let mut stmt = self
            .0
            .prepare_cached("SELECT id FROM identities WHERE contact = ?1")?;
        let rows = stmt.query_map([contact], |r| r.get(0))?;
        let mut ids: Vec<String> = rows.collect::<Result<_, _>>()?;
        ids.sort_unstable();
        Ok(ids)
    }

    fn event_bodies(&mut self, own_id: &str) -> Result<Vec<String>> {
        let mut stmt = self
            .0
            .prepare_cached("SELECT body FROM events WHERE own_id = ?1")?;
        let rows = stmt.query_map([own_id], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn row(&mut self, table: Table, id: &str) -> Result<Option<Row>> {
        let sql = match table {
            Table::Live => format!("SELECT {ROW_COLUMNS} FROM contacts WHERE id = ?1"),
            Table::Next => format!("SELECT {ROW_COLUMNS} FROM contacts_next WHERE id = ?1"),
        };
        self.0
            .prepare_cached(&sql)?
            .query_row([id], read_row)
            .optional()?
            .transpose()
    }

    fn put_row(&mut self, table: Table, row: &Row) -> Result<()> {
        let sql = match table {
            Table::Live => "INSERT OR REPLACE INTO contacts VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
            Table::Next => "INSERT OR REPLACE INTO contacts_next VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
        };
        let s = &row.score;
        self.0.prepare_cached(sql)?.execute(params![
            row.id,
            row.model_version,
            row.state,
            row.traits_json(),
            row.company_json(),
            row.last_ts.map(|t| t.0),
            s.score,
            s.raw,
            s.fit,
            s.engagement,
            s.tier,
            s.grade,
            s.stage,
            s.status.as_str(),
            serde_json::to_string(&s.reasons).expect("strings serialise"),
            row.triggers,
            row.due.map(|t| t.0),
        ])?;
        Ok(())
    }

    fn delete_row(&mut self, table: Table, id: &str) -> Result<()> {
        let sql = match table {
            Table::Live => "DELETE FROM contacts WHERE id = ?1",
            Table::Next => "DELETE FROM contacts_next WHERE id = ?1",
        };
        self.0.prepare_cached(sql)?.execute([id])?;
        Ok(())
    }

    fn append_ledger(&mut self, entries: &[NewEntry]) -> Result<()> {
        // Many rows per statement: one statement step per 64 entries.
        const ROWS: usize = 64;
        const INSERT: &str =
            "INSERT INTO ledger (contact, at, recorded_at, model_version, old, new, cause) VALUES ";
        let many = format!("{INSERT}{}", vec!["(?, ?, ?, ?, ?, ?, ?)"; ROWS].join(", "));
        let one = format!("{INSERT}(?, ?, ?, ?, ?, ?, ?)");
        let values = |group: &[NewEntry]| {
            use rusqlite::types::Value as V;
            let text = |t: Option<String>| t.map_or(V::Null, V::Text);
            let mut values = Vec::with_capacity(7 * group.len());
            for e in group {
                values.extend([
                    V::Text(e.contact.clone()),
                    e.at.map_or(V::Null, |t| V::Integer(t.0)),
                    V::Integer(e.recorded_at.0),
                    V::Integer(i64::from(e.model_version)),
                    text(engine::fields_json(e.old.as_ref())),
                    text(engine::fields_json(e.new.as_ref())),
                    V::Text(e.cause.clone()),
                ]);
            }
            rusqlite::params_from_iter(values)
        };
        let full = entries.len() / ROWS * ROWS;
        let mut stmt = self.0.prepare_cached(&many)?;
        for group in entries[..full].chunks(ROWS) {
            stmt.execute(values(group))?;
        }
        let mut stmt = self.0.prepare_cached(&one)?;
        for entry in &entries[full..] {
            stmt.execute(values(std::slice::from_ref(entry)))?;
        }
        Ok(())
    }

    fn contacts_after(&mut self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let mut stmt = self.0.prepare_cached(
            "SELECT DISTINCT contact FROM identities WHERE contact > ?1 ORDER BY contact LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![after.unwrap_or(""), limit as i64], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn insert_firing(&mut self, f: &NewFiring) -> Result<Option<i64>> {
        let inserted = self.0.prepare_cached(
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
        Ok((inserted == 1).then(|| self.0.last_insert_rowid()))
    }

    fn fired_before(&mut self, contact: &str, trigger: &str) -> Result<bool> {
        Ok(self
            .0
            .prepare_cached("SELECT 1 FROM firings WHERE contact = ?1 AND trigger_id = ?2 LIMIT 1")?
            .exists(params![contact, trigger])?)
    }

    fn enqueue(&mut self, d: &NewDelivery) -> Result<()> {
        self.0
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
        self.0
            .prepare_cached(
                "INSERT OR IGNORE INTO campaign_members (campaign, firing, contact, at, enrolled_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![campaign, firing, contact, at.0, now.0])?;
        Ok(())
    }

    fn due_contacts(&mut self, now: Timestamp, limit: usize) -> Result<Vec<String>> {
        let mut stmt = self.0.prepare_cached(
            "SELECT id FROM contacts WHERE due IS NOT NULL AND due <= ?1 ORDER BY due LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![now.0, limit as i64], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn set_triggers(
        &mut self,
        contact: &str,
        triggers: &[u8],
        due: Option<Timestamp>,
    ) -> Result<()> {
        self.0
            .prepare_cached("UPDATE contacts SET triggers = ?2, due = ?3 WHERE id = ?1")?
            .execute(params![contact, triggers, due.map(|t| t.0)])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(user: &str, id: &str, at: &str) -> Incoming {
        let value = serde_json::json!({"type": "track", "userId": user,
            "event": "Form Submitted", "messageId": id, "timestamp": at});
        Incoming::new(leadscore_core::event::Message::from_json(value, None, None).unwrap())
    }

    /// The writer's cache of live states keeps what its own ingests wrote
    /// and is emptied when this connection writes anything else or another
    /// connection commits.
    #[test]
    fn the_live_cache_is_dropped_after_any_other_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut store = SqliteStore::open(&path).unwrap();
        store.defer_durability().unwrap();
        let source = include_str!("../../../examples/b2b.toml");
        let version = store.add_model("b2b.toml", source).unwrap().version;
        store.activate(version, &mut |_, _| {}).unwrap();
        let ingest = |store: &mut SqliteStore, user: &str, id: &str, at: &str| {
            store.ingest(vec![track(user, id, at)]).unwrap();
        };
        ingest(&mut store, "c", "c1", "2025-01-01T00:00:00Z");
        ingest(&mut store, "d", "d1", "2025-01-01T00:00:01Z");
        ingest(&mut store, "c", "c2", "2025-01-01T00:00:02Z");
        let holds = |store: &SqliteStore, c: &str| store.live.as_ref().unwrap().states.holds(c);
        assert!(holds(&store, "c") && holds(&store, "d"));
        // Another write on this connection.
        store
            .add_outcomes(&[crate::Outcome {
                contact_id: "c".into(),
                outcome: "won".into(),
                value: None,
                at: Timestamp::from_seconds(1_735_689_700),
            }])
            .unwrap();
        ingest(&mut store, "c", "c3", "2025-01-01T00:00:03Z");
        assert!(holds(&store, "c") && !holds(&store, "d"));
        // A commit by another connection.
        ingest(&mut store, "d", "d2", "2025-01-01T00:00:04Z");
        assert!(holds(&store, "d"));
        let mut other = SqliteStore::open(&path).unwrap();
        ingest(&mut other, "e", "e1", "2025-01-01T00:00:05Z");
        ingest(&mut store, "c", "c4", "2025-01-01T00:00:06Z");
        assert!(holds(&store, "c") && !holds(&store, "d"));
    }

    /// A pragma's integer value on the store's connection.
    fn pragma(store: &SqliteStore, name: &str) -> i64 {
        store
            .conn
            .query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
            .unwrap()
    }

    /// An import's connection keeps a larger page cache; durability is
    /// unchanged (every commit synchronous).
    #[test]
    fn a_bulk_load_gets_the_larger_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(dir.path().join("t.db")).unwrap();
        assert_eq!(pragma(&store, "cache_size"), -2000, "SQLite's default");
        store.prepare_bulk_load().unwrap();
        assert_eq!(pragma(&store, "cache_size"), -BULK_CACHE_KIB);
        assert_eq!(pragma(&store, "synchronous"), 2, "still FULL");
    }

    /// Deferring durability turns the commit's own sync off, and the flush
    /// syncs the WAL (or finds none left to sync).
    #[test]
    fn deferred_commits_are_flushed_through_the_wal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut store = SqliteStore::open(&path).unwrap();
        assert_eq!(pragma(&store, "synchronous"), 2, "FULL by default");
        let mut flush = store.defer_durability().unwrap().expect("SQLite defers");
        assert_eq!(pragma(&store, "synchronous"), 1, "NORMAL once deferred");
        assert_eq!(pragma(&store, "cache_size"), -SERVER_CACHE_KIB);
        store.add_key("h", crate::Scope::Read, "t").unwrap();
        assert!(wal_path(&path).exists());
        flush.flush().unwrap();
        drop(store);
        assert!(
            !wal_path(&path).exists(),
            "the last connection removes the WAL"
        );
        flush.flush().unwrap();
    }

    fn progress(frames: i64, last_commit: i64, pass: (i64, i64), passed: bool) -> WalProgress {
        WalProgress {
            frames: AtomicI64::new(frames),
            last_commit: AtomicI64::new(last_commit),
            pass_frames: AtomicI64::new(pass.0),
            pass_copied: AtomicI64::new(pass.1),
            passed: AtomicBool::new(passed),
            ..WalProgress::default()
        }
    }

    #[test]
    fn the_writer_catches_up_only_when_little_is_left() {
        // The checkpointer copied all but 1,000 frames of this WAL.
        assert!(progress(50_000, 100, (49_500, 49_000), false).worth_catching_up());
        // ... all but 10,000: too long a wait for small commits ...
        assert!(!progress(50_000, 100, (45_000, 40_000), true).worth_catching_up());
        // ... but an import's large commits catch up after any pass, once.
        let large = progress(50_000, 12_000, (45_000, 40_000), true);
        assert!(large.worth_catching_up());
        assert!(!large.worth_catching_up());
        // A WAL started over since the last pass: its counts say nothing.
        assert!(!progress(1_000, 100, (49_500, 49_000), false).worth_catching_up());
        // No pass yet.
        assert!(!progress(1_000, 100, (0, 0), false).worth_catching_up());
    }

    /// Page splits in a database under 1 GiB swap pages through the
    /// lock-byte page's number; with the swap kept at key 0 the database
    /// stays intact, across a rollback, a commit and a reopen.
    #[test]
    fn page_swaps_go_through_key_zero_and_leave_the_database_intact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut store = SqliteStore::open(&path).unwrap();
        assert!(
            crate::pcache::install(),
            "SQLite was started before the store"
        );
        let conn = &mut store.conn;
        conn.execute_batch("CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID")
            .unwrap();
        // Keys in a scattered order split pages all over the tree.
        let key = |i: u64| format!("{:016x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let fill = |conn: &mut rusqlite::Connection, range: std::ops::Range<u64>, keep: bool| {
            let tx = conn.transaction().unwrap();
            for i in range {
                tx.execute("INSERT INTO t VALUES (?1, ?2)", (key(i), "x".repeat(200)))
                    .unwrap();
            }
            if keep {
                tx.commit().unwrap();
            } // else rolled back on drop
        };
        let before = crate::pcache::swaps();
        fill(conn, 0..20_000, false);
        fill(conn, 0..20_000, true);
        assert!(crate::pcache::swaps() > before, "no page was swapped");
        let count = |conn: &rusqlite::Connection| -> i64 {
            conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                .unwrap()
        };
        let check = |conn: &rusqlite::Connection| -> String {
            conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!((count(conn), check(conn).as_str()), (20_000, "ok"));
        drop(store);
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(
            (count(&store.conn), check(&store.conn).as_str()),
            (20_000, "ok")
        );
    }
}
