//! Model activation on PostgreSQL: a resumable rescore into
//! `contacts_next`, then an atomic swap.

use std::sync::Arc;

use super::PgStore;
use crate::engine::{self, Table, Tx};
use crate::{compile, now, ActivateReport, Progress, Result, Store};

impl PgStore {
    /// [`Store::activate`]: rescores every contact into `contacts_next`
    /// step by step (a recorded job, resumed after a crash), then swaps the
    /// tables in one transaction.
    pub(super) fn activate_version(
        &mut self,
        version: u32,
        progress: Progress<'_>,
    ) -> Result<ActivateReport> {
        let started = now();
        let source = self.model_source(version)?;
        let name: String = self.read(|pg| {
            Ok(pg.query(
                "SELECT name FROM models WHERE version = $1",
                &[&(version as i32)],
            )?[0]
                .get(0))
        })?;
        let model = compile(version, &name, &source)?;
        let mut report = ActivateReport::default();
        let v = version as i32;
        let (mut cursor, total) = self.write(|pg| {
            let total = pg.count("SELECT count(DISTINCT contact) FROM identities", &[])?;
            let job = pg.query_opt("SELECT version, cursor FROM activation_job", &[])?;
            let cursor = match job {
                Some(row) if row.get::<_, i32>(0) == v => {
                    report.resumed = true;
                    row.get::<_, Option<String>>(1)
                }
                _ => {
                    pg.execute("DELETE FROM activation_job", &[])?;
                    pg.execute("DELETE FROM contacts_next", &[])?;
                    pg.execute(
                        "INSERT INTO activation_job (version, cursor, started_at) VALUES ($1, NULL, $2)",
                        &[&v, &now().0],
                    )?;
                    None
                }
            };
            Ok((cursor, total))
        })?;
        let mut done = match &cursor {
            Some(c) => self.read(|pg| {
                pg.count(
                    "SELECT count(DISTINCT contact) FROM identities WHERE contact <= $1",
                    &[c],
                )
            })?,
            None => 0,
        };
        progress(done, total);
        loop {
            let step = self.write(|pg| {
                let step =
                    engine::activation_step(pg, &model, version, cursor.as_deref(), started)?;
                if let Some((last, _)) = &step {
                    pg.execute("UPDATE activation_job SET cursor = $1", &[last])?;
                }
                Ok(step)
            })?;
            let Some((last, n)) = step else { break };
            cursor = Some(last);
            done += n;
            progress(done.min(total), total);
        }
        let cause = format!("activate v{version}");
        let (changed, contacts) = self.write(|pg| {
            let missing: Vec<String> = pg
                .query(
                    "SELECT DISTINCT i.contact FROM identities i
                     WHERE NOT EXISTS (SELECT 1 FROM contacts_next n WHERE n.id = i.contact)",
                    &[],
                )?
                .into_iter()
                .map(|r| r.get(0))
                .collect();
            for (contact, state) in engine::fold_many(pg, &model, &missing)? {
                if let Some(row) = engine::activation_row(&model, version, &contact, &state, started) {
                    pg.put_row(Table::Next, &row)?;
                }
            }
            let changed = pg.execute(
                "INSERT INTO ledger (contact, at, recorded_at, model_version, old, new, cause)
                 SELECT n.id, n.last_ts, $1, $2,
                   CASE WHEN c.id IS NULL THEN NULL ELSE json_build_object('score', c.score, 'tier', c.tier, 'grade', c.grade, 'stage', c.stage, 'status', c.status)::text END,
                   json_build_object('score', n.score, 'tier', n.tier, 'grade', n.grade, 'stage', n.stage, 'status', n.status)::text,
                   $3
                 FROM contacts_next n LEFT JOIN contacts c ON c.id = n.id
                 WHERE c.id IS NULL OR c.score IS DISTINCT FROM n.score OR c.tier IS DISTINCT FROM n.tier
                    OR c.grade IS DISTINCT FROM n.grade OR c.stage IS DISTINCT FROM n.stage
                    OR c.status IS DISTINCT FROM n.status
                 ORDER BY n.id",
                &[&now().0, &v, &cause],
            )?;
            pg.execute("DELETE FROM contacts", &[])?;
            let contacts = pg.execute("INSERT INTO contacts SELECT * FROM contacts_next", &[])?;
            pg.execute("DELETE FROM contacts_next", &[])?;
            pg.execute(
                "INSERT INTO activations (version, at) VALUES ($1, $2)",
                &[&v, &now().0],
            )?;
            pg.execute("DELETE FROM activation_job", &[])?;
            Ok((changed, contacts))
        })?;
        report.changed = changed;
        report.contacts = contacts;
        self.active.set(version, Arc::new(model));
        progress(total, total);
        Ok(report)
    }
}
