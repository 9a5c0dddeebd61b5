//! Keeping the WAL short beside a busy writer: the checkpointer thread, the
//! writer's catch-up that lets SQLite start the WAL over, and the flush that
//! makes deferred commits durable.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;

use super::SqliteStore;
use crate::{Result, StoreError};

/// Copies the WAL into the database file from a thread of its own, woken
/// by the first ingest commit after each pass's interval (and every half
/// second), so that commits never do it. SQLite's
/// automatic checkpoint runs inside the commit that takes the WAL past
/// 1,000 pages, and that commit (and every request waiting on it) then
/// also writes and fsyncs the database file. Passive checkpoints never
/// block the writer or readers; a crash at any point is safe (the WAL
/// stays authoritative until a checkpoint completes).
pub(super) struct Checkpointer {
    pub(super) wake: Option<std::sync::mpsc::SyncSender<()>>,
    pub(super) thread: Option<std::thread::JoinHandle<()>>,
    /// How far the WAL and the checkpointer's copying of it have got.
    pub(super) progress: Arc<WalProgress>,
}

/// What the writer needs to know to catch a checkpoint up cheaply.
#[derive(Debug, Default)]
pub(super) struct WalProgress {
    /// Frames in the WAL after the writer's last commit (its WAL hook).
    pub(super) frames: AtomicI64,
    /// Frames that commit added (for the log, see [`super::phases`]).
    pub(super) last_commit: AtomicI64,
    /// Frames the limit stands for (the WAL restart's threshold).
    limit_frames: i64,
    /// Frames in the WAL at the checkpointer's last pass...
    pass_frames: AtomicI64,
    /// ...and how many of them were in the database file after it.
    pass_copied: AtomicI64,
    /// Held for each checkpoint of this store's two connections. SQLite
    /// refuses a checkpoint while another runs, without waiting: a writer
    /// past twice the limit waits here instead, so that a checkpointer
    /// starved of CPU mid-pass (a busy machine, a slow fsync) cannot leave
    /// the WAL growing for as long as it is starved.
    checkpoint: Mutex<()>,
    /// Set while the writer waits for [`WalProgress::checkpoint`]: the
    /// checkpointer skips its passes meanwhile (the lock is not fair).
    writer_waiting: AtomicBool,
    /// Set while the checkpointer waits to be woken
    /// ([`Checkpointer::poke`]), taken by the poke that wakes it.
    listening: AtomicBool,
    /// Pokes that woke the checkpointer (tests).
    #[cfg(test)]
    woken: std::sync::atomic::AtomicU64,
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
    /// over since counts from zero) and at most [`CATCH_UP_FRAMES`], plus
    /// one frame for every [`CATCH_UP_GROWTH`] the WAL is past its limit.
    /// A writer whose commits are larger than that (`leadscore import`)
    /// catches up at twice the limit ([`SqliteStore::restart_wal_if_large`]).
    fn worth_catching_up(&self) -> bool {
        let copied = self.pass_copied.load(Ordering::Acquire) > 0;
        let past = self.frames.load(Ordering::Acquire) - self.limit_frames;
        let most = CATCH_UP_FRAMES + past.max(0) / CATCH_UP_GROWTH;
        copied && self.uncopied().is_some_and(|left| left <= most)
    }

    /// Frames in the WAL as far as its writer and the checkpointer's last
    /// pass know (a pass sees frames other connections committed since the
    /// writer's last commit; after a restart, until the next pass, the old
    /// WAL's count).
    fn known_frames(&self) -> i64 {
        self.frames
            .load(Ordering::Acquire)
            .max(self.pass_frames.load(Ordering::Acquire))
    }

    /// Whether the WAL is past its limit and not yet all copied, as the
    /// writer knows it after its last commit and the last checkpoint (its
    /// idle moments then hold back, `SqliteStore::write_idle`); once all
    /// is copied, its next commit starts the WAL over. The checkpointer
    /// decides on back-to-back passes by [`WalProgress::known_frames`].
    pub(super) fn past_limit(&self) -> bool {
        self.frames.load(Ordering::Acquire) > self.limit_frames && self.uncopied() != Some(0)
    }

    /// A checkpoint of `frames` frames, `copied` of them now in the
    /// database file, has ended.
    pub(super) fn record(&self, (frames, copied): (i64, i64)) {
        self.pass_frames.store(frames, Ordering::Release);
        self.pass_copied.store(copied, Ordering::Release);
    }

    /// Frames of the WAL not yet in the database file, as far as the last
    /// pass tells (frames the writer's catch-ups copied since count as
    /// left); unknown before a pass of this WAL. Every page read searches
    /// the WAL index over these frames, one hash table per 4,096.
    pub(super) fn uncopied(&self) -> Option<i64> {
        let frames = self.frames.load(Ordering::Acquire);
        let seen = self.pass_frames.load(Ordering::Acquire);
        let copied = self.pass_copied.load(Ordering::Acquire);
        (frames >= seen && seen > 0).then(|| frames - copied)
    }
}

/// Frames (4 KiB pages) the writer copies itself, at most, to start the
/// WAL over when it has just passed its limit: the copy, then the sync of
/// those pages, about 5-10 ms of waiting at 50k events/s (2,048 before
/// session 45: 20-45 ms). Passes that wait for their writes past the limit
/// and idle moments that write nothing meanwhile get the checkpointer
/// there within a few passes (docs/performance.md, session 45).
const CATCH_UP_FRAMES: i64 = 512;

/// Frames past the limit for each frame more the writer accepts to copy:
/// when the disk is too slow for the passes to get that close, the writer
/// takes what they leave a little later (2,048 some 100,000 frames past).
const CATCH_UP_GROWTH: i64 = 64;

/// The frames of a WAL of `bytes` with pages of `page` bytes (each frame
/// is a page and a 24-byte header, after the WAL's 32-byte header).
fn limit_frames(bytes: u64, page: i64) -> i64 {
    let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
    bytes.saturating_sub(32) / (page.max(512) + 24)
}

/// The WAL file of the database at `path`.
pub(super) fn wal_path(path: &Path) -> std::path::PathBuf {
    let mut wal = path.to_path_buf().into_os_string();
    wal.push("-wal");
    wal.into()
}

/// Starts the kernel writing the database file's dirty pages to disk:
/// `sync_file_range(SYNC_FILE_RANGE_WRITE)` on Linux, nothing elsewhere;
/// with `wait`, also waits for those writes (`WAIT_BEFORE | WRITE |
/// WAIT_AFTER`, still no cache flush of the device, unlike `fdatasync`).
/// Called after each checkpointer pass, waiting past the WAL's limit.
///
/// A passive checkpoint syncs the database file only when it copied the
/// WAL to its last frame, which a pass beside a busy writer never does: the
/// pages it copies stay dirty in the page cache for up to 30 seconds
/// (`vm.dirty_expire_centisecs`). The one sync that then writes them all is
/// the writer's own catch-up at the WAL limit, which restarts the WAL:
/// 75-195 ms of `fsync`, during which no commit is made (30k events/s,
/// `perf trace`). Started after each pass, the writing is spread over the
/// passes and that sync finds little left. Durability never depends on it
/// (the catch-up still syncs), so an error is ignored: that sync then
/// writes what this would have.
///
/// Past the limit, a pass that waits for its writes takes longer, yet
/// leaves the catch-up's sync only the pages copied since: without the
/// wait, that sync also waited for the writes the last pass started, and
/// a catch-up took 20-45 ms (session 45). An `fdatasync` instead
/// (sessions 17, 41 and 44) also flushed the device's cache each pass,
/// and the acknowledgements' WAL flushes queued behind those.
fn start_writeback(file: Option<&std::fs::File>, wait: bool) {
    #[cfg(target_os = "linux")]
    if let Some(file) = file {
        use std::os::fd::AsRawFd;
        let flags = if wait {
            libc::SYNC_FILE_RANGE_WAIT_BEFORE
                | libc::SYNC_FILE_RANGE_WRITE
                | libc::SYNC_FILE_RANGE_WAIT_AFTER
        } else {
            libc::SYNC_FILE_RANGE_WRITE
        };
        // SAFETY: the descriptor is open for as long as `file` lives; the
        // call only schedules writes of the file's own dirty pages.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), 0, 0, flags);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, wait);
}

/// Runs a passive checkpoint on `conn`: the WAL's frames and how many of
/// them are now in the database file, or `None` when it could not run
/// (another checkpoint running, an error: the next one tries again).
fn checkpoint_passive(conn: &Connection) -> Option<(i64, i64)> {
    let pass = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    });
    match pass {
        Ok((0, frames, copied)) => Some((frames, copied)),
        _ => None,
    }
}

/// Least time between two checkpoints.
const CHECKPOINT_EVERY_MS: u64 = 200;

/// WAL size past which the writer itself finishes the checkpointer's work
/// after a commit; SQLite truncates the WAL file to twice this when it
/// starts it over (`journal_size_limit`, see
/// [`SqliteStore::set_wal_limit`]).
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
pub(super) const WAL_RESTART_BYTES: u64 = 1 << 30;

impl Checkpointer {
    /// Starts the thread; `wal_limit` as in [`SqliteStore::set_wal_limit`];
    /// `chunk`, the writer's chunk size, if it has one (the connection
    /// that completes a checkpoint truncates the file to its own chunks,
    /// [`super::grow`]).
    pub(super) fn start(path: &Path, wal_limit: u64, chunk: Option<u64>) -> Result<Checkpointer> {
        let conn = Connection::open(path)?;
        if let Some(chunk) = chunk {
            super::grow::set_chunk_size(&conn, chunk)?;
        }
        conn.busy_timeout(Duration::from_secs(30))?;
        let page: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let (wake, woken) = std::sync::mpsc::sync_channel::<()>(1);
        let progress = Arc::new(WalProgress {
            limit_frames: limit_frames(wal_limit, page),
            ..WalProgress::default()
        });
        let progress_in_thread = Arc::clone(&progress);
        // For `start_writeback`; without it (it cannot be opened) the
        // passes' pages are written when the kernel or the next sync does.
        let db = std::fs::File::open(path).ok();
        let thread = std::thread::Builder::new()
            .name("leadscore-checkpoint".into())
            .spawn(move || {
                use std::sync::mpsc::RecvTimeoutError::Disconnected;
                use std::time::Instant;
                // Errors (a full disk) leave the WAL as it is; the next
                // checkpoint tries again.
                let checkpoint = |past_limit: bool| {
                    if progress_in_thread.writer_waiting.load(Ordering::Acquire) {
                        return; // the writer checkpoints itself
                    }
                    let _turn = progress_in_thread.lock_checkpoints();
                    let started = Instant::now();
                    let pass = checkpoint_passive(&conn);
                    if let Some(pass) = pass {
                        progress_in_thread.record(pass);
                    }
                    // With the turn still held: a catch-up by the writer
                    // meanwhile would wait for these writes in its sync.
                    let copied_at = started.elapsed();
                    start_writeback(db.as_ref(), past_limit);
                    if let Some((frames, copied)) = pass {
                        // What the writer committed during the pass is
                        // what a catch-up right after it would copy.
                        tracing::debug!(
                            frames,
                            copied,
                            frames_after = progress_in_thread.frames.load(Ordering::Acquire),
                            copy_ms = copied_at.as_secs_f64() * 1e3,
                            writeback_ms = (started.elapsed() - copied_at).as_secs_f64() * 1e3,
                            waited = past_limit,
                            "checkpoint pass"
                        );
                    }
                };
                let mut last = Instant::now();
                let mut open = true;
                while open {
                    // Woken by ingest commits, and twice a second for the
                    // other writers of this connection (activations).
                    progress_in_thread.listening.store(true, Ordering::Release);
                    open = !matches!(
                        woken.recv_timeout(Duration::from_millis(500)),
                        Err(Disconnected)
                    );
                    progress_in_thread.listening.store(false, Ordering::Release);
                    // At most one checkpoint per interval: wake-ups until
                    // then coalesce; closing the store ends the wait. Past
                    // the limit, passes follow each other, so that what is
                    // left for the writer to copy (see
                    // `SqliteStore::restart_wal_if_large`) stays short.
                    let past_limit =
                        progress_in_thread.known_frames() > progress_in_thread.limit_frames;
                    let every = if past_limit {
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
                    checkpoint(past_limit);
                    last = Instant::now();
                }
            })
            .map_err(|e| StoreError::Database(format!("cannot start the checkpointer: {e}")))?;
        Ok(Checkpointer {
            wake: Some(wake),
            thread: Some(thread),
            progress,
        })
    }

    /// Asks for a checkpoint: wakes the checkpointer when it waits to be
    /// woken, and does nothing when one is already due (it then waits
    /// for the interval's end, or runs its pass). Waking a thread is a
    /// system call (about 25 µs of the writer's time a commit, `perf`,
    /// docs/performance.md), so the commits during an interval make none.
    pub(super) fn poke(&self) {
        if !self.progress.listening.swap(false, Ordering::AcqRel) {
            return;
        }
        #[cfg(test)]
        self.progress.woken.fetch_add(1, Ordering::Relaxed);
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

impl SqliteStore {
    /// Checkpoints from the writer's connection when the WAL has grown past
    /// its limit ([`WAL_RESTART_BYTES`]) in frames (not the file's length,
    /// which stays at its largest up to twice the limit, see
    /// [`SqliteStore::set_wal_limit`]), so that the next transaction
    /// starts it over. Only once the checkpointer (running its passes back
    /// to back past the limit) has left little to copy
    /// ([`WalProgress::worth_catching_up`]), since the writer waits for that
    /// copy, and not while the checkpointer is in a pass; past twice the
    /// limit, whatever is left, after waiting for the checkpointer's pass
    /// to end. Passive: it leaves frames a reader still needs (the WAL then
    /// stays as it is), and a later commit tries again.
    pub(super) fn restart_wal_if_large(&self) {
        let Some(checkpointer) = &self.checkpointer else {
            return; // SQLite's automatic checkpoints are still on
        };
        let progress = &checkpointer.progress;
        // This connection's own count: exact after its commit.
        let frames = progress.frames.load(Ordering::Acquire);
        let _turn = if frames > progress.limit_frames.saturating_mul(2) {
            // Whatever is left: after the checkpointer's pass, if one runs.
            progress.writer_waiting.store(true, Ordering::Release);
            let turn = progress.lock_checkpoints();
            progress.writer_waiting.store(false, Ordering::Release);
            turn
        } else if frames > progress.limit_frames && progress.worth_catching_up() {
            match progress.checkpoint.try_lock() {
                Ok(turn) => turn,
                Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return, // in a pass
            }
        } else {
            return;
        };
        if let Some(pass) = checkpoint_passive(&self.conn) {
            progress.record(pass);
        }
    }
}

/// Flushes the WAL file: with `synchronous = NORMAL` a commit writes its
/// frames without waiting for the disk, and one `fdatasync` of the WAL
/// makes every commit written before it durable (a checkpoint syncs the
/// WAL before copying it, so frames checkpointed and overwritten since are
/// durable in the database file).
pub(super) struct WalFlush {
    pub(super) wal: std::path::PathBuf,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(frames: i64, pass: (i64, i64)) -> WalProgress {
        WalProgress {
            frames: AtomicI64::new(frames),
            pass_frames: AtomicI64::new(pass.0),
            pass_copied: AtomicI64::new(pass.1),
            limit_frames: 40_000,
            ..WalProgress::default()
        }
    }

    #[test]
    fn the_limit_counts_frames_of_a_page_and_a_header() {
        // 32-byte WAL header, then frames of 24 + 4,096 bytes.
        assert_eq!(limit_frames(32 + 10 * 4_120, 4_096), 10);
        assert_eq!(limit_frames(32 + 10 * 4_120 - 1, 4_096), 9);
        assert_eq!(limit_frames(1 << 30, 4_096), 260_616);
        assert_eq!(limit_frames(u64::MAX, 4_096), (i64::MAX - 32) / 4_120);
    }

    #[test]
    fn the_writer_catches_up_only_when_little_is_left() {
        // 100 frames past the limit of 40,000, the checkpointer copied all
        // but 500 frames of this WAL ...
        assert!(progress(40_100, (39_900, 39_600)).worth_catching_up());
        // ... all but 600: the writer waits for a pass that leaves less ...
        assert!(!progress(40_100, (39_900, 39_500)).worth_catching_up());
        // ... which it accepts more of the further past the limit the WAL
        // is: 64 frames past it for each frame more.
        assert!(progress(46_500, (46_000, 45_900)).worth_catching_up());
        assert!(!progress(46_500, (46_000, 45_800)).worth_catching_up());
        // All but 10,000: too long a wait.
        assert!(!progress(50_000, (45_000, 40_000)).worth_catching_up());
        // A WAL started over since the last pass: its counts say nothing.
        assert!(!progress(1_000, (49_500, 49_000)).worth_catching_up());
        // No pass yet.
        assert!(!progress(1_000, (0, 0)).worth_catching_up());
    }

    #[test]
    fn the_wal_is_past_its_limit_until_all_is_copied() {
        // 100 frames past the limit of 40,000, 500 of them not copied.
        let wal = progress(40_100, (39_900, 39_600));
        assert!(wal.past_limit());
        // A catch-up copied all: the writer's next commit starts it over.
        wal.record((40_100, 40_100));
        assert!(!wal.past_limit());
        // Not past it, whatever is left.
        assert!(!progress(40_000, (39_000, 38_000)).past_limit());
        // Past it, before any pass.
        assert!(progress(40_001, (0, 0)).past_limit());
    }

    /// Commits in quick succession wake the checkpointer once: the others
    /// find it already due. Once it has passed, the next commit wakes it.
    #[test]
    fn quick_commits_wake_the_checkpointer_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        drop(SqliteStore::open(&path).unwrap());
        let checkpointer = Checkpointer::start(&path, WAL_RESTART_BYTES, None).unwrap();
        let progress = Arc::clone(&checkpointer.progress);
        let woken = || progress.woken.load(Ordering::Relaxed);
        let listening = || {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while !progress.listening.load(Ordering::Acquire) {
                assert!(std::time::Instant::now() < deadline, "never listening");
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        listening();
        for _ in 0..100 {
            checkpointer.poke();
        }
        // The interval (200 ms from the thread's start) was not over.
        assert_eq!(woken(), 1);
        listening();
        checkpointer.poke();
        assert_eq!(woken(), 2);
    }
}
