//! Ingesting a batch: deduplication, erasure checks, identity stitching,
//! in-order absorb or re-fold of each touched contact (the writer's cache of
//! live rows between batches is in `cache`).

use std::borrow::Cow;
use std::collections::BTreeSet;

use leadscore_core::batch::preferred;
use leadscore_core::fold::ContactState;
use leadscore_core::identity::Identities;
use leadscore_core::model::Model;
use leadscore_core::score::Score;
use leadscore_core::time::Timestamp;
use leadscore_core::triggers::{Firing, TriggerState};
use rustc_hash::FxHashMap;
use smol_str::SmolStr;

use super::cache::{self, Cached, LiveCache, Spare};
use super::{
    armed, erased, fold_with_triggers, row_of, write_firings, LiveWrite, NewEntry, Stored, Table,
    Tx,
};
use crate::{Incoming, IngestReport, Result, ScoreFields, StoreError};

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
    /// Why, for the ledger (borrowed for the default: a contact's
    /// allocation fewer per batch).
    cause: Cow<'static, str>,
    /// What the backend stored with the row, from the cache.
    stored: Option<Stored>,
    /// The score of `state` at its last message, when this batch computed
    /// it (its row then needs no second computation).
    score: Option<Score>,
    /// Whether a merge or a replaced message changed the contact (its row
    /// is then written at once, [`LiveWrite::now`]).
    now: bool,
    /// The box of the cache entry the state came from, for the one put
    /// back ([`cache::unbox`]).
    spare: Option<Spare>,
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
        cache.prefetch(messages.iter().map(|i| i.message.own_id()));
    }
    let mut batch = Batch {
        cache,
        model,
        recorded_at,
        report: IngestReport {
            scored: model.is_some(),
            ..IngestReport::default()
        },
        canonical: FxHashMap::with_capacity_and_hasher(messages.len(), Default::default()),
        // A group's contacts, up to a few thousand (an import's large
        // batches of few contacts would otherwise reserve far more).
        work: FxHashMap::with_capacity_and_hasher(messages.len().min(4096), Default::default()),
        gone: BTreeSet::new(),
        ledger: Vec::with_capacity(messages.len()),
        firings: Vec::new(),
    };
    let check_tombstones = tx.has_tombstones()?;
    tx.begin_events(&messages)?;
    let mut messages = messages.into_iter().peekable();
    while let Some(incoming) = messages.next() {
        // The next message's contact state, asked for while this one is
        // absorbed (its cache entry was asked for above).
        if let (Some(cache), Some(next)) = (batch.cache.as_deref(), messages.peek()) {
            cache.prefetch_state(next.message.own_id());
        }
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
    /// Canonical id of each id this batch resolved from the store or
    /// moved (`Batch::canonical` finds the others where they are held).
    canonical: FxHashMap<SmolStr, SmolStr>,
    /// The contacts touched, written in id order at the end (a hash map:
    /// a batch looks each up once or twice per message, and a B-tree of
    /// these large values moved them on every node split).
    work: FxHashMap<SmolStr, Work>,
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
            if refolded.contains(contact.as_str()) && replaced_owner.is_none() {
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
            work.cause = format!("late message {}", m.message_id).into();
            return Ok(());
        }
        let mut fired = Vec::new();
        triggers.advance(model, state, m.timestamp, false, &mut fired);
        if state.absorb(model, &m).is_err() {
            work.state = None;
            work.cause = format!("late message {}", m.message_id).into();
            return Ok(());
        }
        // The triggers' conditions read the score at the message: computed once.
        let score = match triggers.evaluate(model, state, m.timestamp, &mut fired) {
            Some(score) => score,
            None => state
                .score_at(model, m.timestamp)
                .expect("at the last message"),
        };
        let fields = ScoreFields::from(&score);
        let entry = (work.current.as_ref() != Some(&fields)).then(|| NewEntry {
            seq: 0,
            contact: contact.clone(),
            at: Some(m.timestamp),
            recorded_at,
            model_version: version,
            old: work.current.replace(fields.clone()),
            new: Some(fields),
            cause: ["message ", &m.message_id].concat(),
        });
        work.score = Some(score);
        self.report.absorbed += 1;
        self.record(entry);
        self.firings
            .extend(fired.into_iter().map(|f| (contact.to_string(), f, false)));
        Ok(())
    }

    /// The canonical id of `id`, registering a new id as its own contact.
    ///
    /// Looked up in order: this batch's answers (every id it moved is
    /// there, put by `restitch`); a contact the batch or the writer's
    /// cache holds, which is named by its own canonical id (a contact that
    /// stops being canonical vanishes from both), and whose entry the
    /// batch reads next; the ids earlier batches of this writer resolved
    /// (the cache is emptied whenever anything else may have changed
    /// identities); the store. Only the store's answers are recorded: the
    /// others are already held where they were found.
    fn canonical(&mut self, tx: &mut impl Tx, id: &str) -> Result<SmolStr> {
        if let Some(c) = self.canonical.get(id) {
            return Ok(c.clone());
        }
        if let Some((held, _)) = self.work.get_key_value(id) {
            return Ok(held.clone());
        }
        if let Some(held) = self.cache.as_deref().and_then(|c| c.held(id)) {
            return Ok(held.clone());
        }
        if let Some(c) = self.cache.as_deref().and_then(|cache| cache.ids.get(id)) {
            return Ok(c.clone());
        }
        let c = match tx.identity(id)? {
            Some(c) => SmolStr::from(c),
            None => {
                tx.set_identity(id, id)?;
                SmolStr::new(id)
            }
        };
        self.canonical.insert(SmolStr::new(id), c.clone());
        Ok(c)
    }

    /// Re-resolves the ids around changed links: every id of the contacts
    /// that `ids` belonged to (a changed link only moves ids whose path
    /// passes through it, and those are all in these contacts).
    fn restitch(&mut self, tx: &mut impl Tx, ids: Vec<String>) -> Result<BTreeSet<String>> {
        let mut before = BTreeSet::new();
        for id in &ids {
            before.insert(self.canonical(tx, id)?.to_string());
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
                new = self.canonical(tx, &new)?.to_string();
            }
            if self.canonical(tx, id)? != new {
                tx.set_identity(id, &new)?;
                self.canonical.insert(id.into(), new.as_str().into());
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
        let contact = &SmolStr::new(contact);
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
            contact: contact.into(),
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
        let contact = &SmolStr::new(contact);
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
        work.now = true;
        let mut entry = None;
        let score = state.last_timestamp().map(|last| {
            (
                last,
                state.score_at(model, last).expect("at the last message"),
            )
        });
        if let Some((last, score)) = &score {
            let fields = ScoreFields::from(score);
            if work.current.as_ref() != Some(&fields) {
                entry = Some(NewEntry {
                    seq: 0,
                    contact: contact.clone(),
                    at: Some(*last),
                    recorded_at,
                    model_version: version,
                    old: work.current.replace(fields.clone()),
                    new: Some(fields),
                    cause: cause.to_string(),
                });
            }
        }
        work.state = Some(state);
        work.score = score.map(|(_, score)| score);
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

    /// The contact's work entry, loading its stored row on first use
    /// (keyed by `contact` itself: a long id stays shared, not copied).
    /// `decode`: whether the live state is needed (re-folds replace it, so
    /// decoding the stored snapshot would be wasted).
    fn load(
        &mut self,
        tx: &mut impl Tx,
        contact: &SmolStr,
        model: &Model,
        version: u32,
        decode: bool,
    ) -> Result<&mut Work> {
        if !self.work.contains_key(contact) {
            let cached = self.cache.as_deref_mut().and_then(|c| c.take(contact));
            let mut spare = None;
            let (existed, current, state, triggers, stored) = match cached {
                Some(cached) => {
                    let (value, emptied) = cache::unbox(cached);
                    spare = Some(emptied);
                    let Cached {
                        state,
                        triggers,
                        current,
                        stored,
                    } = value;
                    let state = decode.then_some(state);
                    (true, Some(current), state, Some(triggers), stored)
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
                    (old.is_some(), current, state, triggers, None)
                }
            };
            // Back after vanishing in this batch: its history says gone.
            let current = if self.gone.remove(contact.as_str()) {
                None
            } else {
                current
            };
            return Ok(self.work.entry(contact.clone()).or_insert(Work {
                existed,
                current,
                state,
                triggers,
                replayed: false,
                cause: Cow::Borrowed("rescore"),
                stored,
                score: None,
                now: false,
                spare,
            }));
        }
        Ok(self.work.get_mut(contact).expect("present"))
    }

    fn refold(&mut self, tx: &mut impl Tx, contact: &SmolStr, cause: &str) -> Result<()> {
        let Some((model, version)) = self.model else {
            return Ok(());
        };
        let work = self.load(tx, contact, model, version, false)?;
        work.state = None;
        work.cause = cause.to_string().into();
        work.now = true;
        Ok(())
    }

    /// Re-folds what must be, writes every touched row, records merges.
    fn finish(mut self, tx: &mut impl Tx, activating: bool) -> Result<IngestReport> {
        // Every identity the batch set went through `canonical`.
        if let Some(cache) = self.cache.as_deref_mut() {
            cache.pending_ids = std::mem::take(&mut self.canonical);
        }
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
        let mut rows = Vec::with_capacity(self.work.len());
        let mut cached = Vec::new();
        // In id order; the keys sorted, not the large entries.
        let mut work = std::mem::take(&mut self.work);
        let mut contacts: Vec<SmolStr> = work.keys().cloned().collect();
        contacts.sort_unstable();
        for contact in contacts {
            let work = work.remove(&contact).expect("a key of the map");
            let refolded = work.state.is_none();
            let (state, triggers) = match work.state {
                Some(state) => (state, work.triggers),
                None => {
                    self.report.refolded += 1;
                    let (state, triggers, fired) =
                        fold_with_triggers(tx, model, &contact, work.triggers.as_ref())?;
                    self.firings
                        .extend(fired.into_iter().map(|f| (contact.to_string(), f, true)));
                    (state, Some(triggers))
                }
            };
            if activating {
                tx.delete_row(Table::Next, &contact)?;
            }
            // Rows written before triggers existed: armed as of the last message.
            let triggers = triggers.unwrap_or_else(|| armed(model, &state, state.last_timestamp()));
            // A state re-folded here has no score yet.
            let known = work.score.filter(|_| !refolded);
            let Some(row) = row_of(model, version, &contact, &state, &triggers, known) else {
                // No message left (its only ones were replaced by copies
                // that belong to others).
                if work.existed {
                    tx.delete_row(Table::Live, &contact)?;
                }
                if let Some(old) = work.current {
                    self.record_end(&contact, None, version, old, work.cause.into_owned());
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
                    cause: work.cause.into_owned(),
                }));
            }
            rows.push(LiveWrite {
                row: std::sync::Arc::new(row),
                stored: work.stored,
                now: work.now,
            });
            if self.cache.is_some() {
                let entry = Cached {
                    state,
                    triggers,
                    current: fields,
                    stored: None,
                };
                cached.push(match work.spare {
                    Some(spare) => Box::write(spare, entry),
                    None => Box::new(entry),
                });
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
        tx.put_rows_and_ledger(&mut rows, &self.ledger)?;
        // Every contact of an entry or a row was taken out of the cache by
        // this batch: those put back are the rows just written, with what
        // the backend stored.
        if let Some(cache) = self.cache.as_deref_mut() {
            for (mut entry, write) in cached.into_iter().zip(rows) {
                entry.stored = write.stored;
                cache.pending.push((write.row.id.clone(), entry));
            }
        }
        self.report.changes = self.ledger;
        Ok(self.report)
    }
}
