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
