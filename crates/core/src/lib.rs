//! leadscore's pure scoring core.
#![deny(missing_docs)]

pub mod condition;
pub mod event;
pub mod identity;
pub mod time;
