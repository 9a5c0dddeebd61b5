//! Integration tests of the `leadscore` binary: output and error snapshots.

mod crash;
mod golden;
mod harness;
mod listing;
mod recovery;
mod serve;
mod snapshots;
mod store;
mod train;
