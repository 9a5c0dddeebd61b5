//! Live scoring over a transaction, independent of the backend: message
//! deduplication, identity stitching, in-order absorb or re-fold, ledger
//! entries, activation and dry runs. A backend provides [`Tx`].

use std::sync::Arc;

use leadscore_core::batch::{contacts_as_of, ContactLog};
use leadscore_core::event::{Message, Names};
use leadscore_core::fold::{sort_log, ContactState, Traits};
use leadscore_core::identity::Identities;
use leadscore_core::model::Model;
use leadscore_core::score::Score;
use leadscore_core::time::Timestamp;
use leadscore_core::triggers::{replay, Firing, TriggerState};
use rayon::prelude::*;
use serde_json::{Map, Value};
use smol_str::SmolStr;

mod cache;
mod dry_run;
mod ingest;
mod triggers;

pub(crate) use cache::LiveCache;
pub use cache::DEFAULT_LIVE_CONTACTS;
pub(crate) use dry_run::dry_run;
pub use dry_run::{DryRun, Mover};
pub(crate) use ingest::ingest;
use triggers::armed;
pub use triggers::DueReport;
pub(crate) use triggers::{fire_due, write_firings};

use crate::bodies::StoredBody;
use crate::{
    id_hash, ContactRecord, Incoming, LedgerEntry, Listed, Result, ScoreFields, StoreError,
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
    pub id: SmolStr,
    pub model_version: u32,
    pub state: Vec<u8>,
    /// Shared with the state the row was written from.
    pub traits: Traits,
    pub company: Traits,
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

/// Traits from a row's stored JSON text.
pub(crate) fn json_traits(text: &str) -> Result<Traits> {
    serde_json::from_str(text)
        .map(Arc::new)
        .map_err(|e| StoreError::Corrupt(format!("traits: {e}")))
}

impl From<Row> for Listed {
    fn from(row: Row) -> Listed {
        Listed {
            id: row.id.into(),
            last_event: row.last_ts,
            score: row.score,
        }
    }
}

impl From<Row> for ContactRecord {
    fn from(row: Row) -> ContactRecord {
        ContactRecord {
            state_bytes: row.state.len(),
            id: row.id.into(),
            model_version: row.model_version,
            last_event: row.last_ts,
            score: row.score,
            traits: Arc::unwrap_or_clone(row.traits),
            company: Arc::unwrap_or_clone(row.company),
        }
    }
}

/// What a backend wrote of a live row besides its contents, kept with the
/// writer's cache ([`LiveCache`]) so that the row's next write needs no
/// read: its score and due time as stored (a backend leaves their indexes
/// alone when they do not change), its ledger positions (SQLite keeps
/// them in the row) and where the row is (SQLite's rowid: an update goes
/// there without looking the id up).
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub score: f64,
    pub due: Option<Timestamp>,
    pub history: Option<Positions>,
    pub rowid: i64,
}

/// A live row's ledger positions not in a run (`seq,seq,…`), shared by the
/// writer's cache and the rows it keeps in memory: a new event's positions
/// make a new text, and nothing copies it again.
pub(crate) type Positions = Arc<str>;

/// A live row to write at the end of an ingest, with what the writer knows
/// of the row stored before it (`None`: nothing, the backend reads what it
/// needs), replaced by what the backend stored when it knows.
#[derive(Debug, Clone)]
pub(crate) struct LiveWrite {
    /// Shared: a backend may keep it (SQLite's server writer keeps rows in
    /// memory, `sqlite::deferred`).
    pub row: Arc<Row>,
    pub stored: Option<Stored>,
    /// Whether the row must be written now: its change came from more
    /// than the new messages the batch appended to the log (a replaced
    /// message, a merge), so that a crash could not derive it again from
    /// the log's new part (`sqlite::deferred`).
    pub now: bool,
}

/// A ledger entry to append (buffered for the batch, written at its end in
/// as few statements as the backend can); its `seq` is given on insert.
pub(crate) type NewEntry = LedgerEntry;

/// How the ledger's `old`/`new` texts are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldsForm {
    /// `{"score":…,"tier":…,"grade":…,"stage":…,"status":…}`: the text
    /// `serde_json` writes for [`ScoreFields`] (PostgreSQL, and SQLite
    /// before V14).
    Object,
    /// `[score,"tier","grade","stage","status"]`: the same values without
    /// their keys, 33 bytes fewer (SQLite since V14, `docs/storage.md`).
    /// `serde_json` reads a [`ScoreFields`] from either.
    Array,
}

/// `old`/`new` as the ledger's JSON text: the text `serde_json` writes for
/// [`ScoreFields`], written directly (two per ingested message; serde's
/// per-field and per-byte escaping cost 2.6k instructions a message,
/// `docs/performance.md`, session 25).
pub(crate) fn fields_json(fields: Option<&ScoreFields>) -> Option<String> {
    let f = fields?;
    // Keys, quotes and braces 54 bytes, a score at most 24: never grown
    // (labels that need escapes aside).
    let mut out = String::with_capacity(
        78 + f.tier.len() + f.grade.len() + f.stage.len() + f.status.as_str().len(),
    );
    push_fields_json(&mut out, f, FieldsForm::Object);
    Some(out)
}

/// Appends `f`'s text in `form` to `out` ([`fields_json`]'s for
/// [`FieldsForm::Object`]).
pub(crate) fn push_fields_json(out: &mut String, f: &ScoreFields, form: FieldsForm) {
    let (open, keys, close) = match form {
        FieldsForm::Object => (
            "{\"score\":",
            [",\"tier\":", ",\"grade\":", ",\"stage\":", ",\"status\":"],
            '}',
        ),
        FieldsForm::Array => ("[", [","; 4], ']'),
    };
    out.push_str(open);
    if f.score.is_finite() {
        // serde_json's own float formatter, so the text is the same.
        out.push_str(zmij::Buffer::new().format_finite(f.score));
    } else {
        out.push_str("null"); // as serde_json writes it
    }
    for (key, text) in keys.into_iter().zip([
        f.tier.as_str(),
        f.grade.as_str(),
        f.stage.as_str(),
        f.status.as_str(),
    ]) {
        out.push_str(key);
        leadscore_core::json::push_string(out, text);
    }
    out.push(close);
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
    /// The stored body of every event whose own id is `own_id`.
    fn event_bodies(&mut self, own_id: &str) -> Result<Vec<StoredBody>>;
    fn row(&mut self, table: Table, id: &str) -> Result<Option<Row>>;
    fn put_row(&mut self, table: Table, row: &Row) -> Result<()>;
    fn delete_row(&mut self, table: Table, id: &str) -> Result<()>;
    /// Appends entries in order.
    fn append_ledger(&mut self, entries: &[NewEntry]) -> Result<()>;
    /// The end of an ingest: writes its live rows and appends its ledger
    /// entries (in order). A backend may write both together, as SQLite
    /// does to keep each row's entry positions in the row, and may use and
    /// update what each [`LiveWrite`] says was stored.
    fn put_rows_and_ledger(&mut self, rows: &mut [LiveWrite], entries: &[NewEntry]) -> Result<()> {
        for write in rows {
            self.put_row(Table::Live, &write.row)?;
        }
        self.append_ledger(entries)
    }
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
    /// Live rows after id `after` in id order, at most `limit`, with their
    /// traits and company only when `traits` (else empty maps).
    fn live_rows(&mut self, after: Option<&str>, limit: usize, traits: bool) -> Result<Vec<Row>>;
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

/// Reads back a message stored whole.
pub(crate) fn parse_stored(body: String) -> Result<Message> {
    StoredBody::whole(body).parse(&mut Names::default())
}

/// The stored bodies of a contact's events, with the ids they came under.
pub(crate) fn contact_bodies(
    tx: &mut impl Tx,
    contact: &str,
) -> Result<(Vec<String>, Vec<StoredBody>)> {
    let members = tx.members(contact)?;
    let mut bodies = Vec::new();
    for id in &members {
        bodies.extend(tx.event_bodies(id)?);
    }
    Ok((members, bodies))
}

pub(crate) fn parse_log(bodies: Vec<StoredBody>) -> Result<Vec<Message>> {
    let mut names = Names::default();
    let mut messages = bodies
        .into_iter()
        .map(|b| b.parse(&mut names))
        .collect::<Result<Vec<_>>>()?;
    sort_log(&mut messages);
    Ok(messages)
}

/// A contact's messages, in log order, with the ids they came under.
pub(crate) fn contact_log(tx: &mut impl Tx, contact: &str) -> Result<(Vec<String>, Vec<Message>)> {
    let (members, bodies) = contact_bodies(tx, contact)?;
    Ok((members, parse_log(bodies)?))
}

/// Every contact's log, canonical ids in id order ([`crate::Store::each_log`]).
pub(crate) fn each_log(tx: &mut impl Tx, each: &mut dyn FnMut(crate::StoredLog)) -> Result<()> {
    let mut cursor: Option<String> = None;
    loop {
        let contacts = tx.contacts_after(cursor.as_deref(), CONTACTS_PER_STEP)?;
        let Some(last) = contacts.last().cloned() else {
            return Ok(());
        };
        for contact in contacts {
            let (ids, messages) = contact_log(tx, &contact)?;
            each(crate::StoredLog {
                contact,
                ids,
                messages,
            });
        }
        cursor = Some(last);
    }
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

/// Derives a contact's live row again from its log, after a crash lost the
/// row a writer kept in memory (the stored one is older): its triggers are
/// replayed from the stored row's trigger state, firings recorded before
/// stay as they are (a firing the replay finds that was not recorded is
/// recorded now, as after a late message), and the row keeps the ledger
/// positions the stored one holds. A contact without a stored row (merged
/// away or erased since) is left alone.
pub(crate) fn rederive(
    tx: &mut impl Tx,
    model: &Model,
    version: u32,
    contact: &str,
    recorded_at: Timestamp,
) -> Result<()> {
    let Some(stored) = tx.row(Table::Live, contact)? else {
        return Ok(());
    };
    let old = (stored.model_version == version)
        .then(|| TriggerState::decode(model, &stored.triggers))
        .flatten();
    let (state, triggers, fired) = fold_with_triggers(tx, model, contact, old.as_ref())?;
    let fired = fired
        .into_iter()
        .map(|f| (contact.to_string(), f, true))
        .collect();
    let mut ledger = Vec::new();
    write_firings(tx, model, version, recorded_at, fired, &mut ledger)?;
    match row_of(model, version, &contact.into(), &state, &triggers, None) {
        Some(row) => tx.put_rows_and_ledger(
            &mut [LiveWrite {
                row: Arc::new(row),
                stored: None,
                now: true,
            }],
            &ledger,
        ),
        None => tx.append_ledger(&ledger),
    }
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
            let messages = parse_log(bodies)?;
            Ok((contact, ContactState::fold(model, None, &messages)))
        })
        .collect()
}

/// The row for a folded state (`None` when it has no message).
pub(crate) fn row_of(
    model: &Model,
    version: u32,
    contact: &SmolStr,
    state: &ContactState,
    triggers: &TriggerState,
    known: Option<Score>,
) -> Option<Row> {
    let last = state.last_timestamp()?;
    let score = known.unwrap_or_else(|| state.score_at(model, last).expect("at the last message"));
    Some(Row {
        id: contact.clone(),
        model_version: version,
        state: state.encode(model),
        traits: state.shared_traits().clone(),
        company: state.shared_company().clone(),
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
    row_of(model, version, &contact.into(), state, &armed, None)
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

/// What a backend's read of a contact's live row gave: the score at a time
/// with the row, or, when the row cannot give it, the active model to fold
/// the contact's log with ([`crate::scored_from`]).
pub(crate) type LiveScore = std::result::Result<(Score, Row), Arc<Model>>;

/// A contact's score at `t` from its live row, when the row can give it:
/// its state is of `version` (the active model's, `model`) and as of `t`
/// or earlier. `None` otherwise: the score is then folded from the log
/// ([`score_from_log`]).
pub(crate) fn score_from_row(
    model: &Model,
    version: u32,
    row: &Row,
    t: Timestamp,
) -> Result<Option<Score>> {
    if row.model_version != version || row.last_ts.is_none_or(|last| last > t) {
        return Ok(None);
    }
    let state = ContactState::decode(model, &row.state, row.traits.clone(), row.company.clone())
        .map_err(|e| StoreError::Corrupt(format!("contact {}: {e}", row.id)))?;
    let score = state
        .score_at(model, t)
        .expect("t is after the last message");
    Ok(Some(score))
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
    use leadscore_core::score::Status;
    use proptest::prelude::*;

    fn fields(score: f64, tier: &str, grade: &str, stage: &str, status: Status) -> ScoreFields {
        ScoreFields {
            score,
            tier: tier.into(),
            grade: grade.into(),
            stage: stage.into(),
            status,
        }
    }

    #[test]
    fn fields_json_is_serde_jsons_text() {
        for f in [
            fields(12.5, "hot", "A", "sql", Status::Active),
            fields(0.0, "", "", "", Status::Excluded),
            fields(
                -3.25,
                "tier \"q\"",
                "back\\slash",
                "line\nbreak\t\u{1}",
                Status::Active,
            ),
            fields(1e21, "ünï", "🙂", "\u{7f}", Status::Active),
            fields(f64::NAN, "a", "b", "c", Status::Active),
            fields(100.0, "x", "y", "z", Status::Excluded),
        ] {
            let serde = serde_json::to_string(&f).unwrap();
            assert_eq!(fields_json(Some(&f)).unwrap(), serde, "{f:?}");
            assert_eq!(array(&f), serde_json::to_string(&tuple(&f)).unwrap());
            if f.score.is_finite() {
                let back: ScoreFields = serde_json::from_str(&array(&f)).unwrap();
                assert_eq!(back, f);
            }
        }
        assert_eq!(fields_json(None), None);
    }

    fn array(f: &ScoreFields) -> String {
        let mut out = String::from("left ");
        push_fields_json(&mut out, f, FieldsForm::Array);
        out.split_off("left ".len())
    }

    fn tuple(f: &ScoreFields) -> (f64, &str, &str, &str, Status) {
        (f.score, &f.tier, &f.grade, &f.stage, f.status)
    }

    proptest! {
        #[test]
        fn fields_json_matches_serde_json(
            score in any::<f64>(),
            tier in any::<String>(),
            grade in "[ -~\\n\\t\"\\\\]{0,12}",
            stage in any::<String>(),
            excluded in any::<bool>(),
        ) {
            let status = if excluded { Status::Excluded } else { Status::Active };
            let f = fields(score, &tier, &grade, &stage, status);
            prop_assert_eq!(fields_json(Some(&f)).unwrap(), serde_json::to_string(&f).unwrap());
            prop_assert_eq!(array(&f), serde_json::to_string(&tuple(&f)).unwrap());
        }
    }
}
