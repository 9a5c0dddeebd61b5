//! The `leadscore` binary: parse arguments, run the command, report errors.

use std::process::ExitCode;

use clap::Parser;

mod args;
mod cmd;
mod load;
mod output;
mod progress;

/// mimalloc: parsing allocates many small maps from several threads, where
/// glibc's allocator spent about half of the parse time (see docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
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

/// Whether the error is stdout being closed (`leadscore score | head`).
fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
