//! Segment messages, normalised: what a contact did (track/page/screen) or who
//! it is (identify/group), plus identity links (alias).

use std::fmt::{self, Write as _};
use std::sync::{Arc, OnceLock};

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::json_scan::{self, Field};
use crate::time::Timestamp;

mod parse;

pub use parse::{batch_from_text, batch_items, batch_messages};

/// The Segment message types leadscore understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MessageKind {
    /// A named action (`event`) with `properties`.
    Track,
    /// A web page view; matched by the pseudo event name `$page`.
    Page,
    /// A mobile screen view; matched by the pseudo event name `$screen`.
    Screen,
    /// Contact traits.
    Identify,
    /// Company (group) traits.
    Group,
    /// Links `previousId` to `userId`.
    Alias,
}

impl MessageKind {
    /// The Segment `type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Track => "track",
            MessageKind::Page => "page",
            MessageKind::Screen => "screen",
            MessageKind::Identify => "identify",
            MessageKind::Group => "group",
            MessageKind::Alias => "alias",
        }
    }

    fn parse(text: &str) -> Option<MessageKind> {
        Some(match text {
            "track" => MessageKind::Track,
            "page" => MessageKind::Page,
            "screen" => MessageKind::Screen,
            "identify" => MessageKind::Identify,
            "group" => MessageKind::Group,
            "alias" => MessageKind::Alias,
            _ => return None,
        })
    }

    /// Whether the message is an activity (counts for engagement, inactivity
    /// and `count()`).
    pub fn is_activity(self) -> bool {
        matches!(
            self,
            MessageKind::Track | MessageKind::Page | MessageKind::Screen
        )
    }
}

/// The name rules match a message by: the track event name, or `$page` /
/// `$screen` for page and screen views.
pub const PAGE_EVENT: &str = "$page";
/// See [`PAGE_EVENT`].
pub const SCREEN_EVENT: &str = "$screen";

/// One normalised Segment message.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// The message type.
    pub kind: MessageKind,
    /// `event` of a track call, or `name` of a page/screen call. Shared, so
    /// that a log can hold each distinct name once ([`Names`]).
    pub name: Option<Arc<str>>,
    /// `userId`.
    pub user_id: Option<String>,
    /// `anonymousId`.
    pub anonymous_id: Option<String>,
    /// `previousId` of an alias call.
    pub previous_id: Option<String>,
    /// `groupId` of a group call.
    pub group_id: Option<String>,
    /// When it happened.
    pub timestamp: Timestamp,
    /// `messageId`, or an id derived from the message's canonical JSON.
    pub message_id: String,
    /// `properties` (track/page/screen).
    pub properties: LazyObject,
    /// `traits` (identify/group).
    pub traits: Map<String, Value>,
    /// `context` (empty when absent).
    pub context: LazyObject,
}

/// A JSON object kept as its text until first read: most rules never look at
/// `properties` or `context`, and parsing them into maps was most of the cost
/// of reading a message.
#[derive(Debug, Clone, Default)]
pub struct LazyObject {
    raw: Option<Box<RawValue>>,
    // Boxed: keeps `Message` 32 bytes smaller, and most objects are never
    // parsed.
    parsed: OnceLock<Box<Map<String, Value>>>,
}

impl LazyObject {
    /// An already parsed object.
    pub fn from_map(map: Map<String, Value>) -> LazyObject {
        let parsed = OnceLock::new();
        let _ = parsed.set(Box::new(map));
        LazyObject { raw: None, parsed }
    }

    /// Raw JSON text known to be an object (checked by the caller).
    pub(crate) fn from_raw(raw: Box<RawValue>) -> LazyObject {
        LazyObject {
            raw: Some(raw),
            parsed: OnceLock::new(),
        }
    }

    /// Appends the object as JSON: its raw text when it has one.
    pub fn write_json(&self, out: &mut String) {
        match (&self.raw, self.parsed.get()) {
            (Some(raw), _) => out.push_str(raw.get()),
            (None, Some(map)) => {
                out.push_str(&serde_json::to_string(map).expect("a JSON map serialises"))
            }
            (None, None) => out.push_str("{}"),
        }
    }

    /// Whether the object has no key; raw text is checked without parsing
    /// (storing a message asks this of every `context`).
    pub fn is_empty(&self) -> bool {
        match (&self.raw, self.parsed.get()) {
            (_, Some(map)) => map.is_empty(),
            (Some(raw), None) => raw
                .get()
                .bytes()
                .filter(|b| !b.is_ascii_whitespace())
                .eq(*b"{}"),
            (None, None) => true,
        }
    }

    /// One top-level member read from the raw text without parsing it;
    /// [`Field::Unknown`] when there is no text or its shape is left to the
    /// parser ([`LazyObject::get`]).
    pub(crate) fn scan(&self, key: &str) -> Field<'_> {
        match (&self.raw, self.parsed.get()) {
            // Once parsed (an object the scanner gave up on, or another
            // condition needed the map), the map answers.
            (Some(raw), None) => json_scan::field(raw.get(), key),
            _ => Field::Unknown,
        }
    }

    /// The object, parsed on first use.
    pub fn get(&self) -> &Map<String, Value> {
        self.parsed.get_or_init(|| {
            Box::new(
                self.raw
                    .as_ref()
                    .and_then(|raw| serde_json::from_str(raw.get()).ok())
                    .unwrap_or_default(),
            )
        })
    }
}

impl PartialEq for LazyObject {
    fn eq(&self, other: &LazyObject) -> bool {
        self.get() == other.get()
    }
}

impl From<Map<String, Value>> for LazyObject {
    fn from(map: Map<String, Value>) -> LazyObject {
        LazyObject::from_map(map)
    }
}

/// Why a JSON object is not a valid message; names the offending field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageError {
    /// The field at fault (`timestamp`, `event`, …), if one is.
    pub field: Option<String>,
    /// What was expected and what was found.
    pub message: String,
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "field `{field}`: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for MessageError {}

impl Message {
    /// The id the message speaks for: `userId`, else `anonymousId`.
    pub fn own_id(&self) -> &str {
        self.user_id
            .as_deref()
            .or(self.anonymous_id.as_deref())
            .unwrap_or_default()
    }

    /// The identity link this message makes, `(from, to)`, if any: alias links
    /// `previousId → userId`; any other message with both ids links
    /// `anonymousId → userId`.
    pub fn link(&self) -> Option<(&str, &str)> {
        let to = self.user_id.as_deref()?;
        let from = if self.kind == MessageKind::Alias {
            self.previous_id.as_deref()?
        } else {
            self.anonymous_id.as_deref()?
        };
        (from != to).then_some((from, to))
    }

    /// The name engagement rules match: the track event, `$page` or `$screen`.
    pub fn rule_name(&self) -> Option<&str> {
        match self.kind {
            MessageKind::Track => self.name.as_deref(),
            MessageKind::Page => Some(PAGE_EVENT),
            MessageKind::Screen => Some(SCREEN_EVENT),
            _ => None,
        }
    }

    /// The sort key of the log: `(timestamp, messageId)` bytewise.
    pub fn order_key(&self) -> (Timestamp, &[u8]) {
        (self.timestamp, self.message_id.as_bytes())
    }

    /// The message as canonical JSON: the normalised fields, keys sorted,
    /// without `messageId`. Used to derive missing message ids and to choose
    /// between two messages sharing an id.
    pub fn canonical_json(&self) -> String {
        let mut out = String::new();
        write_canonical(&Value::Object(self.normalised_object()), &mut out);
        out
    }

    /// The message as it is stored: its normalised fields and `messageId`
    /// as JSON, written directly (`properties` and `context` from their raw
    /// text when they were never parsed). [`Message::from_json_text`] reads
    /// it back unchanged.
    pub fn stored_json(&self) -> String {
        fn string(out: &mut String, key: &str, value: &str) {
            out.push_str(if out.len() > 1 { ",\"" } else { "\"" });
            out.push_str(key);
            out.push_str("\":");
            crate::json::push_string(out, value);
        }
        let mut out = String::with_capacity(256);
        out.push('{');
        string(&mut out, "type", self.kind.as_str());
        string(&mut out, "messageId", &self.message_id);
        string(&mut out, "timestamp", &self.timestamp.to_string());
        let name_key = if self.kind == MessageKind::Track {
            "event"
        } else {
            "name"
        };
        for (key, value) in [
            (name_key, self.name.as_deref()),
            ("userId", self.user_id.as_deref()),
            ("anonymousId", self.anonymous_id.as_deref()),
            ("previousId", self.previous_id.as_deref()),
            ("groupId", self.group_id.as_deref()),
        ] {
            if let Some(value) = value {
                string(&mut out, key, value);
            }
        }
        if self.kind.is_activity() {
            out.push_str(",\"properties\":");
            self.properties.write_json(&mut out);
        }
        if !self.traits.is_empty() {
            out.push_str(",\"traits\":");
            out.push_str(&serde_json::to_string(&self.traits).expect("a JSON map serialises"));
        }
        if !self.context.is_empty() {
            out.push_str(",\"context\":");
            self.context.write_json(&mut out);
        }
        out.push('}');
        out
    }

    fn normalised_object(&self) -> Map<String, Value> {
        let mut object = Map::new();
        let mut put = |key: &str, value: Option<Value>| {
            if let Some(value) = value {
                object.insert(key.to_string(), value);
            }
        };
        put("type", Some(Value::from(self.kind.as_str())));
        let name_key = if self.kind == MessageKind::Track {
            "event"
        } else {
            "name"
        };
        put(name_key, self.name.as_deref().map(Value::from));
        put("userId", self.user_id.clone().map(Value::from));
        put("anonymousId", self.anonymous_id.clone().map(Value::from));
        put("previousId", self.previous_id.clone().map(Value::from));
        put("groupId", self.group_id.clone().map(Value::from));
        put("timestamp", Some(Value::from(self.timestamp.to_string())));
        if self.kind.is_activity() {
            put(
                "properties",
                Some(Value::Object(self.properties.get().clone())),
            );
        }
        if !self.traits.is_empty() {
            put("traits", Some(Value::Object(self.traits.clone())));
        }
        if !self.context.get().is_empty() {
            put("context", Some(Value::Object(self.context.get().clone())));
        }
        object
    }

    /// `derived-` followed by the 128-bit xxh3 hash of [`Self::canonical_json`].
    pub fn derived_message_id(&self) -> String {
        let hash = xxhash_rust::xxh3::xxh3_128(self.canonical_json().as_bytes());
        format!("derived-{hash:032x}")
    }
}

/// Interns event names so that every message of a log with the same name
/// shares one allocation (cache-friendly folds, less memory).
#[derive(Debug, Default)]
pub struct Names(rustc_hash::FxHashSet<Arc<str>>);

impl Names {
    /// The shared copy of `name`.
    pub fn shared(&mut self, name: &str) -> Arc<str> {
        match self.0.get(name) {
            Some(shared) => shared.clone(),
            None => {
                let shared: Arc<str> = Arc::from(name);
                self.0.insert(shared.clone());
                shared
            }
        }
    }

    /// Replaces the message's name with the shared copy.
    pub fn intern(&mut self, message: &mut Message) {
        if let Some(name) = &message.name {
            match self.0.get(name) {
                Some(shared) => message.name = Some(shared.clone()),
                None => {
                    self.0.insert(name.clone());
                }
            }
        }
    }
}

/// Serialises JSON with object keys sorted bytewise, whatever map order the
/// `serde_json` build uses.
pub fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                crate::json::push_string(out, key);
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::String(text) => crate::json::push_string(out, text),
        scalar => {
            let _ = write!(out, "{scalar}");
        }
    }
}

#[cfg(test)]
mod tests;
