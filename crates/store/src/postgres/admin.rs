//! Outcomes, API keys and background jobs in the PostgreSQL store ([`crate::Admin`]).

use leadscore_core::time::Timestamp;

use super::rows::read_key;
use super::PgStore;
use crate::{
    id_hash, now, ApiKey, Job, JobColumns, JobUpdate, Outcome, OutcomesReport, Result, Scope,
    StoreError,
};

/// An outcome from the columns `contact_id, outcome, value, at`.
fn outcome(r: &postgres::Row) -> Outcome {
    Outcome {
        contact_id: r.get(0),
        outcome: r.get(1),
        value: r.get(2),
        at: Timestamp(r.get(3)),
    }
}

impl crate::Admin for PgStore {
    fn add_outcomes(&mut self, outcomes: &[Outcome]) -> Result<OutcomesReport> {
        self.write(|pg| {
            let recorded = now().0;
            let mut report = OutcomesReport::default();
            for o in outcomes {
                let hash = id_hash(&o.contact_id);
                if pg.count(
                    "SELECT count(*) FROM tombstones WHERE id_hash = $1",
                    &[&hash],
                )? > 0
                {
                    report.erased += 1;
                    continue;
                }
                let added = pg.execute(
                    "INSERT INTO outcomes (contact_id, outcome, value, at, recorded_at)
                     SELECT $1::text, $2::text, $3::float8, $4::int8, $5::int8
                     WHERE NOT EXISTS (SELECT 1 FROM outcomes WHERE contact_id = $1
                       AND outcome = $2 AND at = $4 AND value IS NOT DISTINCT FROM $3)",
                    &[&o.contact_id, &o.outcome, &o.value, &o.at.0, &recorded],
                )?;
                if added == 1 {
                    report.added += 1;
                } else {
                    report.duplicates += 1;
                }
            }
            Ok(report)
        })
    }

    fn outcomes_of(&self, ids: &[String]) -> Result<Vec<Outcome>> {
        self.read(|pg| {
            Ok(pg
                .query(
                    "SELECT contact_id, outcome, value, at FROM outcomes
                     WHERE contact_id = ANY($1) ORDER BY seq",
                    &[&ids],
                )?
                .into_iter()
                .map(|r| outcome(&r))
                .collect())
        })
    }

    fn outcomes(&self) -> Result<Vec<Outcome>> {
        self.read(|pg| {
            Ok(pg
                .query(
                    "SELECT contact_id, outcome, value, at FROM outcomes ORDER BY seq",
                    &[],
                )?
                .into_iter()
                .map(|r| outcome(&r))
                .collect())
        })
    }

    fn add_key(&mut self, hash: &str, scope: Scope, label: &str) -> Result<ApiKey> {
        self.write(|pg| {
            pg.execute(
                "INSERT INTO api_keys (hash, scope, label, created_at) VALUES ($1, $2, $3, $4)",
                &[&hash, &scope.as_str(), &label, &now().0],
            )?;
            Ok(())
        })?;
        self.key_by_hash(hash)?
            .ok_or_else(|| StoreError::Corrupt("a key just stored is missing".into()))
    }

    fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>> {
        let row = self.client.borrow_mut().query_opt(
            "SELECT id::bigint, scope, label, created_at, revoked_at FROM api_keys WHERE hash = $1",
            &[&hash],
        )?;
        row.map(|r| read_key(&r)).transpose()
    }

    fn keys(&self) -> Result<Vec<ApiKey>> {
        self.client
            .borrow_mut()
            .query(
                "SELECT id::bigint, scope, label, created_at, revoked_at FROM api_keys ORDER BY id",
                &[],
            )?
            .iter()
            .map(read_key)
            .collect()
    }

    fn revoke_key(&mut self, id: i64) -> Result<bool> {
        self.write(|pg| {
            Ok(pg.execute(
                "UPDATE api_keys SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1",
                &[&(id as i32), &now().0],
            )? == 1)
        })
    }

    fn add_job(&mut self, kind: &str, version: Option<u32>) -> Result<Job> {
        let t = now().0;
        let version = version.map(|v| v as i32);
        let id: i64 = self.write(|pg| {
            pg.query_opt(
                "INSERT INTO jobs (kind, version, state, done, created_at, updated_at) VALUES ($1, $2, 'running', 0, $3, $3) RETURNING id",
                &[&kind, &version, &t],
            )?
            .map(|r| r.get(0))
            .ok_or_else(|| StoreError::Corrupt("no id for a new job".into()))
        })?;
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
        self.write(|pg| {
            pg.execute(
                "UPDATE jobs SET state = $2, done = coalesce($3, done), total = coalesce($4, total), \
                 report = coalesce($5, report), error = coalesce($6, error), updated_at = $7 WHERE id = $1",
                &[&id, &state, &done, &total, &report, &error, &now().0],
            )?;
            Ok(())
        })
    }

    fn job(&self, id: i64) -> Result<Option<Job>> {
        let row = self.client.borrow_mut().query_opt(
            "SELECT id, kind, version::bigint, state, done, total, report, error, created_at, updated_at FROM jobs WHERE id = $1",
            &[&id],
        )?;
        row.map(|r| {
            Job::from_row((
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
                r.get(7),
                r.get(8),
                r.get(9),
            ))
        })
        .transpose()
    }
}
