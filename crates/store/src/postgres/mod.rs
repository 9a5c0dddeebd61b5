//! The PostgreSQL backend (`--db postgres://…`): the same engine and schema
//! as SQLite. Several processes may share one database: every writing
//! transaction first takes one transaction-scoped advisory lock, so writers
//! are serialised by the database (correct under concurrency; write
//! throughput is one writer's). Statements are prepared once per connection.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use leadscore_core::model::Model;
use leadscore_core::score::{Score, Status};
use leadscore_core::time::Timestamp;
use postgres::types::ToSql;
use postgres::{Client, NoTls, Statement};

use crate::engine::{self, Table, Tx};
use crate::{
    now, validate, ActivateReport, ContactAt, ContactRecord, DryRun, EraseReport, Incoming,
    IngestReport, LedgerEntry, Listed, ModelCache, ModelVersion, Param, Progress, Result,
    ScoreQuery, Stats, Store, StoreError, StoredLog, Summary, SummaryBuilder,
};

/// The columns of a contacts row, in [`read_row`]'s order.
macro_rules! row_columns {
    () => {
        "id, model_version, state, traits, company, last_ts, score, raw, fit, engagement, tier, grade, stage, status, reasons, triggers, due"
    };
}

mod activation;
mod admin;
mod contacts;
mod outbox;
mod rows;

use rows::{model_in, read_row, read_row_from, Pg};

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
    active: ModelCache,
    /// The compiled challenger, by version (see `active`).
    shadow: ModelCache,
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
            active: ModelCache::default(),
            shadow: ModelCache::default(),
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
        self.active.get(version, || {
            let row = self
                .client
                .borrow_mut()
                .query_opt(
                    "SELECT name, source FROM models WHERE version = $1",
                    &[&(version as i32)],
                )?
                .ok_or(StoreError::NoSuchVersion(version))?;
            Ok((row.get(0), row.get(1)))
        })
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

    /// The score at `t` of contact `id` from its live row, with the row, in
    /// one round trip. When the row cannot give it, the active model to
    /// fold the contact's log with: `id` is not a canonical id (no live
    /// row has it), or the row's state is of another model version or
    /// after `t`.
    fn live_score(&self, id: &str, t: Timestamp) -> Result<engine::LiveScore> {
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
        let Some((_, row)) = live else {
            return Ok(Err(model));
        };
        Ok(match engine::score_from_row(&model, version, &row, t)? {
            Some(score) => Ok((score, row)),
            None => Err(model),
        })
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
        self.activate_version(version, progress)
    }

    fn dry_run(&self, candidate: &Model, at: Timestamp, progress: Progress<'_>) -> Result<DryRun> {
        let cache = &self.active;
        self.read(|pg| {
            let total = pg.count("SELECT count(DISTINCT contact) FROM identities", &[])?;
            let active = pg.active_in(cache)?;
            engine::dry_run(pg, candidate, at, active, total, progress)
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
        let scored = crate::scored_from(self, self.live_score(id, t)?, id, t)?;
        Ok(scored.map(|(id, score, _)| (id, score)))
    }

    fn contact_at(&self, id: &str, t: Timestamp) -> Result<Option<ContactAt>> {
        let scored = crate::scored_from(self, self.live_score(id, t)?, id, t)?;
        crate::contact_at_from(self, scored)
    }

    fn history(&self, id: &str) -> Result<Vec<LedgerEntry>> {
        self.ledger_of(id)
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

    fn each_log(&self, each: &mut dyn FnMut(StoredLog)) -> Result<()> {
        self.read(|pg| engine::each_log(pg, each))
    }

    fn erase(&mut self, id: &str) -> Result<Option<EraseReport>> {
        self.erase_contact(id)
    }

    fn scores(&self, query: &ScoreQuery) -> Result<Vec<Listed>> {
        let cache = &self.active;
        self.read(|pg| {
            if let Some(scan) = pg.scan(cache, query.at, query.rewind)? {
                return scan.select(query, pg);
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

    fn summary(&self, at: Option<Timestamp>, rewind: bool) -> Result<Summary> {
        let cache = &self.active;
        self.read(|pg| {
            if let Some(scan) = pg.scan(cache, at, rewind)? {
                return scan.summary(pg);
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

    fn stats(&self) -> Result<Stats> {
        self.read(|pg| {
            Ok(Stats {
                events: pg.count("SELECT count(*) FROM events", &[])?,
                contacts: pg.count("SELECT count(*) FROM contacts", &[])?,
                ledger_entries: pg.count("SELECT count(*) FROM ledger", &[])?,
                outcomes: pg.count("SELECT count(*) FROM outcomes", &[])?,
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
