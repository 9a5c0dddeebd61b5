//! JSON text written directly, for the texts made for every message (its
//! stored form, its canonical form, its ledger entries).

/// Appends `text` as a JSON string, exactly as `serde_json` writes it: as
/// is between quotes unless it holds a byte JSON escapes (a quote, a
/// backslash, a control character), which `serde_json` then escapes its
/// way. Going through `serde_json::Value`'s `Display` instead cost a copy,
/// the formatting machinery and a growing buffer per string: two thirds of
/// storing a message's JSON (`docs/performance.md`, session 25).
pub fn push_string(out: &mut String, text: &str) {
    // Every byte looked at (no early exit), which the compiler vectorises:
    // escapes are rare, and the check ran a byte at a time before.
    let escapes = text.bytes().fold(false, |any, b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if escapes {
        out.push_str(&serde_json::to_string(text).expect("strings serialise"));
    } else {
        out.reserve(text.len() + 2);
        out.push('"');
        out.push_str(text);
        out.push('"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn written(text: &str) -> String {
        let mut out = String::new();
        push_string(&mut out, text);
        out
    }

    #[test]
    fn escapes_as_serde_json_does() {
        for text in [
            "",
            "plain",
            "q\"uote",
            "back\\slash",
            "nl\n\t\r\u{1}\u{1f}",
            "\u{7f}ünï🙂",
            "</script>",
        ] {
            assert_eq!(
                written(text),
                serde_json::to_string(text).unwrap(),
                "{text:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn any_text_as_serde_json_writes_it(text in any::<String>(), ascii in "[ -~\\n\\t\"\\\\]{0,24}") {
            prop_assert_eq!(written(&text), serde_json::to_string(&text).unwrap());
            prop_assert_eq!(written(&ascii), serde_json::to_string(&ascii).unwrap());
        }
    }
}
