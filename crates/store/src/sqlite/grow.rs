//! Memory for the database file's growth, taken before SQLite needs it.
//!
//! Beside a busy writer the database file grows by about 10,000 pages a
//! second (50k events/s), and each new page of it takes a page of memory
//! for the page cache that SQLite's checkpoint then writes into. On a
//! virtual machine whose host takes free memory back (free page reporting,
//! ballooning), the first touch of such a page waits for the host to
//! supply it again: 2-5 µs a page usually, 40-60 µs in the host's slow
//! spells, when the checkpointer's copies took 220-500 ms of every second
//! and `/v1/batch`'s p99 went past 20 ms (docs/performance.md, session 41).
//!
//! A thread at idle priority (`SCHED_IDLE`) reads the file's next pages
//! past the database's end into the page cache ahead of the checkpoint, so
//! that the host's supplying them falls in idle CPU time, and SQLite's
//! writes find them there. The file has to extend that far first: SQLite
//! extends it a chunk at a time (`SQLITE_FCNTL_CHUNK_SIZE`, set on each of
//! the store's writing connections) and truncates it, at each complete
//! checkpoint, only to a whole number of chunks, so the pages read ahead
//! survive up to the end of the current chunk. Reading is safe beside
//! SQLite's writes to the same pages: it never changes the file (writing
//! zeros ahead could land after the checkpoint's own write of a page, were
//! the thread held up between reading the database's end and writing).
//!
//! Off by default (`leadscore serve --grow-ahead-mib`): the file then
//! grows a chunk (four times the read-ahead) at a time, and SQLite
//! reserves the chunk's disk blocks (`posix_fallocate`, built in by
//! `.cargo/config.toml`). docs/performance.md, session 42, has the
//! figures; docs/decisions.md the choice.

#[cfg(target_os = "linux")]
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;

use crate::{Result, StoreError};

/// The largest chunk SQLite takes (its file control's argument is a C
/// `int`).
const MAX_CHUNK: u64 = (i32::MAX as u64) & !0xF_FFFF;

/// Sets the size in which SQLite extends and truncates `conn`'s database
/// file.
pub(super) fn set_chunk_size(conn: &Connection, bytes: u64) -> Result<()> {
    let mut size = libc::c_int::try_from(bytes.min(MAX_CHUNK)).unwrap_or(libc::c_int::MAX);
    // SAFETY: the handle is open for the call; SQLITE_FCNTL_CHUNK_SIZE
    // reads one `int` from the pointer, which lives across the call.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            rusqlite::ffi::SQLITE_FCNTL_CHUNK_SIZE,
            (&raw mut size).cast(),
        )
    };
    if rc == rusqlite::ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(StoreError::Database(format!(
            "cannot set the database file's chunk size (SQLite error {rc})"
        )))
    }
}

/// The chunk SQLite extends the file by for a read-ahead of `ahead` bytes:
/// four times as far, so that the pages read ahead reach past the
/// database's end by at least `ahead` for three quarters of each chunk.
pub(super) fn chunk_for(ahead: u64) -> u64 {
    ahead.saturating_mul(4).min(MAX_CHUNK)
}

/// The thread reading ahead, and the database's size that it reads past.
pub(super) struct GrowAhead {
    /// The database's size in bytes after the writer's last commit.
    end: Arc<AtomicU64>,
    /// The database's page size.
    page_size: u64,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How often the thread looks at the database's size.
const LOOK_EVERY: Duration = Duration::from_millis(10);

/// How often it reads the whole window again (pages of it the kernel
/// reclaimed meanwhile, left idle at a quiet time, are read again).
const RECHECK_EVERY: Duration = Duration::from_secs(2);

/// Bytes read per system call: 16 pages. The kernel allocates and zeroes
/// them without giving the CPU up (`PREEMPT_NONE`), 40-60 µs a page in
/// the host's slow spells, so that a request waits for at most one call's
/// pages (under 1 ms) when it wakes on this thread's CPU.
const STEP: u64 = 64 << 10;

impl GrowAhead {
    /// Starts the thread reading up to `ahead` bytes past the end of the
    /// database file at `path`, whose pages are `page_size` bytes.
    pub(super) fn start(path: &std::path::Path, ahead: u64, page_size: u64) -> Result<GrowAhead> {
        let file = std::fs::File::open(path)
            .map_err(|e| StoreError::Database(format!("cannot open {}: {e}", path.display())))?;
        let end = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (end_in, stop_in) = (Arc::clone(&end), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("leadscore-grow".into())
            .spawn(move || {
                idle_priority();
                let mut read_to = 0u64;
                let mut since_recheck = std::time::Instant::now();
                while !stop_in.load(Ordering::Acquire) {
                    std::thread::sleep(LOOK_EVERY);
                    let db_end = end_in.load(Ordering::Acquire);
                    if db_end == 0 {
                        continue;
                    }
                    let Ok(meta) = file.metadata() else { continue };
                    let file_end = meta.len();
                    if since_recheck.elapsed() >= RECHECK_EVERY {
                        read_to = 0;
                        since_recheck = std::time::Instant::now();
                    }
                    let mut from = read_to.max(db_end);
                    let to = file_end.min(db_end.saturating_add(ahead));
                    while from < to && !stop_in.load(Ordering::Acquire) {
                        let len = STEP.min(to - from);
                        will_need(&file, from, len);
                        from += len;
                    }
                    read_to = from.min(file_end);
                }
            })
            .map_err(|e| StoreError::Database(format!("cannot start the read-ahead: {e}")))?;
        Ok(GrowAhead {
            end,
            page_size,
            stop,
            thread: Some(thread),
        })
    }

    /// Tells the thread the database's size, in pages, after a commit.
    pub(super) fn set_end_pages(&self, pages: u64) {
        self.end
            .store(pages.saturating_mul(self.page_size), Ordering::Release);
    }
}

impl Drop for GrowAhead {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Puts the calling thread at idle priority: it runs only on a CPU that
/// nothing else wants (Linux; elsewhere, normal priority).
fn idle_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: 0 is the calling thread; `param` lives across the call.
        unsafe {
            libc::sched_setscheduler(0, libc::SCHED_IDLE, &raw const param);
        }
    }
}

/// Has the kernel read `len` bytes of `file` at `offset` into the page
/// cache (zeroed pages, past the data SQLite wrote).
fn will_need(file: &std::fs::File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len))
        else {
            return;
        };
        // SAFETY: the descriptor is open for as long as `file` lives; the
        // call only reads the file into the page cache.
        unsafe {
            libc::posix_fadvise(file.as_raw_fd(), offset, len, libc::POSIX_FADV_WILLNEED);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Pages of `file` in the page cache from `offset` for `len` bytes
    /// (`mincore` on a read-only mapping, which reads nothing itself).
    fn cached_pages(file: &std::fs::File, offset: u64, len: u64) -> usize {
        let page = 4096usize;
        let len = usize::try_from(len).unwrap();
        // SAFETY: a private read-only mapping of an open file, unmapped
        // below; `mincore` writes one byte a page into `vec`, sized so.
        unsafe {
            let map = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                libc::off_t::try_from(offset).unwrap(),
            );
            assert_ne!(map, libc::MAP_FAILED, "mmap");
            let mut vec = vec![0u8; len.div_ceil(page)];
            assert_eq!(libc::mincore(map, len, vec.as_mut_ptr()), 0, "mincore");
            libc::munmap(map, len);
            vec.iter().filter(|&&b| b & 1 == 1).count()
        }
    }

    /// SQLite extends and truncates the file in chunks once told, and the
    /// thread reads the pages past the database's end into the page cache
    /// (up to the file's end), dropping them neither from the file nor
    /// from the database.
    #[test]
    fn the_file_grows_by_chunks_and_its_next_pages_are_read_ahead() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        let chunk = 1u64 << 20;
        set_chunk_size(&conn, chunk).unwrap();
        conn.execute_batch("CREATE TABLE t (x BLOB); INSERT INTO t VALUES (zeroblob(100000));")
            .unwrap();
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let size = file.metadata().unwrap().len();
        assert_eq!(size, chunk, "truncated to a whole chunk, not to the data");
        let pages: i64 = conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        let end = u64::try_from(pages).unwrap() * 4096;
        assert!(
            end < size / 2,
            "the data ({end} bytes) is well under the chunk"
        );

        // Drop the file's pages from the page cache (clean after the
        // checkpoint's sync), then read ahead.
        // SAFETY: the descriptor is open; the call only drops clean pages.
        unsafe {
            libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
        }
        let want = (256 << 10) / 4096;
        if cached_pages(&file, end, 256 << 10) >= want {
            // A file system that keeps every page in memory (tmpfs): there
            // is nothing to see.
            eprintln!("the file's pages stay cached here: read-ahead not observable");
            return;
        }
        let ahead = GrowAhead::start(&path, 256 << 10, 4096).unwrap();
        ahead.set_end_pages(end / 4096);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while cached_pages(&file, end, 256 << 10) < want {
            assert!(
                std::time::Instant::now() < deadline,
                "read ahead: {} of {want} pages",
                cached_pages(&file, end, 256 << 10)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(ahead);
        assert_eq!(
            file.metadata().unwrap().len(),
            size,
            "the file is unchanged"
        );
        let n: i64 = conn
            .query_row("SELECT length(x) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 100_000);
    }

    #[test]
    fn the_chunk_is_four_times_the_read_ahead_within_what_sqlite_takes() {
        assert_eq!(chunk_for(256 << 20), 1 << 30);
        assert_eq!(chunk_for(1 << 40), MAX_CHUNK);
        assert!(MAX_CHUNK <= i32::MAX as u64 && MAX_CHUNK.is_multiple_of(1 << 20));
    }
}
