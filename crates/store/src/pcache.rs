//! SQLite's own page cache, with one key moved out of its way.
//!
//! When a B-tree page splits, SQLite sorts the new pages' numbers by
//! swapping two of them through a temporary number, the lock-byte page
//! (the page holding byte 2^30 of the file, 262,145 with 4 KiB pages).
//! The default page cache (pcache1) remembers the largest key it has
//! held and, at the end of every transaction, drops the pages numbered
//! beyond the database: while the database is smaller than 1 GiB, that
//! largest key is the lock-byte page, so every commit that split a page
//! walks the whole cache's hash table and every page in it. With the
//! server writer's 64 MiB cache (16k pages) this was 10.6 % of the
//! writer's time at 30k events/s (`perf`, docs/performance.md).
//!
//! [`install`] registers, before SQLite starts, a page cache that is the
//! default one with the lock-byte page's number stored under key 0, a key
//! SQLite never uses (pages are numbered from 1, and the lock-byte page
//! is never read or written: it only ever holds a page for the three
//! steps of the swap). Everything else is passed through unchanged.

use rusqlite::ffi;
use std::ffi::{c_int, c_uint};
use std::sync::OnceLock;

/// `PENDING_BYTE` in sqlite3.c: the lock-byte page holds this offset.
const PENDING_BYTE: u32 = 0x4000_0000;

/// The page cache SQLite had before [`install`] (its default, pcache1).
struct Inner(ffi::sqlite3_pcache_methods2);

// SAFETY: the methods table is immutable once read; pcache1 is itself
// safe to call from any thread (it takes its own mutexes).
unsafe impl Send for Inner {}
unsafe impl Sync for Inner {}

static INNER: OnceLock<Inner> = OnceLock::new();

/// Whether [`install`] took effect (false when SQLite was already started
/// in this process, or refused the configuration).
static INSTALLED: OnceLock<bool> = OnceLock::new();

/// How many times a page was moved to the lock-byte page's number, in
/// tests: shows the swap went through this cache.
#[cfg(test)]
static SWAPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[cfg(test)]
pub(crate) fn swaps() -> u64 {
    SWAPS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Installs the page cache once per process, before the first connection.
/// Returns whether it is in use. When SQLite was already initialised (a
/// connection opened by other code first), SQLite keeps its default cache:
/// slower commits on large caches, the same results.
pub(crate) fn install() -> bool {
    *INSTALLED.get_or_init(|| {
        let mut default = std::mem::MaybeUninit::<ffi::sqlite3_pcache_methods2>::zeroed();
        // SAFETY: both calls are made once, under the OnceLock, and fail
        // with SQLITE_MISUSE (changing nothing) once SQLite is initialised.
        unsafe {
            if ffi::sqlite3_config(ffi::SQLITE_CONFIG_GETPCACHE2, default.as_mut_ptr())
                != ffi::SQLITE_OK
            {
                return false;
            }
            let inner = INNER.get_or_init(|| Inner(default.assume_init()));
            let ours = methods(&inner.0);
            // SQLite copies the table.
            ffi::sqlite3_config(ffi::SQLITE_CONFIG_PCACHE2, &ours) == ffi::SQLITE_OK
        }
    })
}

/// Our table: the same `pArg` and version as the inner one.
fn methods(inner: &ffi::sqlite3_pcache_methods2) -> ffi::sqlite3_pcache_methods2 {
    ffi::sqlite3_pcache_methods2 {
        iVersion: inner.iVersion,
        pArg: inner.pArg,
        xInit: inner.xInit,
        xShutdown: inner.xShutdown,
        xCreate: Some(x_create),
        xCachesize: Some(x_cachesize),
        xPagecount: Some(x_pagecount),
        xFetch: Some(x_fetch),
        xUnpin: Some(x_unpin),
        xRekey: Some(x_rekey),
        xTruncate: Some(x_truncate),
        xDestroy: Some(x_destroy),
        xShrink: Some(x_shrink),
    }
}

/// One cache: the inner cache and the key it stores under 0.
struct Cache {
    inner: *mut ffi::sqlite3_pcache,
    lock_page: c_uint,
}

impl Cache {
    fn key(&self, key: c_uint) -> c_uint {
        if key == self.lock_page {
            0
        } else {
            key
        }
    }
}

fn inner() -> &'static ffi::sqlite3_pcache_methods2 {
    // Our methods are only registered after INNER is set.
    &INNER.get().expect("page cache installed").0
}

/// # Safety
/// `p` is a cache made by [`x_create`].
unsafe fn cache<'a>(p: *mut ffi::sqlite3_pcache) -> &'a Cache {
    unsafe { &*(p as *const Cache) }
}

macro_rules! call {
    ($method:ident ( $($arg:expr),* )) => {
        // SQLite's default cache fills in every method.
        (inner().$method.expect(concat!("pcache1 has ", stringify!($method))))($($arg),*)
    };
}

unsafe extern "C" fn x_create(
    size: c_int,
    extra: c_int,
    purgeable: c_int,
) -> *mut ffi::sqlite3_pcache {
    let inner = unsafe { call!(xCreate(size, extra, purgeable)) };
    if inner.is_null() {
        return inner;
    }
    let lock_page = PENDING_BYTE / size.max(1) as u32 + 1;
    Box::into_raw(Box::new(Cache { inner, lock_page })) as *mut ffi::sqlite3_pcache
}

unsafe extern "C" fn x_cachesize(p: *mut ffi::sqlite3_pcache, pages: c_int) {
    unsafe { call!(xCachesize(cache(p).inner, pages)) }
}

unsafe extern "C" fn x_pagecount(p: *mut ffi::sqlite3_pcache) -> c_int {
    unsafe { call!(xPagecount(cache(p).inner)) }
}

unsafe extern "C" fn x_fetch(
    p: *mut ffi::sqlite3_pcache,
    key: c_uint,
    create: c_int,
) -> *mut ffi::sqlite3_pcache_page {
    let c = unsafe { cache(p) };
    unsafe { call!(xFetch(c.inner, c.key(key), create)) }
}

unsafe extern "C" fn x_unpin(
    p: *mut ffi::sqlite3_pcache,
    page: *mut ffi::sqlite3_pcache_page,
    discard: c_int,
) {
    unsafe { call!(xUnpin(cache(p).inner, page, discard)) }
}

unsafe extern "C" fn x_rekey(
    p: *mut ffi::sqlite3_pcache,
    page: *mut ffi::sqlite3_pcache_page,
    old: c_uint,
    new: c_uint,
) {
    let c = unsafe { cache(p) };
    #[cfg(test)]
    if new == c.lock_page {
        SWAPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    unsafe { call!(xRekey(c.inner, page, c.key(old), c.key(new))) }
}

unsafe extern "C" fn x_truncate(p: *mut ffi::sqlite3_pcache, limit: c_uint) {
    unsafe { call!(xTruncate(cache(p).inner, limit)) }
}

unsafe extern "C" fn x_destroy(p: *mut ffi::sqlite3_pcache) {
    // SAFETY: made by x_create with Box::into_raw, destroyed once.
    let c = unsafe { Box::from_raw(p as *mut Cache) };
    unsafe { call!(xDestroy(c.inner)) }
}

unsafe extern "C" fn x_shrink(p: *mut ffi::sqlite3_pcache) {
    unsafe { call!(xShrink(cache(p).inner)) }
}
