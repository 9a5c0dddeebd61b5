//! leadscore's pure scoring core.
#![deny(missing_docs)]

pub mod condition;
pub mod event;
pub mod identity;
pub mod time;
pub mod model;
pub mod rules;
pub mod batch;
pub mod fold;
pub mod incremental;
pub mod score;
