//! Outcomes, API keys and background jobs in the SQLite store ([`crate::Admin`]).

use leadscore_core::time::Timestamp;
use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::rows::read_key;
use super::SqliteStore;
use crate::{
    id_hash, now, ApiKey, Job, JobColumns, JobUpdate, Outcome, OutcomesReport, Result, Scope,
    StoreError,
};

/// An outcome from the columns `contact_id, outcome, value, at` from
/// column `first` on.
fn outcome(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Outcome> {
    Ok(Outcome {
        contact_id: r.get(first)?,
        outcome: r.get(first + 1)?,
        value: r.get(first + 2)?,
        at: Timestamp(r.get(first + 3)?),
    })
}

impl crate::Admin for SqliteStore {
    fn add_outcomes(&mut self, outcomes: &[Outcome]) -> Result<OutcomesReport> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut report = OutcomesReport::default();
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO outcomes (contact_id, outcome, value, at, recorded_at)
                 SELECT ?1, ?2, ?3, ?4, ?5 WHERE NOT EXISTS (SELECT 1 FROM outcomes
                   WHERE contact_id = ?1 AND outcome = ?2 AND at = ?4 AND value IS ?3)",
            )?;
            let mut erased = tx.prepare_cached("SELECT 1 FROM tombstones WHERE id_hash = ?1")?;
            let recorded = now().0;
            for o in outcomes {
                if erased.exists([id_hash(&o.contact_id)])? {
                    report.erased += 1;
                } else if insert.execute(params![
                    o.contact_id,
                    o.outcome,
                    o.value,
                    o.at.0,
                    recorded
                ])? == 1
                {
                    report.added += 1;
                } else {
                    report.duplicates += 1;
                }
            }
        }
        tx.commit()?;
        Ok(report)
    }

    fn outcomes_of(&self, ids: &[String]) -> Result<Vec<Outcome>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, contact_id, outcome, value, at FROM outcomes WHERE contact_id = ?1",
        )?;
        let mut found = Vec::new();
        for id in ids {
            let rows = stmt.query_map([id], |r| Ok((r.get::<_, i64>(0)?, outcome(r, 1)?)))?;
            found.extend(rows.collect::<Result<Vec<_>, _>>()?);
        }
        found.sort_by_key(|(seq, _)| *seq);
        Ok(found.into_iter().map(|(_, o)| o).collect())
    }

    fn outcomes(&self) -> Result<Vec<Outcome>> {
        let mut stmt = self
            .conn
            .prepare("SELECT contact_id, outcome, value, at FROM outcomes ORDER BY seq")?;
        let rows = stmt.query_map([], |r| outcome(r, 0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn add_key(&mut self, hash: &str, scope: Scope, label: &str) -> Result<ApiKey> {
        self.conn.execute(
            "INSERT INTO api_keys (hash, scope, label, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![hash, scope.as_str(), label, now().0],
        )?;
        self.key_by_hash(hash)?
            .ok_or_else(|| StoreError::Corrupt("a key just stored is missing".into()))
    }

    fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>> {
        self.conn
            .prepare_cached(
                "SELECT id, scope, label, created_at, revoked_at FROM api_keys WHERE hash = ?1",
            )?
            .query_row([hash], read_key)
            .optional()?
            .transpose()
    }

    fn keys(&self) -> Result<Vec<ApiKey>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, scope, label, created_at, revoked_at FROM api_keys ORDER BY id")?;
        let rows = stmt.query_map([], read_key)?;
        rows.map(|r| r?).collect()
    }

    fn revoke_key(&mut self, id: i64) -> Result<bool> {
        Ok(self.conn.execute(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?2) WHERE id = ?1",
            params![id, now().0],
        )? == 1)
    }

    fn add_job(&mut self, kind: &str, version: Option<u32>) -> Result<Job> {
        let t = now().0;
        self.conn.execute(
            "INSERT INTO jobs (kind, version, state, done, created_at, updated_at) VALUES (?1, ?2, 'running', 0, ?3, ?3)",
            params![kind, version, t],
        )?;
        let id = self.conn.last_insert_rowid();
        self.job(id)?
            .ok_or_else(|| StoreError::Corrupt("a job just stored is missing".into()))
    }

    fn update_job(&mut self, id: i64, update: &JobUpdate) -> Result<()> {
        let JobColumns {
            state,
            done,
            total,
            report,
            error,
        } = update.columns();
        self.conn.execute(
            "UPDATE jobs SET state = ?2, done = coalesce(?3, done), total = coalesce(?4, total), \
             report = coalesce(?5, report), error = coalesce(?6, error), updated_at = ?7 WHERE id = ?1",
            params![id, state, done, total, report, error, now().0],
        )?;
        Ok(())
    }

    fn job(&self, id: i64) -> Result<Option<Job>> {
        self.conn
            .prepare_cached(
                "SELECT id, kind, version, state, done, total, report, error, created_at, updated_at FROM jobs WHERE id = ?1",
            )?
            .query_row([id], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                ))
            })
            .optional()?
            .map(Job::from_row)
            .transpose()
    }
}
