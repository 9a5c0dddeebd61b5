//! A contact's history and its erasure on SQLite.
//!
//! A contact's ledger entries are found through their positions (`seq`):
//! those of its latest entries in its live row's `history`, older ones in
//! `ledger_runs` (migration V8 says why there is no index on the ledger's
//! contact column). Both hold `seq,seq,…` in increasing order.

use rustc_hash::FxHashMap;

use leadscore_core::time::Timestamp;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::rows::{count, fields, Sql};
use super::SqliteStore;
use crate::engine::{Positions, Tx};
use crate::{id_hash, now, EraseReport, LedgerEntry, Result, StoreError};

impl SqliteStore {
    /// [`Store::history`]: the ledger entries of every id of the contact.
    pub(super) fn ledger_of(&self, id: &str) -> Result<Vec<LedgerEntry>> {
        let tx = self.conn.unchecked_transaction()?;
        let view = self.overlay.view(&tx)?;
        let canonical = Self::canonical(&tx, id)?;
        let mut ids = Sql::new(&tx).members(&canonical)?;
        if !ids.contains(&canonical) {
            ids.push(canonical);
        }
        let mut entries = Vec::new();
        let mut stmt = tx.prepare_cached(
            "SELECT seq, contact, at, recorded_at, model_version, old, new, cause
             FROM ledger WHERE seq = ?1",
        )?;
        for seq in ids
            .iter()
            .map(|id| {
                let kept = view.and_then(|o| o.get(id)).map(|e| e.history.clone());
                ledger_seqs(&tx, id, kept)
            })
            .collect::<Result<Vec<_>>>()?
            .concat()
        {
            let rows = stmt.query_map([seq], |r| {
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
                    contact: contact.into(),
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
        let active = super::active_model(&self.active, &tx)?;
        let model = super::model_of(&active);
        let mut sql = super::writing(&mut self.owner, &self.overlay, &tx, model)?;
        let (canonical, mut ids) = match sql.identity(id)? {
            Some(canonical) => (canonical.clone(), sql.members(&canonical)?),
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
            let mut delete = tx.prepare_cached(
                "DELETE FROM events WHERE seq = ?1 AND own_id = ?2 RETURNING message_id",
            )?;
            for seq in sql.log_positions(member)? {
                let erased: Option<String> = delete
                    .query_row(params![seq, member], |r| r.get(0))
                    .optional()?;
                if let Some(message_id) = erased {
                    sql.erased_event(&message_id, seq)?;
                    report.events += 1;
                }
            }
            sql.forget_log(member)?;
            tx.execute(
                "DELETE FROM links WHERE from_id = ?1 OR to_id = ?1",
                [member],
            )?;
            tx.execute("DELETE FROM identities WHERE id = ?1", [member])?;
            let mut delete = tx.prepare_cached("DELETE FROM ledger WHERE seq = ?1")?;
            let kept = sql.kept(member).map(|e| e.history.clone());
            if let Some(staged) = sql.staged_mut() {
                staged.drop_row(member);
            }
            for seq in ledger_seqs(&tx, member, kept)? {
                report.ledger_entries += delete.execute([seq])? as u64;
            }
            tx.execute("DELETE FROM ledger_runs WHERE contact = ?1", [member])?;
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
        // Positions the deletions took back are appended again.
        if let Some(staged) = sql.staged_mut() {
            staged.check_positions(&tx)?;
        }
        let staged = super::finish_writing(&self.owner, sql, super::Writes::Acked)?;
        super::commit(tx, &mut self.owner, staged)?;
        report.ids = ids;
        Ok(Some(report))
    }
}

/// The longest `history` a live row keeps before it becomes a run: about
/// six positions, so that the rows, rewritten at every message, stay
/// small (the contacts table is the writer's most read structure) while a
/// run is written for every six entries or so instead of an index entry
/// for each.
pub(super) const RUN_BYTES: usize = 48;

/// The same for the server's writer, which keeps rows in memory and writes
/// each about once per 30 s ([`super::deferred`]): about thirty positions,
/// so that a contact's entries become a run about once a minute under a
/// message every 2 s instead of every six messages. Each run is a random
/// insert into `ledger_runs` (keyed by contact): with RUN_BYTES, 40 % of
/// the WAL's frames at 50k events/s over spread contacts
/// (`docs/performance.md`, session 30).
pub(super) const KEPT_RUN_BYTES: usize = 256;

/// Positions of newly appended entries, `(contact, seq)` in increasing
/// `seq`, as `"seq,seq,…"` per contact. The map is made as large as the
/// entries at once: grown by doubling, it allocated and filled a new table
/// seven or eight times in a batch of 500.
pub(super) fn group_positions<'a>(
    entries: impl Iterator<Item = (&'a str, i64)>,
) -> FxHashMap<&'a str, String> {
    let mut groups: FxHashMap<&str, String> =
        FxHashMap::with_capacity_and_hasher(entries.size_hint().0, Default::default());
    for (contact, seq) in entries {
        push_position(groups.entry(contact).or_default(), seq);
    }
    groups
}

/// Appends a position to `seq,seq,…`.
pub(super) fn push_position(text: &mut String, seq: i64) {
    if !text.is_empty() {
        text.push(',');
    }
    text.push_str(itoa::Buffer::new().format(seq));
}

/// Records positions ([`group_positions`]) of contacts whose rows this
/// transaction did not just write with them: added to the contact's live
/// row, or a run of their own when it has none (merged away, or left with
/// no message).
pub(super) fn note_history(conn: &Connection, groups: FxHashMap<&str, String>) -> Result<()> {
    for (contact, seqs) in groups {
        let Some(old) = live_history(conn, contact)? else {
            add_run(conn, contact, &seqs)?;
            continue;
        };
        let history = history_with(conn, contact, old, Some(&seqs), RUN_BYTES)?;
        conn.prepare_cached("UPDATE contacts SET history = ?2 WHERE id = ?1")?
            .execute(params![contact, history])?;
    }
    Ok(())
}

/// The positions a contact's live row is to keep: those it has (`old`),
/// then `positions`; moved to a run instead once longer than `limit`
/// ([`RUN_BYTES`], or [`KEPT_RUN_BYTES`] for the server's writer).
pub(super) fn history_with(
    conn: &Connection,
    contact: &str,
    old: Option<Positions>,
    positions: Option<&str>,
    limit: usize,
) -> Result<Option<Positions>> {
    let Some(new) = positions else {
        return Ok(old);
    };
    let joined: std::borrow::Cow<'_, str> = match &old {
        None => new.into(),
        Some(old) => {
            let mut seqs = String::with_capacity(old.len() + 1 + new.len());
            seqs.push_str(old);
            seqs.push(',');
            seqs.push_str(new);
            seqs.into()
        }
    };
    if joined.len() > limit {
        // Written as a run: the text is not kept.
        add_run(conn, contact, &joined)?;
        return Ok(None);
    }
    Ok(Some(Positions::from(&*joined)))
}

/// A live row's positions: `None` without a row, `Some(None)` with none.
pub(super) fn live_history(conn: &Connection, contact: &str) -> Result<Option<Option<Positions>>> {
    Ok(conn
        .prepare_cached("SELECT history FROM contacts WHERE id = ?1")?
        .query_row([contact], |r| positions_at(r, 0))
        .optional()?)
}

/// The positions in column `i` of a `contacts` row (`history`).
pub(super) fn positions_at(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<Positions>> {
    Ok(r.get_ref(i)?.as_str_or_null()?.map(Positions::from))
}

/// Copies the positions kept in live rows to runs: one contact's, or
/// (`None`) every contact's. Only for rows about to be deleted or replaced
/// wholesale (a merge, an activation): the rows keep them.
pub(super) fn runs_of_rows(conn: &Connection, contact: Option<&str>) -> Result<()> {
    // CAST takes the longest integer prefix of the text: the first seq.
    const RUNS: &str = "INSERT INTO ledger_runs (contact, first_seq, seqs)
         SELECT id, CAST(history AS INTEGER), history FROM contacts WHERE history IS NOT NULL";
    match contact {
        Some(id) => conn
            .prepare_cached(&format!("{RUNS} AND id = ?1"))?
            .execute([id])?,
        None => conn.execute(RUNS, [])?,
    };
    Ok(())
}

pub(super) fn add_run(conn: &Connection, contact: &str, seqs: &str) -> Result<()> {
    let first = parse_seqs(seqs)
        .next()
        .transpose()?
        .ok_or_else(|| StoreError::Corrupt(format!("empty ledger positions of {contact:?}")))?;
    conn.prepare_cached("INSERT INTO ledger_runs (contact, first_seq, seqs) VALUES (?1, ?2, ?3)")?
        .execute(params![contact, first, seqs])?;
    Ok(())
}

/// The positions of every ledger entry of one id (canonical or merged
/// away), in increasing order: those in runs, then `pending` (the live
/// row's positions as kept in memory, [`super::deferred`]) or else those
/// its stored row holds.
pub(super) fn ledger_seqs(
    conn: &Connection,
    id: &str,
    pending: Option<Option<Positions>>,
) -> Result<Vec<i64>> {
    let mut seqs = run_positions(conn, id)?;
    let pending = match pending {
        Some(kept) => kept,
        None => live_history(conn, id)?.flatten(),
    };
    seqs.extend(parse_positions(pending.as_deref().unwrap_or(""))?);
    Ok(seqs)
}

/// The positions the runs of one id hold, in increasing order.
pub(super) fn run_positions(conn: &Connection, id: &str) -> Result<Vec<i64>> {
    let mut seqs = Vec::new();
    let mut runs =
        conn.prepare_cached("SELECT seqs FROM ledger_runs WHERE contact = ?1 ORDER BY first_seq")?;
    let texts = runs.query_map([id], |r| r.get::<_, String>(0))?;
    for text in texts {
        seqs.extend(parse_positions(&text?)?);
    }
    Ok(seqs)
}

/// `seq,seq,…` as numbers (`""`: none).
pub(super) fn parse_positions(text: &str) -> Result<Vec<i64>> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    parse_seqs(text).collect()
}

/// Gives a contact's stored row back the positions of ledger entries
/// (`newer`) that a writer kept in memory and lost ([`super::deferred`]):
/// the row then holds those and its own, less any a run holds; positions
/// of a contact without a row become a run.
pub(super) fn mend_history(conn: &Connection, contact: &str, newer: Vec<i64>) -> Result<()> {
    let stored = live_history(conn, contact)?;
    let mut seqs = parse_positions(stored.clone().flatten().as_deref().unwrap_or(""))?;
    seqs.extend(newer);
    let in_runs: rustc_hash::FxHashSet<i64> = run_positions(conn, contact)?.into_iter().collect();
    seqs.retain(|s| !in_runs.contains(s));
    seqs.sort_unstable();
    seqs.dedup();
    let text = (!seqs.is_empty()).then(|| {
        let mut text = String::new();
        for seq in &seqs {
            push_position(&mut text, *seq);
        }
        text
    });
    if stored.is_none() {
        return match text {
            Some(text) => add_run(conn, contact, &text),
            None => Ok(()),
        };
    }
    let history = history_with(conn, contact, None, text.as_deref(), RUN_BYTES)?;
    conn.prepare_cached("UPDATE contacts SET history = ?2 WHERE id = ?1")?
        .execute(params![contact, history])?;
    Ok(())
}

fn parse_seqs(text: &str) -> impl Iterator<Item = Result<i64>> + '_ {
    text.split(',').map(move |s| {
        s.parse()
            .map_err(|_| StoreError::Corrupt(format!("ledger positions {text:?}")))
    })
}
