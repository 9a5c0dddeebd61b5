//! Behaviour of the store, written against the `Store` trait so that every
//! backend runs the same suite (`harness::backends`).

mod harness;

mod activation;
mod errors;
mod listing;
mod live;
mod models;
mod privacy;
mod triggers;
