//! The checked-in JSON Schema matches the types (regenerate with
//! `cargo run -- schema > docs/model.schema.json`).

use leadscore_core::model::Model;

#[test]
fn checked_in_schema_matches_the_model_types() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/model.schema.json");
    let checked_in = std::fs::read_to_string(path).unwrap();
    assert!(
        checked_in == Model::json_schema(),
        "docs/model.schema.json is out of date: run `cargo run -- schema > docs/model.schema.json`"
    );
}
