//! Model activation on SQLite: a resumable rescore into `contacts_next`,
//! then an atomic swap.

use std::sync::Arc;

use rusqlite::{params, TransactionBehavior};

use super::contacts;
use super::rows::{count, Sql};
use super::SqliteStore;
use crate::engine::{self, Table, Tx};
use crate::{compile, now, ActivateReport, Progress, Result, Store};

impl SqliteStore {
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
        let name: String = self.conn.query_row(
            "SELECT name FROM models WHERE version = ?1",
            [version],
            |r| r.get(0),
        )?;
        let model = compile(version, &name, &source)?;
        let mut report = ActivateReport::default();
        let total = count(
            &self.conn,
            "SELECT count(DISTINCT contact) FROM identities",
            [],
        )?;
        // Start, or resume the same version's job.
        let mut cursor = {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let cursor = match Self::job(&tx)? {
                Some((v, cursor)) if v == version => {
                    report.resumed = true;
                    cursor
                }
                _ => {
                    tx.execute("DELETE FROM activation_job", [])?;
                    tx.execute("DELETE FROM contacts_next", [])?;
                    tx.execute(
                        "INSERT INTO activation_job (version, cursor, started_at) VALUES (?1, NULL, ?2)",
                        params![version, now().0],
                    )?;
                    None
                }
            };
            tx.commit()?;
            cursor
        };
        let mut done = match &cursor {
            Some(c) => count(
                &self.conn,
                "SELECT count(DISTINCT contact) FROM identities WHERE contact <= ?1",
                [c],
            )?,
            None => 0,
        };
        progress(done, total);
        // Fill the next rows step by step, each step its own transaction.
        loop {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            // Logs read with the positions this process's writer keeps.
            let Some((last, n)) = engine::activation_step(
                &mut Sql::viewing(&tx, self.overlay.view(&tx)?),
                &model,
                version,
                cursor.as_deref(),
                started,
            )?
            else {
                break;
            };
            tx.execute("UPDATE activation_job SET cursor = ?1", [&last])?;
            tx.commit()?;
            self.restart_wal_if_large();
            cursor = Some(last);
            done += n;
            progress(done.min(total), total);
        }
        // Swap atomically: contacts changed meanwhile are folded here.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        // The live rows as they are (none left in a writer's memory): their
        // scores are the ledger's old values, their positions become runs.
        let current = super::active_model(&self.active, &tx)?;
        let sql = super::writing(
            &mut self.owner,
            &self.overlay,
            &tx,
            super::model_of(&current),
        )?;
        let staged = super::finish_writing(&self.owner, sql, super::Writes::All)?;
        let missing: Vec<String> = {
            let mut stmt = tx.prepare(
                "SELECT DISTINCT i.contact FROM identities i
                 WHERE NOT EXISTS (SELECT 1 FROM contacts_next n WHERE n.id = i.contact)",
            )?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        for contact in &missing {
            let state = engine::fold_contact(&mut Sql::new(&tx), &model, contact)?;
            if let Some(row) = engine::activation_row(&model, version, contact, &state, started) {
                Sql::new(&tx).put_row(Table::Next, &row)?;
            }
        }
        let fields = |t: &str| {
            format!("json_object('score', {t}.score, 'tier', {t}.tier, 'grade', {t}.grade, 'stage', {t}.stage, 'status', {t}.status)")
        };
        let before: i64 =
            tx.query_row("SELECT coalesce(max(seq), 0) FROM ledger", [], |r| r.get(0))?;
        report.changed = tx.execute(
            &format!(
                "INSERT INTO ledger (contact, at, recorded_at, model_version, old, new, cause)
                 SELECT n.id, n.last_ts, ?1, ?2, CASE WHEN c.id IS NULL THEN NULL ELSE {} END, {}, ?3
                 FROM contacts_next n LEFT JOIN contacts c ON c.id = n.id
                 WHERE c.id IS NULL OR c.score IS NOT n.score OR c.tier IS NOT n.tier
                    OR c.grade IS NOT n.grade OR c.stage IS NOT n.stage OR c.status IS NOT n.status
                 ORDER BY n.id",
                fields("c"),
                fields("n")
            ),
            params![now().0, version, format!("activate v{version}")],
        )? as u64;
        // The new rows start without positions: the old rows' and the
        // activation's entries become runs.
        contacts::runs_of_rows(&tx, None)?;
        tx.execute(
            "INSERT INTO ledger_runs (contact, first_seq, seqs)
             SELECT contact, seq, seq FROM ledger WHERE seq > ?1",
            [before],
        )?;
        tx.execute("DELETE FROM contacts", [])?;
        report.contacts =
            tx.execute("INSERT INTO contacts SELECT * FROM contacts_next", [])? as u64;
        super::fit_score_index(&tx, &model)?;
        tx.execute("DELETE FROM contacts_next", [])?;
        tx.execute(
            "INSERT INTO activations (version, at) VALUES (?1, ?2)",
            params![version, now().0],
        )?;
        tx.execute("DELETE FROM activation_job", [])?;
        super::commit(tx, &mut self.owner, staged)?;
        self.active.set(version, Arc::new(model));
        progress(total, total);
        Ok(report)
    }
}
