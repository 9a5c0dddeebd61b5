//! Software prefetch, for the writer's lookups of a batch's contacts.
//!
//! With a batch's contacts spread over a large working set, each lookup
//! of a contact's entries (a hash table's slot, then the entry) is a cache
//! miss or two, and the writer, looking them up one message at a time
//! between other work, waits for each in turn. A pass over the batch
//! first, looking every contact up and asking for its entry's memory
//! without waiting ([`prefetch`]), lets those misses overlap: the
//! processor keeps several in flight at once. A second level follows one
//! message ahead: the buffers a cached state owns, whose addresses its
//! entry holds ([`prefetch_bytes`], `LiveCache::prefetch_state`).
//!
//! A prefetch changes nothing a test can see; its effect is on time, in
//! `ingest_replay`'s figures (`docs/performance.md`, session 39).

/// Asks the processor to bring `value`'s bytes into its caches, without
/// waiting for them. Nothing on targets without a stable prefetch.
#[inline]
pub(crate) fn prefetch<T: ?Sized>(value: &T) {
    lines((value as *const T).cast(), std::mem::size_of_val(value));
}

/// [`prefetch`] for `bytes` bytes from `start` (a buffer's, given by its
/// owner), at most [`MOST_LINES`] cache lines of it.
#[inline]
pub(crate) fn prefetch_bytes(start: *const u8, bytes: usize) {
    lines(start, bytes.min(MOST_LINES * LINE));
}

/// Lines of one buffer prefetched at most ([`prefetch_bytes`]): a state's
/// buffers are a few lines each (its engagement rules' states, 72 bytes a
/// rule); a long one is read in order, which the processor's own
/// prefetcher follows.
pub(crate) const MOST_LINES: usize = 16;

/// A cache line's bytes.
const LINE: usize = 64;

/// Prefetches the lines of `bytes` bytes from `start`.
#[inline]
fn lines(start: *const u8, bytes: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        for offset in (0..bytes).step_by(LINE) {
            // SAFETY: a prefetch reads and changes nothing and never
            // faults, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.cast::<i8>().wrapping_add(offset)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (start, bytes);
}
