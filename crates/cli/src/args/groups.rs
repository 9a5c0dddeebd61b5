//! The subcommands of `keys`, `outbox` and `model`.

use std::path::PathBuf;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; it is printed once and only its hash is stored.
    Create {
        /// `ingest` (write key for SDKs), `read` or `admin`.
        #[arg(long)]
        scope: String,
        /// What the key is for.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// List keys (ids, scopes, labels; never the keys).
    List,
    /// Revoke a key by id.
    Revoke {
        /// Key id (see `keys list`).
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// Outbox rows, newest first, with counts by status.
    List {
        /// Only rows of this status: pending, delivered or dead.
        #[arg(long)]
        status: Option<String>,
        /// At most this many rows.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Put dead letters back in the queue.
    Retry {
        /// One dead letter by id.
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        id: Option<i64>,
        /// Every dead letter.
        #[arg(long)]
        all: bool,
    },
    /// Delete dead letters.
    Purge {
        /// One dead letter by id.
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        id: Option<i64>,
        /// Every dead letter.
        #[arg(long)]
        all: bool,
    },
    /// Fire due triggers and deliver everything ready, once.
    Deliver,
    /// Recorded trigger firings, oldest first.
    Firings {
        /// Only this trigger.
        #[arg(long)]
        trigger: Option<String>,
        /// Only this contact (any of its ids).
        #[arg(long)]
        contact: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Validate a model and store it as a new immutable version.
    Add {
        /// Model file (TOML).
        file: PathBuf,
        /// Also activate it (rescoring every contact).
        #[arg(long)]
        activate: bool,
    },
    /// List stored versions.
    List,
    /// Print a version's source.
    Show {
        /// Version number.
        #[arg(value_name = "VERSION")]
        number: u32,
    },
    /// Rule-level differences between two versions.
    Diff {
        /// Old version.
        old: u32,
        /// New version.
        new: u32,
    },
    /// Score every contact under a candidate model without activating it; print the impact.
    DryRun {
        /// Candidate model file (TOML).
        file: PathBuf,
        /// Compare both models' scores as of this time instead of now
        /// (RFC 3339 or a date).
        #[arg(long)]
        as_of: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Rescore every contact under a version and switch to it atomically (resumes if interrupted).
    Activate {
        /// Version number.
        #[arg(value_name = "VERSION")]
        number: u32,
    },
    /// Re-activate the previously active version.
    Rollback,
    /// Attach a stored version as the challenger of the active model (scored in shadow by
    /// `GET /api/v1/models/compare` on the store's outcomes), or detach it.
    Challenger {
        /// Version number.
        #[arg(value_name = "VERSION", required_unless_present = "detach")]
        number: Option<u32>,
        /// Detach the challenger.
        #[arg(long, conflicts_with = "number")]
        detach: bool,
    },
}
