//! Software prefetch, for the writer's lookups of a batch's contacts.
//!
//! With a batch's contacts spread over a large working set, each lookup
//! of a contact's entries (a hash table's slot, then the entry) is a cache
//! miss or two, and the writer, looking them up one message at a time
//! between other work, waits for each in turn. A pass over the batch
//! first, looking every contact up and asking for its entry's memory
//! without waiting ([`prefetch`]), lets those misses overlap: the
//! processor keeps several in flight at once.
//!
//! A prefetch changes nothing a test can see; its effect is on time, in
//! `ingest_replay`'s figures (`docs/performance.md`, session 39).

/// Asks the processor to bring `value`'s bytes into its caches, without
/// waiting for them. Nothing on targets without a stable prefetch.
#[inline]
pub(crate) fn prefetch<T: ?Sized>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        const LINE: usize = 64;
        let start = (value as *const T).cast::<i8>();
        for offset in (0..std::mem::size_of_val(value)).step_by(LINE) {
            // SAFETY: a prefetch reads and changes nothing and never
            // faults; the address is inside `value` anyway.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(offset)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}
