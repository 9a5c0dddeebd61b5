//! The PostgreSQL backend (`--db postgres://…`): the same engine and schema
//! as SQLite. Several processes may share one database: every writing
//! transaction first takes one transaction-scoped advisory lock, so writers
//! are serialised by the database (correct under concurrency; write
//! throughput is one writer's). Statements are prepared once per connection.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use leadscore_core::event::Message;
use leadscore_core::fold::ContactState;
use leadscore_core::model::Model;
use leadscore_core::score::{Score, Status};
use leadscore_core::time::Timestamp;
use postgres::types::ToSql;
use postgres::{Client, NoTls, Statement, Transaction};
use serde_json::{Map, Value};

use crate::engine::{self, DryRunBuilder, NewDelivery, NewEntry, NewFiring, Row, Table, Tx};
use crate::listing::Scan;
use crate::{
    compile, id_hash, now, validate, ActivateReport, ApiKey, CampaignMember, ContactRecord,
    Delivery, DeliveryStatus, DryRun, DueReport, EraseReport, FiringQuery, FiringRecord, Incoming,
    IngestReport, Job, JobColumns, JobUpdate, LedgerEntry, Listed, ModelVersion, OutboxCounts,
    OutboxRecord, Outcome, Param, Progress, Result, Scope, ScoreFields, ScoreQuery, Settle, Stats,
    Store, StoreError, StoredLog, Summary, SummaryBuilder,
};

mod embedded {
    refinery::embed_migrations!("migrations/postgres");
}

/// Key of the advisory lock that serialises writers across processes.
const WRITE_LOCK: i64 = 0x4C53_4352_0001;

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> StoreError {
        StoreError::Database(match e.as_db_error() {
            Some(db) => format!("{}: {}", db.severity(), db.message()),
            None => e.to_string(),
        })
    }
}

/// The PostgreSQL store.
pub struct PgStore {
    client: RefCell<Client>,
    statements: RefCell<HashMap<&'static str, Statement>>,
    active: RefCell<Option<(u32, Arc<Model>)>>,
    /// The compiled challenger, by version (see `active`).
    shadow: RefCell<Option<(u32, Arc<Model>)>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects (a `postgres://` URL) and migrates the schema.
    pub fn open(url: &str) -> Result<PgStore> {
        let config: postgres::Config = url
            .parse()
            .map_err(|e: postgres::Error| StoreError::Database(format!("{url}: {e}")))?;
        PgStore::open_config(&config)
    }

    /// Connects with a prepared configuration (tests set `search_path`).
    pub fn open_config(config: &postgres::Config) -> Result<PgStore> {
        let mut client = config.connect(NoTls)?;
        let tables: Vec<String> = client
            .query(
                "SELECT table_name::text FROM information_schema.tables
                 WHERE table_schema = current_schema()",
                &[],
            )?
            .into_iter()
            .map(|r| r.get(0))
            .collect();
        if !tables.is_empty() && !tables.iter().any(|t| t == "refinery_schema_history") {
            return Err(StoreError::Foreign {
                path: "postgres".into(),
                why: format!("its schema already holds {} other tables", tables.len()),
            });
        }
        client.execute("SELECT pg_advisory_lock($1)", &[&WRITE_LOCK])?;
        let migrated = embedded::migrations::runner().run(&mut client);
        client.execute("SELECT pg_advisory_unlock($1)", &[&WRITE_LOCK])?;
        migrated.map_err(|e| StoreError::Migration(e.to_string()))?;
        Ok(PgStore {
            client: RefCell::new(client),
            statements: RefCell::new(HashMap::new()),
            active: RefCell::new(None),
            shadow: RefCell::new(None),
        })
    }

    fn active_version(client: &mut impl postgres::GenericClient) -> Result<Option<u32>> {
        Ok(client
            .query_opt(
                "SELECT version FROM activations ORDER BY seq DESC LIMIT 1",
                &[],
            )?
            .map(|r| r.get::<_, i32>(0) as u32))
    }

    fn compiled(&self, version: u32) -> Result<Arc<Model>> {
        if let Some((v, model)) = &*self.active.borrow() {
            if *v == version {
                return Ok(model.clone());
            }
        }
        let row = self
            .client
            .borrow_mut()
            .query_opt(
                "SELECT name, source FROM models WHERE version = $1",
                &[&(version as i32)],
            )?
            .ok_or(StoreError::NoSuchVersion(version))?;
        let model = Arc::new(compile(version, row.get(0), row.get(1))?);
        *self.active.borrow_mut() = Some((version, model.clone()));
        Ok(model)
    }

    /// Runs `f` in a transaction of `kind` and commits it.
    fn transaction<T>(
        &self,
        kind: Kind,
        f: impl FnOnce(&mut Pg<'_, '_>) -> Result<T>,
    ) -> Result<T> {
        let mut client = self.client.borrow_mut();
        let mut statements = self.statements.borrow_mut();
        let tx = match kind {
            Kind::Read => client
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?,
            Kind::Write | Kind::Unlocked => client.transaction()?,
        };
        let mut pg = Pg {
            tx,
            statements: &mut statements,
            staged: None,
        };
        if kind == Kind::Write {
            pg.tx
                .execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
        }
        let value = f(&mut pg)?;
        pg.tx.commit()?;
        Ok(value)
    }

    /// Runs `f` in a transaction holding the write lock (writers are
    /// serialised across processes).
    fn write<T>(&self, f: impl FnOnce(&mut Pg<'_, '_>) -> Result<T>) -> Result<T> {
        self.transaction(Kind::Write, f)
    }

    /// Runs `f` in a transaction that does not take the write lock (for the
    /// outbox, where row locks are enough and workers must not wait for
    /// ingestion).
    fn unlocked<T>(&self, f: impl FnOnce(&mut Pg<'_, '_>) -> Result<T>) -> Result<T> {
        self.transaction(Kind::Unlocked, f)
    }

    /// Runs `f` in a read-only transaction (one consistent snapshot).
    fn read<T>(&self, f: impl FnOnce(&mut Pg<'_, '_>) -> Result<T>) -> Result<T> {
        self.transaction(Kind::Read, f)
    }
}

/// Which transaction [`PgStore::transaction`] opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Read-write, holding the write lock.
    Write,
    /// Read-write, row locks only.
    Unlocked,
    /// Read-only, repeatable read.
    Read,
}

/// The compiled model of `version`, from the cache or compiled from its
/// stored source inside the current transaction.
fn model_in(
    cache: &RefCell<Option<(u32, Arc<Model>)>>,
    pg: &mut Pg<'_, '_>,
    version: u32,
) -> Result<Arc<Model>> {
    if let Some((v, model)) = &*cache.borrow() {
        if *v == version {
            return Ok(model.clone());
        }
    }
    let row = pg
        .query_opt(
            "SELECT name, source FROM models WHERE version = $1",
            &[&(version as i32)],
        )?
        .ok_or(StoreError::NoSuchVersion(version))?;
    let model = Arc::new(compile(version, row.get(0), row.get(1))?);
    *cache.borrow_mut() = Some((version, model.clone()));
    Ok(model)
}

/// A transaction plus the connection's prepared statements.
pub(crate) struct Pg<'c, 's> {
    tx: Transaction<'c>,
    statements: &'s mut HashMap<&'static str, Statement>,
    /// Event appends of a large ingest batch, written by one binary COPY.
    staged: Option<Staged>,
}

/// Batches at least this large stage their appends for one binary COPY
/// (smaller ones insert row by row: a COPY costs more round trips).
const COPY_FROM: usize = 32;

/// Events of an ingest batch not yet written: appended with one binary
/// `COPY` at the end of the batch, or before anything reads the log.
#[derive(Default)]
struct Staged {
    /// Message ids of the batch that were already stored when it began.
    stored: std::collections::HashSet<String>,
    /// Ids staged so far.
    ids: std::collections::HashSet<String>,
    /// `(message_id, own_id, ts, body)` in arrival order.
    rows: Vec<(String, String, i64, String)>,
}

impl Pg<'_, '_> {
    fn stmt(&mut self, sql: &'static str) -> Result<Statement> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.tx.prepare(sql)?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }

    fn execute(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let s = self.stmt(sql)?;
        Ok(self.tx.execute(&s, params)?)
    }

    fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>> {
        let s = self.stmt(sql)?;
        Ok(self.tx.query(&s, params)?)
    }

    fn query_opt(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<postgres::Row>> {
        let s = self.stmt(sql)?;
        Ok(self.tx.query_opt(&s, params)?)
    }

    fn canonical(&mut self, id: &str) -> Result<String> {
        Ok(self.identity(id)?.unwrap_or_else(|| id.to_string()))
    }

    fn count(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let row = self.query(sql, params)?;
        Ok(row.first().map_or(0, |r| r.get::<_, i64>(0)).max(0) as u64)
    }
}

/// The columns of a contacts row, in [`read_row`]'s order.
macro_rules! row_columns {
    () => {
        "id, model_version, state, traits, company, last_ts, score, raw, fit, engagement, tier, grade, stage, status, reasons, triggers, due"
    };
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

fn json_map(text: &str) -> Result<Map<String, Value>> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("traits: {e}")))
}

impl Pg<'_, '_> {
    /// Up to `limit` live rows after id `after`, in id order; without
    /// `traits`, only what a listing reads (traits, company and trigger state
    /// left empty).
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

    /// The scan a listing as of `at` needs (see [`Scan::of`]).
    fn scan(
        &mut self,
        cache: &RefCell<Option<(u32, Arc<Model>)>>,
        at: Option<Timestamp>,
    ) -> Result<Option<Scan>> {
        if at.is_none() {
            return Ok(None);
        }
        let active = match PgStore::active_version(&mut self.tx)? {
            Some(version) => Some((version, model_in(cache, self, version)?)),
            None => None,
        };
        Ok(Scan::of(at, active))
    }
}

fn read_row(r: &postgres::Row) -> Result<Row> {
    read_row_from(r, 0)
}

/// Reads a contacts row whose columns start at index `at`.
fn read_row_from(r: &postgres::Row, at: usize) -> Result<Row> {
    let status: String = r.get(at + 13);
    let reasons: String = r.get(at + 14);
    Ok(Row {
        id: r.get(at),
        model_version: r.get::<_, i32>(at + 1) as u32,
        state: r.get(at + 2),
        traits: json_map(r.get(at + 3))?,
        company: json_map(r.get(at + 4))?,
        last_ts: r.get::<_, Option<i64>>(at + 5).map(Timestamp),
        score: Score {
            score: r.get(at + 6),
            raw: r.get(at + 7),
            fit: r.get(at + 8),
            engagement: r.get(at + 9),
            tier: r.get(at + 10),
            grade: r.get(at + 11),
            stage: r.get(at + 12),
            status: Status::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("status {status:?}")))?,
            reasons: serde_json::from_str(&reasons)
                .map_err(|e| StoreError::Corrupt(format!("reasons: {e}")))?,
        },
        triggers: r.get::<_, Option<Vec<u8>>>(at + 15).unwrap_or_default(),
        due: r.get::<_, Option<i64>>(at + 16).map(Timestamp),
    })
}

fn read_key(r: &postgres::Row) -> Result<ApiKey> {
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

fn fields(text: &str) -> Result<ScoreFields> {
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

    fn event_bodies(&mut self, own_id: &str) -> Result<Vec<String>> {
        self.flush_events()?;
        Ok(self
            .query("SELECT body FROM events WHERE own_id = $1", &[&own_id])?
            .into_iter()
            .map(|r| r.get(0))
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
                &row.id,
                &(row.model_version as i32),
                &row.state,
                &traits,
                &company,
                &row.last_ts.map(|t| t.0),
                &s.score,
                &s.raw,
                &s.fit,
                &s.engagement,
                &s.tier,
                &s.grade,
                &s.stage,
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

impl Store for PgStore {
    fn ingest(&mut self, messages: Vec<Incoming>) -> Result<IngestReport> {
        let cache = &self.active;
        self.write(|pg| {
            // Read under the write lock: another process may have activated
            // another version since this one last looked.
            let version = PgStore::active_version(&mut pg.tx)?;
            let model = match version {
                None => None,
                Some(v) => Some(model_in(cache, pg, v)?),
            };
            let activating = !pg.query("SELECT 1 FROM activation_job", &[])?.is_empty();
            engine::ingest(
                pg,
                model.as_deref().zip(version),
                activating,
                messages,
                now(),
                None,
            )
        })
    }

    fn add_model(&mut self, name: &str, source: &str) -> Result<ModelVersion> {
        let hash = validate(name, source)?;
        let version = self.write(|pg| {
            // Look first: an identity column consumes a number even when
            // `ON CONFLICT DO NOTHING` inserts nothing (versions must not skip).
            if let Some(row) =
                pg.query_opt("SELECT version FROM models WHERE hash = $1", &[&hash])?
            {
                return Ok(row.get::<_, i32>(0) as u32);
            }
            let row = pg.query(
                "INSERT INTO models (name, hash, source, added_at) VALUES ($1, $2, $3, $4)
                 RETURNING version",
                &[&name, &hash, &source, &now().0],
            )?;
            Ok(row[0].get::<_, i32>(0) as u32)
        })?;
        self.models()?
            .into_iter()
            .find(|m| m.version == version)
            .ok_or(StoreError::NoSuchVersion(version))
    }

    fn models(&self) -> Result<Vec<ModelVersion>> {
        self.read(|pg| {
            let active = PgStore::active_version(&mut pg.tx)?;
            Ok(pg
                .query(
                    "SELECT version, name, hash, added_at FROM models ORDER BY version",
                    &[],
                )?
                .into_iter()
                .map(|r| {
                    let version = r.get::<_, i32>(0) as u32;
                    ModelVersion {
                        version,
                        name: r.get(1),
                        hash: r.get(2),
                        added_at: Timestamp(r.get(3)),
                        active: Some(version) == active,
                    }
                })
                .collect())
        })
    }

    fn model_source(&self, version: u32) -> Result<String> {
        self.read(|pg| {
            pg.query_opt(
                "SELECT source FROM models WHERE version = $1",
                &[&(version as i32)],
            )?
            .map(|r| r.get(0))
            .ok_or(StoreError::NoSuchVersion(version))
        })
    }

    fn active_model(&self) -> Result<Option<(u32, Arc<Model>)>> {
        let version = PgStore::active_version(&mut *self.client.borrow_mut())?;
        match version {
            None => Ok(None),
            Some(v) => Ok(Some((v, self.compiled(v)?))),
        }
    }

    fn previous_version(&self) -> Result<Option<u32>> {
        self.read(|pg| {
            let active = PgStore::active_version(&mut pg.tx)?.map(|v| v as i32);
            Ok(pg
                .query_opt(
                    "SELECT version FROM activations WHERE version IS DISTINCT FROM $1
                     ORDER BY seq DESC LIMIT 1",
                    &[&active],
                )?
                .map(|r| r.get::<_, i32>(0) as u32))
        })
    }

    fn activate(&mut self, version: u32, progress: Progress<'_>) -> Result<ActivateReport> {
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
        *self.active.borrow_mut() = Some((version, Arc::new(model)));
        progress(total, total);
        Ok(report)
    }

    fn dry_run(&self, candidate: &Model, progress: Progress<'_>) -> Result<DryRun> {
        self.read(|pg| {
            let total = pg.count("SELECT count(DISTINCT contact) FROM identities", &[])?;
            let mut builder = DryRunBuilder::default();
            let mut cursor: Option<String> = None;
            let mut done = 0;
            loop {
                let contacts = pg.contacts_after(cursor.as_deref(), engine::CONTACTS_PER_STEP)?;
                let Some(last) = contacts.last().cloned() else {
                    break;
                };
                for (contact, state) in engine::fold_many(pg, candidate, &contacts)? {
                    let Some(after) = state
                        .last_timestamp()
                        .map(|t| state.score_at(candidate, t).expect("at the last message"))
                    else {
                        continue;
                    };
                    let before = pg.row(Table::Live, &contact)?.map(|r| r.score);
                    builder.add(&contact, before.as_ref(), &after);
                }
                done += contacts.len() as u64;
                progress(done.min(total), total);
                cursor = Some(last);
            }
            Ok(builder.finish())
        })
    }

    fn contact(&self, id: &str) -> Result<Option<ContactRecord>> {
        self.read(|pg| {
            let canonical = pg.canonical(id)?;
            Ok(pg.row(Table::Live, &canonical)?.map(ContactRecord::from))
        })
    }

    fn contacts(&self, after: Option<&str>, limit: usize) -> Result<Vec<ContactRecord>> {
        self.read(|pg| {
            Ok(pg
                .live_rows(after, limit, true)?
                .into_iter()
                .map(ContactRecord::from)
                .collect())
        })
    }

    fn score_at(&self, id: &str, t: Timestamp) -> Result<Option<(String, Score)>> {
        // The common case in one round trip: the active version and the
        // contact's live row (when `id` is its canonical id).
        const LIVE: &str = concat!(
            "SELECT (SELECT version FROM activations ORDER BY seq DESC LIMIT 1), ",
            row_columns!(),
            " FROM contacts WHERE id = $1"
        );
        let found = {
            let mut client = self.client.borrow_mut();
            let mut statements = self.statements.borrow_mut();
            let statement = match statements.get(LIVE) {
                Some(s) => s.clone(),
                None => {
                    let s = client.prepare(LIVE)?;
                    statements.insert(LIVE, s.clone());
                    s
                }
            };
            client.query_opt(&statement, &[&id])?
        };
        let live = match found {
            Some(r) => {
                let version = r.get::<_, Option<i32>>(0).map(|v| v as u32);
                let row = read_row_from(&r, 1)?;
                version.map(|v| (v, row))
            }
            None => None,
        };
        let (version, model) = match &live {
            Some((v, _)) => (*v, self.compiled(*v)?),
            None => self.active_model()?.ok_or(StoreError::NoActiveModel)?,
        };
        if let Some((_, row)) = live {
            if row.model_version == version && row.last_ts.is_some_and(|last| last <= t) {
                let state = ContactState::decode(&model, &row.state, row.traits, row.company)
                    .map_err(|e| StoreError::Corrupt(format!("contact {}: {e}", row.id)))?;
                let score = state
                    .score_at(&model, t)
                    .expect("t is after the last message");
                return Ok(Some((row.id, score)));
            }
        }
        let Some(log) = self.contact_messages(id)? else {
            return Ok(None);
        };
        Ok(engine::score_from_log(&model, id, log.messages, t))
    }

    fn history(&self, id: &str) -> Result<Vec<LedgerEntry>> {
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
                        contact: r.get(1),
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

    fn messages(&self) -> Result<Vec<Message>> {
        self.read(|pg| {
            pg.query("SELECT body FROM events ORDER BY seq", &[])?
                .into_iter()
                .map(|r| engine::parse_stored(r.get(0)))
                .collect()
        })
    }

    fn contact_messages(&self, id: &str) -> Result<Option<StoredLog>> {
        self.read(|pg| {
            let Some(canonical) = pg.identity(id)? else {
                return Ok(None);
            };
            let (ids, messages) = engine::contact_log(pg, &canonical)?;
            Ok(Some(StoredLog {
                contact: canonical,
                ids,
                messages,
            }))
        })
    }

    fn erase(&mut self, id: &str) -> Result<Option<EraseReport>> {
        self.write(|pg| {
            let Some(canonical) = pg.identity(id)? else {
                return Ok(None);
            };
            let mut ids = pg.members(&canonical)?;
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

    fn scores(&self, query: &ScoreQuery) -> Result<Vec<Listed>> {
        let cache = &self.active;
        self.read(|pg| {
            if let Some(scan) = pg.scan(cache, query.at)? {
                return scan.select(query, |after, n, traits| pg.live_rows(after, n, traits));
            }
            let (tail, params) = query.sql(|n| format!("${n}"));
            let sql = format!("SELECT {} FROM contacts {tail}", row_columns!());
            let values: Vec<Box<dyn ToSql + Sync>> = params
                .into_iter()
                .map(|p| -> Box<dyn ToSql + Sync> {
                    match p {
                        Param::Text(t) => Box::new(t),
                        Param::Real(r) => Box::new(r),
                        Param::Int(i) => Box::new(i),
                    }
                })
                .collect();
            let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v.as_ref()).collect();
            pg.tx
                .query(&sql, &refs)?
                .iter()
                .map(|r| read_row(r).map(Listed::from))
                .collect()
        })
    }

    fn summary(&self, at: Option<Timestamp>) -> Result<Summary> {
        let cache = &self.active;
        self.read(|pg| {
            if let Some(scan) = pg.scan(cache, at)? {
                return scan.summary(|after, n, traits| pg.live_rows(after, n, traits));
            }
            let model = match PgStore::active_version(&mut pg.tx)? {
                Some(version) => Some(model_in(cache, pg, version)?),
                None => None,
            };
            let mut summary = SummaryBuilder::new(model.as_deref());
            use postgres::fallible_iterator::FallibleIterator;
            let mut rows = pg.tx.query_raw(
                "SELECT tier, grade, status, score FROM contacts",
                std::iter::empty::<&str>(),
            )?;
            while let Some(r) = rows.next()? {
                let status: &str = r.get(2);
                let status = Status::parse(status)
                    .ok_or_else(|| StoreError::Corrupt(format!("status {status:?}")))?;
                summary.add(r.get(0), r.get(1), status, r.get(3));
            }
            Ok(summary.finish(at))
        })
    }

    fn fire_due(&mut self, now: Timestamp, limit: usize) -> Result<DueReport> {
        let cache = &self.active;
        self.write(|pg| {
            let Some(version) = PgStore::active_version(&mut pg.tx)? else {
                return Ok(DueReport::default());
            };
            let model = model_in(cache, pg, version)?;
            engine::fire_due(pg, &model, version, now, limit)
        })
    }

    fn next_due(&self) -> Result<Option<Timestamp>> {
        self.read(|pg| {
            Ok(pg
                .query_opt("SELECT min(due) FROM contacts", &[])?
                .and_then(|r| r.get::<_, Option<i64>>(0))
                .map(Timestamp))
        })
    }

    fn firings(&self, q: &FiringQuery) -> Result<Vec<FiringRecord>> {
        self.read(|pg| {
            pg.query(
                "SELECT seq, key, trigger_id, contact, at, recorded_at, late, model_version, score, explanation
                 FROM firings
                 WHERE seq > $1 AND ($2::TEXT IS NULL OR trigger_id = $2) AND ($3::TEXT IS NULL OR contact = $3)
                 ORDER BY seq LIMIT $4",
                &[&q.after.unwrap_or(0), &q.trigger, &q.contact, &(q.limit as i64)],
            )?
            .into_iter()
            .map(|r| {
                Ok(FiringRecord {
                    seq: r.get(0),
                    key: r.get(1),
                    trigger: r.get(2),
                    contact: r.get(3),
                    at: Timestamp(r.get(4)),
                    recorded_at: Timestamp(r.get(5)),
                    late: r.get(6),
                    model_version: r.get::<_, i32>(7) as u32,
                    score: crate::outbox::json_value(r.get(8))?,
                    explanation: crate::outbox::json_value(r.get(9))?,
                })
            })
            .collect()
        })
    }

    fn claim(
        &mut self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> Result<Vec<Delivery>> {
        let rows = self.unlocked(|pg| {
            pg.query(
                "UPDATE outbox SET next_attempt = $2, attempts = attempts + 1
                 WHERE id IN (SELECT id FROM outbox WHERE status = 'pending' AND next_attempt <= $1
                              ORDER BY next_attempt, id LIMIT $3 FOR UPDATE SKIP LOCKED)
                 RETURNING id, key, destination, payload, attempts",
                &[&now.0, &lease_until.0, &(limit as i64)],
            )
        })?;
        let mut out = rows
            .into_iter()
            .map(|r| {
                let (action, body) = crate::outbox::split_payload(r.get(3))?;
                Ok(Delivery {
                    id: r.get(0),
                    key: r.get(1),
                    destination: r.get(2),
                    action,
                    body,
                    attempt: r.get::<_, i32>(4) as u32,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        out.sort_by_key(|d| d.id);
        Ok(out)
    }

    fn settle(&mut self, results: &[(i64, Settle)], now: Timestamp) -> Result<()> {
        self.unlocked(|pg| {
            for (id, result) in results {
                match result {
                    Settle::Delivered => pg.execute(
                        "UPDATE outbox SET status = 'delivered', delivered_at = $2, last_error = NULL WHERE id = $1",
                        &[id, &now.0],
                    )?,
                    Settle::Retry { at, error } => pg.execute(
                        "UPDATE outbox SET next_attempt = $2, last_error = $3 WHERE id = $1 AND status = 'pending'",
                        &[id, &at.0, error],
                    )?,
                    Settle::Dead { error } => pg.execute(
                        "UPDATE outbox SET status = 'dead', last_error = $2 WHERE id = $1 AND status = 'pending'",
                        &[id, error],
                    )?,
                };
            }
            Ok(())
        })
    }

    fn outbox(&self, status: Option<DeliveryStatus>, limit: usize) -> Result<Vec<OutboxRecord>> {
        self.read(|pg| {
            pg.query(
                "SELECT id, firing, key, destination, status, attempts, next_attempt, last_error, created_at, delivered_at
                 FROM outbox WHERE ($1::TEXT IS NULL OR status = $1) ORDER BY id DESC LIMIT $2",
                &[&status.map(|s| s.as_str()), &(limit as i64)],
            )?
            .into_iter()
            .map(|r| {
                let status: String = r.get(4);
                Ok(OutboxRecord {
                    id: r.get(0),
                    firing: r.get(1),
                    key: r.get(2),
                    destination: r.get(3),
                    status: DeliveryStatus::parse(&status)
                        .ok_or_else(|| StoreError::Corrupt(format!("outbox status {status:?}")))?,
                    attempts: r.get::<_, i32>(5) as u32,
                    next_attempt: Timestamp(r.get(6)),
                    last_error: r.get(7),
                    created_at: Timestamp(r.get(8)),
                    delivered_at: r.get::<_, Option<i64>>(9).map(Timestamp),
                })
            })
            .collect()
        })
    }

    fn retry_dead(&mut self, id: Option<i64>, now: Timestamp) -> Result<u64> {
        self.unlocked(|pg| {
            pg.execute(
                "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt = $2
                 WHERE status = 'dead' AND ($1::BIGINT IS NULL OR id = $1)",
                &[&id, &now.0],
            )
        })
    }

    fn purge_dead(&mut self, id: Option<i64>) -> Result<u64> {
        self.unlocked(|pg| {
            pg.execute(
                "DELETE FROM outbox WHERE status = 'dead' AND ($1::BIGINT IS NULL OR id = $1)",
                &[&id],
            )
        })
    }

    fn outbox_counts(&self) -> Result<OutboxCounts> {
        self.read(|pg| {
            let mut counts = OutboxCounts::default();
            for r in pg.query("SELECT status, count(*) FROM outbox GROUP BY status", &[])? {
                counts.add(r.get(0), r.get::<_, i64>(1) as u64)?;
            }
            Ok(counts)
        })
    }

    fn campaign_members(
        &self,
        campaign: &str,
        since: Option<Timestamp>,
        limit: usize,
    ) -> Result<Vec<CampaignMember>> {
        self.read(|pg| {
            Ok(pg
                .query(
                    "SELECT contact, firing, at, enrolled_at FROM campaign_members
                     WHERE campaign = $1 AND enrolled_at >= $2 ORDER BY enrolled_at, firing LIMIT $3",
                    &[&campaign, &since.map_or(i64::MIN, |t| t.0), &(limit as i64)],
                )?
                .into_iter()
                .map(|r| CampaignMember {
                    contact: r.get(0),
                    firing: r.get(1),
                    at: Timestamp(r.get(2)),
                    enrolled_at: Timestamp(r.get(3)),
                })
                .collect())
        })
    }

    fn set_challenger(&mut self, version: Option<u32>) -> Result<()> {
        if let Some(v) = version {
            self.model_source(v)?;
        }
        self.write(|pg| {
            pg.execute("DELETE FROM challenger", &[])?;
            if let Some(v) = version {
                pg.execute(
                    "INSERT INTO challenger (version, attached_at) VALUES ($1, $2)",
                    &[&(v as i32), &now().0],
                )?;
            }
            Ok(())
        })
    }

    fn challenger(&self) -> Result<Option<(u32, Arc<Model>)>> {
        let shadow = &self.shadow;
        self.read(|pg| {
            let found = pg
                .query_opt("SELECT version FROM challenger", &[])?
                .map(|r| r.get::<_, i32>(0) as u32);
            found.map(|v| Ok((v, model_in(shadow, pg, v)?))).transpose()
        })
    }

    fn add_outcomes(&mut self, outcomes: &[Outcome]) -> Result<()> {
        self.write(|pg| {
            let recorded = now().0;
            for o in outcomes {
                pg.execute(
                    "INSERT INTO outcomes (contact_id, outcome, value, at, recorded_at) VALUES ($1, $2, $3, $4, $5)",
                    &[&o.contact_id, &o.outcome, &o.value, &o.at.0, &recorded],
                )?;
            }
            Ok(())
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
                .map(|r| Outcome {
                    contact_id: r.get(0),
                    outcome: r.get(1),
                    value: r.get(2),
                    at: Timestamp(r.get(3)),
                })
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

    fn stats(&self) -> Result<Stats> {
        self.read(|pg| {
            Ok(Stats {
                events: pg.count("SELECT count(*) FROM events", &[])?,
                contacts: pg.count("SELECT count(*) FROM contacts", &[])?,
                ledger_entries: pg.count("SELECT count(*) FROM ledger", &[])?,
                bytes: pg.count(
                    "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
                     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE n.nspname = current_schema() AND c.relkind = 'r'",
                    &[],
                )?,
            })
        })
    }
}
