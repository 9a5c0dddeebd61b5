//! Live scoring: a contact that absorbs messages one at a time in any order
//! and always equals the batch fold of what it has seen.
//!
//! In-order messages (the common case) cost one [`ContactState::absorb`];
//! an older message, or a better copy of a known message id, re-folds the
//! contact from its log. The store keeps the same split: state blob for the
//! fast path, event log for re-folds.

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::batch::preferred;
use crate::event::Message;
use crate::fold::{ContactState, LogKey};
use crate::model::Model;
use crate::score::Score;
use crate::time::Timestamp;

/// A contact's log plus its folded state.
#[derive(Debug, Clone)]
pub struct IncrementalContact {
    base_traits: Option<Map<String, Value>>,
    log: Vec<Message>,
    ids: HashSet<String>,
    state: ContactState,
    refolds: u64,
}

/// What absorbing a message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Absorbed {
    /// Appended and folded in O(rules).
    Appended,
    /// Older than the last message (or replaced a duplicate): re-folded.
    Refolded,
    /// A duplicate message id that does not replace the kept copy.
    Duplicate,
}

impl IncrementalContact {
    /// A contact with no messages.
    pub fn new(model: &Model, base_traits: Option<Map<String, Value>>) -> IncrementalContact {
        IncrementalContact {
            state: ContactState::new(model, base_traits.as_ref()),
            base_traits,
            log: Vec::new(),
            ids: HashSet::new(),
            refolds: 0,
        }
    }

    /// Absorbs one message, whatever its timestamp.
    pub fn absorb(&mut self, model: &Model, message: Message) -> Absorbed {
        if self.ids.contains(&message.message_id) {
            let i = self
                .log
                .iter()
                .position(|m| m.message_id == message.message_id)
                .expect("known id is in the log");
            if !preferred(&message, &self.log[i]) {
                return Absorbed::Duplicate;
            }
            self.log.remove(i);
            self.insert_and_refold(model, message);
            return Absorbed::Refolded;
        }
        self.ids.insert(message.message_id.clone());
        match self.state.absorb(model, &message) {
            Ok(()) => {
                self.log.push(message);
                Absorbed::Appended
            }
            Err(_) => {
                self.insert_and_refold(model, message);
                Absorbed::Refolded
            }
        }
    }

    fn insert_and_refold(&mut self, model: &Model, message: Message) {
        let key = LogKey::of(&message);
        let at = self.log.partition_point(|m| LogKey::of(m) < key);
        self.log.insert(at, message);
        self.state = ContactState::fold(model, self.base_traits.as_ref(), &self.log);
        self.refolds += 1;
    }

    /// The score at `t`; `t` before the last message re-folds up to `t`.
    pub fn score_as_of(&self, model: &Model, t: Timestamp) -> Score {
        match self.state.score_at(model, t) {
            Ok(score) => score,
            Err(_) => {
                let until = self.log.partition_point(|m| m.timestamp <= t);
                ContactState::fold(model, self.base_traits.as_ref(), &self.log[..until])
                    .score_at(model, t)
                    .expect("folded up to t")
            }
        }
    }

    /// The folded state.
    pub fn state(&self) -> &ContactState {
        &self.state
    }

    /// The messages absorbed, in log order.
    pub fn log(&self) -> &[Message] {
        &self.log
    }

    /// How many times an out-of-order message forced a re-fold.
    pub fn refolds(&self) -> u64 {
        self.refolds
    }
}
