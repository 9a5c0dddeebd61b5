//! leadscore's durable store: the event log (source of truth), identity
//! links, each contact's live state and score under the active model, the
//! score history (ledger), and model versions.
//!
//! One [`Store`] trait; [`SqliteStore`] is the embedded implementation
//! (`./leadscore.db` by default) and [`PgStore`] the PostgreSQL one
//! (`--db postgres://…`). The scoring logic that both backends share
//! (deduplication, stitching, in-order absorb versus re-fold, ledger entries)
//! lives in `engine` and talks to a backend through a small transaction
//! interface, so that a second backend implements storage, not scoring.
//!
//! The schema is documented in `docs/storage.md`.

#![deny(missing_docs)]

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use leadscore_core::event::Message;
use leadscore_core::model::Model;
use leadscore_core::score::{Score, Status};
use leadscore_core::time::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

mod diff;
mod engine;
mod listing;
pub mod outbox;

pub use outbox::{
    CampaignMember, Delivery, DeliveryStatus, DueReport, FiringQuery, FiringRecord, OutboxCounts,
    OutboxRecord, Settle,
};
mod pcache;
mod postgres;
mod sqlite;

pub use diff::{diff_models, RuleChange};
pub use engine::{DryRun, Mover};
pub use postgres::PgStore;
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

/// A message ready to be stored: the message and its stored JSON form
/// ([`Message::stored_json`]), computed by the caller so that it can be done
/// in parallel before the (sequential) transaction.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The message.
    pub message: Message,
    /// Its stored form.
    pub body: String,
}

impl Incoming {
    /// Prepares a message for storage.
    pub fn new(message: Message) -> Incoming {
        let body = message.stored_json();
        Incoming { message, body }
    }
}

/// What one call to [`Store::ingest`] did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, JsonSchema)]
pub struct IngestReport {
    /// New messages appended to the log.
    pub accepted: u64,
    /// Messages whose id was already stored (acknowledged, ignored).
    pub duplicates: u64,
    /// Messages that replaced the stored copy of their id (SPEC: the
    /// earliest `(timestamp, canonical JSON)` copy is the one kept).
    pub replaced: u64,
    /// Messages of erased contacts (ignored, see `erase`).
    pub erased: u64,
    /// Messages folded in order into a live state (the cheap path).
    pub absorbed: u64,
    /// Contacts re-folded from their log (late messages, merges).
    pub refolded: u64,
    /// Ledger entries written.
    pub ledger_entries: u64,
    /// Whether an active model scored the messages.
    pub scored: bool,
    /// Trigger firings recorded.
    pub firings: u64,
    /// The same, by trigger id.
    pub firings_by_trigger: BTreeMap<String, u64>,
    /// The score changes this call recorded, in order (`seq` is 0: the
    /// ledger numbers them). Per call: not summed by `+=`.
    #[serde(skip)]
    pub changes: Vec<LedgerEntry>,
}

impl std::ops::AddAssign for IngestReport {
    fn add_assign(&mut self, o: IngestReport) {
        self.accepted += o.accepted;
        self.duplicates += o.duplicates;
        self.replaced += o.replaced;
        self.erased += o.erased;
        self.absorbed += o.absorbed;
        self.refolded += o.refolded;
        self.ledger_entries += o.ledger_entries;
        self.scored |= o.scored;
        self.firings += o.firings;
        for (trigger, n) in o.firings_by_trigger {
            *self.firings_by_trigger.entry(trigger).or_default() += n;
        }
    }
}

/// One stored model version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ModelVersion {
    /// Version number, from 1.
    pub version: u32,
    /// File name it was added from.
    pub name: String,
    /// xxh3-128 of the source text, hex.
    pub hash: String,
    /// When it was added.
    pub added_at: Timestamp,
    /// Whether it is the active version.
    pub active: bool,
}

/// The part of a score the ledger tracks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ScoreFields {
    /// Score (clamped).
    pub score: f64,
    /// Tier name or empty.
    pub tier: String,
    /// Grade name or empty.
    pub grade: String,
    /// Stage name or empty.
    pub stage: String,
    /// `active` or `excluded`.
    pub status: Status,
}

impl From<&Score> for ScoreFields {
    fn from(s: &Score) -> ScoreFields {
        ScoreFields {
            score: s.score,
            tier: s.tier.clone(),
            grade: s.grade.clone(),
            stage: s.stage.clone(),
            status: s.status,
        }
    }
}

impl fmt::Display for ScoreFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.2}", self.score)?;
        for label in [&self.tier, &self.grade, &self.stage] {
            if !label.is_empty() {
                write!(f, " {label}")?;
            }
        }
        if self.status == Status::Excluded {
            f.write_str(" excluded")?;
        }
        Ok(())
    }
}

/// One change in a contact's score history.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct LedgerEntry {
    /// Position in the ledger (increasing).
    pub seq: i64,
    /// Canonical contact id.
    pub contact: String,
    /// The time the score is as of (the contact's latest event).
    pub at: Option<Timestamp>,
    /// When the change was recorded.
    pub recorded_at: Timestamp,
    /// Model version that produced it.
    pub model_version: u32,
    /// Before (`None` for a new contact).
    pub old: Option<ScoreFields>,
    /// After (`None` when merged into another contact or erased).
    pub new: Option<ScoreFields>,
    /// `message <id>`, `late message <id>`, `merge`, `activate v<n>`, …
    pub cause: String,
}

/// A contact as stored: its score as of its latest event under the model
/// version that produced it.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ContactRecord {
    /// Canonical id.
    pub id: String,
    /// Model version of the stored state and score.
    pub model_version: u32,
    /// Time of the latest event.
    pub last_event: Option<Timestamp>,
    /// Score as of `last_event`.
    pub score: Score,
    /// Traits as of the latest event.
    pub traits: Map<String, Value>,
    /// Company traits as of the latest event.
    pub company: Map<String, Value>,
    /// Size of the stored state snapshot in bytes.
    pub state_bytes: usize,
}

/// A contact in a leaderboard.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    /// Canonical id.
    pub id: String,
    /// Time of the latest event.
    pub last_event: Option<Timestamp>,
    /// Score as of the listing's time ([`ScoreQuery::at`]).
    pub score: Score,
}

/// A contact's log as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredLog {
    /// Canonical id.
    pub contact: String,
    /// Its ids (user and anonymous).
    pub ids: Vec<String>,
    /// Its messages in log order.
    pub messages: Vec<Message>,
}

/// What an activation (or full rescore) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ActivateReport {
    /// Contacts scored under the new version.
    pub contacts: u64,
    /// Contacts whose score, tier, grade, stage or status changed.
    pub changed: u64,
    /// Whether an interrupted activation was resumed.
    pub resumed: bool,
}

/// What erasing a contact removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct EraseReport {
    /// The canonical id erased.
    pub contact: String,
    /// Its ids (user and anonymous), now tombstoned.
    pub ids: Vec<String>,
    /// Events deleted.
    pub events: u64,
    /// Ledger entries deleted.
    pub ledger_entries: u64,
}

/// Counts of what the store holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Stats {
    /// Events in the log.
    pub events: u64,
    /// Contacts with a live score.
    pub contacts: u64,
    /// Ledger entries.
    pub ledger_entries: u64,
    /// Database size in bytes.
    pub bytes: u64,
}

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Send events (a "write key").
    Ingest,
    /// Read scores, contacts and history.
    Read,
    /// Everything, including models and erasure.
    Admin,
}

impl Scope {
    /// `ingest`, `read` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }

    /// Reads [`Scope::as_str`] back.
    pub fn parse(text: &str) -> Option<Scope> {
        match text {
            "ingest" => Some(Scope::Ingest),
            "read" => Some(Scope::Read),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }

    /// Whether a key of this scope may do what `needed` requires (admin may
    /// do everything; ingest keys only send data; read keys only read).
    pub fn allows(self, needed: Scope) -> bool {
        self == needed || self == Scope::Admin
    }
}

/// A stored API key (its hash only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    /// Key id (for listing and revoking).
    pub id: i64,
    /// What it may do.
    pub scope: Scope,
    /// Free text.
    pub label: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// Whether it was revoked.
    pub revoked: bool,
}

/// A new random API key: `ls_` + the scope + 32 random bytes in hex.
pub fn new_key(scope: Scope) -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| StoreError::Database(format!("no randomness: {e}")))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("ls_{}_{hex}", scope.as_str()))
}

/// The stored form of a key: SHA-256, hex (keys are random, so a fast hash
/// is enough; the key itself is never stored).
pub fn key_hash(key: &str) -> String {
    use sha2::Digest;
    use std::fmt::Write as _;
    let digest = sha2::Sha256::digest(key.as_bytes());
    let mut hex = String::with_capacity(2 * digest.len());
    for b in digest {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// A leaderboard or segment query over the live contacts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScoreQuery {
    /// Scores as of this time (decay, inactivity and `days_since()` moved
    /// to it; a contact whose latest event is later keeps its score as of
    /// that event); `None`: each contact's score as of its latest event.
    pub at: Option<Timestamp>,
    /// Only this tier (`""` = no tier).
    pub tier: Option<String>,
    /// Only this grade.
    pub grade: Option<String>,
    /// Only this stage.
    pub stage: Option<String>,
    /// Only this status.
    pub status: Option<Status>,
    /// Score at least.
    pub min: Option<f64>,
    /// Score at most.
    pub max: Option<f64>,
    /// Lowest scores first (default: highest first).
    pub ascending: bool,
    /// Continue after this `(score, id)` (the last row of the previous page).
    pub after: Option<(f64, String)>,
    /// Rows at most.
    pub limit: usize,
}

/// Contacts per tier × grade (active ones), excluded count and a score
/// histogram: the segment summary ([`Store::summary`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// The time the scores are as of.
    pub as_of: Option<Timestamp>,
    /// Live contacts.
    pub contacts: u64,
    /// Of which excluded.
    pub excluded: u64,
    /// Active contacts per tier and grade (`""`: none), in name order.
    pub tier_grade: Vec<SummaryCell>,
    /// Active contacts per tenth of the model's score range.
    pub histogram: Vec<SummaryBin>,
}

/// One tier × grade cell of a [`Summary`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SummaryCell {
    /// Tier name (`""`: none).
    pub tier: String,
    /// Grade name (`""`: none).
    pub grade: String,
    /// Active contacts in both.
    pub contacts: u64,
}

/// One bin of a [`Summary`]'s histogram: `from <= score < to` (the last
/// bin holds its upper bound too).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SummaryBin {
    /// Lowest score of the bin.
    pub from: f64,
    /// Highest score of the bin (excluded but for the last bin).
    pub to: f64,
    /// Active contacts in it.
    pub contacts: u64,
}

impl Summary {
    /// Bins of the histogram.
    pub const BINS: usize = 10;
}

/// Builds a [`Summary`] one contact at a time (a store streams its rows
/// into it: nothing per contact is kept).
#[derive(Debug, Clone)]
pub struct SummaryBuilder {
    min: f64,
    width: f64,
    contacts: u64,
    excluded: u64,
    matrix: BTreeMap<(String, String), u64>,
    histogram: [u64; Summary::BINS],
}

impl SummaryBuilder {
    /// A summary over the score range `[min, max]` (the active model's;
    /// 0–100 without one).
    pub fn new(model: Option<&Model>) -> SummaryBuilder {
        let (min, max) = model.map_or((0.0, 100.0), |m| (m.min, m.max));
        SummaryBuilder {
            min,
            width: ((max - min) / Summary::BINS as f64).max(f64::MIN_POSITIVE),
            contacts: 0,
            excluded: 0,
            matrix: BTreeMap::new(),
            histogram: [0; Summary::BINS],
        }
    }

    /// Counts one contact.
    pub fn add(&mut self, tier: &str, grade: &str, status: Status, score: f64) {
        self.contacts += 1;
        if status == Status::Excluded {
            self.excluded += 1;
            return;
        }
        match self.matrix.get_mut(&(tier.to_string(), grade.to_string())) {
            Some(n) => *n += 1,
            None => {
                self.matrix.insert((tier.to_string(), grade.to_string()), 1);
            }
        }
        let bin = ((score - self.min) / self.width).floor().max(0.0) as usize;
        self.histogram[bin.min(Summary::BINS - 1)] += 1;
    }

    /// The summary, as of `as_of`.
    pub fn finish(self, as_of: Option<Timestamp>) -> Summary {
        let (min, width) = (self.min, self.width);
        Summary {
            as_of,
            contacts: self.contacts,
            excluded: self.excluded,
            tier_grade: self
                .matrix
                .into_iter()
                .map(|((tier, grade), contacts)| SummaryCell {
                    tier,
                    grade,
                    contacts,
                })
                .collect(),
            histogram: self
                .histogram
                .iter()
                .enumerate()
                .map(|(i, &contacts)| SummaryBin {
                    from: min + width * i as f64,
                    to: min + width * (i + 1) as f64,
                    contacts,
                })
                .collect(),
        }
    }
}

/// A query parameter, in a backend-neutral form.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Param {
    Text(String),
    Real(f64),
    Int(i64),
}

impl ScoreQuery {
    /// Refuses a filter on a tier, grade or stage `model` does not define
    /// (`""`, none, is always allowed): a misspelt name would answer an
    /// empty list that reads as "nobody is hot today".
    pub fn check(&self, model: &Model) -> std::result::Result<(), String> {
        for (kind, plural, wanted, labels) in [
            ("tier", "tiers", &self.tier, &model.tiers),
            ("grade", "grades", &self.grade, &model.grades),
            ("stage", "stages", &self.stage, &model.stages),
        ] {
            let Some(wanted) = wanted.as_deref().filter(|w| !w.is_empty()) else {
                continue;
            };
            if !labels.iter().any(|(name, _)| name == wanted) {
                let names: Vec<String> = labels.iter().map(|(n, _)| format!("{n:?}")).collect();
                return Err(format!(
                    "{kind}: the active model has no {kind} {wanted:?} ({plural}: {})",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ));
            }
        }
        Ok(())
    }

    /// Whether a contact with `score` passes the filters and comes after
    /// the cursor: what [`ScoreQuery::sql`] selects, for scores computed
    /// outside the database.
    pub(crate) fn matches(&self, id: &str, score: &Score) -> bool {
        let label =
            |wanted: &Option<String>, value: &str| wanted.as_ref().is_none_or(|w| w == value);
        label(&self.tier, &score.tier)
            && label(&self.grade, &score.grade)
            && label(&self.stage, &score.stage)
            && self.status.is_none_or(|s| s == score.status)
            && self.min.is_none_or(|min| score.score >= min)
            && self.max.is_none_or(|max| score.score <= max)
            && self.after.as_ref().is_none_or(|after| {
                self.order((score.score, id), (after.0, &after.1)) == std::cmp::Ordering::Greater
            })
    }

    /// The order of [`ScoreQuery::sql`]: by score (highest first unless
    /// `ascending`), then by id.
    pub(crate) fn order(&self, a: (f64, &str), b: (f64, &str)) -> std::cmp::Ordering {
        // As SQL compares: -0.0 equals 0.0 (scores are never NaN).
        let (low, high) = if self.ascending {
            (a.0, b.0)
        } else {
            (b.0, a.0)
        };
        let by_score = low.partial_cmp(&high).unwrap_or(std::cmp::Ordering::Equal);
        by_score.then_with(|| a.1.cmp(b.1))
    }

    /// The `WHERE … ORDER BY … LIMIT …` part and its parameters, with
    /// `placeholder(n)` for the n-th (1-based) parameter.
    pub(crate) fn sql(&self, placeholder: impl Fn(usize) -> String) -> (String, Vec<Param>) {
        let mut params = Vec::new();
        let next = |p: Param, params: &mut Vec<Param>| {
            params.push(p);
            placeholder(params.len())
        };
        let mut clauses = Vec::new();
        for (column, value) in [
            ("tier", &self.tier),
            ("grade", &self.grade),
            ("stage", &self.stage),
        ] {
            if let Some(value) = value {
                clauses.push(format!(
                    "{column} = {}",
                    next(Param::Text(value.clone()), &mut params)
                ));
            }
        }
        if let Some(status) = self.status {
            clauses.push(format!(
                "status = {}",
                next(Param::Text(status.as_str().into()), &mut params)
            ));
        }
        if let Some(min) = self.min {
            clauses.push(format!("score >= {}", next(Param::Real(min), &mut params)));
        }
        if let Some(max) = self.max {
            clauses.push(format!("score <= {}", next(Param::Real(max), &mut params)));
        }
        let (cmp, order) = if self.ascending {
            (">", "ASC")
        } else {
            ("<", "DESC")
        };
        if let Some((score, id)) = &self.after {
            let a = next(Param::Real(*score), &mut params);
            let b = next(Param::Real(*score), &mut params);
            let c = next(Param::Text(id.clone()), &mut params);
            clauses.push(format!("(score {cmp} {a} OR (score = {b} AND id > {c}))"));
        }
        let limit = next(Param::Int(self.limit as i64), &mut params);
        let filter = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        (
            format!("{filter} ORDER BY score {order}, id ASC LIMIT {limit}"),
            params,
        )
    }
}

/// A background job (a model activation started through the API) as the
/// store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Job {
    /// Its id.
    pub id: i64,
    /// What it does (`activate`).
    pub kind: String,
    /// The model version it is about.
    pub version: Option<u32>,
    /// `running`, `done`, `failed`, or `interrupted`: still `running` in
    /// the store but not updated for [`JOB_SILENCE`] (its process stopped;
    /// an activation resumes when requested again).
    pub state: String,
    /// Contacts done so far.
    pub done: u64,
    /// Contacts in all, once known.
    pub total: Option<u64>,
    /// What the job did, when done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<Value>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it started.
    pub created_at: Timestamp,
    /// Its last update.
    pub updated_at: Timestamp,
}

/// How long a running job may go without an update before it is reported
/// as interrupted. Running jobs update at least every few seconds while
/// they make progress.
pub const JOB_SILENCE: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// The `jobs` columns of one row, in the order both backends select them:
/// `id, kind, version, state, done, total, report, error, created_at,
/// updated_at`.
pub(crate) type JobRow = (
    i64,
    String,
    Option<i64>,
    String,
    i64,
    Option<i64>,
    Option<String>,
    Option<String>,
    i64,
    i64,
);

impl Job {
    /// A stored row, as seen now.
    pub(crate) fn from_row(row: JobRow) -> Result<Job> {
        let (id, kind, version, state, done, total, report, error, created_at, updated_at) = row;
        let report = report
            .map(|r| serde_json::from_str(&r))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("job {id} report: {e}")))?;
        Ok(Job {
            id,
            kind,
            version: version.map(|v| v as u32),
            state,
            done: done as u64,
            total: total.map(|t| t as u64),
            report,
            error,
            created_at: Timestamp(created_at),
            updated_at: Timestamp(updated_at),
        }
        .seen_at(now()))
    }

    /// The job as seen at `now`: a running job silent for longer than
    /// [`JOB_SILENCE`] is `interrupted`.
    fn seen_at(mut self, now: Timestamp) -> Job {
        let silence = JOB_SILENCE.as_nanos() as i64;
        if self.state == "running" && now.0.saturating_sub(self.updated_at.0) > silence {
            self.state = "interrupted".into();
        }
        self
    }
}

/// A change to a job.
#[derive(Debug, Clone, PartialEq)]
pub enum JobUpdate {
    /// `done` of `total` contacts.
    Progress {
        /// Contacts done.
        done: u64,
        /// Contacts in all.
        total: u64,
    },
    /// Finished, with what it did.
    Done(Value),
    /// Failed, with why.
    Failed(String),
}

/// The `jobs` columns an update writes; `None` keeps the stored value.
pub(crate) struct JobColumns<'u> {
    pub(crate) state: &'static str,
    pub(crate) done: Option<i64>,
    pub(crate) total: Option<i64>,
    pub(crate) report: Option<String>,
    pub(crate) error: Option<&'u str>,
}

impl JobUpdate {
    /// The columns this update writes.
    pub(crate) fn columns(&self) -> JobColumns<'_> {
        let keep = |state| JobColumns {
            state,
            done: None,
            total: None,
            report: None,
            error: None,
        };
        match self {
            JobUpdate::Progress { done, total } => JobColumns {
                done: Some(*done as i64),
                total: Some(*total as i64),
                ..keep("running")
            },
            JobUpdate::Done(report) => JobColumns {
                report: Some(report.to_string()),
                ..keep("done")
            },
            JobUpdate::Failed(error) => JobColumns {
                error: Some(error),
                ..keep("failed")
            },
        }
    }
}

/// A sales outcome for a contact (what evaluation checks scores against).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Outcome {
    /// Any of the contact's ids.
    pub contact_id: String,
    /// `converted`, `won`, `lost`, `disqualified`, or another word.
    pub outcome: String,
    /// Deal value, if any.
    pub value: Option<f64>,
    /// When it happened.
    pub at: Timestamp,
}

/// Progress callback: `(done, total)`.
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// Makes everything a store has committed so far durable (see
/// [`Store::defer_durability`]).
pub trait Flush: Send {
    /// Returns once every transaction committed before the call is on disk.
    fn flush(&mut self) -> Result<()>;
}

/// The store: every operation is one transaction; on error nothing of it
/// is kept.
pub trait Store: Send {
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
    /// 64 MiB of pages and the live states its batches wrote).
    fn defer_durability(&mut self) -> Result<Option<Box<dyn Flush>>> {
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

    /// Scores every contact under `candidate` without storing anything.
    fn dry_run(&self, candidate: &Model, progress: Progress<'_>) -> Result<DryRun>;

    /// The stored record of a contact, by any of its ids.
    fn contact(&self, id: &str) -> Result<Option<ContactRecord>>;

    /// Contacts in id order after `after`, at most `limit`.
    fn contacts(&self, after: Option<&str>, limit: usize) -> Result<Vec<ContactRecord>>;

    /// A contact's score at `t` under the active model: from the live state
    /// when `t` is at or after its latest event, else folded from its log.
    fn score_at(&self, id: &str, t: Timestamp) -> Result<Option<(String, Score)>>;

    /// A contact's score history, oldest first.
    fn history(&self, id: &str) -> Result<Vec<LedgerEntry>>;

    /// The whole log (for as-of scoring and exports).
    fn messages(&self) -> Result<Vec<Message>>;

    /// A contact's canonical id, its ids and its messages in log order.
    fn contact_messages(&self, id: &str) -> Result<Option<StoredLog>>;

    /// Deletes everything held about a contact and tombstones its ids.
    fn erase(&mut self, id: &str) -> Result<Option<EraseReport>>;

    /// Counts.
    fn stats(&self) -> Result<Stats>;

    /// Live contacts matching `query`, in score order.
    fn scores(&self, query: &ScoreQuery) -> Result<Vec<Listed>>;

    /// Live contacts per tier × grade and a score histogram over the active
    /// model's range, scored as of `at` as in [`ScoreQuery::at`].
    fn summary(&self, at: Option<Timestamp>) -> Result<Summary>;

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

    /// Attaches a stored version as the challenger of the active model
    /// (`None` detaches it).
    fn set_challenger(&mut self, version: Option<u32>) -> Result<()>;

    /// The attached challenger version and its compiled model.
    fn challenger(&self) -> Result<Option<(u32, Arc<Model>)>>;

    /// Records outcomes.
    fn add_outcomes(&mut self, outcomes: &[Outcome]) -> Result<()>;

    /// Every recorded outcome, in the order recorded.
    fn outcomes(&self) -> Result<Vec<Outcome>>;

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
/// record, history and events as stored; `None` for an unknown id.
pub fn export_contact(store: &dyn Store, id: &str) -> Result<Option<Value>> {
    let Some(log) = store.contact_messages(id)? else {
        return Ok(None);
    };
    let record = store.contact(&log.contact)?;
    let history = store.history(&log.contact)?;
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

/// Compiles stored model source.
fn compile(version: u32, name: &str, source: &str) -> Result<Model> {
    Model::from_stored_toml(&format!("{name} (v{version})"), source)
        .map_err(|e| StoreError::Model(e.to_string()))
}

#[cfg(test)]
mod job_tests {
    use super::*;

    #[test]
    fn a_running_job_silent_for_too_long_is_interrupted() {
        let job = |state: &str| Job {
            id: 1,
            kind: "activate".into(),
            version: Some(2),
            state: state.into(),
            done: 0,
            total: None,
            report: None,
            error: None,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
        };
        let silence = JOB_SILENCE.as_nanos() as i64;
        assert_eq!(job("running").seen_at(Timestamp(silence)).state, "running");
        assert_eq!(
            job("running").seen_at(Timestamp(silence + 1)).state,
            "interrupted"
        );
        assert_eq!(job("done").seen_at(Timestamp(silence + 1)).state, "done");
    }
}

#[cfg(test)]
mod summary_tests {
    use super::*;

    #[test]
    fn a_summary_counts_cells_bins_and_exclusions() {
        let mut b = SummaryBuilder::new(None);
        for (tier, grade, status, score) in [
            ("hot", "A", Status::Active, 95.0),
            ("hot", "A", Status::Active, 100.0),
            ("", "", Status::Excluded, 0.0),
            ("cold", "B", Status::Active, -5.0),
            ("cold", "B", Status::Active, 10.0),
        ] {
            b.add(tier, grade, status, score);
        }
        let s = b.finish(None);
        assert_eq!((s.contacts, s.excluded), (5, 1));
        let cells: Vec<_> = s
            .tier_grade
            .iter()
            .map(|c| (c.tier.as_str(), c.grade.as_str(), c.contacts))
            .collect();
        assert_eq!(cells, [("cold", "B", 2), ("hot", "A", 2)]);
        let bins: Vec<u64> = s.histogram.iter().map(|b| b.contacts).collect();
        assert_eq!(bins, [1, 1, 0, 0, 0, 0, 0, 0, 0, 2]);
        assert_eq!((s.histogram[1].from, s.histogram[1].to), (10.0, 20.0));
    }
}
