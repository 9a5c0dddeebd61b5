//! leadscore's pure scoring core.
#![deny(missing_docs)]

pub mod batch;
pub mod condition;
pub mod coverage;
pub mod event;
pub mod fold;
pub mod identity;
pub mod incremental;
pub mod json;
mod json_scan;
pub mod model;
pub mod rules;
pub mod score;
pub mod time;
pub mod triggers;
