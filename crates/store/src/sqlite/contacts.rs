//! A contact's history and its erasure on SQLite.

use leadscore_core::time::Timestamp;
use rusqlite::{params, TransactionBehavior};

use super::rows::{count, fields, Sql};
use super::SqliteStore;
use crate::engine::Tx;
use crate::{id_hash, now, EraseReport, LedgerEntry, Result};

impl SqliteStore {
    /// [`Store::history`]: the ledger entries of every id of the contact.
    pub(super) fn ledger_of(&self, id: &str) -> Result<Vec<LedgerEntry>> {
        let tx = self.conn.unchecked_transaction()?;
        let canonical = Self::canonical(&tx, id)?;
        let mut ids = Sql(&tx).members(&canonical)?;
        if !ids.contains(&canonical) {
            ids.push(canonical);
        }
        let mut entries = Vec::new();
        let mut stmt = tx.prepare_cached(
            "SELECT seq, contact, at, recorded_at, model_version, old, new, cause
             FROM ledger WHERE contact = ?1",
        )?;
        for id in &ids {
            let rows = stmt.query_map([id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, u32>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, String>(7)?,
                ))
            })?;
            for row in rows {
                let (seq, contact, at, recorded_at, model_version, old, new, cause) = row?;
                entries.push(LedgerEntry {
                    seq,
                    contact,
                    at: at.map(Timestamp),
                    recorded_at: Timestamp(recorded_at),
                    model_version,
                    old: old.map(|t| fields(&t)).transpose()?,
                    new: new.map(|t| fields(&t)).transpose()?,
                    cause,
                });
            }
        }
        entries.sort_by_key(|e| e.seq);
        Ok(entries)
    }

    /// [`Store::erase`]: deletes the contact's events, links, rows, ledger,
    /// firings and memberships, and tombstones its ids.
    pub(super) fn erase_contact(&mut self, id: &str) -> Result<Option<EraseReport>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (canonical, mut ids) = match Sql(&tx).identity(id)? {
            Some(canonical) => (canonical.clone(), Sql(&tx).members(&canonical)?),
            // An id known only from outcomes recorded for it.
            None => {
                let outcomes = count(
                    &tx,
                    "SELECT count(*) FROM outcomes WHERE contact_id = ?1",
                    [id],
                )?;
                if outcomes == 0 {
                    return Ok(None);
                }
                (id.to_string(), Vec::new())
            }
        };
        if !ids.contains(&canonical) {
            ids.push(canonical.clone());
        }
        ids.sort();
        let mut report = EraseReport {
            contact: canonical.clone(),
            ..EraseReport::default()
        };
        let erased_at = now().0;
        for member in &ids {
            report.events += tx.execute("DELETE FROM events WHERE own_id = ?1", [member])? as u64;
            tx.execute(
                "DELETE FROM links WHERE from_id = ?1 OR to_id = ?1",
                [member],
            )?;
            tx.execute("DELETE FROM identities WHERE id = ?1", [member])?;
            report.ledger_entries +=
                tx.execute("DELETE FROM ledger WHERE contact = ?1", [member])? as u64;
            tx.execute("DELETE FROM contacts WHERE id = ?1", [member])?;
            tx.execute("DELETE FROM contacts_next WHERE id = ?1", [member])?;
            // Firings carry score snapshots: they go too, with what they queued.
            tx.execute(
                "DELETE FROM outbox WHERE firing IN (SELECT seq FROM firings WHERE contact = ?1)",
                [member],
            )?;
            tx.execute("DELETE FROM firings WHERE contact = ?1", [member])?;
            tx.execute("DELETE FROM campaign_members WHERE contact = ?1", [member])?;
            report.outcomes +=
                tx.execute("DELETE FROM outcomes WHERE contact_id = ?1", [member])? as u64;
            tx.execute(
                "INSERT INTO tombstones (id_hash, erased_at) VALUES (?1, ?2)
                 ON CONFLICT (id_hash) DO NOTHING",
                params![id_hash(member), erased_at],
            )?;
        }
        tx.commit()?;
        report.ids = ids;
        Ok(Some(report))
    }
}
