//! Model versions on SQLite: adding, listing, the previous activation and
//! the challenger.

use std::sync::Arc;

use leadscore_core::model::Model;
use leadscore_core::time::Timestamp;
use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::rows::model_in;
use super::SqliteStore;
use crate::{now, validate, ModelVersion, Result, StoreError};

impl SqliteStore {
    /// [`crate::Store::add_model`]: validates and stores a model source (once per content).
    pub(super) fn insert_model(&mut self, name: &str, source: &str) -> Result<ModelVersion> {
        let hash = validate(name, source)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO models (name, hash, source, added_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (hash) DO NOTHING",
            params![name, hash, source, now().0],
        )?;
        let version: u32 =
            tx.query_row("SELECT version FROM models WHERE hash = ?1", [&hash], |r| {
                r.get(0)
            })?;
        tx.commit()?;
        self.model_list()?
            .into_iter()
            .find(|m| m.version == version)
            .ok_or(StoreError::NoSuchVersion(version))
    }

    /// [`crate::Store::models`]: every version, the active one marked.
    pub(super) fn model_list(&self) -> Result<Vec<ModelVersion>> {
        let active = Self::active_version(&self.conn)?;
        let mut stmt = self
            .conn
            .prepare("SELECT version, name, hash, added_at FROM models ORDER BY version")?;
        let rows = stmt.query_map([], |r| {
            let version: u32 = r.get(0)?;
            Ok(ModelVersion {
                version,
                name: r.get(1)?,
                hash: r.get(2)?,
                added_at: Timestamp(r.get(3)?),
                active: Some(version) == active,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// [`crate::Store::model_source`].
    pub(super) fn source_of(&self, version: u32) -> Result<String> {
        self.conn
            .query_row(
                "SELECT source FROM models WHERE version = ?1",
                [version],
                |r| r.get(0),
            )
            .optional()?
            .ok_or(StoreError::NoSuchVersion(version))
    }

    /// [`crate::Store::previous_version`]: the version active before the current one.
    pub(super) fn previous_activation(&self) -> Result<Option<u32>> {
        let active = Self::active_version(&self.conn)?;
        Ok(self
            .conn
            .query_row(
                "SELECT version FROM activations WHERE version IS NOT ?1 ORDER BY seq DESC LIMIT 1",
                [active],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// [`crate::Store::set_challenger`]: attaches (or detaches) the challenger.
    pub(super) fn attach_challenger(&mut self, version: Option<u32>) -> Result<()> {
        if let Some(v) = version {
            self.source_of(v)?;
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute("DELETE FROM challenger", [])?;
        if let Some(v) = version {
            tx.execute(
                "INSERT INTO challenger (version, attached_at) VALUES (?1, ?2)",
                params![v, now().0],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// [`crate::Store::challenger`]: the attached challenger, compiled.
    pub(super) fn challenger_model(&self) -> Result<Option<(u32, Arc<Model>)>> {
        let found: Option<u32> = self
            .conn
            .query_row("SELECT version FROM challenger", [], |r| r.get(0))
            .optional()?;
        found
            .map(|v| Ok((v, model_in(&self.shadow, &self.conn, v)?)))
            .transpose()
    }
}
