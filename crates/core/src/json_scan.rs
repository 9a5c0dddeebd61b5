//! Reads one top-level member of a JSON object straight from its text.
//!
//! Conditions mostly ask one scalar of an event's `properties`
//! (`properties.path.startsWith("/pricing")`). Parsing the whole object into
//! a map for that, or walking a parsed map spread over the heap, cost more
//! than the rest of the fold. The scanner handles the common shape — a flat
//! object whose keys and strings have no escapes — and answers
//! [`Field::Unknown`] for anything else, so the caller falls back to the
//! parsed map: it is exact where it answers and never guesses.

/// A scalar member found in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar<'a> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, as written.
    Number(&'a str),
    /// A string without escapes, between its quotes.
    Str(&'a str),
}

/// What the scanner found for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field<'a> {
    /// The object has no such key.
    Missing,
    /// The key's value (the last one when the key repeats, as parsing keeps).
    Found(Scalar<'a>),
    /// The text has a shape the scanner leaves to the parser (escapes,
    /// nested values, or not an object at all).
    Unknown,
}

/// Looks up `key` among the members of the JSON object `text`.
pub fn field<'a>(text: &'a str, key: &str) -> Field<'a> {
    scan(text.as_bytes(), key.as_bytes())
        .map(|found| match found {
            None => Field::Missing,
            // The bounds come from ASCII delimiters, so they are char
            // boundaries; `get` keeps that from ever panicking regardless.
            Some(raw) => raw.to_str(text).map_or(Field::Unknown, Field::Found),
        })
        .unwrap_or(Field::Unknown)
}

/// A value's place in the text.
#[derive(Debug, Clone, Copy)]
enum RawScalar {
    Null,
    Bool(bool),
    Number(usize, usize),
    Str(usize, usize),
}

impl RawScalar {
    fn to_str(self, text: &str) -> Option<Scalar<'_>> {
        Some(match self {
            RawScalar::Null => Scalar::Null,
            RawScalar::Bool(b) => Scalar::Bool(b),
            RawScalar::Number(from, to) => Scalar::Number(text.get(from..to)?),
            RawScalar::Str(from, to) => Scalar::Str(text.get(from..to)?),
        })
    }
}

/// `Some(None)`: missing; `Some(Some(_))`: found; `None`: unknown shape.
fn scan(bytes: &[u8], key: &[u8]) -> Option<Option<RawScalar>> {
    let mut at = skip_space(bytes, 0);
    if bytes.get(at) != Some(&b'{') {
        return None;
    }
    at = skip_space(bytes, at + 1);
    let mut found = None;
    if bytes.get(at) == Some(&b'}') {
        return Some(None);
    }
    loop {
        if bytes.get(at) != Some(&b'"') {
            return None;
        }
        let (from, to) = string(bytes, at + 1)?;
        let name = &bytes[from..to];
        at = skip_space(bytes, to + 1);
        if bytes.get(at) != Some(&b':') {
            return None;
        }
        at = skip_space(bytes, at + 1);
        let (value, end) = scalar(bytes, at)?;
        if name == key {
            found = Some(value);
        }
        at = skip_space(bytes, end);
        match bytes.get(at) {
            Some(b',') => at = skip_space(bytes, at + 1),
            Some(b'}') => return Some(found),
            _ => return None,
        }
    }
}

/// The string starting after its opening quote at `from`: its end (the
/// closing quote's index). `None` when it has an escape.
fn string(bytes: &[u8], from: usize) -> Option<(usize, usize)> {
    let rest = bytes.get(from..)?;
    let end = memchr::memchr2(b'"', b'\\', rest)?;
    (rest[end] == b'"').then_some((from, from + end))
}

/// The scalar value at `at` and the index just after it.
fn scalar(bytes: &[u8], at: usize) -> Option<(RawScalar, usize)> {
    let literal = |word: &[u8], value: RawScalar| {
        bytes
            .get(at..at + word.len())
            .filter(|w| *w == word)
            .map(|_| (value, at + word.len()))
    };
    match *bytes.get(at)? {
        b'"' => {
            let (from, to) = string(bytes, at + 1)?;
            Some((RawScalar::Str(from, to), to + 1))
        }
        b't' => literal(b"true", RawScalar::Bool(true)),
        b'f' => literal(b"false", RawScalar::Bool(false)),
        b'n' => literal(b"null", RawScalar::Null),
        b'-' | b'0'..=b'9' => {
            let len = bytes[at..]
                .iter()
                .take_while(|b| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                .count();
            Some((RawScalar::Number(at, at + len), at + len))
        }
        _ => None,
    }
}

fn skip_space(bytes: &[u8], mut at: usize) -> usize {
    while matches!(bytes.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    #[test]
    fn finds_scalars_of_a_flat_object() {
        let text = r#" { "path" : "/pricing", "n": -1.5e3, "ok":true,"no":false, "x":null } "#;
        assert_eq!(field(text, "path"), Field::Found(Scalar::Str("/pricing")));
        assert_eq!(field(text, "n"), Field::Found(Scalar::Number("-1.5e3")));
        assert_eq!(field(text, "ok"), Field::Found(Scalar::Bool(true)));
        assert_eq!(field(text, "no"), Field::Found(Scalar::Bool(false)));
        assert_eq!(field(text, "x"), Field::Found(Scalar::Null));
        assert_eq!(field(text, "pat"), Field::Missing);
        assert_eq!(field("{}", "a"), Field::Missing);
    }

    #[test]
    fn the_last_of_repeated_keys_wins_as_in_parsing() {
        assert_eq!(
            field(r#"{"a":"1","a":"2"}"#, "a"),
            Field::Found(Scalar::Str("2"))
        );
    }

    #[test]
    fn leaves_escapes_nesting_and_non_objects_to_the_parser() {
        for text in [
            r#"{"a":"x\"y"}"#,
            r#"{"a\u0062":1}"#,
            r#"{"b":{"a":1},"a":1}"#,
            r#"{"b":[1],"a":1}"#,
            r#"[1]"#,
            r#""a""#,
            r#"{"a":1"#,
            r#"{"a":tru}"#,
            "",
        ] {
            assert_eq!(field(text, "a"), Field::Unknown, "{text}");
        }
    }

    fn scalar_json() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "[a-c\"\\\\é ]{0,4}".prop_map(Value::String),
            Just(Value::Array(vec![Value::from(1)])),
        ]
    }

    proptest! {
        /// Wherever the scanner answers, it agrees with serde_json's map.
        #[test]
        fn agrees_with_the_parser(
            members in proptest::collection::vec(("[a-c]{1,2}", scalar_json()), 0..5),
            key in "[a-c]{1,2}",
            pretty in any::<bool>(),
        ) {
            let mut text = String::from("{");
            for (i, (k, v)) in members.iter().enumerate() {
                if i > 0 {
                    text.push(',');
                }
                if pretty {
                    text.push_str("\n  ");
                }
                text.push_str(&format!("{}: {}", Value::from(k.as_str()), v));
            }
            text.push('}');
            let parsed: Map<String, Value> = serde_json::from_str(&text).unwrap();
            match field(&text, &key) {
                Field::Missing => prop_assert!(!parsed.contains_key(&key)),
                Field::Found(found) => {
                    let expected = &parsed[&key];
                    let got = match found {
                        Scalar::Null => Value::Null,
                        Scalar::Bool(b) => Value::Bool(b),
                        Scalar::Number(n) => Value::Number(n.parse().unwrap()),
                        Scalar::Str(s) => Value::String(s.to_owned()),
                    };
                    prop_assert_eq!(&got, expected);
                }
                Field::Unknown => prop_assert!(
                    text.contains('\\') || text.contains('['),
                    "gave up on {}", text
                ),
            }
        }
    }
}
