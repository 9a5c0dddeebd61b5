//! WAL writes gathered into one write per commit.
//!
//! SQLite writes each WAL frame as two `pwrite`s, its 24-byte header and
//! its page, so a commit of N pages makes 2N system calls, each covering
//! parts of two 4 KiB pages of the file (a frame is 4,120 bytes): with
//! contacts spread over the store, those calls took a third of the
//! server writer's time (`perf`, docs/performance.md). This VFS is the
//! default one with the WAL's writes kept in memory while they follow each
//! other, and written in one call when the commit frame's page has been
//! written, before anything reads, syncs, sizes or truncates the file, and
//! every 4 MiB.
//!
//! What other connections see is unchanged: SQLite publishes a commit (the
//! WAL index header in shared memory) only after its last frame is
//! written, and that write returns only once the gathered frames are in the
//! file; a failed write is the commit's error, as before. Frames written
//! before a commit (a transaction spilling its cache) wait for it, or for
//! a read of the WAL, which they precede in the file.
//!
//! [`install`] registers it as the process's default VFS once, wrapping
//! the one SQLite had (`unix`). Files other than WALs are the default
//! VFS's own, untouched.

use rusqlite::ffi;
use std::ffi::{c_char, c_int, c_void};
use std::sync::OnceLock;

/// Gathered bytes written at the latest at this size.
const GATHER_LIMIT: usize = 4 << 20;

/// Bytes per write of the default VFS at most: the unix VFS masks a
/// write's length with 0x1ffff (`seekAndWriteFd`), so one of 128 KiB or
/// more would write only the remainder.
const WRITE_CHUNK: usize = 64 << 10;

/// A WAL frame header's size (`WAL_FRAME_HDRSIZE`).
const FRAME_HEADER: c_int = 24;

/// The VFS SQLite had before [`install`].
struct Vfs {
    base: *mut ffi::sqlite3_vfs,
}

// SAFETY: the default VFS is a registered, immutable, process-wide table
// that SQLite itself shares between threads.
unsafe impl Send for Vfs {}
unsafe impl Sync for Vfs {}

static VFS: OnceLock<Option<Vfs>> = OnceLock::new();

/// What went through the VFS, in tests: flushes of more than one frame,
/// and commit headers rewritten (written where frames already were).
#[cfg(test)]
static GATHERED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
#[cfg(test)]
static REWRITTEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The name our VFS is registered under.
const NAME: &std::ffi::CStr = c"leadscore-wal";

/// Registers the VFS as the default once per process; returns whether it
/// is in use (false when SQLite has no default VFS to wrap).
pub(crate) fn install() -> bool {
    VFS.get_or_init(|| {
        // SAFETY: sqlite3_vfs_find and sqlite3_vfs_register are
        // thread-safe; the VFS struct is leaked, so it outlives every
        // connection, as SQLite requires.
        unsafe {
            let base = ffi::sqlite3_vfs_find(std::ptr::null());
            if base.is_null() {
                return None;
            }
            let mut ours: ffi::sqlite3_vfs = std::ptr::read(base);
            ours.pNext = std::ptr::null_mut();
            ours.zName = NAME.as_ptr();
            ours.szOsFile = (wal_file_offset() + (*base).szOsFile as usize) as c_int;
            ours.xOpen = Some(open);
            ours.xDelete = Some(delete);
            ours.xAccess = Some(access);
            ours.xFullPathname = Some(full_pathname);
            let ours = Box::into_raw(Box::new(ours));
            if ffi::sqlite3_vfs_register(ours, 1) != ffi::SQLITE_OK {
                drop(Box::from_raw(ours));
                return None;
            }
            Some(Vfs { base })
        }
    })
    .is_some()
}

/// Where the default VFS's file sits inside one of our WAL files.
const fn wal_file_offset() -> usize {
    std::mem::size_of::<WalFile>().next_multiple_of(16)
}

fn base() -> *mut ffi::sqlite3_vfs {
    VFS.get()
        .and_then(Option::as_ref)
        .map_or(std::ptr::null_mut(), |v| v.base)
}

/// An open WAL: the default VFS's file, and what is gathered for it.
#[repr(C)]
struct WalFile {
    /// Must come first: SQLite sees a `sqlite3_file`.
    file: ffi::sqlite3_file,
    real: *mut ffi::sqlite3_file,
    /// Bytes not yet written, from `at` in the file on.
    gathered: Vec<u8>,
    at: i64,
    /// The last write was the header of a commit frame: its page ends the
    /// commit.
    commit_page_next: bool,
    /// How far into the file anything was written (for the tests'
    /// counters).
    #[cfg(test)]
    written_end: i64,
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let base = base();
    let base_open = (*base).xOpen.expect("a VFS opens files");
    if flags & ffi::SQLITE_OPEN_WAL == 0 {
        // The default VFS's own file, in the memory SQLite gave us.
        return base_open(base, name, file, flags, out_flags);
    }
    let real = file
        .cast::<u8>()
        .add(wal_file_offset())
        .cast::<ffi::sqlite3_file>();
    let rc = base_open(base, name, real, flags, out_flags);
    if rc != ffi::SQLITE_OK {
        (*file).pMethods = std::ptr::null();
        return rc;
    }
    file.cast::<WalFile>().write(WalFile {
        file: ffi::sqlite3_file {
            pMethods: &WAL_METHODS,
        },
        real,
        gathered: Vec::new(),
        at: 0,
        commit_page_next: false,
        #[cfg(test)]
        written_end: 0,
    });
    rc
}

unsafe extern "C" fn delete(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    sync: c_int,
) -> c_int {
    let base = base();
    (*base).xDelete.expect("a VFS deletes files")(base, name, sync)
}

unsafe extern "C" fn access(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    flags: c_int,
    out: *mut c_int,
) -> c_int {
    let base = base();
    (*base).xAccess.expect("a VFS checks files")(base, name, flags, out)
}

unsafe extern "C" fn full_pathname(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    n: c_int,
    out: *mut c_char,
) -> c_int {
    let base = base();
    (*base).xFullPathname.expect("a VFS resolves paths")(base, name, n, out)
}

/// The WAL file behind `file`, and its methods.
unsafe fn wal<'a>(file: *mut ffi::sqlite3_file) -> &'a mut WalFile {
    &mut *file.cast::<WalFile>()
}

unsafe fn methods(w: &WalFile) -> &ffi::sqlite3_io_methods {
    &*(*w.real).pMethods
}

/// Writes what is gathered, in calls of at most [`WRITE_CHUNK`] bytes;
/// the gathered bytes are dropped either way (after an error, SQLite
/// abandons the frames).
unsafe fn flush(w: &mut WalFile) -> c_int {
    let write = methods(w).xWrite.expect("a file is written");
    let mut rc = ffi::SQLITE_OK;
    #[cfg(test)]
    {
        if w.gathered.len() > 2 * 4096 {
            GATHERED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        w.written_end = w.written_end.max(w.at + w.gathered.len() as i64);
    }
    let mut at = w.at;
    for chunk in w.gathered.chunks(WRITE_CHUNK) {
        rc = write(
            w.real,
            chunk.as_ptr().cast::<c_void>(),
            chunk.len() as c_int,
            at,
        );
        if rc != ffi::SQLITE_OK {
            break;
        }
        at += chunk.len() as i64;
    }
    w.gathered.clear();
    rc
}

/// Calls one of the default file's methods, after writing what is gathered
/// (whose error, if any, is the call's).
unsafe fn flush_and_forward(
    file: *mut ffi::sqlite3_file,
    call: impl FnOnce(&ffi::sqlite3_io_methods, *mut ffi::sqlite3_file) -> c_int,
) -> c_int {
    let w = wal(file);
    match flush(w) {
        ffi::SQLITE_OK => call(methods(w), w.real),
        rc => rc,
    }
}

/// Calls one of the default file's methods (nothing gathered matters).
unsafe fn forward(
    file: *mut ffi::sqlite3_file,
    call: impl FnOnce(&ffi::sqlite3_io_methods, *mut ffi::sqlite3_file) -> c_int,
) -> c_int {
    let w = wal(file);
    call(methods(w), w.real)
}

static WAL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(wal_close),
    xRead: Some(wal_read),
    xWrite: Some(wal_write),
    xTruncate: Some(wal_truncate),
    xSync: Some(wal_sync),
    xFileSize: Some(wal_file_size),
    xLock: Some(wal_lock),
    xUnlock: Some(wal_unlock),
    xCheckReservedLock: Some(wal_check_reserved_lock),
    xFileControl: Some(wal_file_control),
    xSectorSize: Some(wal_sector_size),
    xDeviceCharacteristics: Some(wal_device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

unsafe extern "C" fn wal_close(file: *mut ffi::sqlite3_file) -> c_int {
    let w = wal(file);
    let flushed = flush(w);
    let closed = methods(w).xClose.expect("a file is closed")(w.real);
    std::ptr::drop_in_place(file.cast::<WalFile>());
    if flushed != ffi::SQLITE_OK {
        flushed
    } else {
        closed
    }
}

unsafe extern "C" fn wal_read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    flush_and_forward(file, |m, real| {
        m.xRead.expect("a file is read")(real, buf, amount, offset)
    })
}

unsafe extern "C" fn wal_write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    let w = wal(file);
    if !w.gathered.is_empty() && offset != w.at + w.gathered.len() as i64 {
        let rc = flush(w);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
    }
    let bytes = std::slice::from_raw_parts(data.cast::<u8>(), amount.max(0) as usize);
    let ends_commit = if amount == FRAME_HEADER {
        // Bytes 4..8 of a frame header: the database size after a commit,
        // zero for the other frames.
        w.commit_page_next = bytes[4..8] != [0, 0, 0, 0];
        #[cfg(test)]
        if w.commit_page_next && offset < w.written_end.max(w.at + w.gathered.len() as i64) {
            REWRITTEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if w.commit_page_next && w.gathered.is_empty() {
            // Either a commit of one frame, whose page follows, or the
            // commit frame's header rewritten with new checksums after
            // the commit's pages (`walRewriteChecksums`, which reads each
            // frame before rewriting its header): nothing follows that
            // one before the commit is published, so it is written now.
            #[cfg(test)]
            {
                w.written_end = w.written_end.max(offset + i64::from(amount));
            }
            let write = methods(w).xWrite.expect("a file is written");
            return write(w.real, data, amount, offset);
        }
        false
    } else {
        std::mem::take(&mut w.commit_page_next)
    };
    if w.gathered.is_empty() {
        w.at = offset;
    }
    w.gathered.extend_from_slice(bytes);
    if ends_commit || w.gathered.len() >= GATHER_LIMIT {
        return flush(w);
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn wal_truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    flush_and_forward(file, |m, real| {
        m.xTruncate.expect("a file is truncated")(real, size)
    })
}

unsafe extern "C" fn wal_sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    flush_and_forward(file, |m, real| {
        m.xSync.expect("a file is synced")(real, flags)
    })
}

unsafe extern "C" fn wal_file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    flush_and_forward(file, |m, real| {
        m.xFileSize.expect("a file has a size")(real, size)
    })
}

unsafe extern "C" fn wal_lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    forward(file, |m, real| {
        m.xLock.expect("a file is locked")(real, level)
    })
}

unsafe extern "C" fn wal_unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    forward(file, |m, real| {
        m.xUnlock.expect("a file is unlocked")(real, level)
    })
}

unsafe extern "C" fn wal_check_reserved_lock(
    file: *mut ffi::sqlite3_file,
    out: *mut c_int,
) -> c_int {
    forward(file, |m, real| {
        m.xCheckReservedLock.expect("a lock is checked")(real, out)
    })
}

unsafe extern "C" fn wal_file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    flush_and_forward(file, |m, real| {
        m.xFileControl.expect("a file is controlled")(real, op, arg)
    })
}

unsafe extern "C" fn wal_sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    forward(file, |m, real| {
        m.xSectorSize.expect("a file has sectors")(real)
    })
}

unsafe extern "C" fn wal_device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    forward(file, |m, real| {
        m.xDeviceCharacteristics
            .expect("a file has characteristics")(real)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;
    use std::sync::atomic::Ordering;

    fn rows(conn: &Connection) -> (i64, i64) {
        conn.query_row("SELECT count(*), coalesce(sum(v), 0) FROM t", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap()
    }

    /// The database as a crash would leave it now: the files as they are
    /// (no shared memory: the copy recovers from the WAL, checking every
    /// frame's checksum), opened elsewhere.
    fn crash_copy(dir: &std::path::Path, n: usize) -> Connection {
        let to = dir.join(format!("crash-{n}"));
        std::fs::create_dir(&to).unwrap();
        for name in ["t.db", "t.db-wal"] {
            std::fs::copy(dir.join(name), to.join(name)).unwrap();
        }
        Connection::open(to.join("t.db")).unwrap()
    }

    /// Transactions larger than a tiny page cache spill frames, write
    /// pages over frames of their own and rewrite checksums at commit;
    /// after every commit another connection reads exactly what was
    /// committed, and the files as they are then recover to it.
    #[test]
    fn every_commit_is_in_the_file_when_it_is_published() {
        assert!(install(), "the VFS is registered");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let writer = Connection::open(&path).unwrap();
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
                 PRAGMA wal_autocheckpoint = 0; PRAGMA cache_size = 8;
                 CREATE TABLE t (k INTEGER PRIMARY KEY, v INTEGER NOT NULL, pad BLOB NOT NULL);
                 CREATE INDEX t_v ON t (v);",
            )
            .unwrap();
        let reader = Connection::open(&path).unwrap();
        let (gathered, rewritten) = (
            GATHERED.load(Ordering::Relaxed),
            REWRITTEN.load(Ordering::Relaxed),
        );
        let mut expected = (0i64, 0i64);
        for round in 0..30_i64 {
            writer.execute_batch("BEGIN").unwrap();
            for i in 0..150 {
                let k = round * 1_000 + i;
                writer
                    .execute("INSERT INTO t VALUES (?1, ?2, zeroblob(700))", (k, k % 97))
                    .unwrap();
                expected = (expected.0 + 1, expected.1 + k % 97);
                // Back to rows of earlier rounds, whose pages spilled.
                if round > 0 && i % 3 == 0 {
                    let old = (round - 1) * 1_000 + i;
                    writer
                        .execute("UPDATE t SET v = v + 1 WHERE k = ?1", [old])
                        .unwrap();
                    expected.1 += 1;
                }
            }
            writer.execute_batch("COMMIT").unwrap();
            assert_eq!(rows(&reader), expected, "round {round}, another connection");
            if round % 3 == 2 {
                let recovered = rows(&crash_copy(dir.path(), round as usize));
                assert_eq!(recovered, expected, "round {round}, recovered");
            }
            // One-frame commits too.
            writer
                .execute("UPDATE t SET v = v + 1 WHERE k = ?1", [round * 1_000])
                .unwrap();
            expected.1 += 1;
            assert_eq!(rows(&reader), expected, "round {round}, one frame");
        }
        let recovered = rows(&crash_copy(dir.path(), 100));
        assert_eq!(recovered, expected, "recovered after a one-frame commit");
        assert!(
            GATHERED.load(Ordering::Relaxed) > gathered,
            "frames were gathered"
        );
        assert!(
            REWRITTEN.load(Ordering::Relaxed) > rewritten,
            "checksums were rewritten"
        );
        let check: String = writer
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        drop((writer, reader));
        assert_eq!(
            rows(&Connection::open(&path).unwrap()),
            expected,
            "reopened"
        );
    }
}
