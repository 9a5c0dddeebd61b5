//! Trigger firings: recorded with the change that caused them, and at due
//! times (inactivity, `days_since()`) by `fire_due`.

use std::collections::BTreeMap;

use leadscore_core::fold::ContactState;
use leadscore_core::model::Model;
use leadscore_core::rules::trigger::{ActionConfig, LatePolicy};
use leadscore_core::time::Timestamp;
use leadscore_core::triggers::{Firing, TriggerState};
use serde::Serialize;

use super::{
    firing_key, LiveCache, NewDelivery, NewEntry, NewFiring, Table, Tx, LATE_AFTER_SECONDS,
};
use crate::{Result, ScoreFields, StoreError};

/// A trigger state taking what is true at `t` as given (rows written before
/// triggers existed, or by another model version).
pub(super) fn armed(model: &Model, state: &ContactState, t: Option<Timestamp>) -> TriggerState {
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
                    contact: contact.as_str().into(),
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
/// The writer's `cache` forgets the contacts it changes.
pub(crate) fn fire_due(
    tx: &mut impl Tx,
    model: &Model,
    version: u32,
    now: Timestamp,
    limit: usize,
    mut cache: Option<&mut LiveCache>,
) -> Result<DueReport> {
    let mut report = DueReport::default();
    let mut found = Vec::new();
    for contact in tx.due_contacts(now, limit)? {
        report.contacts += 1;
        if let Some(cache) = cache.as_deref_mut() {
            cache.take(&contact);
        }
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

/// What one [`Outbox::fire_due`](crate::Outbox::fire_due) call did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DueReport {
    /// Contacts whose due time had come.
    pub contacts: u64,
    /// Firings recorded.
    pub firings: u64,
    /// The same, by trigger id.
    pub firings_by_trigger: BTreeMap<String, u64>,
}
