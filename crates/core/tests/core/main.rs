//! Integration tests of the core crate (one binary, STYLE.md).

mod examples;
mod harness;
mod properties;
mod reference;
mod robustness;
mod schema;
mod snapshot;
