//! Integration tests of the core crate (one binary, STYLE.md).

mod examples;
mod harness;
mod properties;
mod reference;
mod schema;
mod snapshot;
