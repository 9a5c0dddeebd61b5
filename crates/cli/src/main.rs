//! The `leadscore` binary: parse arguments, run the command, report errors.

use std::process::ExitCode;

use clap::Parser;

mod args;
mod cmd;
mod load;
mod memory;
mod output;
mod progress;
mod store;

/// mimalloc: parsing allocates many small maps from several threads, where
/// glibc's allocator spent about half of the parse time (see docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    memory::keep_freed_memory();
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
