//! Generated data shared by the fold benchmark and `examples/fold_once.rs`.

use leadscore_core::batch::{contacts_as_of, ContactLog};
use leadscore_core::model::Model;
use leadscore_core::time::Timestamp;
use leadscore_input::{read_messages, ReadOptions};
use leadscore_synth::{write_events, Config};

/// `contacts` generated contacts over a year (seed 1): the JSON lines, the
/// contacts' logs, and the end of the period.
pub fn data(contacts: u64) -> (Vec<u8>, Vec<ContactLog>, Timestamp) {
    let config = Config::new(contacts, 365, 1);
    let mut jsonl = Vec::new();
    write_events(&config, &mut jsonl, |_| {}).unwrap();
    let (messages, _) =
        read_messages(&jsonl[..], "generated", &ReadOptions::default(), |_| {}).unwrap();
    let t = Timestamp::from_seconds(config.end());
    let logs = contacts_as_of(messages, Vec::new(), t);
    (jsonl, logs, t)
}

/// One of the repository's example models.
pub fn model(name: &str) -> Model {
    let path = format!("{}/../../examples/{name}.toml", env!("CARGO_MANIFEST_DIR"));
    Model::from_toml(&path, &std::fs::read_to_string(&path).unwrap()).unwrap()
}
