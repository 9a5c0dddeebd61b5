//! The log's bodies without the two members their row's columns hold
//! (the SQLite store since V14), and a stored body read back.
//!
//! [`Message::stored_json`] writes a message as `{"type":"…","messageId":
//! …,"timestamp":"…",…}`, always in that order. The `events` row holds the
//! messageId (`message_id`) and the timestamp (`ts`, nanoseconds) in
//! columns of their own, so the SQLite store writes the body without those
//! two members ("compact", [`compact_into`]) and a reader parses it with
//! them given ([`StoredBody::parse`]): the same message. [`expand`] puts
//! them back, the same text byte for byte as [`Message::stored_json`]
//! wrote (the timestamp written by the same `Display` from the same
//! nanoseconds), for what the fast parser leaves to the general one. With
//! Segment's JavaScript messageIds (`ajs-next-<ms>-<uuid>`, 59 bytes) that
//! is about 100 bytes, a third of an event's row, fewer in the WAL and on
//! disk (`docs/performance.md`, session 43).
//!
//! Rows written before keep their whole body: a body whose member after
//! `type` is `messageId` is read as it is. A compact body never has one
//! there, since `messageId` is written nowhere else at the top level.

use std::fmt::Write as _;

use leadscore_core::event::{Message, Names};
use leadscore_core::time::Timestamp;

use crate::{Result, StoreError};

const TYPE_KEY: &str = "{\"type\":\"";
const ID_KEY: &str = ",\"messageId\":";
const TS_KEY: &str = ",\"timestamp\":\"";

/// An event's body as a store read it.
#[derive(Debug)]
pub(crate) struct StoredBody {
    /// [`Message::stored_json`]'s text, or its compact form when `apart`
    /// holds the row's messageId and timestamp.
    text: String,
    apart: Option<(String, Timestamp)>,
}

impl StoredBody {
    /// A body stored whole (PostgreSQL).
    pub(crate) fn whole(text: String) -> StoredBody {
        StoredBody { text, apart: None }
    }

    /// A body stored in a row with these `message_id` and `ts` columns:
    /// compact, or whole if written before V14.
    pub(crate) fn in_row(text: String, message_id: String, ts: i64) -> StoredBody {
        StoredBody {
            text,
            apart: Some((message_id, Timestamp(ts))),
        }
    }

    /// The message: a compact body is read with its row's messageId and
    /// timestamp given, and anything the fast reader leaves to the general
    /// one is read whole (the members put back).
    pub(crate) fn parse(self, names: &mut Names) -> Result<Message> {
        let text = match self.apart {
            None => self.text,
            Some((id, ts)) => {
                if let Some(m) = Message::from_stored_parts(&self.text, &id, ts, names) {
                    return Ok(m);
                }
                expand(&id, ts.0, self.text)
            }
        };
        Message::from_json_text(text.as_bytes(), None)
            .map_err(|e| StoreError::Corrupt(format!("stored message: {e}")))
    }
}

/// Where the `type` member ends (the `"` closing its value, plus one).
/// Message kinds are plain words, with no escape in them.
fn type_end(body: &str) -> Option<usize> {
    let kind = body.strip_prefix(TYPE_KEY)?;
    Some(TYPE_KEY.len() + kind.find('"')? + 1)
}

/// The span of the `messageId` and `timestamp` members of a whole body
/// (from the `,` after `type` to the `"` closing the timestamp, plus one),
/// or `None` for a compact body.
fn ids_span(body: &str) -> Option<(usize, usize)> {
    let start = type_end(body)?;
    let id = body[start..].strip_prefix(ID_KEY)?.strip_prefix('"')?;
    // The first quote closes the id unless a backslash comes before it
    // (rare): searched for a byte at a time only then.
    let mut i = id.find('"')?;
    if id[..i].contains('\\') {
        let bytes = id.as_bytes();
        i = 0;
        while *bytes.get(i)? != b'"' {
            i += if bytes[i] == b'\\' { 2 } else { 1 };
        }
    }
    let after_id = start + ID_KEY.len() + 1 + i + 1;
    let ts = body[after_id..].strip_prefix(TS_KEY)?;
    Some((start, after_id + TS_KEY.len() + ts.find('"')? + 1))
}

/// Writes the compact form of `body`, a [`Message::stored_json`], into
/// `out` (cleared first). A text not of that form is written whole, which
/// [`expand`] reads back as it is.
pub(crate) fn compact_into(out: &mut String, body: &str) {
    out.clear();
    match ids_span(body) {
        Some((start, end)) => {
            out.push_str(&body[..start]);
            out.push_str(&body[end..]);
        }
        None => out.push_str(body),
    }
}

/// The whole body of a stored row: `body` with its row's messageId and
/// timestamp put back, or unchanged if it has them.
pub(crate) fn expand(message_id: &str, ts: i64, body: String) -> String {
    if ids_span(&body).is_some() {
        return body;
    }
    let Some(at) = type_end(&body) else {
        return body;
    };
    let mut whole = String::with_capacity(body.len() + message_id.len() + 64);
    whole.push_str(&body[..at]);
    whole.push_str(ID_KEY);
    leadscore_core::json::push_string(&mut whole, message_id);
    whole.push_str(TS_KEY);
    // Writing into a String does not fail.
    let _ = write!(whole, "{}\"", Timestamp(ts));
    whole.push_str(&body[at..]);
    whole
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(value: serde_json::Value) -> Message {
        Message::from_json_text(value.to_string().as_bytes(), None).unwrap()
    }

    #[test]
    fn a_compact_body_reads_back_as_the_whole_one() {
        for value in [
            json!({"type": "track", "event": "Order Completed", "userId": "u1",
                "timestamp": "2024-01-01T01:00:00.123456789+01:00",
                "messageId": "ajs-next-1733300000000-3f6c1e2a-8b1d-4c3e-9a7f-0d2b4e6a8c10",
                "properties": {"messageId": "inner", "timestamp": "x"}}),
            json!({"type": "identify", "userId": "u1", "timestamp": "2024-01-01T00:00:00Z",
                "messageId": "q\"uo\\te \u{1} ünï 🙂", "traits": {"email": "x@y.z"}}),
            json!({"type": "alias", "previousId": "old", "userId": "new",
                "timestamp": "1969-12-31T23:59:59.999Z"}),
            json!({"type": "page", "anonymousId": "a", "timestamp": "2024-01-01T00:00:00Z",
                "messageId": ""}),
        ] {
            let m = message(value);
            let whole = m.stored_json();
            let mut compact = String::new();
            compact_into(&mut compact, &whole);
            let mut members = String::from(",\"messageId\":");
            leadscore_core::json::push_string(&mut members, &m.message_id);
            members.push_str(&format!(",\"timestamp\":\"{}\"", m.timestamp));
            assert_eq!(compact, whole.replacen(&members, "", 1));
            assert_eq!(compact.len(), whole.len() - members.len());
            let back = expand(&m.message_id, m.timestamp.0, compact);
            assert_eq!(back, whole);
        }
    }

    #[test]
    fn a_stored_body_reads_as_its_message_compact_or_whole() {
        let m = message(
            json!({"type": "page", "name": "Pricing", "anonymousId": "a",
            "timestamp": "2024-05-01T10:00:00.25Z", "messageId": "ajs-next-1-x",
            "properties": {"path": "/pricing"}, "context": {"ip": "1.2.3.4"}}),
        );
        let whole = m.stored_json();
        let mut compact = String::new();
        compact_into(&mut compact, &whole);
        let in_row =
            |text: &str| StoredBody::in_row(text.into(), m.message_id.clone(), m.timestamp.0);
        let names = &mut Names::default();
        assert_eq!(in_row(&compact).parse(names).unwrap(), m);
        assert_eq!(
            in_row(&whole).parse(names).unwrap(),
            m,
            "written before V14"
        );
        assert_eq!(StoredBody::whole(whole.clone()).parse(names).unwrap(), m);
        // What the fast reader leaves goes to the general one, whole.
        let odd = StoredBody::in_row(
            r#"{"type":"track","event":"E","userId":"u","properties":[1]}"#.into(),
            "m".into(),
            0,
        );
        let error = odd.parse(names).unwrap_err().to_string();
        assert!(
            error.contains("stored message") && error.contains("properties"),
            "{error}"
        );
    }

    #[test]
    fn a_whole_body_and_any_other_text_read_back_unchanged() {
        let m = message(json!({"type": "track", "event": "E", "userId": "u",
            "timestamp": "2024-01-01T00:00:00Z", "messageId": "m"}));
        let whole = m.stored_json();
        assert_eq!(expand("m", m.timestamp.0, whole.clone()), whole);
        let mut out = String::from("left over");
        for text in ["", "{}", "{\"type\":\"track", "not json"] {
            compact_into(&mut out, text);
            assert_eq!(out, text);
            assert_eq!(expand("m", 0, text.to_string()), text);
        }
    }
}
