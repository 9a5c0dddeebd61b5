//! Segment JSON lines → normalised messages.

use std::fmt;
use std::io::BufRead;

use leadscore_core::event::{batch_from_text, batch_messages, Message, MessageError, Names};
use rayon::prelude::*;
use serde_json::Value;

/// A line that could not be read as messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    /// File name as given (or `<stdin>`).
    pub file: String,
    /// 1-based line number.
    pub line: u64,
    /// 1-based column (byte) in the line, when the JSON itself is broken.
    pub column: Option<usize>,
    /// Index in a `{"batch": [...]}` line.
    pub batch_index: Option<usize>,
    /// Field at fault, if one is.
    pub field: Option<String>,
    /// What was wrong.
    pub message: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:", self.file, self.line)?;
        if let Some(column) = self.column {
            write!(f, "{column}:")?;
        }
        f.write_str(" ")?;
        if let Some(i) = self.batch_index {
            write!(f, "batch[{i}]: ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for InputError {}

/// Lines skipped with `--skip-invalid`.
#[derive(Debug, Clone, Default)]
pub struct Skipped {
    /// How many messages were skipped.
    pub count: u64,
    /// The first errors (at most [`ReadOptions::keep_errors`]).
    pub first: Vec<InputError>,
}

/// How to read.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Skip invalid messages instead of failing on the first one.
    pub skip_invalid: bool,
    /// Errors to keep for the report when skipping.
    pub keep_errors: usize,
    /// Bytes of text parsed per parallel chunk.
    pub chunk_bytes: usize,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            skip_invalid: false,
            keep_errors: 20,
            chunk_bytes: 4 << 20,
        }
    }
}

/// What one parallel piece of lines parsed into.
struct Piece {
    messages: Vec<Message>,
    errors: Vec<InputError>,
    /// Event names seen in this piece, allocated once each.
    names: Names,
}

impl Piece {
    fn push(&mut self, result: Result<Message, InputError>) {
        match result {
            Ok(message) => self.messages.push(message),
            Err(e) => self.errors.push(e),
        }
    }
}

fn parse_line(file: &str, line: u64, text: &[u8], out: &mut Piece) {
    let error = |batch_index, e: MessageError| InputError {
        file: file.to_string(),
        line,
        column: None,
        batch_index,
        field: e.field,
        message: e.message,
    };
    // A well-formed plain message takes the typed fast path, a batch's
    // items each theirs; anything invalid goes through the general path,
    // which names the field.
    if let Some(message) = Message::from_json_text_fast(text, None, &mut out.names) {
        out.messages.push(message);
        return;
    }
    let push_batch = |out: &mut Piece, items: Vec<Result<Message, MessageError>>| {
        for (i, item) in items.into_iter().enumerate() {
            out.push(item.map_err(|e| error(Some(i), e)));
        }
    };
    // A batch without a batch-wide context: each item's text on its own.
    if let Some(items) = batch_from_text(text, None, &mut out.names) {
        push_batch(out, items);
        return;
    }
    let value: Value = match serde_json::from_slice(text) {
        Ok(v) => v,
        Err(e) => {
            let (column, message) = malformed(text, &e);
            out.push(Err(InputError {
                file: file.to_string(),
                line,
                column: Some(column),
                batch_index: None,
                field: None,
                message,
            }));
            return;
        }
    };
    match value {
        Value::Object(object) if object.contains_key("batch") => {
            match batch_messages(object, None) {
                Ok(items) => push_batch(out, items),
                Err(e) => out.push(Err(error(None, e))),
            }
        }
        value => out.push(Message::from_json(value, None, None).map_err(|e| error(None, e))),
    }
}

/// Where a line's JSON breaks (1-based byte column) and why, without
/// serde_json's "at line 1 column N" (a line of a file is always line 1
/// to it; the place goes in front, as `file:line:column`).
fn malformed(text: &[u8], e: &serde_json::Error) -> (usize, String) {
    if let Err(bad) = std::str::from_utf8(text) {
        return (bad.valid_up_to() + 1, "not UTF-8 text".to_string());
    }
    let full = e.to_string();
    let why = full
        .rsplit_once(" at line ")
        .map_or(full.as_str(), |(why, _)| why);
    (e.column().max(1), format!("malformed JSON: {why}"))
}

/// Parses a chunk of whole lines, the first being line `first_line`, in
/// parallel pieces (in order); also returns the chunk's line count.
fn parse_chunk(file: &str, first_line: u64, chunk: &[u8]) -> (Vec<Piece>, u64) {
    let lines: Vec<&[u8]> = chunk.split(|b| *b == b'\n').collect();
    let line_count = lines.len() as u64 - u64::from(chunk.ends_with(b"\n"));
    // Each parallel piece fills one vector sized for its lines (a vector
    // per line cost an allocation per message and was most of the
    // allocator's and the kernel's page-zeroing time).
    const PIECE: usize = 2048;
    let pieces = lines
        .par_chunks(PIECE)
        .enumerate()
        .map(|(p, piece)| {
            let mut out = Piece {
                messages: Vec::with_capacity(piece.len()),
                errors: Vec::new(),
                names: Names::default(),
            };
            for (i, text) in piece.iter().enumerate() {
                let text = text.strip_suffix(b"\r").unwrap_or(text);
                if !text.iter().all(u8::is_ascii_whitespace) {
                    let line = first_line + (p * PIECE + i) as u64;
                    parse_line(file, line, text, &mut out);
                }
            }
            out
        })
        .collect();
    (pieces, line_count)
}

/// Reads every message of `reader`. Blank lines are ignored. On the first
/// invalid message this fails unless `options.skip_invalid`; then invalid
/// messages are counted in [`Skipped`]. `progress` gets the bytes read so far.
pub fn read_messages(
    reader: impl BufRead,
    file: &str,
    options: &ReadOptions,
    progress: impl FnMut(u64),
) -> Result<(Vec<Message>, Skipped), InputError> {
    let (chunks, skipped) = read_message_chunks(reader, file, options, progress)?;
    let mut messages = Vec::with_capacity(chunks.iter().map(Vec::len).sum());
    for chunk in chunks {
        messages.extend(chunk);
    }
    Ok((messages, skipped))
}

/// [`read_messages`] without gathering the messages into one vector: the
/// chunks, in input order, as they were parsed in parallel (each a few
/// thousand messages). Grouping can then consume and free them one by one
/// (`leadscore_core::batch::contacts_as_of_chunks`), so the parsed log and
/// the grouped one are not both in memory in full.
pub fn read_message_chunks(
    reader: impl BufRead,
    file: &str,
    options: &ReadOptions,
    mut progress: impl FnMut(u64),
) -> Result<(Vec<Vec<Message>>, Skipped), InputError> {
    let mut chunks = Vec::new();
    let skipped = for_each_chunk(reader, file, options, |messages, bytes_read| {
        chunks.extend(messages);
        progress(bytes_read);
        Ok::<(), InputError>(())
    })?;
    Ok((chunks, skipped))
}

/// Streams the messages of `reader` to `sink`, a few megabytes of input at a
/// time (the parsed messages in order, in pieces, and the bytes read so
/// far), so that memory stays bounded whatever the input size. Invalid
/// messages stop the stream unless `options.skip_invalid`.
pub fn for_each_chunk<E: From<InputError>>(
    mut reader: impl BufRead,
    file: &str,
    options: &ReadOptions,
    mut sink: impl FnMut(Vec<Vec<Message>>, u64) -> Result<(), E>,
) -> Result<Skipped, E> {
    let io_error = |line: u64, e: std::io::Error| InputError {
        file: file.to_string(),
        line,
        column: None,
        batch_index: None,
        field: None,
        message: format!("cannot read: {e}"),
    };
    let mut skipped = Skipped::default();
    let mut first_line: u64 = 1;
    let mut bytes_read: u64 = 0;
    // A UTF-8 byte order mark, as Windows tools write one, is not JSON.
    const BOM: &[u8] = b"\xEF\xBB\xBF";
    if reader
        .fill_buf()
        .map_err(|e| io_error(1, e))?
        .starts_with(BOM)
    {
        reader.consume(BOM.len());
        bytes_read += BOM.len() as u64;
    }
    let mut chunk: Vec<u8> = Vec::with_capacity(options.chunk_bytes + 4096);
    loop {
        chunk.clear();
        // Fill a chunk with whole lines.
        while chunk.len() < options.chunk_bytes {
            let n = reader
                .read_until(b'\n', &mut chunk)
                .map_err(|e| io_error(first_line, e))?;
            if n == 0 {
                break;
            }
        }
        if chunk.is_empty() {
            break;
        }
        bytes_read += chunk.len() as u64;
        let (pieces, line_count) = parse_chunk(file, first_line, &chunk);
        // Pieces come in order and errors in line order within a piece, so
        // the first error met here is the file's first.
        let mut messages = Vec::with_capacity(pieces.len());
        for piece in pieces {
            for e in piece.errors {
                if !options.skip_invalid {
                    return Err(e.into());
                }
                skipped.count += 1;
                if skipped.first.len() < options.keep_errors {
                    skipped.first.push(e);
                }
            }
            if !piece.messages.is_empty() {
                messages.push(piece.messages);
            }
        }
        first_line += line_count;
        sink(messages, bytes_read)?;
    }
    Ok(skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, skip: bool) -> Result<(Vec<Message>, Skipped), InputError> {
        let options = ReadOptions {
            skip_invalid: skip,
            chunk_bytes: 64,
            ..ReadOptions::default()
        };
        read_messages(text.as_bytes(), "e.jsonl", &options, |_| {})
    }

    const OK: &str =
        r#"{"type":"track","event":"A","userId":"u","timestamp":"2024-01-01T00:00:00Z"}"#;

    #[test]
    fn reads_lines_and_batches_across_small_chunks() {
        let batch = r#"{"batch":[{"type":"identify","userId":"u","timestamp":"2024-01-01T00:00:00Z"},{"type":"page","anonymousId":"a","timestamp":"2024-01-01T00:00:00+01:00"}]}"#;
        let text = format!("{OK}\n\n{batch}\r\n{OK}");
        let (messages, skipped) = read(&text, false).unwrap();
        assert_eq!(messages.len(), 4);
        assert_eq!(skipped.count, 0);
    }

    #[test]
    fn a_byte_order_mark_is_not_the_first_message() {
        let (messages, _) = read(&format!("\u{FEFF}{OK}\n{OK}\n"), false).unwrap();
        assert_eq!(messages.len(), 2);
        // Only at the start of the file: elsewhere it is malformed JSON.
        let e = read(&format!("{OK}\n\u{FEFF}{OK}\n"), false).unwrap_err();
        assert_eq!(e.line, 2);
    }

    #[test]
    fn errors_name_line_batch_index_and_field() {
        let text = format!("{OK}\n{OK}\n{OK}\n{OK}\n{OK}\n{OK}\n{{\"type\": \"track\",\n");
        let e = read(&text, false).unwrap_err();
        assert_eq!(e.line, 7);
        assert_eq!(
            e.to_string(),
            "e.jsonl:7:17: malformed JSON: EOF while parsing a value"
        );
        // Bytes that are not UTF-8: where they start.
        let text = b"{\"a\": \"\xff\"}";
        let e = serde_json::from_slice::<Value>(text).unwrap_err();
        assert_eq!(
            super::malformed(text, &e),
            (8, "not UTF-8 text".to_string())
        );
        let batch = r#"{"batch":[{"type":"identify","userId":"u","timestamp":"2024-01-01T00:00:00Z"},{"type":"track","userId":"u","timestamp":"2024-01-01T00:00:00Z"}]}"#;
        let e = read(&format!("{OK}\n{batch}\n"), false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "e.jsonl:2: batch[1]: field `event`: missing: a track call needs an event name"
        );
    }

    proptest::proptest! {
        /// Whatever the chunk size (lines cut anywhere, parsed in
        /// parallel), every message is read in order and every bad line is
        /// reported with its own number.
        #[test]
        fn chunking_never_changes_messages_or_line_numbers(
            kinds in proptest::collection::vec(0u8..5, 1..60),
            chunk_bytes in 1usize..300,
        ) {
            let batch = r#"{"batch":[{"type":"identify","userId":"u","timestamp":"2024-01-01T00:00:00Z"},{"type":"page","anonymousId":"a","timestamp":"2024-01-01T00:00:00Z"}]}"#;
            let mut text = String::new();
            let (mut messages, mut bad) = (0, Vec::new());
            for (i, kind) in kinds.iter().enumerate() {
                match kind {
                    0 => { text += OK; messages += 1; }
                    1 => { text += batch; messages += 2; }
                    2 => {}
                    3 => { text += "{\"type\":\"track\""; bad.push(i as u64 + 1); }
                    _ => { text += OK; text.push('\r'); messages += 1; }
                }
                text.push('\n');
            }
            let options = |skip_invalid| ReadOptions { skip_invalid, chunk_bytes, ..ReadOptions::default() };
            let (read, skipped) =
                read_messages(text.as_bytes(), "e.jsonl", &options(true), |_| {}).unwrap();
            proptest::prop_assert_eq!(read.len(), messages);
            let lines: Vec<u64> = skipped.first.iter().map(|e| e.line).collect();
            proptest::prop_assert_eq!(skipped.count, bad.len() as u64);
            proptest::prop_assert_eq!(&lines[..], &bad[..bad.len().min(options(true).keep_errors)]);
            match read_messages(text.as_bytes(), "e.jsonl", &options(false), |_| {}) {
                Ok((all, _)) => proptest::prop_assert!(bad.is_empty() && all.len() == messages),
                Err(e) => proptest::prop_assert_eq!(Some(e.line), bad.first().copied()),
            }
        }
    }

    #[test]
    fn skip_invalid_counts_and_keeps_the_rest() {
        let text = format!("{OK}\nnot json\n{OK}\n{{\"type\":\"track\",\"event\":\"A\",\"userId\":\"u\",\"timestamp\":\"yesterday\"}}\n");
        let (messages, skipped) = read(&text, true).unwrap();
        assert_eq!(messages.len(), 2);
        assert_eq!(skipped.count, 2);
        assert_eq!(skipped.first[0].line, 2);
        assert_eq!(skipped.first[1].line, 4);
        assert_eq!(skipped.first[1].field.as_deref(), Some("timestamp"));
    }
}
