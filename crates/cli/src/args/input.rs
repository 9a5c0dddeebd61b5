//! Arguments shared by the commands that read a log: model, events,
//! contacts, as-of time, outcomes, output format.

use std::path::PathBuf;

use clap::ValueEnum;

/// Where outcomes come from and what they mean (`evaluate`, `compare`).
#[derive(Debug, clap::Args)]
pub struct OutcomeArgs {
    /// Outcomes file (CSV or JSON lines). Default: the store's outcomes.
    #[arg(long)]
    pub outcomes: Option<PathBuf>,
    /// Instead of outcomes: an event that is the conversion (a contact converted at its
    /// first one; the others did not, as of the log's last message).
    #[arg(long, conflicts_with = "outcomes")]
    pub outcome_event: Option<String>,
    /// When each contact is scored: fixed:DATE, before:DURATION, after-first-seen:DURATION.
    #[arg(long, default_value = "before:7d")]
    pub as_of_policy: String,
    /// Outcomes that count as converted (comma-separated).
    #[arg(long, default_value = "converted,won", value_delimiter = ',')]
    pub positive: Vec<String>,
}

/// Where the events come from: files (or the store's log) and a contacts
/// CSV, shared by every command that reads a log.
#[derive(Debug, clap::Args)]
pub struct Log {
    /// Segment JSON lines; repeat for several files; `-` reads stdin. Default: the store's log.
    #[arg(long = "events")]
    pub events: Vec<PathBuf>,
    /// Contacts CSV: one row per contact, other columns become traits.
    #[arg(long)]
    pub contacts: Option<PathBuf>,
    /// Column of the contacts CSV holding the contact id.
    #[arg(long, default_value = "id")]
    pub id_column: String,
}

/// Model and events, shared by `score`, `explain`, `evaluate` (and built
/// by `triggers` and `compare`).
#[derive(Debug, clap::Args)]
pub struct Input {
    /// Scoring model (TOML). Default: the store's active model.
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[command(flatten)]
    pub log: Log,
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
