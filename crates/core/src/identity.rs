//! Identity stitching: which canonical contact id each user/anonymous id
//! belongs to (SPEC §2 "Identity").

use std::collections::HashMap;

use rustc_hash::FxHashMap;

use crate::event::Message;

/// The identity graph of a message log: each id follows at most one link, the
/// one made by the earliest linking message (by timestamp, messageId).
#[derive(Debug, Default, Clone)]
pub struct Identities {
    links: FxHashMap<String, String>,
    canonical: FxHashMap<String, String>,
}

impl Identities {
    /// Builds the graph from every linking message of `messages` (any order).
    pub fn from_messages<'a>(messages: impl IntoIterator<Item = &'a Message>) -> Identities {
        let mut linking: Vec<&Message> = messages
            .into_iter()
            .filter(|m| m.link().is_some())
            .collect();
        linking.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
        let mut links = FxHashMap::default();
        for message in linking {
            if let Some((from, to)) = message.link() {
                links
                    .entry(from.to_string())
                    .or_insert_with(|| to.to_string());
            }
        }
        Identities::from_links(links)
    }

    /// Builds the graph from links already chosen (each id's effective link,
    /// as a store keeps them).
    pub fn from_links(links: impl IntoIterator<Item = (String, String)>) -> Identities {
        let mut identities = Identities {
            links: links.into_iter().collect(),
            canonical: FxHashMap::default(),
        };
        identities.resolve_all();
        identities
    }

    /// Resolves every linked id once: follow links until an id without one;
    /// a cycle resolves to its bytewise-smallest member.
    fn resolve_all(&mut self) {
        let starts: Vec<String> = self.links.keys().cloned().collect();
        for start in starts {
            if self.canonical.contains_key(&start) {
                continue;
            }
            let mut path: Vec<String> = vec![start.clone()];
            let mut position: HashMap<String, usize> = HashMap::from([(start.clone(), 0)]);
            let resolved = loop {
                let current = path.last().expect("path is never empty");
                if let Some(done) = self.canonical.get(current) {
                    break done.clone();
                }
                match self.links.get(current) {
                    None => break current.clone(),
                    Some(next) => {
                        if let Some(&at) = position.get(next) {
                            let cycle_min = path[at..].iter().min().expect("non-empty cycle");
                            break cycle_min.clone();
                        }
                        position.insert(next.clone(), path.len());
                        path.push(next.clone());
                    }
                }
            };
            for id in path {
                self.canonical.insert(id, resolved.clone());
            }
        }
    }

    /// The canonical contact id of `id` (itself when it has no link).
    pub fn canonical<'a>(&'a self, id: &'a str) -> &'a str {
        self.canonical.get(id).map(String::as_str).unwrap_or(id)
    }

    /// The canonical contact id a message belongs to.
    pub fn contact_of<'a>(&'a self, message: &'a Message) -> &'a str {
        self.canonical(message.own_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Message;
    use serde_json::{json, Value};

    /// A message on day `day` of January 2024 with the given id fields.
    fn msg(kind: &str, day: u32, id: &str, ids: Value) -> Message {
        let mut v = json!({"type": kind, "event": "E", "messageId": id,
            "timestamp": format!("2024-01-{day:02}T00:00:00Z")});
        v.as_object_mut()
            .unwrap()
            .extend(ids.as_object().unwrap().clone());
        Message::from_json(v, None, None).unwrap()
    }

    /// `alias` from `previous` to `user`.
    fn alias(previous: &str, user: &str, day: u32, id: &str) -> Message {
        msg(
            "alias",
            day,
            id,
            json!({"previousId": previous, "userId": user}),
        )
    }

    #[test]
    fn anonymous_then_identified_is_one_contact() {
        let m = [
            msg("track", 1, "1", json!({"anonymousId": "anon"})),
            msg(
                "identify",
                2,
                "2",
                json!({"userId": "u1", "anonymousId": "anon"}),
            ),
        ];
        let ids = Identities::from_messages(&m);
        assert_eq!(ids.contact_of(&m[0]), "u1");
        assert_eq!(ids.contact_of(&m[1]), "u1");
    }

    #[test]
    fn earliest_link_wins_and_links_are_transitive() {
        let m = [
            msg(
                "identify",
                3,
                "3",
                json!({"userId": "u2", "anonymousId": "anon"}),
            ),
            msg(
                "identify",
                2,
                "2",
                json!({"userId": "u1", "anonymousId": "anon"}),
            ),
            alias("u1", "v", 4, "4"),
        ];
        let ids = Identities::from_messages(&m);
        assert_eq!(ids.canonical("anon"), "v");
        assert_eq!(ids.canonical("u1"), "v");
        assert_eq!(ids.canonical("u2"), "u2");
    }

    #[test]
    fn a_cycle_resolves_to_its_smallest_id() {
        let m = [
            alias("a", "b", 1, "1"),
            alias("b", "c", 2, "2"),
            alias("c", "a", 3, "3"),
            alias("z", "b", 3, "4"),
        ];
        let ids = Identities::from_messages(&m);
        for id in ["a", "b", "c", "z"] {
            assert_eq!(ids.canonical(id), "a", "{id}");
        }
    }
}
