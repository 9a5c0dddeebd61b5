//! Folds generated data once, for counting instructions under valgrind,
//! which, unlike timings, does not move with the machine's load:
//!
//! ```sh
//! cargo build --release --example fold_once
//! valgrind --tool=callgrind --toggle-collect='fold_once::fold_all' \
//!     target/release/examples/fold_once 2000 b2b
//! ```

use leadscore_core::batch::ContactLog;
use leadscore_core::fold::ContactState;
use leadscore_core::model::Model;
use leadscore_core::time::Timestamp;

#[path = "../benches/common/mod.rs"]
mod common;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[inline(never)]
fn fold_all(model: &Model, contacts: &[ContactLog], t: Timestamp) -> f64 {
    let mut total = 0.0;
    for contact in contacts {
        let state = ContactState::fold(model, None, &contact.messages);
        total += state.score_at(model, t).map(|s| s.raw).unwrap_or_default();
    }
    total
}

fn main() {
    let mut args = std::env::args().skip(1);
    let contacts: u64 = args.next().map_or(2_000, |a| a.parse().expect("contacts"));
    let name = args.next().unwrap_or_else(|| "b2b".into());
    let model = common::model(&name);
    let (_, logs, t) = common::data(contacts);
    let messages: usize = logs.iter().map(|c| c.messages.len()).sum();
    // Twice: the first pass also parses the properties conditions read.
    let first = fold_all(&model, &logs, t);
    let second = fold_all(&model, &logs, t);
    println!("{messages} messages, raw total {first} / {second}");
}
