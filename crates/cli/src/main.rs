//! The `leadscore` binary: parse arguments, run the command, report errors.

use std::process::ExitCode;

use clap::Parser;

mod args;
mod cmd;
mod load;
mod output;
mod progress;
mod store;

/// mimalloc: parsing allocates many small maps from several threads, where
/// glibc's allocator spent about half of the parse time (see docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    keep_freed_memory();
    let args = args::Args::parse();
    match cmd::run(args) {
        Ok(code) => code,
        Err(e) if broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// mimalloc returns freed memory to the OS after 10 ms by default; scoring
/// frees the parsed log while building contact logs of the same size, and
/// the kernel then zeroes every page again (a third of the run time on 1M
/// messages). Keep freed memory for reuse instead.
fn keep_freed_memory() {
    /// `mi_option_purge_delay` in mimalloc v3's `mi_option_e` (not exported
    /// as a constant by libmimalloc-sys 0.1.49).
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: sets a plain integer option; valid at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

/// Whether the error is stdout being closed (`leadscore score | head`),
/// however the writer that met it wrapped the `io::Error`.
fn broken_pipe(e: &anyhow::Error) -> bool {
    use std::io::ErrorKind::BrokenPipe;
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == BrokenPipe)
            || cause.downcast_ref::<csv::Error>().is_some_and(
                |c| matches!(c.kind(), csv::ErrorKind::Io(io) if io.kind() == BrokenPipe),
            )
            || cause
                .downcast_ref::<serde_json::Error>()
                .is_some_and(|j| j.io_error_kind() == Some(BrokenPipe))
    })
}
