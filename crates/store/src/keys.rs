//! API keys: scopes, new random keys, and the hash that is stored instead.

use leadscore_core::time::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Result, StoreError};

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Send events (a "write key").
    Ingest,
    /// Read scores, contacts and history.
    Read,
    /// Everything, including models and erasure.
    Admin,
}

impl Scope {
    /// `ingest`, `read` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }

    /// Reads [`Scope::as_str`] back.
    pub fn parse(text: &str) -> Option<Scope> {
        match text {
            "ingest" => Some(Scope::Ingest),
            "read" => Some(Scope::Read),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }

    /// Whether a key of this scope may do what `needed` requires (admin may
    /// do everything; ingest keys only send data; read keys only read).
    pub fn allows(self, needed: Scope) -> bool {
        self == needed || self == Scope::Admin
    }
}

/// A stored API key (its hash only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    /// Key id (for listing and revoking).
    pub id: i64,
    /// What it may do.
    pub scope: Scope,
    /// Free text.
    pub label: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// Whether it was revoked.
    pub revoked: bool,
}

/// A new random API key: `ls_` + the scope + 32 random bytes in hex.
pub fn new_key(scope: Scope) -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| StoreError::Database(format!("no randomness: {e}")))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("ls_{}_{hex}", scope.as_str()))
}

/// The stored form of a key: SHA-256, hex (keys are random, so a fast hash
/// is enough; the key itself is never stored).
pub fn key_hash(key: &str) -> String {
    use sha2::Digest;
    use std::fmt::Write as _;
    let digest = sha2::Sha256::digest(key.as_bytes());
    let mut hex = String::with_capacity(2 * digest.len());
    for b in digest {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}
