//! Opening the store named by `--db`.

use std::path::Path;

use anyhow::{bail, Context, Result};
use leadscore_store::{is_postgres, SqliteStore, Store};

/// Opens the store (a SQLite file, created if it does not exist yet, or a
/// PostgreSQL URL), migrating its schema.
pub fn open(db: &Path) -> Result<Box<dyn Store>> {
    leadscore_store::open(db).with_context(|| cannot_open(db))
}

/// Opens a SQLite store (a file, created if it does not exist yet),
/// migrating its schema, for settings only SQLite has.
pub fn open_sqlite(db: &Path) -> Result<SqliteStore> {
    SqliteStore::open(db).with_context(|| cannot_open(db))
}

fn cannot_open(db: &Path) -> String {
    format!("cannot open the store {}", redact(&db.to_string_lossy()))
}

/// A URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &credentials[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Opens a store that must already exist (reading commands never create one).
pub fn open_existing(db: &Path) -> Result<Box<dyn Store>> {
    if !db.exists() && !is_postgres(db) {
        bail!(
            "no store at {}: import events first (`leadscore import FILE`), pass --db PATH, or give --model and --events",
            db.display()
        );
    }
    open(db)
}
