//! A contact's history and its erasure on PostgreSQL.

use leadscore_core::time::Timestamp;

use super::rows::fields;
use super::PgStore;
use crate::engine::Tx;
use crate::{id_hash, now, EraseReport, LedgerEntry, Result};

impl PgStore {
    /// [`Store::history`]: the ledger entries of every id of the contact.
    pub(super) fn ledger_of(&self, id: &str) -> Result<Vec<LedgerEntry>> {
        self.read(|pg| {
            let canonical = pg.canonical(id)?;
            let mut ids = pg.members(&canonical)?;
            if !ids.contains(&canonical) {
                ids.push(canonical);
            }
            let rows = pg.query(
                "SELECT seq, contact, at, recorded_at, model_version, old, new, cause
                 FROM ledger WHERE contact = ANY($1) ORDER BY seq",
                &[&ids],
            )?;
            rows.into_iter()
                .map(|r| {
                    Ok(LedgerEntry {
                        seq: r.get(0),
                        contact: r.get::<_, &str>(1).into(),
                        at: r.get::<_, Option<i64>>(2).map(Timestamp),
                        recorded_at: Timestamp(r.get(3)),
                        model_version: r.get::<_, i32>(4) as u32,
                        old: r
                            .get::<_, Option<String>>(5)
                            .map(|t| fields(&t))
                            .transpose()?,
                        new: r
                            .get::<_, Option<String>>(6)
                            .map(|t| fields(&t))
                            .transpose()?,
                        cause: r.get(7),
                    })
                })
                .collect()
        })
    }

    /// [`Store::erase`]: deletes the contact's events, links, rows, ledger,
    /// firings and memberships, and tombstones its ids.
    pub(super) fn erase_contact(&mut self, id: &str) -> Result<Option<EraseReport>> {
        self.write(|pg| {
            let (canonical, mut ids) = match pg.identity(id)? {
                Some(canonical) => (canonical.clone(), pg.members(&canonical)?),
                // An id known only from outcomes recorded for it.
                None => {
                    let outcomes =
                        pg.count("SELECT count(*) FROM outcomes WHERE contact_id = $1", &[&id])?;
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
                contact: canonical,
                ..EraseReport::default()
            };
            let erased_at = now().0;
            for member in &ids {
                report.events += pg.execute("DELETE FROM events WHERE own_id = $1", &[member])?;
                pg.execute(
                    "DELETE FROM links WHERE from_id = $1 OR to_id = $1",
                    &[member],
                )?;
                pg.execute("DELETE FROM identities WHERE id = $1", &[member])?;
                report.ledger_entries +=
                    pg.execute("DELETE FROM ledger WHERE contact = $1", &[member])?;
                pg.execute("DELETE FROM contacts WHERE id = $1", &[member])?;
                pg.execute("DELETE FROM contacts_next WHERE id = $1", &[member])?;
                // Firings carry score snapshots: they go too, with what they queued.
                pg.execute(
                    "DELETE FROM outbox WHERE firing IN (SELECT seq FROM firings WHERE contact = $1)",
                    &[member],
                )?;
                pg.execute("DELETE FROM firings WHERE contact = $1", &[member])?;
                pg.execute("DELETE FROM campaign_members WHERE contact = $1", &[member])?;
                report.outcomes +=
                    pg.execute("DELETE FROM outcomes WHERE contact_id = $1", &[member])?;
                pg.execute(
                    "INSERT INTO tombstones (id_hash, erased_at) VALUES ($1, $2)
                     ON CONFLICT (id_hash) DO NOTHING",
                    &[&id_hash(member), &erased_at],
                )?;
            }
            report.ids = ids;
            Ok(Some(report))
        })
    }
}
