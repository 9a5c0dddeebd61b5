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
        let mut identities = Identities {
            links,
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
    use serde_json::json;

    fn msg(
        kind: &str,
        user: Option<&str>,
        anon: Option<&str>,
        prev: Option<&str>,
        ts: &str,
        id: &str,
    ) -> Message {
        let mut v = json!({"type": kind, "timestamp": ts, "messageId": id, "event": "E"});
        if let Some(u) = user {
            v["userId"] = json!(u);
        }
        if let Some(a) = anon {
            v["anonymousId"] = json!(a);
        }
        if let Some(p) = prev {
            v["previousId"] = json!(p);
        }
        Message::from_json(v, None, None).unwrap()
    }

    #[test]
    fn anonymous_then_identified_is_one_contact() {
        let m = [
            msg(
                "track",
                None,
                Some("anon"),
                None,
                "2024-01-01T00:00:00Z",
                "1",
            ),
            msg(
                "identify",
                Some("u1"),
                Some("anon"),
                None,
                "2024-01-02T00:00:00Z",
                "2",
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
                Some("u2"),
                Some("anon"),
                None,
                "2024-01-03T00:00:00Z",
                "3",
            ),
            msg(
                "identify",
                Some("u1"),
                Some("anon"),
                None,
                "2024-01-02T00:00:00Z",
                "2",
            ),
            msg(
                "alias",
                Some("v"),
                None,
                Some("u1"),
                "2024-01-04T00:00:00Z",
                "4",
            ),
        ];
        let ids = Identities::from_messages(&m);
        assert_eq!(ids.canonical("anon"), "v");
        assert_eq!(ids.canonical("u1"), "v");
        assert_eq!(ids.canonical("u2"), "u2");
    }

    #[test]
    fn a_cycle_resolves_to_its_smallest_id() {
        let m = [
            msg(
                "alias",
                Some("b"),
                None,
                Some("a"),
                "2024-01-01T00:00:00Z",
                "1",
            ),
            msg(
                "alias",
                Some("c"),
                None,
                Some("b"),
                "2024-01-02T00:00:00Z",
                "2",
            ),
            msg(
                "alias",
                Some("a"),
                None,
                Some("c"),
                "2024-01-03T00:00:00Z",
                "3",
            ),
            msg(
                "alias",
                Some("b"),
                None,
                Some("z"),
                "2024-01-03T00:00:00Z",
                "4",
            ),
        ];
        let ids = Identities::from_messages(&m);
        for id in ["a", "b", "c", "z"] {
            assert_eq!(ids.canonical(id), "a", "{id}");
        }
    }
}
