//! Opening the store named by `--db`.

use std::path::Path;

use anyhow::{bail, Context, Result};
use leadscore_store::SqliteStore;

/// Opens the store, creating it if it does not exist yet.
pub fn open(db: &Path) -> Result<SqliteStore> {
    let text = db.to_string_lossy();
    if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        bail!("not supported yet: PostgreSQL stores ({text}); give --db a SQLite file path");
    }
    SqliteStore::open(db).with_context(|| format!("cannot open the store {}", db.display()))
}

/// Opens a store that must already exist (reading commands never create one).
pub fn open_existing(db: &Path) -> Result<SqliteStore> {
    if !db.exists() && !db.to_string_lossy().contains("://") {
        bail!(
            "no store at {}: import events first (`leadscore import FILE`), pass --db PATH, or give --model and --events",
            db.display()
        );
    }
    open(db)
}
