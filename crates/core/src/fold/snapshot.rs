//! A compact, versioned binary encoding of a [`ContactState`] for storage.
//!
//! The snapshot holds the rule state only (what `nth`, `limit`, streaks,
//! decayed sums, activity functions and stages need); traits and company are
//! kept by their owner (the store keeps them per key) and handed back on
//! decode. Rules a contact never touched take no space, integers are
//! varints, and times are deltas back from the last message.
//!
//! Layout (version 1), all integers LEB128 varints unless noted:
//! `version u8 | model fingerprint u32 LE | has_last u8 | [last ts (zigzag),
//! class u8, message id (len, bytes)] | stage+1 | last activity | per slot:
//! count, last | per inactivity rule: last | touched engagements: n, then
//! (index, occurrences, recent (len, times), awards) | touched streaks: n,
//! then (index, counter, awards)`; awards = `count [, sum f64 LE, undecayed
//! f64 LE, first, last]`; a time is `0` for none or `zigzag(last − t) + 1`.

use std::fmt;

use super::{ContactState, Traits};
use crate::model::Model;
use crate::rules::awards::Awards;
use crate::rules::engagement::EngagementState;
use crate::rules::streak::StreakState;
use crate::time::Timestamp;

const VERSION: u8 = 1;

/// A snapshot that cannot be decoded for this model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotError(pub String);

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid contact state snapshot: {}", self.0)
    }
}

impl std::error::Error for SnapshotError {}

/// A stable 32-bit fingerprint of what the state layout depends on: rule
/// kinds, ids and order, and `count()`/`days_since()` slots.
pub(crate) fn fingerprint(model: &Model) -> u32 {
    let mut text = String::new();
    for r in &model.engagements {
        text.push_str("e:");
        text.push_str(&r.id);
        text.push('\n');
    }
    for r in &model.streaks {
        text.push_str("s:");
        text.push_str(&r.id);
        text.push('\n');
    }
    for r in &model.inactivities {
        text.push_str("i:");
        text.push_str(&r.id);
        text.push('\n');
    }
    text.push_str(&format!(
        "slots:{}\nstages:{}",
        model.activity_slots(),
        model.stages.len()
    ));
    xxhash_rust::xxh3::xxh3_64(text.as_bytes()) as u32
}

struct Writer {
    bytes: Vec<u8>,
    origin: Timestamp,
}

impl Writer {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.bytes.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.bytes.push(v as u8);
    }

    fn zigzag(&mut self, v: i64) {
        self.varint(((v << 1) ^ (v >> 63)) as u64);
    }

    fn f64(&mut self, v: f64) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    fn time(&mut self, t: Option<Timestamp>) {
        match t {
            None => self.varint(0),
            Some(t) => {
                let delta = self.origin.0.wrapping_sub(t.0);
                self.varint((((delta << 1) ^ (delta >> 63)) as u64).wrapping_add(1));
            }
        }
    }

    fn awards(&mut self, a: &Awards) {
        self.varint(u64::from(a.count));
        if a.count > 0 {
            self.f64(a.sum_at_last);
            self.f64(a.undecayed);
            self.time(Some(a.first));
            self.time(Some(a.last));
        }
    }
}

struct Reader<'b> {
    bytes: &'b [u8],
    at: usize,
    origin: Timestamp,
}

impl Reader<'_> {
    fn fail<T>(&self, what: &str) -> Result<T, SnapshotError> {
        Err(SnapshotError(format!("{what} at byte {}", self.at)))
    }

    fn u8(&mut self) -> Result<u8, SnapshotError> {
        match self.bytes.get(self.at) {
            Some(b) => {
                self.at += 1;
                Ok(*b)
            }
            None => self.fail("truncated"),
        }
    }

    fn varint(&mut self) -> Result<u64, SnapshotError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        self.fail("varint too long")
    }

    fn small(&mut self, limit: usize, what: &str) -> Result<usize, SnapshotError> {
        let v = self.varint()?;
        match usize::try_from(v) {
            Ok(v) if v <= limit => Ok(v),
            _ => self.fail(&format!("{what} {v} out of range (max {limit})")),
        }
    }

    fn u32(&mut self, what: &str) -> Result<u32, SnapshotError> {
        let v = self.varint()?;
        u32::try_from(v).or_else(|_| self.fail(&format!("{what} {v} out of range")))
    }

    fn zigzag(&mut self) -> Result<i64, SnapshotError> {
        let v = self.varint()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    fn f64(&mut self) -> Result<f64, SnapshotError> {
        let end = self.at + 8;
        match self.bytes.get(self.at..end) {
            Some(b) => {
                self.at = end;
                Ok(f64::from_le_bytes(b.try_into().expect("8 bytes")))
            }
            None => self.fail("truncated"),
        }
    }

    fn time(&mut self) -> Result<Option<Timestamp>, SnapshotError> {
        let v = self.varint()?;
        if v == 0 {
            return Ok(None);
        }
        let z = v - 1;
        let delta = ((z >> 1) as i64) ^ -((z & 1) as i64);
        Ok(Some(Timestamp(self.origin.0.wrapping_sub(delta))))
    }

    fn awards(&mut self) -> Result<Awards, SnapshotError> {
        let count = self.u32("award count")?;
        if count == 0 {
            return Ok(Awards::default());
        }
        let sum_at_last = self.f64()?;
        let undecayed = self.f64()?;
        match (self.time()?, self.time()?) {
            (Some(first), Some(last)) => Ok(Awards {
                count,
                sum_at_last,
                undecayed,
                first,
                last,
            }),
            _ => self.fail("award without times"),
        }
    }
}

impl ContactState {
    /// The rule state as a compact binary snapshot (traits and company are
    /// not included: pass them back to [`ContactState::decode`]).
    pub fn encode(&self, model: &Model) -> Vec<u8> {
        let mut w = Writer {
            // Most states fit (b2b: median 224 bytes, p90 277), so the
            // vector is not grown again as it is written.
            bytes: Vec::with_capacity(320),
            origin: self.last_timestamp.unwrap_or_default(),
        };
        w.bytes.push(VERSION);
        w.bytes
            .extend_from_slice(&model.snapshot_fingerprint().to_le_bytes());
        match self.last_timestamp {
            None => w.bytes.push(0),
            Some(ts) => {
                w.bytes.push(1);
                w.zigzag(ts.0);
                w.bytes.push(self.last_class);
                w.varint(self.last_message_id.len() as u64);
                w.bytes.extend_from_slice(self.last_message_id.as_bytes());
            }
        }
        w.varint(self.stage.map_or(0, |s| s as u64 + 1));
        w.time(self.last_activity);
        for (count, last) in self.activity_counts.iter().zip(&self.activity_last) {
            w.varint(*count);
            w.time(*last);
        }
        for last in &self.inactivity_last {
            w.time(*last);
        }
        // Counted, then written: no vector of them (the server's writer
        // encodes a state per message).
        let touched = |s: &&EngagementState| s.occurrences > 0;
        w.varint(self.engagements.iter().filter(touched).count() as u64);
        for (i, s) in self
            .engagements
            .iter()
            .enumerate()
            .filter(|(_, s)| touched(s))
        {
            w.varint(i as u64);
            w.varint(u64::from(s.occurrences));
            w.varint(s.recent.len() as u64);
            for t in &s.recent {
                w.time(Some(*t));
            }
            w.awards(&s.awards);
        }
        let touched = |s: &&StreakState| s.counter > 0 || s.awards.count > 0;
        w.varint(self.streaks.iter().filter(touched).count() as u64);
        for (i, s) in self.streaks.iter().enumerate().filter(|(_, s)| touched(s)) {
            w.varint(i as u64);
            w.varint(u64::from(s.counter));
            w.awards(&s.awards);
        }
        w.bytes
    }

    /// Rebuilds a state from [`ContactState::encode`]'s bytes for the same
    /// model, with the contact's current traits and company.
    pub fn decode(
        model: &Model,
        bytes: &[u8],
        traits: Traits,
        company: Traits,
    ) -> Result<ContactState, SnapshotError> {
        let mut r = Reader {
            bytes,
            at: 0,
            origin: Timestamp::default(),
        };
        let version = r.u8()?;
        if version != VERSION {
            return r.fail(&format!("unknown version {version}"));
        }
        let mut print = [0u8; 4];
        for b in &mut print {
            *b = r.u8()?;
        }
        if u32::from_le_bytes(print) != model.snapshot_fingerprint() {
            return r.fail("written for another model (rules differ)");
        }
        let mut state = ContactState::new(model, None);
        state.traits = traits;
        state.company = company;
        if r.u8()? == 1 {
            let ts = Timestamp(r.zigzag()?);
            r.origin = ts;
            state.last_timestamp = Some(ts);
            state.pending_point = Some(ts);
            state.last_class = r.u8()?;
            let len = r.small(bytes.len(), "message id length")?;
            let id = bytes
                .get(r.at..r.at + len)
                .ok_or_else(|| SnapshotError("truncated message id".into()))?;
            state.last_message_id = String::from_utf8(id.to_vec())
                .map_err(|_| SnapshotError("message id is not UTF-8".into()))?;
            r.at += len;
        }
        let stage = r.small(model.stages.len(), "stage")?;
        state.stage = stage.checked_sub(1);
        state.last_activity = r.time()?;
        for slot in 0..model.activity_slots() {
            state.activity_counts[slot] = r.varint()?;
            state.activity_last[slot] = r.time()?;
        }
        for rule in 0..model.inactivities.len() {
            state.inactivity_last[rule] = r.time()?;
        }
        let touched = r.small(model.engagements.len(), "engagement count")?;
        for _ in 0..touched {
            let i = r.small(
                model.engagements.len().saturating_sub(1),
                "engagement index",
            )?;
            let s = &mut state.engagements[i];
            s.occurrences = r.u32("occurrences")?;
            let limit = model.engagements[i].limit.map_or(0, |l| l.count as usize);
            let recent = r.small(limit, "limit window length")?;
            for _ in 0..recent {
                let t = r
                    .time()?
                    .ok_or_else(|| SnapshotError("empty limit time".into()))?;
                s.recent.push(t);
            }
            s.awards = r.awards()?;
        }
        let touched = r.small(model.streaks.len(), "streak count")?;
        for _ in 0..touched {
            let i = r.small(model.streaks.len().saturating_sub(1), "streak index")?;
            state.streaks[i].counter = r.u32("streak counter")?;
            state.streaks[i].awards = r.awards()?;
        }
        if r.at != bytes.len() {
            return r.fail("trailing bytes");
        }
        Ok(state)
    }
}
