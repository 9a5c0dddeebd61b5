//! What the store takes and gives back: messages to store, reports of
//! ingests, activations and erasures, contact records, history entries,
//! model versions, outcomes, counts.

use std::collections::BTreeMap;
use std::fmt;

use leadscore_core::event::Message;
use leadscore_core::score::{Score, SmolStr, Status};
use leadscore_core::time::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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

/// What one call to [`crate::Store::ingest`] did.
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
    #[schemars(with = "String")]
    pub tier: SmolStr,
    /// Grade name or empty.
    #[schemars(with = "String")]
    pub grade: SmolStr,
    /// Stage name or empty.
    #[schemars(with = "String")]
    pub stage: SmolStr,
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
    #[schemars(with = "String")]
    pub contact: SmolStr,
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

/// A contact's score at a time with its stored record
/// ([`crate::Store::contact_at`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ContactAt {
    /// Canonical id.
    pub id: String,
    /// Score at the time asked for.
    pub score: Score,
    /// The stored record; `None` while the store holds no live row for the
    /// contact.
    pub record: Option<ContactRecord>,
}

/// A contact in a leaderboard.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    /// Canonical id.
    pub id: String,
    /// Time of the latest event.
    pub last_event: Option<Timestamp>,
    /// Score as of the listing's time ([`crate::ScoreQuery::at`]).
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
    /// Recorded outcomes deleted (those naming any of its ids).
    pub outcomes: u64,
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
    /// Recorded sales outcomes.
    pub outcomes: u64,
    /// Database size in bytes.
    pub bytes: u64,
}

/// What [`crate::Admin::add_outcomes`] did with each outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OutcomesReport {
    /// Recorded.
    pub added: usize,
    /// Equal to one already recorded (same contact id, outcome, time and
    /// value): skipped.
    pub duplicates: usize,
    /// Naming an erased (tombstoned) id: skipped, as its events are.
    pub erased: usize,
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
