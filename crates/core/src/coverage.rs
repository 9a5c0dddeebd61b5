//! How a model meets a log, before it goes live: how many contacts each
//! rule gives points to (or excludes), which event names in the log no
//! rule reads, and which of those differ from a name a rule reads only in
//! case, spaces or punctuation (`Form submitted` against `Form Submitted`:
//! a rule that would silently never fire); likewise the trait and company
//! keys contact rules read that the log never sets (`traits.country`
//! against identifies that send `Country`).

use std::collections::BTreeMap;

use crate::batch::ContactLog;
use crate::event::MessageKind;
use crate::model::Model;
use crate::time::Timestamp;

/// A model's rules against a log ([`Coverage::add`] per block of
/// contacts, then [`Coverage::finish`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Coverage {
    /// Contacts seen.
    pub contacts: u64,
    /// Their messages.
    pub messages: u64,
    /// Every rule in model order (exclusions, fit, engagement, streak,
    /// inactivity) with the contacts it applied to.
    pub rules: Vec<RuleUse>,
    /// Event names of the log that no rule reads, with their message
    /// counts, most frequent first (filled by [`Coverage::finish`]).
    pub unread: Vec<(String, u64)>,
    /// Unread names that equal a name rules read but for case, spaces and
    /// punctuation (filled by [`Coverage::finish`]).
    pub near_misses: Vec<NearMiss>,
    /// Keys of `traits`/`company` that exclusion and fit rules read and no
    /// identify (group) of the log sets, each with the rules reading it and
    /// a key of the log equal to it but for case, spaces and punctuation
    /// (filled by [`Coverage::finish`]).
    pub unset_fields: Vec<UnsetField>,
    /// Message counts per event name (`$page`, `$screen` for those).
    names: BTreeMap<String, u64>,
    /// Keys set by identify (`traits`) and group (`company`) calls.
    fields: BTreeMap<(&'static str, String), u64>,
}

/// A key contact rules read that the log never sets.
#[derive(Debug, Clone, PartialEq)]
pub struct UnsetField {
    /// `traits` or `company`.
    pub object: &'static str,
    /// The key.
    pub key: String,
    /// Ids of the rules reading it.
    pub rules: Vec<String>,
    /// A key the log sets that differs only in spelling, with its calls.
    pub near: Option<(String, u64)>,
}

/// One rule and the contacts it applied to.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleUse {
    /// `exclude`, `fit`, `engagement`, `streak` or `inactivity`.
    pub kind: &'static str,
    /// Rule id.
    pub id: String,
    /// The event name it reads (engagement and streak rules).
    pub event: Option<String>,
    /// Contacts it gave points to (or excluded) as of the time given.
    pub contacts: u64,
}

/// An event name of the log that a rule would read if it were spelled
/// the rule's way.
#[derive(Debug, Clone, PartialEq)]
pub struct NearMiss {
    /// The name in the log.
    pub name: String,
    /// Its messages.
    pub messages: u64,
    /// The name rules read.
    pub rule_name: String,
}

/// A name without case, spaces or punctuation.
fn folded(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

impl Coverage {
    /// No contact seen yet.
    pub fn new(model: &Model) -> Coverage {
        let rule = |kind, id: &str, event: Option<&str>| RuleUse {
            kind,
            id: id.to_string(),
            event: event.map(str::to_string),
            contacts: 0,
        };
        let rules = (model
            .exclusions
            .iter()
            .map(|r| rule("exclude", &r.id, None)))
        .chain(model.fits.iter().map(|r| rule("fit", &r.id, None)))
        .chain(
            model
                .engagements
                .iter()
                .map(|r| rule("engagement", &r.id, Some(&r.event))),
        )
        .chain(
            model
                .streaks
                .iter()
                .map(|r| rule("streak", &r.id, Some(&r.event))),
        )
        .chain(
            model
                .inactivities
                .iter()
                .map(|r| rule("inactivity", &r.id, None)),
        )
        .collect();
        Coverage {
            contacts: 0,
            messages: 0,
            rules,
            unread: Vec::new(),
            near_misses: Vec::new(),
            unset_fields: Vec::new(),
            names: BTreeMap::new(),
            fields: BTreeMap::new(),
        }
    }

    /// Adds contacts, each explained as of `t`.
    pub fn add(&mut self, model: &Model, contacts: &[ContactLog], t: Timestamp) {
        let mut index: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for (i, r) in self.rules.iter().enumerate() {
            index.insert((r.kind, r.id.as_str()), i);
        }
        let mut used = vec![0u64; self.rules.len()];
        for contact in contacts {
            self.contacts += 1;
            self.messages += contact.messages.len() as u64;
            for name in contact.messages.iter().filter_map(|m| m.rule_name()) {
                match self.names.get_mut(name) {
                    Some(n) => *n += 1,
                    None => {
                        self.names.insert(name.to_string(), 1);
                    }
                }
            }
            let set = contact.messages.iter().filter_map(|m| match m.kind {
                MessageKind::Identify => Some(("traits", &m.traits)),
                MessageKind::Group => Some(("company", &m.traits)),
                _ => None,
            });
            let base = contact.base_traits.iter().map(|t| ("traits", t));
            for (object, map) in set.chain(base) {
                for key in map.keys() {
                    *self.fields.entry((object, key.clone())).or_default() += 1;
                }
            }
            let (_, explanation) = contact.explain_as_of(model, t);
            let applied = explanation
                .excluded_by
                .iter()
                .map(|e| ("exclude", e.id.as_str()))
                .chain(
                    explanation
                        .rules
                        .iter()
                        .filter(|c| c.awards > 0)
                        .map(|c| (c.kind.as_str(), c.id.as_str())),
                );
            for key in applied {
                if let Some(&i) = index.get(&key) {
                    used[i] += 1;
                }
            }
        }
        for (rule, n) in self.rules.iter_mut().zip(used) {
            rule.contacts += n;
        }
    }

    /// The unread names and near misses.
    pub fn finish(mut self, model: &Model) -> Coverage {
        let read: BTreeMap<String, &str> = model
            .event_names()
            .map(|name| (folded(name), name))
            .collect();
        let mut unread: Vec<(String, u64)> = self
            .names
            .iter()
            .filter(|(name, _)| model.event_id(name).is_none())
            .map(|(name, n)| (name.clone(), *n))
            .collect();
        unread.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        self.near_misses = unread
            .iter()
            .filter_map(|(name, n)| {
                read.get(&folded(name)).map(|rule_name| NearMiss {
                    name: name.clone(),
                    messages: *n,
                    rule_name: rule_name.to_string(),
                })
            })
            .collect();
        self.unread = unread;
        // Keys exclusion and fit rules read, with the rules reading them.
        let mut read: BTreeMap<(&'static str, String), Vec<String>> = BTreeMap::new();
        let conditions = (model.exclusions.iter().map(|r| (&r.id, &r.when))).chain(
            model
                .fits
                .iter()
                .flat_map(|r| r.cases.iter().map(move |(c, _)| (&r.id, c))),
        );
        for (id, condition) in conditions {
            for field in condition.fields_read() {
                let rules = read.entry(field).or_default();
                if !rules.contains(id) {
                    rules.push(id.clone());
                }
            }
        }
        self.unset_fields = read
            .into_iter()
            .filter(|(field, _)| !self.fields.contains_key(field))
            .map(|((object, key), rules)| {
                let near = self
                    .fields
                    .iter()
                    .find(|((o, k), _)| *o == object && folded(k) == folded(&key))
                    .map(|((_, k), n)| (k.clone(), *n));
                UnsetField {
                    object,
                    key,
                    rules,
                    near,
                }
            })
            .collect();
        self
    }

    /// Messages in the log of an event name.
    pub fn messages_named(&self, name: &str) -> u64 {
        self.names.get(name).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::contacts_as_of;
    use crate::event::Message;

    fn message(user: &str, id: &str, event: &str) -> Message {
        let value = serde_json::json!({"type": "track", "userId": user, "event": event,
            "messageId": id, "timestamp": "2025-03-01T10:00:00Z"});
        Message::from_json(value, None, None).unwrap()
    }

    fn identify(user: &str, id: &str, traits: serde_json::Value) -> Message {
        let value = serde_json::json!({"type": "identify", "userId": user, "traits": traits,
            "messageId": id, "timestamp": "2025-03-01T09:00:00Z"});
        Message::from_json(value, None, None).unwrap()
    }

    #[test]
    fn rules_are_counted_per_contact_and_misspelt_names_found() {
        let model = Model::from_toml(
            "m.toml",
            r#"
[model]
name = "m"
[[exclude]]
id = "unsub"
when = 'count("Unsubscribed") > 0'
reason = "unsubscribed"
[[engagement]]
id = "form"
event = "Form Submitted"
points = 10
[[engagement]]
id = "webinar"
event = "Webinar Attended"
points = 5
[[fit]]
id = "country"
when = 'traits.country == "DE" || has(traits.email)'
points = 10
[[fit]]
id = "size"
when = 'company.employees > 100'
points = 10
"#,
        )
        .unwrap();
        let log = vec![
            message("a", "1", "Form Submitted"),
            message("a", "2", "Form Submitted"),
            message("b", "3", "Form Submitted"),
            message("c", "4", "form submitted"),
            message("c", "5", "Unsubscribed"),
            message("d", "6", "Email Opened"),
            message("d", "7", "Email Opened"),
            identify(
                "a",
                "8",
                serde_json::json!({"Country": "DE", "email": "a@x"}),
            ),
        ];
        let t = Timestamp::from_seconds(1_741_000_000);
        let mut coverage = Coverage::new(&model);
        let contacts = contacts_as_of(log, Vec::new(), t);
        coverage.add(&model, &contacts[..2], t);
        coverage.add(&model, &contacts[2..], t);
        let coverage = coverage.finish(&model);
        assert_eq!((coverage.contacts, coverage.messages), (4, 8));
        let used: Vec<(&str, &str, u64)> = coverage
            .rules
            .iter()
            .map(|r| (r.kind, r.id.as_str(), r.contacts))
            .collect();
        assert_eq!(
            used,
            [
                ("exclude", "unsub", 1),
                ("fit", "country", 1),
                ("fit", "size", 0),
                ("engagement", "form", 2),
                ("engagement", "webinar", 0)
            ]
        );
        assert_eq!(
            coverage.unread,
            [
                ("Email Opened".to_string(), 2),
                ("form submitted".to_string(), 1)
            ]
        );
        assert_eq!(
            coverage.near_misses,
            [NearMiss {
                name: "form submitted".into(),
                messages: 1,
                rule_name: "Form Submitted".into()
            }]
        );
        assert_eq!(coverage.messages_named("Webinar Attended"), 0);
        assert_eq!(
            coverage.unset_fields,
            [
                UnsetField {
                    object: "company",
                    key: "employees".into(),
                    rules: vec!["size".into()],
                    near: None
                },
                UnsetField {
                    object: "traits",
                    key: "country".into(),
                    rules: vec!["country".into()],
                    near: Some(("Country".into(), 1))
                },
            ]
        );
    }
}
