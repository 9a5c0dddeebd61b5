//! One module per subcommand; each parses nothing and decides nothing that
//! belongs in the core: it loads, delegates and prints.

mod bench;
mod check;
mod demo;
mod explain;
mod generate;
mod score;

use std::process::ExitCode;

use std::io::Write;

use anyhow::Result;

use crate::args::{Args, Command};

/// Runs a parsed command line.
pub fn run(args: Args) -> Result<ExitCode> {
    match args.command {
        Command::Check { models } => check::run(&models),
        Command::Score {
            input,
            format,
            explain,
        } => score::run(&input, format, explain),
        Command::Explain {
            input,
            contact,
            json,
        } => explain::run(&input, &contact, json),
        Command::Generate {
            contacts,
            days,
            seed,
            out,
        } => generate::run(contacts, days, seed, &out),
        Command::Demo { contacts } => demo::run(contacts),
        Command::Schema => {
            emit(&leadscore_core::model::Model::json_schema())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            contacts,
            days,
            out,
        } => bench::run(contacts, days, out.as_deref()),
    }
}

/// Writes text to stdout, returning an error (never panicking) when stdout is
/// closed; `main` treats a closed pipe as a normal end.
pub fn emit(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}
