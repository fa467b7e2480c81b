//! serde_json against the SIMD JSON decoders (sonic-rs, simd-json) on the decode path:
//! alone, on the seed's events and on 1 KiB events, and through the repository's replay
//! (the same `eventkv::replay` a load runs, with its fold decoding each payload with the
//! decoder under test) of 100,000 events on memory.
#![allow(missing_docs)] // criterion's macros write undocumented functions

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use eventkv::testkit::aggregates::{Account, AccountEvent};
use eventkv::{
    Aggregate, Codec, EventStore, Fold, KvEventStore, KvSnapshotStore, MemoryKv, NewEvent,
    ReplayOptions, Snapshot, SnapshotMiss, SnapshotReadFailure, StoredEvent, replay,
};
use serde::{Deserialize, Serialize};

const EVENTS: u64 = 100_000;

/// An event of about 1 KiB of JSON: a few fields and a text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Large {
    id: u64,
    customer: String,
    lines: Vec<(String, u32, f64)>,
    note: String,
}

fn large(i: u64) -> Large {
    Large {
        id: i,
        customer: format!("customer-{i:08}"),
        lines: (0..12)
            .map(|n| (format!("sku-{n:05}"), n, f64::from(n) * 1.25))
            .collect(),
        note: "x".repeat(714),
    }
}

#[derive(Clone, Copy)]
enum Decoder {
    SerdeJson,
    SonicRs,
    SimdJson,
}

impl Decoder {
    const ALL: [Decoder; 3] = [Decoder::SerdeJson, Decoder::SonicRs, Decoder::SimdJson];

    fn name(self) -> &'static str {
        match self {
            Decoder::SerdeJson => "serde_json",
            Decoder::SonicRs => "sonic_rs",
            Decoder::SimdJson => "simd_json",
        }
    }

    fn decode<T: serde::de::DeserializeOwned>(self, bytes: &[u8], scratch: &mut Vec<u8>) -> T {
        match self {
            Decoder::SerdeJson => serde_json::from_slice(bytes).expect("serde_json"),
            Decoder::SonicRs => sonic_rs::from_slice(bytes).expect("sonic_rs"),
            // simd-json parses in place: it needs a mutable copy of the bytes.
            Decoder::SimdJson => {
                scratch.clear();
                scratch.extend_from_slice(bytes);
                simd_json::serde::from_slice(scratch).expect("simd_json")
            }
        }
    }
}

/// The repository's fold, decoding with `Decoder`.
struct DecodingFold(Decoder);

impl Fold for DecodingFold {
    type State = Account;
    type Error = ();

    fn initial(&self) -> Account {
        Account::default()
    }

    fn snapshot_state(&self, _: &Snapshot) -> Result<Account, (SnapshotMiss, String)> {
        Err((SnapshotMiss::Undecodable, "no snapshots here".into()))
    }

    fn apply(&self, state: &mut Account, events: &[StoredEvent<'_>]) -> Result<(), ()> {
        let mut scratch = Vec::new();
        for event in events {
            state.apply(&self.0.decode::<AccountEvent>(event.payload(), &mut scratch));
        }
        Ok(())
    }
}

fn decoders(c: &mut Criterion) {
    let seed = serde_json::to_vec(&AccountEvent::Deposited { amount: 42 }).expect("encodes");
    let kib = serde_json::to_vec(&large(7)).expect("encodes");
    println!(
        "event sizes: seed {} bytes, large {} bytes",
        seed.len(),
        kib.len()
    );
    let mut group = c.benchmark_group("json_decode");
    for decoder in Decoder::ALL {
        let mut scratch = Vec::new();
        group.bench_function(format!("seed_event/{}", decoder.name()), |b| {
            b.iter(|| decoder.decode::<AccountEvent>(black_box(&seed), &mut scratch));
        });
        group.bench_function(format!("1kib_event/{}", decoder.name()), |b| {
            b.iter(|| decoder.decode::<Large>(black_box(&kib), &mut scratch));
        });
    }
    group.finish();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let kv = Arc::new(MemoryKv::new());
    let events = KvEventStore::new(kv.clone());
    let snapshots = KvSnapshotStore::new(kv);
    runtime.block_on(async {
        let mut version = 0;
        let mut batch = Vec::new();
        for amount in 0..EVENTS {
            let event = AccountEvent::Deposited { amount };
            batch.push(NewEvent::encode("Deposited", &event, Codec::Json).expect("encodes"));
            if batch.len() == 1000 {
                events
                    .append("Account", "replay", version, &batch)
                    .await
                    .expect("append");
                version += 1000;
                batch.clear();
            }
        }
    });
    let options = ReplayOptions {
        aggregate_type: "Account",
        aggregate_id: "replay",
        schema_version: 1,
        page: eventkv::DEFAULT_REPLAY_PAGE,
        read_failure: SnapshotReadFailure::Replay,
    };
    let mut group = c.benchmark_group("repository_replay_100k");
    group
        .sample_size(10)
        .throughput(Throughput::Elements(EVENTS));
    for decoder in Decoder::ALL {
        let fold = DecodingFold(decoder);
        group.bench_function(decoder.name(), |b| {
            b.iter(|| {
                let replayed = runtime
                    .block_on(replay(&events, &snapshots, options, &fold))
                    .expect("replay");
                assert_eq!(replayed.version, EVENTS);
            });
        });
    }
    group.finish();
}

criterion_group!(benches, decoders);
criterion_main!(benches);
