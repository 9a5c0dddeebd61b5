//! Features from a table of contacts.
