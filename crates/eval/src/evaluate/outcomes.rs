//! Recorded outcomes: each contact's, how the recorded values are read,
//! and a contact's by any of its ids.

use std::collections::BTreeMap;

use leadscore_core::batch::ContactLog;
use leadscore_core::time::Timestamp;
use serde::Serialize;

/// A contact's outcome.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Known {
    /// Converted (or won).
    pub positive: bool,
    /// When.
    pub at: Timestamp,
}

/// Each contact's outcome from recorded ones `(contact id, outcome, time)`:
/// its first positive one (an outcome named in `positive`, any case), else
/// its first.
pub fn outcomes_by_contact<'a>(
    recorded: impl IntoIterator<Item = (&'a str, &'a str, Timestamp)>,
    positive: &[String],
) -> BTreeMap<String, Known> {
    let mut sorted: Vec<_> = recorded.into_iter().collect();
    sorted.sort_by_key(|o| o.2);
    let mut known: BTreeMap<String, Known> = BTreeMap::new();
    for (contact, outcome, at) in sorted {
        let is_positive = positive.iter().any(|p| p.eq_ignore_ascii_case(outcome));
        let entry = known.entry(contact.to_string()).or_insert(Known {
            positive: is_positive,
            at,
        });
        if is_positive && !entry.positive {
            *entry = Known { positive: true, at };
        }
    }
    known
}

/// How recorded outcome values are read: each distinct value (as written)
/// with its count, converted or not, and the values counted as not
/// converted that look like a conversion.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OutcomeValues {
    /// Values named in `positive` (any case), with their counts.
    pub converted: BTreeMap<String, u64>,
    /// Every other value, with its count.
    pub not_converted: BTreeMap<String, u64>,
    /// Values counted as not converted that hold a positive value as a
    /// word (`Closed Won` when `won` is positive): likely a CRM's
    /// spelling to add to `--positive`.
    pub suspicious: Vec<String>,
}

/// [`OutcomeValues`] of recorded outcome values under `positive`.
pub fn outcome_values<'a>(
    values: impl IntoIterator<Item = &'a str>,
    positive: &[String],
) -> OutcomeValues {
    let mut found = OutcomeValues::default();
    for value in values {
        let side = if positive.iter().any(|p| p.eq_ignore_ascii_case(value)) {
            &mut found.converted
        } else {
            &mut found.not_converted
        };
        *side.entry(value.to_string()).or_default() += 1;
    }
    found.suspicious = found
        .not_converted
        .keys()
        .filter(|value| {
            value
                .split(|c: char| !c.is_alphanumeric())
                .any(|word| positive.iter().any(|p| p.eq_ignore_ascii_case(word)))
        })
        .cloned()
        .collect();
    found
}

/// Every id an outcome may name a contact by: its own, then each user and
/// anonymous id of its messages (repeats included).
pub fn ids_of(contact: &ContactLog) -> impl Iterator<Item = &str> {
    std::iter::once(contact.id.as_str()).chain(
        contact
            .messages
            .iter()
            .flat_map(|m| [m.user_id.as_deref(), m.anonymous_id.as_deref()])
            .flatten(),
    )
}

/// The outcome of a contact, by any of its ids.
pub fn outcome_of(contact: &ContactLog, outcomes: &BTreeMap<String, Known>) -> Option<Known> {
    ids_of(contact)
        .filter_map(|id| outcomes.get(id))
        .next()
        .copied()
}
