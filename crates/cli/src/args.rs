//! Command-line arguments (clap derive). Every subcommand has examples.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// leadscore: exact, explainable lead scoring for marketing automation.
#[derive(Debug, Parser)]
#[command(name = "leadscore", version, about, propagate_version = true)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate scoring models; print a summary per model or errors with places.
    #[command(
        after_help = "Examples:\n  leadscore check examples/b2b.toml\n  leadscore check models/*.toml"
    )]
    Check {
        /// Model files (TOML).
        #[arg(required = true)]
        models: Vec<PathBuf>,
    },
    /// Score every contact of an event log as of a time (CSV or JSON lines on stdout).
    #[command(
        after_help = "Examples:\n  leadscore score --model examples/b2b.toml --events events.jsonl\n  leadscore score --model m.toml --events events.jsonl --contacts crm.csv --as-of 2025-06-01T00:00:00Z\n  cat events.jsonl | leadscore score --model m.toml --events - --format jsonl --explain"
    )]
    Score {
        #[command(flatten)]
        input: Input,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Csv)]
        format: Format,
        /// Add each contributing rule (id, kind, points, awards, first/last award).
        #[arg(long)]
        explain: bool,
    },
    /// Show how one contact's score is made: every rule, the events behind it, decay, exclusions.
    #[command(
        after_help = "Examples:\n  leadscore explain --model examples/b2b.toml --events events.jsonl --contact u00000042\n  leadscore explain --model m.toml --events e.jsonl --contact alice@example.com --as-of 2025-03-01"
    )]
    Explain {
        #[command(flatten)]
        input: Input,
        /// Contact id (any of its ids: user id or anonymous id).
        #[arg(long)]
        contact: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write a synthetic but realistic event stream (deterministic per seed).
    #[command(
        after_help = "Examples:\n  leadscore generate --contacts 10000 --days 180 --out data/\n  leadscore generate --contacts 100000 --days 365 --seed 7 --out /tmp/big"
    )]
    Generate {
        /// Number of contacts.
        #[arg(long, default_value_t = 1000)]
        contacts: u64,
        /// Length of the period in days (from 2025-01-01).
        #[arg(long, default_value_t = 180)]
        days: u32,
        /// Random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Directory to write events.jsonl and contacts.csv into.
        #[arg(long)]
        out: PathBuf,
    },
    /// Generate a small data set, score it with the e-commerce example, show the top contacts.
    #[command(after_help = "Example:\n  leadscore demo")]
    Demo {
        /// Number of contacts to generate.
        #[arg(long, default_value_t = 2000)]
        contacts: u64,
    },
    /// Print the JSON Schema of model files.
    #[command(after_help = "Example:\n  leadscore schema > docs/model.schema.json")]
    Schema,
    /// Measure fold and end-to-end scoring throughput on generated data.
    #[command(
        after_help = "Examples:\n  leadscore bench\n  leadscore bench --contacts 20000 --days 365 --out docs/bench.json"
    )]
    Bench {
        /// Contacts to generate.
        #[arg(long, default_value_t = 10_000)]
        contacts: u64,
        /// Days of activity.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Also write the figures as JSON to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Model and events, shared by `score` and `explain`.
#[derive(Debug, clap::Args)]
pub struct Input {
    /// Scoring model (TOML).
    #[arg(long)]
    pub model: PathBuf,
    /// Segment JSON lines; repeat for several files; `-` reads stdin.
    #[arg(long = "events", required = true)]
    pub events: Vec<PathBuf>,
    /// Contacts CSV: one row per contact, other columns become traits.
    #[arg(long)]
    pub contacts: Option<PathBuf>,
    /// Column of the contacts CSV holding the contact id.
    #[arg(long, default_value = "id")]
    pub id_column: String,
    /// Score as of this time (RFC 3339, or a date = midnight UTC). Default: now.
    #[arg(long)]
    pub as_of: Option<String>,
    /// Skip invalid messages (reporting how many and why) instead of failing.
    #[arg(long)]
    pub skip_invalid: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
}
