//! Live scoring over a transaction, independent of the backend: message
//! deduplication, identity stitching, in-order absorb or re-fold, ledger
//! entries, activation and dry runs. A backend provides [`Tx`].

use std::collections::{BTreeMap, BTreeSet};

use leadscore_core::batch::{contacts_as_of, preferred, ContactLog};
use leadscore_core::event::Message;
use leadscore_core::fold::{sort_log, ContactState};
use leadscore_core::identity::Identities;
use leadscore_core::model::Model;
use leadscore_core::rules::trigger::{ActionConfig, LatePolicy};
use leadscore_core::score::Score;
use leadscore_core::time::Timestamp;
use leadscore_core::triggers::{replay, Firing, TriggerState};
use rayon::prelude::*;
use rustc_hash::FxHashMap;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::{
    id_hash, ContactRecord, Incoming, IngestReport, LedgerEntry, Listed, Result, ScoreFields,
    StoreError,
};

/// Which contacts table a row goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Table {
    /// Live rows under the active model.
    Live,
    /// Rows of a model being activated.
    Next,
}

/// A contact row.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub id: String,
    pub model_version: u32,
    pub state: Vec<u8>,
    pub traits: Map<String, Value>,
    pub company: Map<String, Value>,
    pub last_ts: Option<Timestamp>,
    pub score: Score,
    /// The encoded [`TriggerState`] (empty: none yet).
    pub triggers: Vec<u8>,
    /// The next time-based trigger evaluation point.
    pub due: Option<Timestamp>,
}

impl Row {
    /// Traits as the stored JSON text.
    pub fn traits_json(&self) -> String {
        map_json(&self.traits)
    }

    /// Company traits as the stored JSON text.
    pub fn company_json(&self) -> String {
        map_json(&self.company)
    }
}

/// A JSON object's text, written from the map without copying it.
fn map_json(map: &Map<String, Value>) -> String {
    serde_json::to_string(map).expect("a JSON map serialises")
}

impl From<Row> for Listed {
    fn from(row: Row) -> Listed {
        Listed {
            id: row.id,
            last_event: row.last_ts,
            score: row.score,
        }
    }
}

impl From<Row> for ContactRecord {
    fn from(row: Row) -> ContactRecord {
        ContactRecord {
            state_bytes: row.state.len(),
            id: row.id,
            model_version: row.model_version,
            last_event: row.last_ts,
            score: row.score,
            traits: row.traits,
            company: row.company,
        }
    }
}

/// A ledger entry to append (buffered for the batch, written at its end in
/// as few statements as the backend can); its `seq` is given on insert.
pub(crate) type NewEntry = LedgerEntry;

/// `old`/`new` as the ledger's JSON text.
pub(crate) fn fields_json(fields: Option<&ScoreFields>) -> Option<String> {
    fields.map(|f| serde_json::to_string(f).expect("score fields serialise"))
}

/// What the engine needs from a backend, inside one transaction.
pub(crate) trait Tx {
    /// Whether any id was ever erased (skips per-message tombstone checks).
    fn has_tombstones(&mut self) -> Result<bool>;
    fn tombstoned(&mut self, id_hash: &str) -> Result<bool>;
    /// Called with a batch before its messages: a backend may then stage
    /// the batch's appends and write them together ([`Tx::flush_events`]),
    /// as long as every read of the log sees them.
    fn begin_events(&mut self, _batch: &[Incoming]) -> Result<()> {
        Ok(())
    }
    /// Writes the staged appends, if any.
    fn flush_events(&mut self) -> Result<()> {
        Ok(())
    }
    /// Appends an event; `false` when its message id is already stored.
    fn insert_event(&mut self, m: &Message, body: &str) -> Result<bool>;
    fn stored_event(&mut self, message_id: &str) -> Result<Option<Message>>;
    fn replace_event(&mut self, m: &Message, body: &str) -> Result<()>;
    fn insert_link(&mut self, from: &str, to: &str, ts: Timestamp, message_id: &str) -> Result<()>;
    fn delete_links_of(&mut self, message_id: &str) -> Result<()>;
    /// The effective (earliest) link of each of `from_ids` that has one.
    fn first_links(&mut self, from_ids: &[String]) -> Result<Vec<(String, String)>>;
    fn identity(&mut self, id: &str) -> Result<Option<String>>;
    fn set_identity(&mut self, id: &str, contact: &str) -> Result<()>;
    fn members(&mut self, contact: &str) -> Result<Vec<String>>;
    /// The stored JSON of every event whose own id is `own_id`.
    fn event_bodies(&mut self, own_id: &str) -> Result<Vec<String>>;
    fn row(&mut self, table: Table, id: &str) -> Result<Option<Row>>;
    fn put_row(&mut self, table: Table, row: &Row) -> Result<()>;
    fn delete_row(&mut self, table: Table, id: &str) -> Result<()>;
    /// Appends entries in order.
    fn append_ledger(&mut self, entries: &[NewEntry]) -> Result<()>;
    /// Records a firing; `None` when its key is already recorded.
    fn insert_firing(&mut self, firing: &NewFiring) -> Result<Option<i64>>;
    /// Whether `trigger` ever fired for `contact`.
    fn fired_before(&mut self, contact: &str, trigger: &str) -> Result<bool>;
    /// Queues the delivery of one action of a firing.
    fn enqueue(&mut self, delivery: &NewDelivery) -> Result<()>;
    /// Adds a contact to a campaign list.
    fn enrol(
        &mut self,
        campaign: &str,
        firing: i64,
        contact: &str,
        at: Timestamp,
        now: Timestamp,
    ) -> Result<()>;
    /// Contacts whose due time is at or before `now`, earliest first.
    fn due_contacts(&mut self, now: Timestamp, limit: usize) -> Result<Vec<String>>;
    /// Updates a live row's trigger state and due time.
    fn set_triggers(
        &mut self,
        contact: &str,
        triggers: &[u8],
        due: Option<Timestamp>,
    ) -> Result<()>;
    /// Canonical contacts after `after` in id order, at most `limit`.
    fn contacts_after(&mut self, after: Option<&str>, limit: usize) -> Result<Vec<String>>;
}

/// A firing to record.
#[derive(Debug, Clone)]
pub(crate) struct NewFiring {
    pub key: String,
    pub trigger: String,
    pub contact: String,
    pub at: Timestamp,
    pub recorded_at: Timestamp,
    pub late: bool,
    pub model_version: u32,
    pub score: String,
    pub explanation: String,
}

/// One action of a firing to deliver.
#[derive(Debug, Clone)]
pub(crate) struct NewDelivery {
    pub firing: i64,
    pub key: String,
    pub destination: String,
    pub payload: String,
    pub at: Timestamp,
}

/// A firing whose time is more than this before it is recorded is marked
/// late (downtime, late events, imports of history).
pub const LATE_AFTER_SECONDS: i64 = 300;

/// The idempotency key of a firing: SHA-256 of trigger, contact and time.
pub fn firing_key(trigger: &str, contact: &str, at: Timestamp) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{trigger}\0{contact}\0{}", at.0).as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// A contact touched by the current batch.
struct Work {
    /// Whether the contact had a live row when the batch found it.
    existed: bool,
    /// The ledger's latest values for the contact (moves with each message).
    current: Option<ScoreFields>,
    /// The live state, or `None` when the contact must be re-folded.
    state: Option<ContactState>,
    /// The trigger state (from the stored row, or after a re-fold).
    triggers: Option<TriggerState>,
    /// Whether the triggers were replayed from the log (firings found
    /// then may already be recorded).
    replayed: bool,
    /// Why, for the ledger.
    cause: String,
}

/// Contacts' live state as the writer's last batches left it, so that the
/// next batch touching them neither reads nor decodes their rows again.
///
/// Only sound while the connection that keeps it is the only writer of live
/// rows: its owner empties it whenever anything else may have written
/// ([`LiveCache::clear`]), and hands batches only what they committed
/// ([`LiveCache::committed`]). A batch takes the entries it touches out and
/// puts back, on commit, what it wrote; on any error the entries it took
/// are simply gone (the rows are read again).
#[derive(Default)]
pub(crate) struct LiveCache {
    /// The model version the entries are under.
    version: u32,
    /// Written since the generation began (boxed: a state is large, and
    /// the maps move their values as they grow).
    young: FxHashMap<String, Box<Cached>>,
    /// Written in the generation before, and not touched since.
    old: FxHashMap<String, Box<Cached>>,
    /// Written by the batch in progress.
    pending: Vec<(String, Box<Cached>)>,
}

/// What a live row decodes to.
struct Cached {
    state: ContactState,
    triggers: TriggerState,
    current: ScoreFields,
}

/// Contacts per generation of a [`LiveCache`], which holds two (the
/// current one and the one before) plus a batch: about 2.4 KB each with
/// `examples/b2b.toml` (20k contacts added 47 MB to the server's peak RSS).
/// When the current generation is full, the one before is dropped whole:
/// O(1) per contact, and what was touched in the last two generations
/// stays (no per-commit scan of the map to evict).
const LIVE_CACHE_GENERATION: usize = 16_000;

impl LiveCache {
    /// Forgets everything (another writer may have changed any row).
    pub fn clear(&mut self) {
        self.young.clear();
        self.old.clear();
        self.pending.clear();
    }

    /// The batch's writes are committed: they are what the rows now hold.
    pub fn committed(&mut self) {
        for (contact, cached) in self.pending.drain(..) {
            self.young.insert(contact, cached);
        }
        if self.young.len() >= LIVE_CACHE_GENERATION {
            // The maps swap, keeping their capacity.
            std::mem::swap(&mut self.young, &mut self.old);
            self.young.clear();
        }
    }

    /// Takes `contact` out (a batch is about to change it).
    fn take(&mut self, contact: &str) -> Option<Box<Cached>> {
        self.young
            .remove(contact)
            .or_else(|| self.old.remove(contact))
    }

    /// Whether the cache holds `contact`.
    #[cfg(test)]
    pub fn holds(&self, contact: &str) -> bool {
        self.young.contains_key(contact) || self.old.contains_key(contact)
    }

    /// Starts a batch under `version`.
    fn begin(&mut self, version: u32) {
        self.pending.clear();
        if self.version != version {
            self.clear();
            self.version = version;
        }
    }
}

/// Ingests one batch inside `tx`. With no active model, the log and the
/// identities are still kept (scores come with the first activation).
/// `cache`: see [`LiveCache`]; its owner calls [`LiveCache::committed`]
/// once `tx` commits.
pub(crate) fn ingest(
    tx: &mut impl Tx,
    model: Option<(&Model, u32)>,
    activating: bool,
    messages: Vec<Incoming>,
    recorded_at: Timestamp,
    mut cache: Option<&mut LiveCache>,
) -> Result<IngestReport> {
    if let (Some(cache), Some((_, version))) = (cache.as_deref_mut(), model) {
        cache.begin(version);
    }
    let mut batch = Batch {
        cache,
        model,
        recorded_at,
        report: IngestReport {
            scored: model.is_some(),
            ..IngestReport::default()
        },
        canonical: FxHashMap::default(),
        work: BTreeMap::new(),
        gone: BTreeSet::new(),
        ledger: Vec::new(),
        firings: Vec::new(),
    };
    let check_tombstones = tx.has_tombstones()?;
    tx.begin_events(&messages)?;
    for incoming in messages {
        batch.message(tx, check_tombstones, incoming)?;
    }
    tx.flush_events()?;
    batch.finish(tx, activating)
}

struct Batch<'m, 'c> {
    cache: Option<&'c mut LiveCache>,
    model: Option<(&'m Model, u32)>,
    recorded_at: Timestamp,
    report: IngestReport,
    /// Canonical id of each id met in this batch.
    canonical: FxHashMap<String, String>,
    work: BTreeMap<String, Work>,
    /// Contacts merged into others, their live rows deleted at the end
    /// (their history entries are recorded when they vanish).
    gone: BTreeSet<String>,
    /// History entries of the batch, in order.
    ledger: Vec<NewEntry>,
    /// Firings found by the batch: contact, firing, whether found by a replay.
    firings: Vec<(String, Firing, bool)>,
}

impl Batch<'_, '_> {
    fn message(
        &mut self,
        tx: &mut impl Tx,
        check_tombstones: bool,
        incoming: Incoming,
    ) -> Result<()> {
        let Incoming { message: m, body } = incoming;
        if check_tombstones && erased(tx, &m)? {
            self.report.erased += 1;
            return Ok(());
        }
        let mut relink: Vec<String> = Vec::new();
        let mut replaced_owner = None;
        if tx.insert_event(&m, &body)? {
            self.report.accepted += 1;
        } else {
            let existing = tx.stored_event(&m.message_id)?.ok_or_else(|| {
                StoreError::Corrupt(format!("message {} is indexed but missing", m.message_id))
            })?;
            if !preferred(&m, &existing) {
                self.report.duplicates += 1;
                return Ok(());
            }
            tx.replace_event(&m, &body)?;
            self.report.replaced += 1;
            if let Some((from, to)) = existing.link() {
                tx.delete_links_of(&existing.message_id)?;
                relink.extend([from.to_string(), to.to_string()]);
            }
            replaced_owner = Some(self.canonical(tx, existing.own_id())?);
        }
        let own = self.canonical(tx, m.own_id())?;
        if let Some((from, to)) = m.link() {
            tx.insert_link(from, to, m.timestamp, &m.message_id)?;
            relink.extend([from.to_string(), to.to_string()]);
        }
        let mut contact = own;
        if !relink.is_empty() {
            let refolded = self.restitch(tx, relink)?;
            contact = self.canonical(tx, m.own_id())?;
            if refolded.contains(&contact) && replaced_owner.is_none() {
                return Ok(()); // its re-fold read this message from the log
            }
        }
        let Some((model, version)) = self.model else {
            return Ok(());
        };
        if let Some(owner) = replaced_owner {
            let cause = format!("replaced message {}", m.message_id);
            self.refold(tx, &owner, &cause)?;
            self.refold(tx, &contact, &cause)?;
            return Ok(());
        }
        let recorded_at = self.recorded_at;
        let work = self.load(tx, &contact, model, version, true)?;
        let Some(state) = &mut work.state else {
            return Ok(()); // re-folded at the end, from the log
        };
        let triggers = work
            .triggers
            .get_or_insert_with(|| armed(model, state, state.last_timestamp()));
        // Triggers already evaluated past this message: replay them too.
        if triggers.at().is_some_and(|at| m.timestamp < at) {
            work.state = None;
            work.cause = format!("late message {}", m.message_id);
            return Ok(());
        }
        let mut fired = Vec::new();
        triggers.advance(model, state, m.timestamp, false, &mut fired);
        if state.absorb(model, &m).is_err() {
            work.state = None;
            work.cause = format!("late message {}", m.message_id);
            return Ok(());
        }
        triggers.evaluate(model, state, m.timestamp, &mut fired);
        let score = state
            .score_at(model, m.timestamp)
            .expect("at the last message");
        let fields = ScoreFields::from(&score);
        let entry = (work.current.as_ref() != Some(&fields)).then(|| NewEntry {
            seq: 0,
            contact: contact.clone(),
            at: Some(m.timestamp),
            recorded_at,
            model_version: version,
            old: work.current.replace(fields.clone()),
            new: Some(fields),
            cause: format!("message {}", m.message_id),
        });
        self.report.absorbed += 1;
        self.record(entry);
        self.firings
            .extend(fired.into_iter().map(|f| (contact.clone(), f, false)));
        Ok(())
    }

    /// The canonical id of `id`, registering a new id as its own contact.
    fn canonical(&mut self, tx: &mut impl Tx, id: &str) -> Result<String> {
        if let Some(c) = self.canonical.get(id) {
            return Ok(c.clone());
        }
        let c = match tx.identity(id)? {
            Some(c) => c,
            None => {
                tx.set_identity(id, id)?;
                id.to_string()
            }
        };
        self.canonical.insert(id.to_string(), c.clone());
        Ok(c)
    }

    /// Re-resolves the ids around changed links: every id of the contacts
    /// that `ids` belonged to (a changed link only moves ids whose path
    /// passes through it, and those are all in these contacts).
    fn restitch(&mut self, tx: &mut impl Tx, ids: Vec<String>) -> Result<BTreeSet<String>> {
        let mut before = BTreeSet::new();
        for id in &ids {
            before.insert(self.canonical(tx, id)?);
        }
        let mut members: BTreeSet<String> = ids.into_iter().collect();
        for contact in &before {
            members.extend(tx.members(contact)?);
        }
        let list: Vec<String> = members.iter().cloned().collect();
        let resolved = Identities::from_links(tx.first_links(&list)?);
        let mut after = BTreeSet::new();
        let mut moved = false;
        for id in &list {
            let mut new = resolved.canonical(id).to_string();
            if !members.contains(&new) {
                // The path left these contacts: an id whose link was
                // deleted (its message replaced) fell back to its next
                // link, into another contact. No path from there passes
                // through these ids (else it would be one of them), so
                // that contact's canonical id still holds.
                new = self.canonical(tx, &new)?;
            }
            if self.canonical(tx, id)? != new {
                tx.set_identity(id, &new)?;
                self.canonical.insert(id.clone(), new.clone());
                moved = true;
            }
            after.insert(new);
        }
        if !moved || self.model.is_none() {
            return Ok(BTreeSet::new());
        }
        // Merges are re-folded at once (they come early in a contact's
        // life, when its log is short), so that the batch's later messages
        // are absorbed in order and each change gets its ledger entry.
        for contact in &after {
            self.refold_now(tx, contact, "merge")?;
        }
        for contact in before.difference(&after) {
            self.vanish(tx, contact)?;
        }
        Ok(after)
    }

    /// Ends a contact whose ids all moved to others: its history entry now
    /// (closing whatever this batch recorded for it, or its stored score),
    /// its live row at the end of the batch unless it comes back before.
    fn vanish(&mut self, tx: &mut impl Tx, contact: &str) -> Result<()> {
        let Some((model, version)) = self.model else {
            return Ok(());
        };
        let into = self.canonical(tx, contact)?;
        self.load(tx, contact, model, version, false)?;
        let work = self.work.remove(contact).expect("just loaded");
        self.gone.insert(contact.to_string());
        let Some(old) = work.current else {
            return Ok(()); // no score recorded (new in this batch, or gone before)
        };
        let at = match work.state.as_ref().and_then(ContactState::last_timestamp) {
            Some(t) => Some(t),
            None => tx.row(Table::Live, contact)?.and_then(|row| row.last_ts),
        };
        self.record_end(contact, at, version, old, format!("merged into {into}"));
        Ok(())
    }

    /// Records that `contact` has no score any more: merged into another,
    /// or no message left.
    fn record_end(
        &mut self,
        contact: &str,
        at: Option<Timestamp>,
        version: u32,
        old: ScoreFields,
        cause: String,
    ) {
        self.record(Some(NewEntry {
            seq: 0,
            contact: contact.to_string(),
            at,
            recorded_at: self.recorded_at,
            model_version: version,
            old: Some(old),
            new: None,
            cause,
        }));
    }

    /// Re-folds a contact from its log now, recording the change.
    fn refold_now(&mut self, tx: &mut impl Tx, contact: &str, cause: &str) -> Result<()> {
        let Some((model, version)) = self.model else {
            return Ok(());
        };
        let recorded_at = self.recorded_at;
        let work = self.load(tx, contact, model, version, false)?;
        let old_triggers = work.triggers.take();
        let (state, triggers, fired) =
            fold_with_triggers(tx, model, contact, old_triggers.as_ref())?;
        self.firings
            .extend(fired.into_iter().map(|f| (contact.to_string(), f, true)));
        let work = self.load(tx, contact, model, version, false)?;
        work.triggers = Some(triggers);
        work.replayed = true;
        let mut entry = None;
        if let Some(last) = state.last_timestamp() {
            let fields =
                ScoreFields::from(&state.score_at(model, last).expect("at the last message"));
            if work.current.as_ref() != Some(&fields) {
                entry = Some(NewEntry {
                    seq: 0,
                    contact: contact.to_string(),
                    at: Some(last),
                    recorded_at,
                    model_version: version,
                    old: work.current.replace(fields.clone()),
                    new: Some(fields),
                    cause: cause.to_string(),
                });
            }
        }
        work.state = Some(state);
        self.report.refolded += 1;
        self.record(entry);
        Ok(())
    }

    /// Buffers a ledger entry (written at the end of the batch).
    fn record(&mut self, entry: Option<NewEntry>) {
        if let Some(entry) = entry {
            self.report.ledger_entries += 1;
            self.ledger.push(entry);
        }
    }

    /// The contact's work entry, loading its stored row on first use.
    /// `decode`: whether the live state is needed (re-folds replace it, so
    /// decoding the stored snapshot would be wasted).
    fn load(
        &mut self,
        tx: &mut impl Tx,
        contact: &str,
        model: &Model,
        version: u32,
        decode: bool,
    ) -> Result<&mut Work> {
        if !self.work.contains_key(contact) {
            let cached = self.cache.as_deref_mut().and_then(|c| c.take(contact));
            let (existed, current, state, triggers) = match cached {
                Some(cached) => {
                    let Cached {
                        state,
                        triggers,
                        current,
                    } = *cached;
                    (true, Some(current), decode.then_some(state), Some(triggers))
                }
                None => {
                    let old = tx.row(Table::Live, contact)?;
                    let current = old.as_ref().map(|r| ScoreFields::from(&r.score));
                    let state = match &old {
                        _ if !decode => None,
                        None => Some(ContactState::new(model, None)),
                        Some(row) if row.model_version == version => ContactState::decode(
                            model,
                            &row.state,
                            row.traits.clone(),
                            row.company.clone(),
                        )
                        .ok(),
                        Some(_) => None,
                    };
                    let triggers = match &old {
                        None => Some(TriggerState::new(model)),
                        Some(row) if row.model_version == version => {
                            TriggerState::decode(model, &row.triggers)
                        }
                        Some(_) => None,
                    };
                    (old.is_some(), current, state, triggers)
                }
            };
            // Back after vanishing in this batch: its history says gone.
            let current = if self.gone.remove(contact) {
                None
            } else {
                current
            };
            self.work.insert(
                contact.to_string(),
                Work {
                    existed,
                    current,
                    state,
                    triggers,
                    replayed: false,
                    cause: "rescore".into(),
                },
            );
        }
        Ok(self.work.get_mut(contact).expect("just inserted"))
    }

    fn refold(&mut self, tx: &mut impl Tx, contact: &str, cause: &str) -> Result<()> {
        let Some((model, version)) = self.model else {
            return Ok(());
        };
        let work = self.load(tx, contact, model, version, false)?;
        work.state = None;
        work.cause = cause.to_string();
        Ok(())
    }

    /// Re-folds what must be, writes every touched row, records merges.
    fn finish(mut self, tx: &mut impl Tx, activating: bool) -> Result<IngestReport> {
        let Some((model, version)) = self.model else {
            return Ok(self.report);
        };
        for contact in std::mem::take(&mut self.gone) {
            if let Some(cache) = self.cache.as_deref_mut() {
                cache.take(&contact);
            }
            tx.delete_row(Table::Live, &contact)?;
            if activating {
                tx.delete_row(Table::Next, &contact)?;
            }
        }
        for (contact, work) in std::mem::take(&mut self.work) {
            let refolded = work.state.is_none();
            let (state, triggers) = match work.state {
                Some(state) => (state, work.triggers),
                None => {
                    self.report.refolded += 1;
                    let (state, triggers, fired) =
                        fold_with_triggers(tx, model, &contact, work.triggers.as_ref())?;
                    self.firings
                        .extend(fired.into_iter().map(|f| (contact.clone(), f, true)));
                    (state, Some(triggers))
                }
            };
            if activating {
                tx.delete_row(Table::Next, &contact)?;
            }
            // Rows written before triggers existed: armed as of the last message.
            let triggers = triggers.unwrap_or_else(|| armed(model, &state, state.last_timestamp()));
            let Some(row) = row_of(model, version, &contact, &state, &triggers) else {
                // No message left (its only ones were replaced by copies
                // that belong to others).
                if work.existed {
                    tx.delete_row(Table::Live, &contact)?;
                }
                if let Some(old) = work.current {
                    self.record_end(&contact, None, version, old, work.cause);
                }
                continue;
            };
            let fields = ScoreFields::from(&row.score);
            if refolded && work.current.as_ref() != Some(&fields) {
                self.record(Some(NewEntry {
                    seq: 0,
                    contact: contact.clone(),
                    at: row.last_ts,
                    recorded_at: self.recorded_at,
                    model_version: version,
                    old: work.current,
                    new: Some(fields.clone()),
                    cause: work.cause,
                }));
            }
            tx.put_row(Table::Live, &row)?;
            if let Some(cache) = self.cache.as_deref_mut() {
                cache.pending.push((
                    contact,
                    Box::new(Cached {
                        state,
                        triggers,
                        current: fields,
                    }),
                ));
            }
        }
        let firings = std::mem::take(&mut self.firings);
        let written = write_firings(
            tx,
            model,
            version,
            self.recorded_at,
            firings,
            &mut self.ledger,
        )?;
        self.report.firings += written.values().sum::<u64>();
        self.report.firings_by_trigger = written;
        tx.append_ledger(&self.ledger)?;
        self.report.changes = self.ledger;
        Ok(self.report)
    }
}

/// A trigger state taking what is true at `t` as given (rows written before
/// triggers existed, or by another model version).
fn armed(model: &Model, state: &ContactState, t: Option<Timestamp>) -> TriggerState {
    match t {
        Some(t) => TriggerState::armed_at(model, state, t),
        None => TriggerState::new(model),
    }
}

/// Records firings and what their actions need, in the caller's
/// transaction (so a firing exists exactly when the change that caused it
/// does). Returns how many were recorded, by trigger.
pub(crate) fn write_firings(
    tx: &mut impl Tx,
    model: &Model,
    version: u32,
    recorded_at: Timestamp,
    firings: Vec<(String, Firing, bool)>,
    ledger: &mut Vec<NewEntry>,
) -> Result<BTreeMap<String, u64>> {
    let mut written = BTreeMap::new();
    for (contact, firing, replayed) in firings {
        let trigger = &model.triggers[firing.trigger];
        let late = recorded_at.0.saturating_sub(firing.at.0) > LATE_AFTER_SECONDS * 1_000_000_000;
        if late && trigger.late == LatePolicy::Skip {
            continue;
        }
        if replayed && trigger.once && tx.fired_before(&contact, &trigger.id)? {
            continue;
        }
        let key = firing_key(&trigger.id, &contact, firing.at);
        let score = serde_json::to_value(&firing.score).expect("scores serialise");
        let explanation =
            serde_json::to_value(&firing.explanation).expect("explanations serialise");
        let Some(seq) = tx.insert_firing(&NewFiring {
            key: key.clone(),
            trigger: trigger.id.clone(),
            contact: contact.clone(),
            at: firing.at,
            recorded_at,
            late,
            model_version: version,
            score: score.to_string(),
            explanation: explanation.to_string(),
        })?
        else {
            continue; // recorded before (a replay found it again)
        };
        *written.entry(trigger.id.clone()).or_default() += 1;
        let body = serde_json::json!({
            "idempotency_key": key,
            "trigger": trigger.id,
            "contact_id": contact,
            "fired_at": firing.at,
            "late": late,
            "model_version": version,
            "score": score,
            "explanation": explanation,
        });
        for action in &trigger.actions {
            if let ActionConfig::Campaign { campaign } = action {
                tx.enrol(campaign, seq, &contact, firing.at, recorded_at)?;
                let fields = ScoreFields::from(&firing.score);
                ledger.push(NewEntry {
                    seq: 0,
                    contact: contact.clone(),
                    at: Some(firing.at),
                    recorded_at,
                    model_version: version,
                    old: Some(fields.clone()),
                    new: Some(fields),
                    cause: format!("campaign {campaign} (trigger {})", trigger.id),
                });
                continue;
            }
            tx.enqueue(&NewDelivery {
                firing: seq,
                key: key.clone(),
                destination: action.describe(),
                payload: serde_json::json!({"action": action, "body": body}).to_string(),
                at: recorded_at,
            })?;
        }
    }
    Ok(written)
}

/// Evaluates the triggers of contacts whose due time has come, up to `now`,
/// recording their firings; one call handles at most `limit` contacts.
pub(crate) fn fire_due(
    tx: &mut impl Tx,
    model: &Model,
    version: u32,
    now: Timestamp,
    limit: usize,
) -> Result<DueReport> {
    let mut report = DueReport::default();
    let mut found = Vec::new();
    for contact in tx.due_contacts(now, limit)? {
        report.contacts += 1;
        let Some(row) = tx.row(Table::Live, &contact)? else {
            continue;
        };
        if row.model_version != version {
            tx.set_triggers(&contact, &row.triggers, None)?;
            continue;
        }
        let state = ContactState::decode(model, &row.state, row.traits, row.company)
            .map_err(|e| StoreError::Corrupt(format!("contact {contact}: {e}")))?;
        let mut triggers = TriggerState::decode(model, &row.triggers)
            .unwrap_or_else(|| armed(model, &state, Some(now)));
        let mut fired = Vec::new();
        if state.last_timestamp().is_none_or(|last| last <= now) {
            triggers.advance(model, &state, now, true, &mut fired);
        }
        let due = triggers.next_point(model, &state).filter(|due| *due > now);
        tx.set_triggers(&contact, &triggers.encode(), due)?;
        found.extend(fired.into_iter().map(|f| (contact.clone(), f, false)));
    }
    let mut ledger = Vec::new();
    report.firings_by_trigger = write_firings(tx, model, version, now, found, &mut ledger)?;
    report.firings = report.firings_by_trigger.values().sum();
    tx.append_ledger(&ledger)?;
    Ok(report)
}

/// What one [`Store::fire_due`](crate::Store::fire_due) call did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DueReport {
    /// Contacts whose due time had come.
    pub contacts: u64,
    /// Firings recorded.
    pub firings: u64,
    /// The same, by trigger id.
    pub firings_by_trigger: BTreeMap<String, u64>,
}

/// Whether the message concerns an erased id.
fn erased(tx: &mut impl Tx, m: &Message) -> Result<bool> {
    for id in [
        m.user_id.as_deref(),
        m.anonymous_id.as_deref(),
        m.previous_id.as_deref(),
    ]
    .into_iter()
    .flatten()
    {
        if tx.tombstoned(&id_hash(id))? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Reads back a stored message.
pub(crate) fn parse_stored(body: &str) -> Result<Message> {
    Message::from_json_text(body.as_bytes(), None)
        .map_err(|e| StoreError::Corrupt(format!("stored message: {e}")))
}

/// The stored JSON of a contact's events, with the ids they came under.
fn contact_bodies(tx: &mut impl Tx, contact: &str) -> Result<(Vec<String>, Vec<String>)> {
    let members = tx.members(contact)?;
    let mut bodies = Vec::new();
    for id in &members {
        bodies.extend(tx.event_bodies(id)?);
    }
    Ok((members, bodies))
}

fn parse_log(bodies: &[String]) -> Result<Vec<Message>> {
    let mut messages = bodies
        .iter()
        .map(|b| parse_stored(b))
        .collect::<Result<Vec<_>>>()?;
    sort_log(&mut messages);
    Ok(messages)
}

/// A contact's messages, in log order, with the ids they came under.
pub(crate) fn contact_log(tx: &mut impl Tx, contact: &str) -> Result<(Vec<String>, Vec<Message>)> {
    let (members, bodies) = contact_bodies(tx, contact)?;
    Ok((members, parse_log(&bodies)?))
}

/// Folds a contact from its log under `model`.
pub(crate) fn fold_contact(tx: &mut impl Tx, model: &Model, contact: &str) -> Result<ContactState> {
    let (_, messages) = contact_log(tx, contact)?;
    Ok(ContactState::fold(model, None, &messages))
}

/// Re-folds a contact from its log and replays its triggers up to where
/// they had been evaluated (`old`), reporting every edge of the replay:
/// the caller records those not recorded yet.
pub(crate) fn fold_with_triggers(
    tx: &mut impl Tx,
    model: &Model,
    contact: &str,
    old: Option<&TriggerState>,
) -> Result<(ContactState, TriggerState, Vec<Firing>)> {
    let (_, messages) = contact_log(tx, contact)?;
    if model.triggers.is_empty() {
        let state = ContactState::fold(model, None, &messages);
        return Ok((state, TriggerState::new(model), Vec::new()));
    }
    let last = messages.last().map(|m| m.timestamp);
    let until = old.and_then(TriggerState::at).max(last).unwrap_or_default();
    Ok(replay(
        model,
        None,
        &messages,
        until,
        old.and_then(TriggerState::since),
    ))
}

/// Folds many contacts: their logs are read in turn (one connection), then
/// parsed and folded on all cores.
pub(crate) fn fold_many(
    tx: &mut impl Tx,
    model: &Model,
    contacts: &[String],
) -> Result<Vec<(String, ContactState)>> {
    let mut logs = Vec::with_capacity(contacts.len());
    for contact in contacts {
        logs.push((contact.clone(), contact_bodies(tx, contact)?.1));
    }
    logs.into_par_iter()
        .map(|(contact, bodies)| {
            let messages = parse_log(&bodies)?;
            Ok((contact, ContactState::fold(model, None, &messages)))
        })
        .collect()
}

/// The row for a folded state (`None` when it has no message).
pub(crate) fn row_of(
    model: &Model,
    version: u32,
    contact: &str,
    state: &ContactState,
    triggers: &TriggerState,
) -> Option<Row> {
    let last = state.last_timestamp()?;
    let score = state.score_at(model, last).expect("at the last message");
    Some(Row {
        id: contact.to_string(),
        model_version: version,
        state: state.encode(model),
        traits: state.traits().clone(),
        company: state.company().clone(),
        last_ts: Some(last),
        score,
        triggers: triggers.encode(),
        due: triggers.next_point(model, state),
    })
}

/// The row of a contact under a model being activated at `now`: its
/// triggers start from what is true then (history before the activation is
/// not the new model's to act on).
pub(crate) fn activation_row(
    model: &Model,
    version: u32,
    contact: &str,
    state: &ContactState,
    now: Timestamp,
) -> Option<Row> {
    let armed = armed(model, state, state.last_timestamp().map(|l| l.max(now)));
    row_of(model, version, contact, state, &armed)
}

/// Contacts processed per transaction by activations and dry runs.
pub(crate) const CONTACTS_PER_STEP: usize = 512;

/// Fills the next-rows table for an activation from `cursor` on, one
/// transaction per step (through `step`), returning contacts done.
pub(crate) fn activation_step(
    tx: &mut impl Tx,
    model: &Model,
    version: u32,
    cursor: Option<&str>,
    now: Timestamp,
) -> Result<Option<(String, u64)>> {
    let contacts = tx.contacts_after(cursor, CONTACTS_PER_STEP)?;
    let Some(last) = contacts.last().cloned() else {
        return Ok(None);
    };
    for (contact, state) in fold_many(tx, model, &contacts)? {
        if let Some(row) = activation_row(model, version, &contact, &state, now) {
            tx.put_row(Table::Next, &row)?;
        }
    }
    Ok(Some((last, contacts.len() as u64)))
}

/// A contact whose score moves most under a candidate model.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Mover {
    /// Contact id.
    pub contact: String,
    /// Score now.
    pub before: f64,
    /// Score under the candidate.
    pub after: f64,
    /// Tier now.
    pub tier_before: String,
    /// Tier under the candidate.
    pub tier_after: String,
}

/// The impact of a candidate model on the stored contacts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, JsonSchema)]
pub struct DryRun {
    /// Contacts scored.
    pub contacts: u64,
    /// Contacts whose tier changes.
    pub tier_changes: u64,
    /// Contacts per tier now (`""` = no tier).
    pub tiers_before: BTreeMap<String, u64>,
    /// Contacts per tier under the candidate.
    pub tiers_after: BTreeMap<String, u64>,
    /// Mean, median and 90th percentile score now.
    pub score_before: Distribution,
    /// The same under the candidate.
    pub score_after: Distribution,
    /// The largest score changes (absolute), largest first.
    pub top_movers: Vec<Mover>,
}

/// A few figures of a score distribution.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, JsonSchema)]
pub struct Distribution {
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
}

impl Distribution {
    fn of(mut scores: Vec<f64>) -> Distribution {
        if scores.is_empty() {
            return Distribution::default();
        }
        scores.sort_by(f64::total_cmp);
        let at = |p: f64| scores[((scores.len() - 1) as f64 * p).round() as usize];
        Distribution {
            mean: scores.iter().sum::<f64>() / scores.len() as f64,
            p50: at(0.5),
            p90: at(0.9),
        }
    }
}

/// Movers kept in a dry-run report.
const TOP_MOVERS: usize = 10;

/// Accumulates a dry run, contact by contact.
#[derive(Default)]
pub(crate) struct DryRunBuilder {
    report: DryRun,
    before: Vec<f64>,
    after: Vec<f64>,
}

impl DryRunBuilder {
    /// Adds one contact: its stored score (if any) and its candidate score.
    pub fn add(&mut self, contact: &str, before: Option<&Score>, after: &Score) {
        let r = &mut self.report;
        r.contacts += 1;
        let tier_before = before.map(|s| s.tier.clone()).unwrap_or_default();
        *r.tiers_before.entry(tier_before.clone()).or_default() += 1;
        *r.tiers_after.entry(after.tier.clone()).or_default() += 1;
        if tier_before != after.tier {
            r.tier_changes += 1;
        }
        let score_before = before.map_or(0.0, |s| s.score);
        self.before.push(score_before);
        self.after.push(after.score);
        r.top_movers.push(Mover {
            contact: contact.to_string(),
            before: score_before,
            after: after.score,
            tier_before,
            tier_after: after.tier.clone(),
        });
        if r.top_movers.len() > 4 * TOP_MOVERS {
            self.trim();
        }
    }

    fn trim(&mut self) {
        let movers = &mut self.report.top_movers;
        movers.sort_by(|a, b| {
            (b.after - b.before)
                .abs()
                .total_cmp(&(a.after - a.before).abs())
                .then_with(|| a.contact.cmp(&b.contact))
        });
        movers.truncate(TOP_MOVERS);
    }

    pub fn finish(mut self) -> DryRun {
        self.trim();
        self.report.score_before = Distribution::of(self.before);
        self.report.score_after = Distribution::of(self.after);
        self.report
    }
}

/// A contact's score at `t` from its log, stitched as of `t`: the contact
/// that `id` belonged to at `t`, and its score (`None` if it had no message
/// by then).
pub(crate) fn score_from_log(
    model: &Model,
    id: &str,
    messages: Vec<Message>,
    t: Timestamp,
) -> Option<(String, Score)> {
    log_as_of(id, messages, t).map(|c| {
        let score = c.score_as_of(model, t);
        (c.id, score)
    })
}

/// The log of the contact `id` belonged to at `t`, stitched as of `t`, from
/// a log holding (at least) all of that contact's messages.
pub(crate) fn log_as_of(id: &str, messages: Vec<Message>, t: Timestamp) -> Option<ContactLog> {
    let until: Vec<Message> = messages.into_iter().filter(|m| m.timestamp <= t).collect();
    let canonical = Identities::from_messages(&until).canonical(id).to_string();
    contacts_as_of(until, Vec::new(), t)
        .into_iter()
        .find(|c| c.id == canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cache never holds more than two generations and a batch, and
    /// keeps what the latest batches wrote.
    #[test]
    fn the_live_cache_stays_bounded() {
        let model = Model::from_toml("m.toml", "[model]\nname = \"m\"\n").unwrap();
        let entry = || {
            Box::new(Cached {
                state: ContactState::new(&model, None),
                triggers: TriggerState::new(&model),
                current: ScoreFields {
                    score: 0.0,
                    tier: String::new(),
                    grade: String::new(),
                    stage: String::new(),
                    status: leadscore_core::score::Status::Active,
                },
            })
        };
        let mut cache = LiveCache::default();
        cache.begin(1);
        for batch in 0..100 {
            for i in 0..1_000 {
                cache.pending.push((format!("{batch}-{i}"), entry()));
            }
            cache.committed();
            assert!(cache.young.len() + cache.old.len() <= 2 * LIVE_CACHE_GENERATION + 1_000);
            assert!(cache.holds(&format!("{batch}-0")) && cache.pending.is_empty());
            if batch >= 20 {
                assert!(
                    cache.holds(&format!("{}-999", batch - 15)),
                    "the generation before"
                );
                assert!(
                    !cache.holds(&format!("{}-0", batch - 40)),
                    "older ones dropped"
                );
            }
        }
        assert!(cache.take("99-5").is_some() && !cache.holds("99-5"));
        cache.begin(2);
        assert!(!cache.holds("99-6"), "another version's states are dropped");
    }
}
