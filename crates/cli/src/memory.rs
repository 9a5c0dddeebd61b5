//! How the process holds its heap: freed memory kept for reuse, and memory
//! touched ahead of need (`leadscore serve --pretouch-mib`).

use std::time::{Duration, Instant};

/// mimalloc returns freed memory to the OS after 10 ms by default; scoring
/// frees the parsed log while building contact logs of the same size, and
/// the kernel then zeroes every page again (a third of the run time on 1M
/// messages). Keep freed memory for reuse instead.
pub fn keep_freed_memory() {
    /// `mi_option_purge_delay` in mimalloc v3's `mi_option_e` (not exported
    /// as a constant by libmimalloc-sys 0.1.49).
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: sets a plain integer option; valid at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

/// Size of the blocks [`pretouch`] takes: small enough that the allocator
/// carves them from its arenas like any other page, large enough to be few.
const BLOCK: usize = 4 << 20;

/// Takes `mib` MiB from the allocator, writes to every page of it, and gives
/// it back; returns how long that took. With freed memory kept
/// ([`keep_freed_memory`]), later allocations up to that size reuse pages the
/// kernel has already supplied, instead of faulting in fresh ones while a
/// request waits: a fresh transparent huge page cost 7–19 ms on the
/// benchmark host, whose hypervisor takes back the memory a guest frees
/// (`docs/performance.md`, session 38).
pub fn pretouch(mib: u64) -> Duration {
    let start = Instant::now();
    // Whole blocks, rounded up; `serve` refuses more than the machine has.
    let blocks =
        usize::try_from(mib.saturating_mul(1 << 20).div_ceil(BLOCK as u64)).unwrap_or(usize::MAX);
    let mut held = Vec::new();
    for _ in 0..blocks {
        // A non-zero fill: the allocator cannot skip writing memory it
        // knows to be zero, so each page is faulted in here.
        held.push(std::hint::black_box(vec![1u8; BLOCK]));
    }
    drop(held);
    start.elapsed()
}

/// The machine's memory in MiB (`MemTotal` in `/proc/meminfo`), where the
/// system says.
pub fn total_mib() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// This thread's minor page faults so far (`/proc/thread-self/stat`,
    /// field 10).
    fn minor_faults() -> u64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // The command name may hold spaces; the fields after it do not.
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        after_name.split(' ').nth(7).unwrap().parse().unwrap()
    }

    /// Touches `mib` MiB freshly allocated, a MiB at a time (one block that
    /// large would need as much contiguous free memory, which blocks freed
    /// between other threads' pages do not offer), and returns the faults
    /// it took.
    fn faults_to_fill(mib: usize) -> u64 {
        let before = minor_faults();
        let filled: Vec<Vec<u8>> = (0..mib)
            .map(|_| std::hint::black_box(vec![2u8; 1 << 20]))
            .collect();
        let faults = minor_faults() - before;
        drop(filled);
        faults
    }

    #[test]
    fn total_memory_is_read_from_meminfo() {
        assert!(
            total_mib().is_some_and(|mib| mib >= 64),
            "{:?}",
            total_mib()
        );
    }

    #[test]
    fn pretouched_memory_is_reused_without_faults() {
        keep_freed_memory();
        // Twice what is filled: the binary's other tests, on threads of
        // their own, may take some of it meanwhile (with 64 MiB, one CI run
        // took 9 faults).
        pretouch(96);
        // Without the pre-touch, 48 MiB never used before takes at least 24
        // faults (transparent huge pages), up to 12,288 (4 KiB pages).
        let faults = faults_to_fill(48);
        assert!(faults < 16, "{faults} faults filling pre-touched memory");
    }
}
