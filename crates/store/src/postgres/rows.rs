//! Rows in and out of PostgreSQL: the engine's transaction interface
//! ([`Tx`]) over one transaction and the connection's prepared statements
//! (event appends of large batches by binary `COPY`), and row decoding.

use std::collections::HashMap;
use std::sync::Arc;

use leadscore_core::event::Message;
use leadscore_core::model::Model;
use leadscore_core::score::{Score, Status};
use leadscore_core::time::Timestamp;
use postgres::types::ToSql;
use postgres::{Statement, Transaction};

use super::PgStore;
use crate::bodies::StoredBody;
use crate::engine::{self, NewDelivery, NewEntry, NewFiring, Row, Table, Tx};
use crate::listing::Scan;
use crate::{ApiKey, Incoming, ModelCache, Result, Scope, ScoreFields, StoreError};

/// The compiled model of `version`, from the cache or compiled from its
/// stored source inside the current transaction.
pub(super) fn model_in(
    cache: &ModelCache,
    pg: &mut Pg<'_, '_>,
    version: u32,
) -> Result<Arc<Model>> {
    cache.get(version, || {
        let row = pg
            .query_opt(
                "SELECT name, source FROM models WHERE version = $1",
                &[&(version as i32)],
            )?
            .ok_or(StoreError::NoSuchVersion(version))?;
        Ok((row.get(0), row.get(1)))
    })
}

/// A transaction plus the connection's prepared statements.
pub(crate) struct Pg<'c, 's> {
    pub(super) tx: Transaction<'c>,
    pub(super) statements: &'s mut HashMap<&'static str, Statement>,
    /// Event appends of a large ingest batch, written by one binary COPY.
    pub(super) staged: Option<Staged>,
}

/// Batches at least this large stage their appends for one binary COPY
/// (smaller ones insert row by row: a COPY costs more round trips).
const COPY_FROM: usize = 32;

/// Events of an ingest batch not yet written: appended with one binary
/// `COPY` at the end of the batch, or before anything reads the log.
#[derive(Default)]
pub(super) struct Staged {
    /// Message ids of the batch that were already stored when it began.
    stored: std::collections::HashSet<String>,
    /// Ids staged so far.
    ids: std::collections::HashSet<String>,
    /// `(message_id, own_id, ts, body)` in arrival order.
    rows: Vec<(String, String, i64, String)>,
}

impl Pg<'_, '_> {
    pub(super) fn stmt(&mut self, sql: &'static str) -> Result<Statement> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.tx.prepare(sql)?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }

    pub(super) fn execute(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64> {
        let s = self.stmt(sql)?;
        Ok(self.tx.execute(&s, params)?)
    }

    pub(super) fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>> {
        let s = self.stmt(sql)?;
        Ok(self.tx.query(&s, params)?)
    }

    pub(super) fn query_opt(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<postgres::Row>> {
        let s = self.stmt(sql)?;
        Ok(self.tx.query_opt(&s, params)?)
    }

    pub(super) fn canonical(&mut self, id: &str) -> Result<String> {
        Ok(self.identity(id)?.unwrap_or_else(|| id.to_string()))
    }

    pub(super) fn count(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64> {
        let row = self.query(sql, params)?;
        Ok(row.first().map_or(0, |r| r.get::<_, i64>(0)).max(0) as u64)
    }
}

/// Upserts a contacts row into table `$table`.
macro_rules! upsert_row {
    ($table:literal) => {
        concat!(
            "INSERT INTO ", $table, " (", row_columns!(), ")
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
             ON CONFLICT (id) DO UPDATE SET model_version = excluded.model_version, state = excluded.state,
             traits = excluded.traits, company = excluded.company, last_ts = excluded.last_ts,
             score = excluded.score, raw = excluded.raw, fit = excluded.fit, engagement = excluded.engagement,
             tier = excluded.tier, grade = excluded.grade, stage = excluded.stage, status = excluded.status,
             reasons = excluded.reasons, triggers = excluded.triggers, due = excluded.due"
        )
    };
}

impl Pg<'_, '_> {
    /// The scan a listing as of `at` needs (see [`Scan::of`]).
    pub(super) fn scan(
        &mut self,
        cache: &ModelCache,
        at: Option<Timestamp>,
        rewind: bool,
    ) -> Result<Option<Scan>> {
        if at.is_none() {
            return Ok(None);
        }
        Ok(Scan::of(at, self.active_in(cache)?, rewind))
    }

    /// The active version and model.
    pub(super) fn active_in(&mut self, cache: &ModelCache) -> Result<Option<(u32, Arc<Model>)>> {
        match PgStore::active_version(&mut self.tx)? {
            Some(version) => Ok(Some((version, model_in(cache, self, version)?))),
            None => Ok(None),
        }
    }
}

pub(super) fn read_row(r: &postgres::Row) -> Result<Row> {
    read_row_from(r, 0)
}

/// Reads a contacts row whose columns start at index `at`.
pub(super) fn read_row_from(r: &postgres::Row, at: usize) -> Result<Row> {
    let status: String = r.get(at + 13);
    let reasons: String = r.get(at + 14);
    Ok(Row {
        id: r.get::<_, &str>(at).into(),
        model_version: r.get::<_, i32>(at + 1) as u32,
        state: r.get(at + 2),
        traits: engine::json_traits(r.get(at + 3))?,
        company: engine::json_traits(r.get(at + 4))?,
        last_ts: r.get::<_, Option<i64>>(at + 5).map(Timestamp),
        score: Score {
            score: r.get(at + 6),
            raw: r.get(at + 7),
            fit: r.get(at + 8),
            engagement: r.get(at + 9),
            tier: r.get::<_, &str>(at + 10).into(),
            grade: r.get::<_, &str>(at + 11).into(),
            stage: r.get::<_, &str>(at + 12).into(),
            status: Status::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("status {status:?}")))?,
            reasons: serde_json::from_str(&reasons)
                .map_err(|e| StoreError::Corrupt(format!("reasons: {e}")))?,
        },
        triggers: r.get::<_, Option<Vec<u8>>>(at + 15).unwrap_or_default(),
        due: r.get::<_, Option<i64>>(at + 16).map(Timestamp),
    })
}

pub(super) fn read_key(r: &postgres::Row) -> Result<ApiKey> {
    let scope: String = r.get(1);
    Ok(ApiKey {
        id: r.get(0),
        scope: Scope::parse(&scope)
            .ok_or_else(|| StoreError::Corrupt(format!("key scope {scope:?}")))?,
        label: r.get(2),
        created_at: Timestamp(r.get(3)),
        revoked: r.get::<_, Option<i64>>(4).is_some(),
    })
}

pub(super) fn fields(text: &str) -> Result<ScoreFields> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("ledger entry: {e}")))
}

impl Tx for Pg<'_, '_> {
    fn has_tombstones(&mut self) -> Result<bool> {
        Ok(!self
            .query("SELECT 1 FROM tombstones LIMIT 1", &[])?
            .is_empty())
    }

    fn tombstoned(&mut self, id_hash: &str) -> Result<bool> {
        Ok(!self
            .query("SELECT 1 FROM tombstones WHERE id_hash = $1", &[&id_hash])?
            .is_empty())
    }

    fn begin_events(&mut self, batch: &[Incoming]) -> Result<()> {
        self.staged = None;
        if batch.len() < COPY_FROM {
            return Ok(());
        }
        let ids: Vec<&str> = batch
            .iter()
            .map(|i| i.message.message_id.as_str())
            .collect();
        let stored = self
            .query(
                "SELECT message_id FROM events WHERE message_id = ANY($1)",
                &[&ids],
            )?
            .into_iter()
            .map(|r| r.get(0))
            .collect();
        self.staged = Some(Staged {
            stored,
            ..Staged::default()
        });
        Ok(())
    }

    fn flush_events(&mut self) -> Result<()> {
        use postgres::binary_copy::BinaryCopyInWriter;
        use postgres::types::Type;
        let Some(staged) = self.staged.as_mut() else {
            return Ok(());
        };
        if staged.rows.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut staged.rows);
        for (id, ..) in &rows {
            staged.ids.remove(id);
            staged.stored.insert(id.clone());
        }
        let sink = self
            .tx
            .copy_in("COPY events (message_id, own_id, ts, body) FROM STDIN (FORMAT binary)")?;
        let mut writer =
            BinaryCopyInWriter::new(sink, &[Type::TEXT, Type::TEXT, Type::INT8, Type::TEXT]);
        for (id, own, ts, body) in &rows {
            writer.write(&[id, own, ts, body])?;
        }
        writer.finish()?;
        Ok(())
    }

    fn insert_event(&mut self, m: &Message, body: &str) -> Result<bool> {
        if let Some(staged) = self.staged.as_mut() {
            if staged.stored.contains(&m.message_id) || staged.ids.contains(&m.message_id) {
                return Ok(false);
            }
            staged.ids.insert(m.message_id.clone());
            staged.rows.push((
                m.message_id.clone(),
                m.own_id().to_string(),
                m.timestamp.0,
                body.to_string(),
            ));
            return Ok(true);
        }
        let n = self.execute(
            "INSERT INTO events (message_id, own_id, ts, body) VALUES ($1, $2, $3, $4)
             ON CONFLICT (message_id) DO NOTHING",
            &[&m.message_id, &m.own_id(), &m.timestamp.0, &body],
        )?;
        Ok(n == 1)
    }

    fn stored_event(&mut self, message_id: &str) -> Result<Option<Message>> {
        self.flush_events()?;
        self.query_opt(
            "SELECT body FROM events WHERE message_id = $1",
            &[&message_id],
        )?
        .map(|r| engine::parse_stored(r.get(0)))
        .transpose()
    }

    fn replace_event(&mut self, m: &Message, body: &str) -> Result<()> {
        self.flush_events()?;
        self.execute(
            "UPDATE events SET own_id = $2, ts = $3, body = $4 WHERE message_id = $1",
            &[&m.message_id, &m.own_id(), &m.timestamp.0, &body],
        )?;
        Ok(())
    }

    fn insert_link(&mut self, from: &str, to: &str, ts: Timestamp, message_id: &str) -> Result<()> {
        self.execute(
            "INSERT INTO links (from_id, ts, message_id, to_id) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
            &[&from, &ts.0, &message_id, &to],
        )?;
        Ok(())
    }

    fn delete_links_of(&mut self, message_id: &str) -> Result<()> {
        self.execute("DELETE FROM links WHERE message_id = $1", &[&message_id])?;
        Ok(())
    }

    fn first_links(&mut self, from_ids: &[String]) -> Result<Vec<(String, String)>> {
        let rows = self.query(
            "SELECT DISTINCT ON (from_id) from_id, to_id FROM links
             WHERE from_id = ANY($1) ORDER BY from_id, ts, message_id COLLATE \"C\"",
            &[&from_ids],
        )?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn identity(&mut self, id: &str) -> Result<Option<String>> {
        Ok(self
            .query_opt("SELECT contact FROM identities WHERE id = $1", &[&id])?
            .map(|r| r.get(0)))
    }

    fn set_identity(&mut self, id: &str, contact: &str) -> Result<()> {
        self.execute(
            "INSERT INTO identities (id, contact) VALUES ($1, $2)
             ON CONFLICT (id) DO UPDATE SET contact = excluded.contact",
            &[&id, &contact],
        )?;
        Ok(())
    }

    fn members(&mut self, contact: &str) -> Result<Vec<String>> {
        let mut ids: Vec<String> = self
            .query("SELECT id FROM identities WHERE contact = $1", &[&contact])?
            .into_iter()
            .map(|r| r.get(0))
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    fn event_bodies(&mut self, own_id: &str) -> Result<Vec<StoredBody>> {
        self.flush_events()?;
        Ok(self
            .query("SELECT body FROM events WHERE own_id = $1", &[&own_id])?
            .into_iter()
            .map(|r| StoredBody::whole(r.get(0)))
            .collect())
    }

    fn row(&mut self, table: Table, id: &str) -> Result<Option<Row>> {
        let sql = match table {
            Table::Live => concat!("SELECT ", row_columns!(), " FROM contacts WHERE id = $1"),
            Table::Next => concat!(
                "SELECT ",
                row_columns!(),
                " FROM contacts_next WHERE id = $1"
            ),
        };
        self.query_opt(sql, &[&id])?
            .map(|r| read_row(&r))
            .transpose()
    }

    fn put_row(&mut self, table: Table, row: &Row) -> Result<()> {
        let sql = match table {
            Table::Live => upsert_row!("contacts"),
            Table::Next => upsert_row!("contacts_next"),
        };
        let s = &row.score;
        let traits = row.traits_json();
        let company = row.company_json();
        let reasons = serde_json::to_string(&s.reasons).expect("strings serialise");
        self.execute(
            sql,
            &[
                &row.id.as_str(),
                &(row.model_version as i32),
                &row.state,
                &traits,
                &company,
                &row.last_ts.map(|t| t.0),
                &s.score,
                &s.raw,
                &s.fit,
                &s.engagement,
                &s.tier.as_str(),
                &s.grade.as_str(),
                &s.stage.as_str(),
                &s.status.as_str(),
                &reasons,
                &row.triggers,
                &row.due.map(|t| t.0),
            ],
        )?;
        Ok(())
    }

    fn delete_row(&mut self, table: Table, id: &str) -> Result<()> {
        let sql = match table {
            Table::Live => "DELETE FROM contacts WHERE id = $1",
            Table::Next => "DELETE FROM contacts_next WHERE id = $1",
        };
        self.execute(sql, &[&id])?;
        Ok(())
    }

    fn append_ledger(&mut self, entries: &[NewEntry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        // One statement (one round trip) for the whole batch, in order.
        let contact: Vec<&str> = entries.iter().map(|e| e.contact.as_str()).collect();
        let at: Vec<Option<i64>> = entries.iter().map(|e| e.at.map(|t| t.0)).collect();
        let recorded_at: Vec<i64> = entries.iter().map(|e| e.recorded_at.0).collect();
        let version: Vec<i32> = entries.iter().map(|e| e.model_version as i32).collect();
        let old: Vec<Option<String>> = entries
            .iter()
            .map(|e| engine::fields_json(e.old.as_ref()))
            .collect();
        let new: Vec<Option<String>> = entries
            .iter()
            .map(|e| engine::fields_json(e.new.as_ref()))
            .collect();
        let cause: Vec<&str> = entries.iter().map(|e| e.cause.as_str()).collect();
        self.execute(
            "INSERT INTO ledger (contact, at, recorded_at, model_version, old, new, cause)
             SELECT contact, at, recorded_at, model_version, old, new, cause
             FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::int[], $5::text[], $6::text[], $7::text[])
             WITH ORDINALITY AS u(contact, at, recorded_at, model_version, old, new, cause, n)
             ORDER BY n",
            &[&contact, &at, &recorded_at, &version, &old, &new, &cause],
        )?;
        Ok(())
    }

    /// Without `traits`, only what a listing reads (traits, company and
    /// trigger state left empty).
    fn live_rows(&mut self, after: Option<&str>, limit: usize, traits: bool) -> Result<Vec<Row>> {
        const WITH: &str = concat!(
            "SELECT ",
            row_columns!(),
            " FROM contacts WHERE id > $1 ORDER BY id LIMIT $2"
        );
        const WITHOUT: &str = "SELECT id, model_version, state, '{}'::text, '{}'::text, last_ts, score, raw, fit, engagement, \
             tier, grade, stage, status, reasons, NULL::bytea, NULL::bigint FROM contacts WHERE id > $1 ORDER BY id LIMIT $2";
        self.query(
            if traits { WITH } else { WITHOUT },
            &[&after.unwrap_or(""), &(limit as i64)],
        )?
        .iter()
        .map(read_row)
        .collect()
    }

    fn contacts_after(&mut self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        Ok(self
            .query(
                "SELECT DISTINCT contact FROM identities WHERE contact > $1 ORDER BY contact LIMIT $2",
                &[&after.unwrap_or(""), &(limit as i64)],
            )?
            .into_iter()
            .map(|r| r.get(0))
            .collect())
    }
    fn insert_firing(&mut self, f: &NewFiring) -> Result<Option<i64>> {
        Ok(self
            .query_opt(
                "INSERT INTO firings (key, trigger_id, contact, at, recorded_at, late, model_version, score, explanation)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (key) DO NOTHING RETURNING seq",
                &[
                    &f.key,
                    &f.trigger,
                    &f.contact,
                    &f.at.0,
                    &f.recorded_at.0,
                    &f.late,
                    &(f.model_version as i32),
                    &f.score,
                    &f.explanation,
                ],
            )?
            .map(|r| r.get(0)))
    }

    fn fired_before(&mut self, contact: &str, trigger: &str) -> Result<bool> {
        Ok(self
            .query_opt(
                "SELECT 1 FROM firings WHERE contact = $1 AND trigger_id = $2 LIMIT 1",
                &[&contact, &trigger],
            )?
            .is_some())
    }

    fn enqueue(&mut self, d: &NewDelivery) -> Result<()> {
        self.execute(
            "INSERT INTO outbox (firing, key, destination, payload, status, next_attempt, created_at)
             VALUES ($1, $2, $3, $4, 'pending', $5, $5)",
            &[&d.firing, &d.key, &d.destination, &d.payload, &d.at.0],
        )?;
        Ok(())
    }

    fn enrol(
        &mut self,
        campaign: &str,
        firing: i64,
        contact: &str,
        at: Timestamp,
        now: Timestamp,
    ) -> Result<()> {
        self.execute(
            "INSERT INTO campaign_members (campaign, firing, contact, at, enrolled_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            &[&campaign, &firing, &contact, &at.0, &now.0],
        )?;
        Ok(())
    }

    fn due_contacts(&mut self, now: Timestamp, limit: usize) -> Result<Vec<String>> {
        Ok(self
            .query(
                "SELECT id FROM contacts WHERE due IS NOT NULL AND due <= $1 ORDER BY due LIMIT $2",
                &[&now.0, &(limit as i64)],
            )?
            .into_iter()
            .map(|r| r.get(0))
            .collect())
    }

    fn set_triggers(
        &mut self,
        contact: &str,
        triggers: &[u8],
        due: Option<Timestamp>,
    ) -> Result<()> {
        self.execute(
            "UPDATE contacts SET triggers = $2, due = $3 WHERE id = $1",
            &[&contact, &triggers, &due.map(|t| t.0)],
        )?;
        Ok(())
    }
}
