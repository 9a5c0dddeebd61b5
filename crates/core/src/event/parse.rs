//! Parsing messages: the typed fast path over a well-formed envelope, the
//! general path over any JSON value (whose errors name their field), and
//! Segment's batch envelope.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{LazyObject, Message, MessageError, MessageKind, Names};
use crate::time::Timestamp;

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

/// The messages of a batch object (`{"batch": [...]}`), in order, each
/// read by [`Message::from_json`] with the batch's `context` merged in
/// ([`batch_items`]), or why it is not one; an error when the object is
/// not a batch.
pub fn batch_messages(
    batch: Map<String, Value>,
    received_at: Option<Timestamp>,
) -> Result<Vec<Result<Message, MessageError>>, MessageError> {
    Ok(batch_items(batch)?
        .into_iter()
        .map(|item| Message::from_json(item, None, received_at))
        .collect())
}

/// The messages of a batch object read from its text, in order, each by
/// [`Message::from_json_text_in`] (the typed path, with the general one
/// behind it), without a JSON tree of the whole batch: what
/// [`batch_messages`] gives for the same object (the two paths agree on
/// any message). `None` when the text is anything but `{"batch": [...]}`
/// without a batch-wide `context` (a context to merge, or an error to
/// report): [`batch_messages`] decides then.
pub fn batch_from_text(
    text: &[u8],
    received_at: Option<Timestamp>,
    names: &mut Names,
) -> Option<Vec<Result<Message, MessageError>>> {
    #[derive(serde::Deserialize)]
    struct Batch<'a> {
        #[serde(borrow)]
        batch: Vec<&'a RawValue>,
        #[serde(borrow, default)]
        context: Option<&'a RawValue>,
    }
    let text = std::str::from_utf8(text).ok()?;
    let batch: Batch<'_> = serde_json::from_str(text).ok()?;
    if batch.context.is_some() {
        return None;
    }
    Some(
        batch
            .batch
            .into_iter()
            .map(|item| Message::from_json_text_in(item.get().as_bytes(), received_at, names))
            .collect(),
    )
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
        Self::from_json_text_in(text, received_at, &mut Names::default())
    }

    /// [`Message::from_json_text`] with event names shared through `names`
    /// (the messages of one batch: one allocation per distinct name).
    pub fn from_json_text_in(
        text: &[u8],
        received_at: Option<Timestamp>,
        names: &mut Names,
    ) -> Result<Message, MessageError> {
        if let Some(message) = Self::from_json_text_fast(text, received_at, names) {
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

    /// A stored message whose `messageId` and `timestamp` are kept apart
    /// from its text (the SQLite store's log holds them in columns of their
    /// own): `text`, [`Message::stored_json`] without those two members,
    /// read with them given. The same message as the whole text reads as;
    /// `None` when `text` has either member or takes the general path,
    /// for the caller to put them back and read the whole text.
    pub fn from_stored_parts(
        text: &str,
        message_id: &str,
        timestamp: Timestamp,
        names: &mut Names,
    ) -> Option<Message> {
        let mut envelope = serde_json::from_str::<Envelope<'_>>(text).ok()?;
        if envelope.message_id.is_some()
            || envelope.timestamp.is_some()
            || envelope.original_timestamp.is_some()
            || message_id.is_empty()
        {
            return None;
        }
        envelope.message_id = Some(Cow::Owned(message_id.to_owned()));
        Self::from_envelope(envelope, Some(timestamp), names)
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
}
