//! Criterion benchmarks of the scoring core on generated data: the fold of
//! in-memory events (per core) and JSONL parsing. Each prints throughput in
//! messages per second; the machine's core count is printed first.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use leadscore_core::fold::ContactState;
use leadscore_input::{read_messages, ReadOptions};

mod common;
use common::{data, model};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn benches(c: &mut Criterion) {
    eprintln!(
        "machine cores: {}",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let (jsonl, contacts, t) = data(2_000);
    let messages: u64 = contacts.iter().map(|c| c.messages.len() as u64).sum();
    let mut group = c.benchmark_group("fold_one_core");
    group.throughput(Throughput::Elements(messages));
    for name in ["b2b", "ecommerce", "email"] {
        let model = model(name);
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut total = 0.0;
                for contact in &contacts {
                    let state = ContactState::fold(&model, None, &contact.messages);
                    total += state.score_at(&model, t).unwrap().raw;
                }
                total
            })
        });
    }
    group.finish();
    let lines = jsonl.iter().filter(|b| **b == b'\n').count() as u64;
    let mut group = c.benchmark_group("parse_all_cores");
    group.throughput(Throughput::Elements(lines));
    group.sample_size(10);
    group.bench_function("jsonl", |b| {
        b.iter(|| {
            read_messages(&jsonl[..], "bench", &ReadOptions::default(), |_| {})
                .unwrap()
                .0
                .len()
        })
    });
    group.finish();
}

criterion_group!(fold, benches);
criterion_main!(fold);
