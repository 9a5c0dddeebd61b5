//! Rule kinds, one per file: config (serde), compile, evaluate, tests.

pub mod awards;
pub mod engagement;
pub mod exclude;
pub mod fit;
pub mod inactivity;
pub mod labels;
pub mod streak;
pub mod trigger;
