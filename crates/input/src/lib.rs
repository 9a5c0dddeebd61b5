//! Reading leadscore's inputs: Segment messages as JSON lines (one message or
//! one `{"batch": [...]}` object per line) and contacts as CSV.
//!
//! Parsing is parallel over chunks of lines and streaming: memory holds one
//! chunk of text plus the parsed messages. Every error names the file, the
//! line, the batch index when there is one, and the field.

mod contacts;
mod jsonl;

pub use contacts::{read_contacts, read_contacts_mapped, ColumnMap, ContactRow, ContactsError};
pub use jsonl::{
    for_each_chunk, read_message_chunks, read_messages, InputError, ReadOptions, Skipped,
};
