//! Small helpers shared by the integration tests.

use leadscore_core::event::Message;
use leadscore_core::model::Model;
use serde_json::Value;

/// Loads `examples/NAME.toml`.
pub fn example(name: &str) -> Model {
    let path = format!("{}/../../examples/{name}.toml", env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(&path).unwrap();
    Model::from_toml(&path, &source).unwrap_or_else(|e| panic!("{e}"))
}

/// Parses a message that the test knows is valid.
pub fn message(value: Value) -> Message {
    Message::from_json(value, None, None).unwrap_or_else(|e| panic!("{e}"))
}

/// The cases a property runs: `default`, or `PROPTEST_CASES` when it is
/// set, for a longer soak (`PROPTEST_CASES=5000 cargo test --release`).
pub fn cases(default: u32) -> proptest::prelude::ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok());
    proptest::prelude::ProptestConfig::with_cases(cases.unwrap_or(default))
}
