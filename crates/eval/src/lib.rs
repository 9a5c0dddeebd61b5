//! Evaluation and training (issue E), pure like the core: ranking metrics
//! with bootstrap intervals, lift and threshold tables, population
//! stability, L2-regularised logistic regression, features built from a
//! table of contacts, and a model file written from learned weights.

#![deny(missing_docs)]

pub mod evaluate;
pub mod features;
pub mod html;
pub mod logistic;
pub mod metrics;
pub mod rng;
pub mod suggest;
