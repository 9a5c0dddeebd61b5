//! leadscore's durable store: the event log (source of truth), identity
//! links, each contact's live state and score under the active model, the
//! score history (ledger), and model versions.
//!
//! One [`Store`] trait (with its parts [`Outbox`], trigger delivery, and
//! [`Admin`], outcomes, keys and jobs); [`SqliteStore`] is the embedded implementation
//! (`./leadscore.db` by default) and [`PgStore`] the PostgreSQL one
//! (`--db postgres://…`). The scoring logic that both backends share
//! (deduplication, stitching, in-order absorb versus re-fold, ledger entries)
//! lives in `engine` and talks to a backend through a small transaction
//! interface, so that a second backend implements storage, not scoring.
//!
//! The schema is documented in `docs/storage.md`.

#![deny(missing_docs)]

use std::sync::Arc;

use leadscore_core::event::Message;
use leadscore_core::model::Model;
use leadscore_core::score::Score;
use leadscore_core::time::Timestamp;
use serde_json::Value;

mod bodies;
mod diff;
mod engine;
mod jobs;
mod keys;
mod listing;
pub mod outbox;

pub use outbox::{
    CampaignMember, Delivery, DeliveryStatus, DueReport, FiringQuery, FiringRecord, OutboxCounts,
    OutboxRecord, Settle,
};
mod pcache;
mod postgres;
mod prefetch;
mod records;
mod sqlite;
mod walvfs;

pub use diff::{diff_models, RuleChange};
pub use engine::{DryRun, Mover, DEFAULT_LIVE_CONTACTS};
pub(crate) use jobs::JobColumns;
pub use jobs::{Job, JobUpdate, JOB_SILENCE};
pub use keys::{key_hash, new_key, ApiKey, Scope};
pub(crate) use listing::Param;
pub use listing::{ScoreQuery, Summary, SummaryBin, SummaryBuilder, SummaryCell};
pub use postgres::PgStore;
pub use records::{
    ActivateReport, ContactAt, ContactRecord, EraseReport, Incoming, IngestReport, LedgerEntry,
    Listed, ModelVersion, Outcome, OutcomesReport, ScoreFields, Stats, StoredLog,
};
pub use sqlite::SqliteStore;

/// The PostgreSQL client's connection settings (re-exported for callers
/// that build one, such as tests setting a schema).
pub use ::postgres::Config as PgConfig;

/// What can go wrong in the store. Every variant says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file is not a leadscore database.
    #[error("{path}: not a leadscore database ({why})")]
    Foreign {
        /// The database path.
        path: String,
        /// What was found instead.
        why: String,
    },
    /// The database reported an error (disk full, locked, corrupt page, …).
    #[error("database: {0}")]
    Database(String),
    /// A schema migration failed; the database was left as it was.
    #[error("schema migration failed: {0}")]
    Migration(String),
    /// A model failed validation (the message names places and rule ids).
    #[error("{0}")]
    Model(String),
    /// No such model version.
    #[error("no model version {0} (see `leadscore model list`)")]
    NoSuchVersion(u32),
    /// Scoring needs an active model.
    #[error("no active model: add one with `leadscore model add FILE --activate`")]
    NoActiveModel,
    /// Shadow scoring needs an attached challenger.
    #[error("no challenger attached: `leadscore model challenger VERSION`")]
    NoChallenger,
    /// Stored data could not be read back.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        StoreError::Database(e.to_string())
    }
}

/// Results of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Progress callback: `(done, total)`.
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// Makes everything a store has committed so far durable (see
/// [`Store::defer_durability`]).
pub trait Flush: Send {
    /// Returns once every transaction committed before the call is on disk.
    fn flush(&mut self) -> Result<()>;
}

/// Trigger firings and their delivery: due-time evaluation, the outbox that
/// delivery workers claim from and settle into, dead letters, campaign
/// lists. Every operation is one transaction, as in [`Store`].
pub trait Outbox: Send {
    /// Evaluates the triggers of contacts whose due time is at or before
    /// `now` (at most `limit` of them, earliest first), recording firings.
    fn fire_due(&mut self, now: Timestamp, limit: usize) -> Result<DueReport>;

    /// The earliest due time of any contact.
    fn next_due(&self) -> Result<Option<Timestamp>>;

    /// Recorded firings, oldest first.
    fn firings(&self, query: &FiringQuery) -> Result<Vec<FiringRecord>>;

    /// Claims up to `limit` pending deliveries due at `now`, leasing them
    /// until `lease_until` (a worker that dies lets the lease expire and the
    /// row is claimed again: at-least-once). Several processes may claim
    /// concurrently without getting the same row.
    fn claim(
        &mut self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> Result<Vec<Delivery>>;

    /// Records how claimed deliveries ended (one transaction).
    fn settle(&mut self, results: &[(i64, Settle)], now: Timestamp) -> Result<()>;

    /// Outbox rows (of one status, or all), newest first.
    fn outbox(&self, status: Option<DeliveryStatus>, limit: usize) -> Result<Vec<OutboxRecord>>;

    /// Puts dead letters (one, or all) back in the queue; returns how many.
    fn retry_dead(&mut self, id: Option<i64>, now: Timestamp) -> Result<u64>;

    /// Deletes dead letters (one, or all); returns how many.
    fn purge_dead(&mut self, id: Option<i64>) -> Result<u64>;

    /// Outbox rows by status.
    fn outbox_counts(&self) -> Result<OutboxCounts>;

    /// Members of a campaign list enrolled at or after `since`, oldest first.
    fn campaign_members(
        &self,
        campaign: &str,
        since: Option<Timestamp>,
        limit: usize,
    ) -> Result<Vec<CampaignMember>>;
}

/// What the store keeps beside the log and the scores: sales outcomes, API
/// keys (their hashes) and background jobs. Every operation is one
/// transaction, as in [`Store`].
pub trait Admin: Send {
    /// Records outcomes, in one transaction. One equal to an outcome
    /// already recorded (same contact id, outcome, time and value) is
    /// skipped, so a resent request or a CRM export imported again adds
    /// nothing; so is one naming an erased id, as its events are.
    fn add_outcomes(&mut self, outcomes: &[Outcome]) -> Result<OutcomesReport>;

    /// Every recorded outcome, in the order recorded.
    fn outcomes(&self) -> Result<Vec<Outcome>>;

    /// The outcomes recorded for any of `ids`, in the order recorded.
    fn outcomes_of(&self, ids: &[String]) -> Result<Vec<Outcome>>;

    /// Stores a key's hash with its scope.
    fn add_key(&mut self, hash: &str, scope: Scope, label: &str) -> Result<ApiKey>;

    /// The key with this hash, if any (revoked ones included).
    fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>>;

    /// Every key, oldest first.
    fn keys(&self) -> Result<Vec<ApiKey>>;

    /// Revokes a key; `false` if there is no such key.
    fn revoke_key(&mut self, id: i64) -> Result<bool>;

    /// Records a new running job.
    fn add_job(&mut self, kind: &str, version: Option<u32>) -> Result<Job>;

    /// Records a job's progress or end.
    fn update_job(&mut self, id: i64, update: &JobUpdate) -> Result<()>;

    /// A job by id, as seen now.
    fn job(&self, id: i64) -> Result<Option<Job>>;
}

/// The store: every operation is one transaction; on error nothing of it
/// is kept. Trigger delivery and the admin records are its parts
/// [`Outbox`] and [`Admin`].
pub trait Store: Outbox + Admin + Send {
    /// Appends messages to the log and updates live scores, in one
    /// transaction. Duplicates are acknowledged and ignored; late messages
    /// re-fold their contact only.
    fn ingest(&mut self, messages: Vec<Incoming>) -> Result<IngestReport>;

    /// Tunes this connection for a bulk import of many large batches
    /// (SQLite keeps 256 MiB of pages instead of 2 MiB: with random
    /// messageIds every batch touches pages all over the message-id
    /// index). The default does nothing.
    fn prepare_bulk_load(&mut self) -> Result<()> {
        Ok(())
    }

    /// From now on, lets this connection's commits return before the disk
    /// has them, and returns what makes them durable, for a caller that
    /// acknowledges a write only after [`Flush::flush`] has returned (the
    /// server's writer overlaps that wait with its next transaction). A
    /// commit not yet flushed is visible to readers and survives a crash of
    /// the process, but not of the machine. `None` (the default): every
    /// commit is durable when it returns and nothing is deferred. A store
    /// may also tune itself for many small commits here (SQLite keeps
    /// 64 MiB of pages, and the live states of at least the last
    /// `live_contacts` contacts its batches wrote, 0 for none:
    /// [`DEFAULT_LIVE_CONTACTS`]).
    fn defer_durability(&mut self, _live_contacts: usize) -> Result<Option<Box<dyn Flush>>> {
        Ok(None)
    }

    /// Readies this connection to answer many reads while another one
    /// writes (the server's read pool). SQLite reads the database through
    /// a memory map, as the server's writer does, instead of copying each
    /// page it misses into the connection's own cache. The default does
    /// nothing (PostgreSQL's shared buffers already serve every
    /// connection).
    fn serve_reads(&mut self) -> Result<()> {
        Ok(())
    }

    /// For a store that defers ([`Store::defer_durability`]) and keeps
    /// derived data in memory to write later (SQLite: live rows, the log's
    /// runs of positions, the messageId index; `docs/storage.md`): writes
    /// a share of what is due, in a transaction of its own, and frees a
    /// share of what commits replaced, so that the transactions requests
    /// wait for need not. The server's writer calls
    /// it whenever no request waits. Returns how long until more is due
    /// (zero: call again now), `None` when nothing is kept. The default
    /// keeps nothing.
    fn write_idle(&mut self) -> Result<Option<std::time::Duration>> {
        Ok(None)
    }

    /// Validates and stores a model as a new immutable version (the same
    /// source twice gives the same version).
    fn add_model(&mut self, name: &str, source: &str) -> Result<ModelVersion>;

    /// Every stored model version, oldest first.
    fn models(&self) -> Result<Vec<ModelVersion>>;

    /// The source text of a version.
    fn model_source(&self, version: u32) -> Result<String>;

    /// The active version and its compiled model.
    fn active_model(&self) -> Result<Option<(u32, Arc<Model>)>>;

    /// The version active before the current one, if any.
    fn previous_version(&self) -> Result<Option<u32>>;

    /// Rescores every contact under `version` and makes it active. Resumable:
    /// after a crash, calling it again continues where it stopped. Until it
    /// completes, the previous scores stay in place; the switch is atomic.
    fn activate(&mut self, version: u32, progress: Progress<'_>) -> Result<ActivateReport>;

    /// Scores every contact under `candidate` as of `at`, beside its score
    /// under the active model at the same time, without storing anything.
    fn dry_run(&self, candidate: &Model, at: Timestamp, progress: Progress<'_>) -> Result<DryRun>;

    /// The stored record of a contact, by any of its ids.
    fn contact(&self, id: &str) -> Result<Option<ContactRecord>>;

    /// Contacts in id order after `after`, at most `limit`.
    fn contacts(&self, after: Option<&str>, limit: usize) -> Result<Vec<ContactRecord>>;

    /// A contact's score at `t` under the active model: from the live state
    /// when `t` is at or after its latest event, else folded from its log.
    fn score_at(&self, id: &str, t: Timestamp) -> Result<Option<(String, Score)>>;

    /// [`Store::score_at`] with [`Store::contact`] of the canonical id it
    /// gives: what `GET /contacts/{id}` and `leadscore contact` show, read
    /// from one live row when it gives the score ([`scored_from`]).
    fn contact_at(&self, id: &str, t: Timestamp) -> Result<Option<ContactAt>>;

    /// A contact's score history, oldest first.
    fn history(&self, id: &str) -> Result<Vec<LedgerEntry>>;

    /// A contact's canonical id, its ids and its messages in log order.
    fn contact_messages(&self, id: &str) -> Result<Option<StoredLog>>;

    /// Every contact's log ([`Store::contact_messages`]), canonical ids in
    /// id order, all from one snapshot: a batch recompute that holds one
    /// contact at a time instead of the whole log.
    fn each_log(&self, each: &mut dyn FnMut(StoredLog)) -> Result<()>;

    /// Deletes everything held about a contact and tombstones its ids.
    fn erase(&mut self, id: &str) -> Result<Option<EraseReport>>;

    /// Counts.
    fn stats(&self) -> Result<Stats>;

    /// Live contacts matching `query`, in score order.
    fn scores(&self, query: &ScoreQuery) -> Result<Vec<Listed>>;

    /// Contacts per tier × grade and a score histogram over the active
    /// model's range, scored as of `at` as in [`ScoreQuery::at`] (with
    /// `rewind`, the contacts as they were then: [`ScoreQuery::rewind`]).
    fn summary(&self, at: Option<Timestamp>, rewind: bool) -> Result<Summary>;

    /// Attaches a stored version as the challenger of the active model
    /// (`None` detaches it).
    fn set_challenger(&mut self, version: Option<u32>) -> Result<()>;

    /// The attached challenger version and its compiled model.
    fn challenger(&self) -> Result<Option<(u32, Arc<Model>)>>;
}

/// Which stored model to score under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Under {
    /// The active model.
    Active,
    /// The attached challenger (scored in shadow).
    Challenger,
    /// Any stored version.
    Version(u32),
}

impl std::str::FromStr for Under {
    type Err = String;

    /// `active`, `challenger` or a version number.
    fn from_str(text: &str) -> Result<Under, String> {
        match text {
            "active" => Ok(Under::Active),
            "challenger" => Ok(Under::Challenger),
            n => n.parse().map(Under::Version).map_err(|_| {
                format!("{text:?}: expected `active`, `challenger` or a model version number")
            }),
        }
    }
}

/// A contact's score at `t` from what a backend's read of its live row
/// gave (`live`: [`engine::LiveScore`]): the row's score with the row, else
/// the score folded from the log of the contact `id` belonged to at `t`,
/// under the active model the read found (`None`: no message by then).
/// [`Store::score_at`] and [`Store::contact_at`] of both backends.
pub(crate) fn scored_from<S: Store + ?Sized>(
    store: &S,
    live: engine::LiveScore,
    id: &str,
    t: Timestamp,
) -> Result<Option<(String, Score, Option<engine::Row>)>> {
    let model = match live {
        Ok((score, row)) => return Ok(Some((row.id.to_string(), score, Some(row)))),
        Err(model) => model,
    };
    let Some(log) = store.contact_messages(id)? else {
        return Ok(None);
    };
    Ok(engine::score_from_log(&model, id, log.messages, t).map(|(c, score)| (c, score, None)))
}

/// [`Store::contact_at`] from [`scored_from`]'s answer: the record from the
/// live row that gave the score, else read for the canonical id.
pub(crate) fn contact_at_from<S: Store + ?Sized>(
    store: &S,
    scored: Option<(String, Score, Option<engine::Row>)>,
) -> Result<Option<ContactAt>> {
    let Some((id, score, row)) = scored else {
        return Ok(None);
    };
    let record = match row {
        Some(row) => Some(ContactRecord::from(row)),
        None => store.contact(&id)?,
    };
    Ok(Some(ContactAt { id, score, record }))
}

/// The model `under` names, with its version.
pub fn model_under(store: &dyn Store, under: Under) -> Result<(u32, Arc<Model>)> {
    match under {
        Under::Active => store.active_model()?.ok_or(StoreError::NoActiveModel),
        Under::Challenger => store.challenger()?.ok_or(StoreError::NoChallenger),
        Under::Version(version) => {
            // The active model and the challenger are compiled and kept by
            // the store; any other version is compiled for this call.
            for kept in [store.active_model()?, store.challenger()?]
                .into_iter()
                .flatten()
            {
                if kept.0 == version {
                    return Ok(kept);
                }
            }
            let source = store.model_source(version)?;
            Ok((version, Arc::new(compile(version, "model", &source)?)))
        }
    }
}

/// A contact's score and explanation at `t` under `model` (see
/// [`model_under`]: the active one, the challenger in shadow, any stored
/// version), from its log stitched as of `t`: `(contact id at t, score, explanation)`.
pub fn explain_at(
    store: &dyn Store,
    id: &str,
    t: Timestamp,
    model: &Model,
) -> Result<Option<(String, Score, leadscore_core::score::Explanation)>> {
    let Some(log) = store.contact_messages(id)? else {
        return Ok(None);
    };
    Ok(engine::log_as_of(id, log.messages, t).map(|contact| {
        let (score, explanation) = contact.explain_as_of(model, t);
        (contact.id, score, explanation)
    }))
}

/// A message as the JSON object it is stored as.
pub fn message_json(message: &Message) -> Result<Value> {
    serde_json::from_str(&message.stored_json())
        .map_err(|e| StoreError::Corrupt(format!("stored message: {e}")))
}

/// Everything held about a contact (GDPR access request): ids, live
/// record, history, events as stored and recorded outcomes; `None` for an
/// unknown id.
pub fn export_contact(store: &dyn Store, id: &str) -> Result<Option<Value>> {
    let Some(log) = store.contact_messages(id)? else {
        // An id known only from outcomes recorded for it.
        let outcomes = store.outcomes_of(&[id.to_string()])?;
        if outcomes.is_empty() {
            return Ok(None);
        }
        return Ok(Some(serde_json::json!({
            "contact_id": id,
            "ids": [id],
            "record": null,
            "history": [],
            "events": [],
            "outcomes": outcomes,
        })));
    };
    let record = store.contact(&log.contact)?;
    let history = store.history(&log.contact)?;
    let mut ids = log.ids.clone();
    if !ids.contains(&log.contact) {
        ids.push(log.contact.clone());
    }
    let outcomes = store.outcomes_of(&ids)?;
    let events = log
        .messages
        .iter()
        .map(message_json)
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(serde_json::json!({
        "contact_id": log.contact,
        "ids": log.ids,
        "record": record,
        "history": history,
        "events": events,
        "outcomes": outcomes,
    })))
}

/// Whether a `--db` value names a PostgreSQL database.
pub fn is_postgres(target: &std::path::Path) -> bool {
    let text = target.to_string_lossy();
    text.starts_with("postgres://") || text.starts_with("postgresql://")
}

/// Opens the store a `--db` value names: a `postgres://` URL, or a SQLite
/// file (created if missing).
pub fn open(target: &std::path::Path) -> Result<Box<dyn Store>> {
    if is_postgres(target) {
        Ok(Box::new(PgStore::open(&target.to_string_lossy())?))
    } else {
        Ok(Box::new(SqliteStore::open(target)?))
    }
}

/// 2000-01-01T00:00:00Z. No event of a marketing log is older: a message
/// dated before it most likely had epoch seconds read as milliseconds
/// (January 1970) or a default date, and `import` and the server say so.
pub const IMPLAUSIBLY_OLD: Timestamp = Timestamp(946_684_800_000_000_000);

/// Hash of an id as kept in tombstones (the id itself is not kept).
pub fn id_hash(id: &str) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(id.as_bytes()))
}

/// The wall clock, for `recorded_at`, `added_at` and "now" in commands and
/// the server (the scoring core has no clock; the engine takes times as
/// arguments).
pub fn now() -> Timestamp {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    Timestamp(i64::try_from(nanos).unwrap_or(i64::MAX))
}

/// Validates a model about to be added (errors name `name`, the file) and
/// returns the hash that identifies its source.
fn validate(name: &str, source: &str) -> Result<String> {
    Model::from_toml(name, source).map_err(|e| StoreError::Model(e.to_string()))?;
    Ok(format!(
        "{:032x}",
        xxhash_rust::xxh3::xxh3_128(source.as_bytes())
    ))
}

/// A connection's compiled model of one version (the active model, or the
/// challenger), compiled once and kept until another version is asked for.
#[derive(Default)]
pub(crate) struct ModelCache(std::cell::RefCell<Option<(u32, Arc<Model>)>>);

impl ModelCache {
    /// The compiled model of `version`: the cached one, else compiled from
    /// the `(name, source)` that `load` reads from the store.
    pub(crate) fn get(
        &self,
        version: u32,
        load: impl FnOnce() -> Result<(String, String)>,
    ) -> Result<Arc<Model>> {
        if let Some((v, model)) = &*self.0.borrow() {
            if *v == version {
                return Ok(model.clone());
            }
        }
        let (name, source) = load()?;
        let model = Arc::new(compile(version, &name, &source)?);
        self.set(version, model.clone());
        Ok(model)
    }

    /// Caches `model` as the compiled `version` (after an activation).
    pub(crate) fn set(&self, version: u32, model: Arc<Model>) {
        *self.0.borrow_mut() = Some((version, model));
    }
}

/// Compiles stored model source.
fn compile(version: u32, name: &str, source: &str) -> Result<Model> {
    Model::from_stored_toml(&format!("{name} (v{version})"), source)
        .map_err(|e| StoreError::Model(e.to_string()))
}
