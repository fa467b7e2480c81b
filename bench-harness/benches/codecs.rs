//! Encode and decode of a snapshot state and of an event, in bincode and JSON.
#![allow(missing_docs)] // criterion's macros write undocumented functions

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use eventkv::Codec;
use eventkv::testkit::aggregates::{Account, AccountEvent};

fn codecs(c: &mut Criterion) {
    let state = Account {
        owner: "benchmark account".into(),
        balance: 4_950_000,
        transactions: 99_999,
    };
    let event = AccountEvent::Deposited { amount: 42 };
    let mut group = c.benchmark_group("codec");
    for codec in [Codec::Bincode, Codec::Json] {
        let state_bytes = codec.encode(&state).expect("encode");
        let event_bytes = codec.encode(&event).expect("encode");
        group.bench_function(format!("{codec}/snapshot_encode"), |b| {
            b.iter(|| codec.encode(black_box(&state)));
        });
        group.bench_function(format!("{codec}/snapshot_decode"), |b| {
            b.iter(|| codec.decode::<Account>(black_box(&state_bytes)));
        });
        group.bench_function(format!("{codec}/event_encode"), |b| {
            b.iter(|| codec.encode(black_box(&event)));
        });
        group.bench_function(format!("{codec}/event_decode"), |b| {
            b.iter(|| codec.decode::<AccountEvent>(black_box(&event_bytes)));
        });
    }
    group.finish();
}

criterion_group!(benches, codecs);
criterion_main!(benches);
