//! From a message log to contacts as of t: filter by time, drop duplicate
//! message ids, stitch identities, group, sort (SPEC §2).

use std::collections::hash_map::Entry;

use rustc_hash::FxHashMap;

use serde_json::{Map, Value};

use crate::event::{Message, Names};
use crate::fold::{sort_log, ContactState, Trace};
use crate::identity::Identities;
use crate::model::Model;
use crate::score::{Explanation, Score};
use crate::time::Timestamp;

/// One contact's messages (in log order) and contacts-file traits.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContactLog {
    /// Canonical contact id.
    pub id: String,
    /// Traits from the contacts file, older than any message.
    pub base_traits: Option<Map<String, Value>>,
    /// Messages in log order, deduplicated.
    pub messages: Vec<Message>,
}

/// Among messages sharing a `messageId`, the one with the smallest
/// `(timestamp, canonical JSON)` is kept: which ones, or `None` when there is
/// no duplicate.
fn kept<'a>(messages: impl Iterator<Item = &'a Message>, total: usize) -> Option<Vec<bool>> {
    let mut keep = vec![true; total];
    let mut winner: FxHashMap<&str, (usize, &Message)> = FxHashMap::default();
    winner.reserve(total);
    for (i, message) in messages.enumerate() {
        match winner.entry(message.message_id.as_str()) {
            Entry::Vacant(slot) => {
                slot.insert((i, message));
            }
            Entry::Occupied(mut slot) => {
                let (current, held) = *slot.get();
                if preferred(message, held) {
                    keep[current] = false;
                    slot.insert((i, message));
                } else {
                    keep[i] = false;
                }
            }
        }
    }
    (winner.len() < total).then_some(keep)
}

/// Whether `candidate` wins over `current` for the same message id.
pub fn preferred(candidate: &Message, current: &Message) -> bool {
    (candidate.timestamp, candidate.canonical_json())
        < (current.timestamp, current.canonical_json())
}

/// Groups a log into contacts as of `t`: every canonical id with a message at
/// or before `t`, plus every id of the contacts file. Sorted by id bytewise.
pub fn contacts_as_of(
    messages: Vec<Message>,
    contacts_file: Vec<(String, Map<String, Value>)>,
    t: Timestamp,
) -> Vec<ContactLog> {
    contacts_as_of_chunks(vec![messages], contacts_file, t)
}

/// [`contacts_as_of`] over a log held in chunks (in any order: the result
/// does not depend on how the log is cut). Each chunk is freed as soon as its
/// messages have moved to their contacts, so that memory is reused for the
/// contacts' logs instead of both copies being held in full.
pub fn contacts_as_of_chunks(
    chunks: Vec<Vec<Message>>,
    contacts_file: Vec<(String, Map<String, Value>)>,
    t: Timestamp,
) -> Vec<ContactLog> {
    let all = || chunks.iter().flatten();
    let total: usize = chunks.iter().map(Vec::len).sum();
    // Which messages take part: the kept copy of each message id, at or
    // before t (deduplicating first or filtering first gives the same set,
    // since the kept copy is the earliest). Skipped while grouping instead of
    // removed, so the log is moved only once.
    let mut keep = kept(all(), total).unwrap_or_else(|| vec![true; total]);
    for (k, m) in keep.iter_mut().zip(all()) {
        *k &= m.timestamp <= t;
    }
    let identities =
        Identities::from_messages(all().zip(&keep).filter(|(_, k)| **k).map(|(m, _)| m));
    let mut contacts: Vec<ContactLog> = Vec::new();
    let mut index: FxHashMap<String, u32> = FxHashMap::default();
    let mut slot = |id: &str, contacts: &mut Vec<ContactLog>| -> usize {
        if let Some(&i) = index.get(id) {
            return i as usize;
        }
        index.insert(id.to_string(), contacts.len() as u32);
        contacts.push(ContactLog {
            id: id.to_string(),
            ..ContactLog::default()
        });
        contacts.len() - 1
    };
    for (id, traits) in contacts_file {
        let at = slot(identities.canonical(&id), &mut contacts);
        let contact = &mut contacts[at];
        match &mut contact.base_traits {
            Some(base) => base.extend(traits),
            None => contact.base_traits = Some(traits),
        }
    }
    // Two passes, so that each contact's messages are allocated once at
    // their final size instead of growing (and being copied) repeatedly.
    const SKIPPED: u32 = u32::MAX;
    let slots: Vec<u32> = all()
        .zip(&keep)
        .map(|(m, k)| {
            if *k {
                slot(identities.contact_of(m), &mut contacts) as u32
            } else {
                SKIPPED
            }
        })
        .collect();
    drop(keep);
    let mut counts = vec![0usize; contacts.len()];
    for &s in slots.iter().filter(|s| **s != SKIPPED) {
        counts[s as usize] += 1;
    }
    let mut names = Names::default();
    let mut slots = slots.into_iter();
    for chunk in chunks {
        for mut message in chunk {
            let s = slots.next().expect("one slot per message");
            if s == SKIPPED {
                continue;
            }
            names.intern(&mut message);
            let log = &mut contacts[s as usize].messages;
            if log.capacity() == 0 {
                // Allocated at first use, after earlier chunks were freed.
                log.reserve_exact(counts[s as usize]);
            }
            log.push(message);
        }
    }
    contacts.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    for contact in &mut contacts {
        sort_log(&mut contact.messages);
    }
    contacts
}

impl ContactLog {
    /// The contact's score at `t` (messages after `t` are ignored).
    pub fn score_as_of(&self, model: &Model, t: Timestamp) -> Score {
        let until = self.messages.partition_point(|m| m.timestamp <= t);
        ContactState::fold(model, self.base_traits.as_ref(), &self.messages[..until])
            .score_at(model, t)
            .expect("t is not before the messages folded")
    }

    /// The score at `t` and its explanation, with the message ids behind
    /// every award.
    pub fn explain_as_of(&self, model: &Model, t: Timestamp) -> (Score, Explanation) {
        let until = self.messages.partition_point(|m| m.timestamp <= t);
        let mut trace = Trace::default();
        let state = ContactState::fold_recorded(
            model,
            self.base_traits.as_ref(),
            &self.messages[..until],
            &mut trace,
        );
        let score = state
            .score_at(model, t)
            .expect("t is not before the messages folded");
        (score, state.explain(model, t, Some(&trace)))
    }
}
