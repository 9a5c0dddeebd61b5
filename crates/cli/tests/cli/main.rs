//! Integration tests of the `leadscore` binary: output and error snapshots.

mod harness;
mod golden;
mod snapshots;
