//! Segment messages, normalised: what a contact did (track/page/screen) or who
//! it is (identify/group), plus identity links (alias).

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::sync::{Arc, OnceLock};

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::json_scan::{self, Field};
use crate::time::Timestamp;

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

fn field_error(field: &str, message: impl Into<String>) -> MessageError {
    MessageError {
        field: Some(field.to_string()),
        message: message.into(),
    }
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The items of a `{"batch": [...], "context": {...}}` object, as Segment's
/// batch call defines them: the batch's `context` applies to every item,
/// merged key by key under the item's own `context` (the item's keys win).
/// An error names the `batch` or `context` field when either is not what
/// it should be.
pub fn batch_items(mut batch: Map<String, Value>) -> Result<Vec<Value>, MessageError> {
    let mut items = match batch.remove("batch") {
        Some(Value::Array(items)) => items,
        other => {
            return Err(field_error(
                "batch",
                format!(
                    "expected an array of messages, found {}",
                    other.as_ref().map_or("nothing", describe)
                ),
            ))
        }
    };
    let shared = match batch.remove("context") {
        None | Some(Value::Null) => return Ok(items),
        Some(Value::Object(shared)) if shared.is_empty() => return Ok(items),
        Some(Value::Object(shared)) => shared,
        Some(other) => {
            return Err(field_error(
                "context",
                format!("expected an object, found {}", describe(&other)),
            ))
        }
    };
    for item in &mut items {
        let Value::Object(item) = item else {
            continue; // reported when the item is read
        };
        match item.get_mut("context") {
            None | Some(Value::Null) => {
                item.insert("context".into(), Value::Object(shared.clone()));
            }
            Some(Value::Object(own)) => {
                for (key, value) in &shared {
                    own.entry(key.clone()).or_insert_with(|| value.clone());
                }
            }
            Some(_) => {} // reported when the item is read
        }
    }
    Ok(items)
}

/// Reads an id field: a non-empty string, or a number (Segment SDKs send both).
fn id_field(object: &Map<String, Value>, field: &str) -> Result<Option<String>, MessageError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(field_error(
            field,
            format!("expected a string id, found {}", describe(other)),
        )),
    }
}

fn object_field(
    object: &mut Map<String, Value>,
    field: &str,
) -> Result<Map<String, Value>, MessageError> {
    match object.remove(field) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(map)) => Ok(map),
        Some(other) => Err(field_error(
            field,
            format!("expected an object, found {}", describe(&other)),
        )),
    }
}

fn string_field(object: &Map<String, Value>, field: &str) -> Result<Option<String>, MessageError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(field_error(
            field,
            format!("expected a string, found {}", describe(other)),
        )),
    }
}

/// The envelope fields of a message, borrowed from the JSON text when they
/// have no escapes; unknown fields are skipped.
#[derive(serde::Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(rename = "userId", borrow, default)]
    user_id: Option<IdText<'a>>,
    #[serde(rename = "anonymousId", borrow, default)]
    anonymous_id: Option<IdText<'a>>,
    #[serde(rename = "previousId", borrow, default)]
    previous_id: Option<IdText<'a>>,
    #[serde(rename = "groupId", borrow, default)]
    group_id: Option<IdText<'a>>,
    #[serde(borrow, default)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(rename = "originalTimestamp", borrow, default)]
    original_timestamp: Option<Cow<'a, str>>,
    #[serde(rename = "messageId", borrow, default)]
    message_id: Option<Cow<'a, str>>,
    #[serde(default)]
    properties: Option<Box<RawValue>>,
    #[serde(default)]
    traits: Option<Map<String, Value>>,
    #[serde(default)]
    context: Option<Box<RawValue>>,
}

/// A raw JSON value that is an object, absent when `null`; `Err` for
/// anything else (the general path reports it).
fn raw_object(raw: Option<Box<RawValue>>) -> Result<LazyObject, ()> {
    match raw {
        None => Ok(LazyObject::default()),
        Some(raw) => match raw.get().trim_start().as_bytes().first() {
            Some(b'{') => Ok(LazyObject::from_raw(raw)),
            Some(b'n') => Ok(LazyObject::default()),
            _ => Err(()),
        },
    }
}

/// An id written as a string or a number.
struct IdText<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for IdText<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = IdText<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or number id")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(IdText(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(IdText(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(IdText(Cow::Owned(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(IdText(Cow::Owned(v.to_string())))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(IdText(Cow::Owned(v.to_string())))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl Message {
    /// Parses one JSON message from text. The common case (a well-formed
    /// message) takes a typed path that borrows the envelope; anything
    /// unusual or invalid takes [`Message::from_json`], so errors name their
    /// field the same way whichever path ran.
    pub fn from_json_text(
        text: &[u8],
        received_at: Option<Timestamp>,
    ) -> Result<Message, MessageError> {
        if let Some(message) = Self::from_json_text_fast(text, received_at, &mut Names::default()) {
            return Ok(message);
        }
        let value: Value = serde_json::from_slice(text).map_err(|e| MessageError {
            field: None,
            message: format!("malformed JSON: {e}"),
        })?;
        Message::from_json(value, None, received_at)
    }

    /// The typed fast path alone: `None` whenever the general path must
    /// decide (batch objects, missing or odd fields, malformed JSON). Event
    /// names are shared through `names` (one allocation per distinct name).
    pub fn from_json_text_fast(
        text: &[u8],
        received_at: Option<Timestamp>,
        names: &mut Names,
    ) -> Option<Message> {
        // One UTF-8 check of the whole line, then a parser that trusts it
        // (cheaper than checking every string separately).
        let text = std::str::from_utf8(text).ok()?;
        let envelope = serde_json::from_str::<Envelope<'_>>(text).ok()?;
        Self::from_envelope(envelope, received_at, names)
    }

    /// The fast path: `None` whenever the general path must decide (batch
    /// objects, missing or odd fields), never a different result.
    fn from_envelope(
        e: Envelope<'_>,
        received_at: Option<Timestamp>,
        names: &mut Names,
    ) -> Option<Message> {
        let kind = MessageKind::parse(e.kind.as_deref()?)?;
        let nonempty =
            |id: Option<IdText<'_>>| id.map(|i| i.0.into_owned()).filter(|i| !i.is_empty());
        let user_id = nonempty(e.user_id);
        let anonymous_id = nonempty(e.anonymous_id);
        if user_id.is_none() && anonymous_id.is_none() {
            return None;
        }
        let timestamp = match (e.timestamp, e.original_timestamp) {
            (Some(t), _) | (None, Some(t)) => Timestamp::parse(&t).ok()?,
            (None, None) => received_at?,
        };
        let name = match kind {
            MessageKind::Track => Some(names.shared(e.event.filter(|n| !n.is_empty())?.as_ref())),
            MessageKind::Page | MessageKind::Screen => e.name.map(|n| names.shared(n.as_ref())),
            _ => None,
        };
        let previous_id = nonempty(e.previous_id);
        let group_id = nonempty(e.group_id);
        match kind {
            MessageKind::Alias if previous_id.is_none() || user_id.is_none() => return None,
            MessageKind::Group if group_id.is_none() => return None,
            _ => {}
        }
        let context = raw_object(e.context).ok()?;
        let properties = if kind.is_activity() {
            raw_object(e.properties).ok()?
        } else {
            LazyObject::default()
        };
        let message = Message {
            kind,
            name,
            user_id,
            anonymous_id,
            previous_id: previous_id.filter(|_| kind == MessageKind::Alias),
            group_id,
            timestamp,
            message_id: String::new(),
            properties,
            traits: if matches!(kind, MessageKind::Identify | MessageKind::Group) {
                e.traits.unwrap_or_default()
            } else {
                Map::new()
            },
            context,
        };
        Some(message.with_message_id(e.message_id.map(Cow::into_owned)))
    }

    /// Normalises one Segment message.
    ///
    /// `type` is required unless `default_kind` is given (the server knows it
    /// from the route). When neither `timestamp` nor `originalTimestamp` is
    /// present, `received_at` is used; the offline CLI passes `None` and such
    /// messages are rejected.
    pub fn from_json(
        value: Value,
        default_kind: Option<MessageKind>,
        received_at: Option<Timestamp>,
    ) -> Result<Message, MessageError> {
        let mut object = match value {
            Value::Object(map) => map,
            other => {
                return Err(MessageError {
                    field: None,
                    message: format!("expected a JSON object, found {}", describe(&other)),
                })
            }
        };
        let kind = match object.get("type") {
            Some(Value::String(t)) => MessageKind::parse(t).ok_or_else(|| {
                field_error(
                    "type",
                    format!(
                        "expected one of track, page, screen, identify, group, alias, found {t:?}"
                    ),
                )
            })?,
            None | Some(Value::Null) => default_kind.ok_or_else(|| {
                field_error(
                    "type",
                    "missing (track, page, screen, identify, group or alias)",
                )
            })?,
            Some(other) => {
                return Err(field_error(
                    "type",
                    format!("expected a string, found {}", describe(other)),
                ))
            }
        };
        let user_id = id_field(&object, "userId")?;
        let anonymous_id = id_field(&object, "anonymousId")?;
        if user_id.is_none() && anonymous_id.is_none() {
            return Err(field_error(
                "userId",
                "missing: a message needs userId or anonymousId",
            ));
        }
        let timestamp = Self::timestamp(&object, received_at)?;
        let name = match kind {
            MessageKind::Track => match string_field(&object, "event")? {
                Some(name) if !name.is_empty() => Some(Arc::from(name)),
                _ => {
                    return Err(field_error(
                        "event",
                        "missing: a track call needs an event name",
                    ))
                }
            },
            MessageKind::Page | MessageKind::Screen => {
                string_field(&object, "name")?.map(Arc::from)
            }
            _ => None,
        };
        let previous_id = id_field(&object, "previousId")?;
        if kind == MessageKind::Alias {
            if previous_id.is_none() {
                return Err(field_error(
                    "previousId",
                    "missing: an alias call needs previousId",
                ));
            }
            if user_id.is_none() {
                return Err(field_error("userId", "missing: an alias call needs userId"));
            }
        }
        let group_id = id_field(&object, "groupId")?;
        if kind == MessageKind::Group && group_id.is_none() {
            return Err(field_error(
                "groupId",
                "missing: a group call needs groupId",
            ));
        }
        let properties = if kind.is_activity() {
            LazyObject::from_map(object_field(&mut object, "properties")?)
        } else {
            LazyObject::default()
        };
        let traits = if matches!(kind, MessageKind::Identify | MessageKind::Group) {
            object_field(&mut object, "traits")?
        } else {
            Map::new()
        };
        let context = match object.remove("context") {
            None | Some(Value::Null) => LazyObject::default(),
            Some(Value::Object(map)) => LazyObject::from_map(map),
            Some(other) => {
                return Err(field_error(
                    "context",
                    format!("expected an object, found {}", describe(&other)),
                ))
            }
        };
        let message_id = string_field(&object, "messageId")?;
        let message = Message {
            kind,
            name,
            user_id,
            anonymous_id,
            previous_id: previous_id.filter(|_| kind == MessageKind::Alias),
            group_id,
            timestamp,
            message_id: String::new(),
            properties,
            traits,
            context,
        };
        Ok(message.with_message_id(message_id))
    }

    /// Sets the message id: the given one, or (absent or empty) one derived
    /// from the message's canonical JSON.
    fn with_message_id(mut self, id: Option<String>) -> Message {
        self.message_id = match id.filter(|id| !id.is_empty()) {
            Some(id) => id,
            None => self.derived_message_id(),
        };
        self
    }

    fn timestamp(
        object: &Map<String, Value>,
        received_at: Option<Timestamp>,
    ) -> Result<Timestamp, MessageError> {
        for field in ["timestamp", "originalTimestamp"] {
            match object.get(field) {
                None | Some(Value::Null) => continue,
                Some(Value::String(text)) => {
                    return Timestamp::parse(text).map_err(|e| field_error(field, e))
                }
                Some(other) => {
                    return Err(field_error(
                        field,
                        format!("expected an RFC 3339 string, found {}", describe(other)),
                    ))
                }
            }
        }
        received_at.ok_or_else(|| field_error("timestamp", "missing (and no originalTimestamp)"))
    }

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
            out.push_str(&Value::from(value).to_string());
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
                let _ = write!(out, "{}", Value::String(key.clone()));
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
        scalar => {
            let _ = write!(out, "{scalar}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{prop_oneof, BoxedStrategy, Just, Strategy};
    use serde_json::json;

    fn parse(value: Value) -> Result<Message, MessageError> {
        Message::from_json(value, None, None)
    }

    #[test]
    fn emptiness_of_raw_objects_is_known_without_parsing() {
        let with = |text: &str| {
            LazyObject::from_raw(serde_json::value::RawValue::from_string(text.into()).unwrap())
        };
        assert!(with("{}").is_empty() && with("{ \n }").is_empty());
        let full = with(r#"{"ip": "1.2.3.4"}"#);
        assert!(!full.is_empty());
        assert!(full.parsed.get().is_none(), "not parsed to answer");
        assert!(LazyObject::default().is_empty());
        assert!(
            !LazyObject::from_map(Map::from_iter([("a".to_string(), Value::from(1))])).is_empty()
        );
    }

    #[test]
    fn stored_json_reads_back_the_same_message() {
        for value in [
            json!({"type": "track", "event": "Order Completed", "userId": "u1", "anonymousId": "a",
                "timestamp": "2024-01-01T01:00:00.123456789+01:00", "messageId": "m1",
                "properties": {"total": 12.5, "items": [1, 2]}, "context": {"ip": "1.2.3.4"}}),
            json!({"type": "identify", "userId": "u1", "timestamp": "2024-01-01T00:00:00Z",
                "traits": {"email": "x@y.z", "n": 3}}),
            json!({"type": "group", "userId": "u1", "groupId": "g", "timestamp": "2024-01-01T00:00:00Z",
                "messageId": "g1", "traits": {"employees": 300}}),
            json!({"type": "alias", "previousId": "old", "userId": "new", "timestamp": "2024-01-01T00:00:00Z"}),
            json!({"type": "page", "anonymousId": "a", "timestamp": "2024-01-01T00:00:00Z", "messageId": "p"}),
        ] {
            let m = parse(value).unwrap();
            let back = Message::from_json_text(m.stored_json().as_bytes(), None).unwrap();
            assert_eq!(back, m);
            assert_eq!(back.stored_json(), m.stored_json());
        }
    }

    #[test]
    fn track_message() {
        let m = parse(
            json!({"type": "track", "event": "Product Viewed", "userId": "u1",
            "timestamp": "2024-01-01T00:00:00Z", "messageId": "m1", "properties": {"sku": "A"}}),
        )
        .unwrap();
        assert_eq!(m.rule_name(), Some("Product Viewed"));
        assert_eq!(m.own_id(), "u1");
        assert_eq!(m.properties.get()["sku"], "A");
        assert_eq!(m.link(), None);
    }

    #[test]
    fn page_and_alias_links() {
        let m = parse(
            json!({"type": "page", "name": "Pricing", "userId": "u1", "anonymousId": "a1",
            "timestamp": "2024-01-01T00:00:00Z", "messageId": "m1"}),
        )
        .unwrap();
        assert_eq!(m.rule_name(), Some("$page"));
        assert_eq!(m.link(), Some(("a1", "u1")));
        let a = parse(
            json!({"type": "alias", "previousId": "old", "userId": "new",
            "timestamp": "2024-01-01T00:00:00Z"}),
        )
        .unwrap();
        assert_eq!(a.link(), Some(("old", "new")));
        assert!(a.message_id.starts_with("derived-"));
    }

    #[test]
    fn derived_ids_ignore_key_order_and_transport_fields() {
        let a = parse(
            json!({"type": "track", "event": "X", "userId": "u", "sentAt": "1",
            "timestamp": "2024-01-01T01:00:00+01:00", "properties": {"a": 1, "b": 2}}),
        )
        .unwrap();
        let b = parse(
            json!({"properties": {"b": 2, "a": 1}, "timestamp": "2024-01-01T00:00:00Z",
            "userId": "u", "event": "X", "type": "track"}),
        )
        .unwrap();
        assert_eq!(a.message_id, b.message_id);
    }

    #[test]
    fn fast_and_general_paths_agree() {
        let cases = [
            json!({"type": "track", "event": "A\"q", "userId": 42, "timestamp": "2024-01-01T01:00:00+01:00", "properties": {"x": [1, {"y": null}]}, "context": {"ip": "1"}}),
            json!({"type": "page", "anonymousId": "a", "originalTimestamp": "2024-01-01T00:00:00Z", "messageId": "m"}),
            json!({"type": "identify", "userId": "u", "anonymousId": "", "timestamp": "2024-01-01T00:00:00Z", "traits": {"a": 1}, "properties": {"ignored": true}}),
            json!({"type": "group", "userId": "u", "groupId": 7, "timestamp": "2024-01-01T00:00:00Z", "traits": {"n": "x"}}),
            json!({"type": "alias", "userId": "u", "previousId": "p", "timestamp": "2024-01-01T00:00:00Z"}),
            json!({"type": "track", "event": "", "userId": "u", "timestamp": "2024-01-01T00:00:00Z"}),
            json!({"type": "track", "event": "A", "userId": "u", "timestamp": "2024-01-01T00:00:00Z", "context": 3}),
            json!({"type": "screen", "userId": "u", "timestamp": "2024-01-01T00:00:00Z", "properties": []}),
        ];
        for value in cases {
            let text = value.to_string();
            assert_eq!(
                Message::from_json_text(text.as_bytes(), None),
                parse(value.clone()),
                "{text}"
            );
        }
        assert!(Message::from_json_text(b"{\"type\":", None)
            .unwrap_err()
            .message
            .starts_with("malformed JSON"));
    }

    /// A field's value: the right shape most of the time, else anything
    /// an SDK or a hand-written client might send.
    fn arb_field(good: BoxedStrategy<Value>) -> impl Strategy<Value = Option<Value>> {
        prop_oneof![
            6 => good.prop_map(Some),
            1 => Just(None),
            1 => prop_oneof![
                Just(Value::Null),
                Just(json!("")),
                Just(json!(7)),
                Just(json!(-1.5e300)),
                Just(json!(true)),
                Just(json!([1, "a"])),
                Just(json!({"k": {"n": null}})),
                "[ -~]{0,6}".prop_map(Value::from),
            ]
            .prop_map(Some),
        ]
    }

    fn arb_text() -> BoxedStrategy<Value> {
        prop_oneof![
            "[a-z]{1,4}".prop_map(Value::from),
            Just(json!("é\"\\\u{1F600}\n")),
            Just(json!(42)),
        ]
        .boxed()
    }

    fn arb_time() -> BoxedStrategy<Value> {
        prop_oneof![
            Just(json!("2024-01-01T00:00:00Z")),
            Just(json!("2024-02-29T23:59:59.123456789+05:30")),
            Just(json!("2024-01-01T00:00:00.5-08:00")),
            Just(json!("2024-01-01")),
            Just(json!("2024-13-01T00:00:00Z")),
        ]
        .boxed()
    }

    fn arb_object() -> BoxedStrategy<Value> {
        prop_oneof![
            Just(json!({})),
            Just(json!({"form": "demo", "n": 3, "deep": {"a": [1, {"b": null}]}})),
            Just(json!({"plan": "pro", "email": "a@b.example"})),
        ]
        .boxed()
    }

    proptest::proptest! {
        /// The typed fast path over the text and the general path over the
        /// parsed value agree on every message, valid or not, in any key
        /// order: same message, or both an error (the fast path hands every
        /// case it does not take to the general one).
        #[test]
        fn the_fast_path_agrees_with_the_general_one_on_any_message(
            kind in arb_field(prop_oneof![
                Just(json!("track")), Just(json!("page")), Just(json!("screen")),
                Just(json!("identify")), Just(json!("group")), Just(json!("alias")),
                Just(json!("batch")), Just(json!("Track")),
            ].boxed()),
            fields in (
                arb_field(arb_text()), arb_field(arb_text()), arb_field(arb_text()),
                arb_field(arb_text()), arb_field(arb_text()), arb_field(arb_text()),
                arb_field(arb_time()), arb_field(arb_time()),
                arb_field(arb_object()), arb_field(arb_object()), arb_field(arb_object()),
            ),
            received in proptest::option::of(0i64..2_000_000_000),
            order in proptest::collection::vec(proptest::num::usize::ANY, 12),
        ) {
            let (user, anonymous, event, name, previous, group, timestamp, original,
                 properties, traits, context) = fields;
            let keys = ["type", "userId", "anonymousId", "event", "name", "previousId",
                        "groupId", "timestamp", "originalTimestamp", "properties", "traits",
                        "context"];
            let values = [kind, user, anonymous, event, name, previous, group, timestamp,
                          original, properties, traits, context];
            let mut members: Vec<(usize, String)> = keys
                .iter()
                .zip(values)
                .enumerate()
                .filter_map(|(i, (k, v))| v.map(|v| (order[i], format!("{}:{v}", json!(k)))))
                .collect();
            members.sort();
            let text = format!(
                "{{{}}}",
                members.into_iter().map(|(_, m)| m).collect::<Vec<_>>().join(",")
            );
            let received = received.map(Timestamp::from_seconds);
            let value: Value = serde_json::from_str(&text).unwrap();
            let general = Message::from_json(value, None, received);
            let fast = Message::from_json_text(text.as_bytes(), received);
            match (&fast, &general) {
                (Ok(a), Ok(b)) => proptest::prop_assert_eq!(a, b, "{}", text),
                (Err(_), Err(_)) => {}
                _ => proptest::prop_assert!(false, "{text}\nfast {fast:?}\ngeneral {general:?}"),
            }
        }
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                json!({"type": "track", "userId": "u", "timestamp": "2024-01-01T00:00:00Z"}),
                "event",
            ),
            (
                json!({"type": "track", "event": "X", "userId": "u"}),
                "timestamp",
            ),
            (
                json!({"type": "track", "event": "X", "userId": "u", "timestamp": "soon"}),
                "timestamp",
            ),
            (
                json!({"type": "track", "event": "X", "timestamp": "2024-01-01T00:00:00Z"}),
                "userId",
            ),
            (json!({"type": "shout", "userId": "u"}), "type"),
            (
                json!({"type": "group", "userId": "u", "timestamp": "2024-01-01T00:00:00Z"}),
                "groupId",
            ),
            (
                json!({"type": "identify", "userId": "u", "timestamp": "2024-01-01T00:00:00Z", "traits": 3}),
                "traits",
            ),
        ];
        for (value, field) in cases {
            let err = parse(value.clone()).unwrap_err();
            assert_eq!(err.field.as_deref(), Some(field), "{value}: {err}");
        }
        assert!(parse(json!([1])).unwrap_err().field.is_none());
    }

    #[test]
    fn original_timestamp_and_received_at_fallbacks() {
        let m = parse(
            json!({"type": "identify", "userId": "u", "originalTimestamp": "2024-01-01T00:00:00Z"}),
        )
        .unwrap();
        assert_eq!(
            m.timestamp,
            Timestamp::parse("2024-01-01T00:00:00Z").unwrap()
        );
        let now = Timestamp::from_seconds(42);
        let m = Message::from_json(
            json!({"userId": "u"}),
            Some(MessageKind::Identify),
            Some(now),
        )
        .unwrap();
        assert_eq!(m.timestamp, now);
    }

    #[test]
    fn a_batch_context_applies_to_every_item_under_its_own() {
        let batch = json!({"context": {"ip": "1.2.3.4", "locale": "de"}, "batch": [
            {"type": "track", "event": "A", "userId": "u"},
            {"type": "track", "event": "A", "userId": "u", "context": {"locale": "fr"}},
            {"type": "track", "event": "A", "userId": "u", "context": null},
        ]});
        let Value::Object(batch) = batch else {
            unreachable!()
        };
        let items = batch_items(batch).unwrap();
        assert_eq!(
            items[0]["context"],
            json!({"ip": "1.2.3.4", "locale": "de"})
        );
        assert_eq!(
            items[1]["context"],
            json!({"ip": "1.2.3.4", "locale": "fr"})
        );
        assert_eq!(
            items[2]["context"],
            json!({"ip": "1.2.3.4", "locale": "de"})
        );
        let Value::Object(bad) = json!({"batch": {}}) else {
            unreachable!()
        };
        let e = batch_items(bad).unwrap_err();
        assert_eq!(
            e.to_string(),
            "field `batch`: expected an array of messages, found an object"
        );
        let Value::Object(bad) = json!({"batch": [], "context": "x"}) else {
            unreachable!()
        };
        assert_eq!(
            batch_items(bad).unwrap_err().field.as_deref(),
            Some("context")
        );
    }
}
