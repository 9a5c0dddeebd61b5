//! Every example model in `examples/` loads (style rule 7: examples are tests).

use leadscore_core::model::Model;

#[test]
fn every_example_model_compiles() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let source = std::fs::read_to_string(&path).unwrap();
            Model::from_toml(&path.display().to_string(), &source)
                .unwrap_or_else(|e| panic!("{e}"));
            seen += 1;
        }
    }
    assert!(seen >= 3, "examples missing");
}
