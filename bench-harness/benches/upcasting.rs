//! The cost of upcasting on the decode path: a full replay of 100,000 events on memory,
//! stored in the current shape and read as stored, against the same history stored in
//! an old shape and read through a one-step upcaster (typed, and on `serde_json::Value`).
#![allow(missing_docs)] // criterion's macros write undocumented functions

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use eventkv::testkit::aggregates::{Account, AccountEvent};
use eventkv::testkit::upcasting::DepositV2;
use eventkv::{
    Codec, EventStore, KvEventStore, KvSnapshotStore, MemoryKv, NewEvent, Repository, Upcasters,
};
use serde_json::Value;

const EVENTS: u64 = 100_000;

/// A store holding one account of `EVENTS` events; deposits in the old shape when `old`.
fn store(old: bool) -> KvEventStore<Arc<MemoryKv>> {
    let store = KvEventStore::new(Arc::new(MemoryKv::new()));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let opened = AccountEvent::Opened {
        owner: "bench".into(),
    };
    let mut version = 0;
    let mut batch = vec![NewEvent::encode("Opened", &opened, Codec::Json).expect("encodes")];
    for amount in 1..EVENTS {
        let event = if old {
            let old = DepositV2 {
                cents: amount * 100,
            };
            NewEvent::encode("Deposited", &old, Codec::Json).expect("encodes")
        } else {
            let new = AccountEvent::Deposited { amount };
            NewEvent::encode("Deposited", &new, Codec::Json)
                .expect("encodes")
                .with_shape_version(2)
        };
        batch.push(event);
        if batch.len() == 1000 || amount == EVENTS - 1 {
            runtime
                .block_on(store.append("Account", "replay", version, &batch))
                .expect("append");
            version += batch.len() as u64;
            batch.clear();
        }
    }
    store
}

fn typed() -> Upcasters {
    Upcasters::new().register("Deposited", 1, |old: DepositV2, out| {
        out.emit(
            "Deposited",
            2,
            AccountEvent::Deposited {
                amount: old.cents / 100,
            },
        );
        Ok(())
    })
}

fn weak_schema() -> Upcasters {
    Upcasters::new().register("Deposited", 1, |old: Value, out| {
        let cents = old["cents"].as_u64().ok_or("no cents")?;
        out.emit(
            "Deposited",
            2,
            AccountEvent::Deposited {
                amount: cents / 100,
            },
        );
        Ok(())
    })
}

fn upcasting(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let current = store(false);
    let old = store(true);
    let cases = [
        ("replay_100k/as_stored", current),
        (
            "replay_100k/one_step_typed",
            old.clone().with_upcasters(typed()),
        ),
        (
            "replay_100k/one_step_json_value",
            old.with_upcasters(weak_schema()),
        ),
    ];
    let mut group = c.benchmark_group("upcasting");
    group.sample_size(10);
    for (name, events) in cases {
        let snapshots = KvSnapshotStore::new(events.kv().clone());
        let repo = Repository::<Account, _, _>::new(events, snapshots);
        let loaded = runtime.block_on(repo.load("replay")).expect("load");
        assert_eq!(loaded.state().balance, (EVENTS - 1) * EVENTS / 2, "{name}");
        group.bench_function(name, |b| {
            b.iter(|| {
                runtime
                    .block_on(repo.load(black_box("replay")))
                    .expect("load")
            });
        });
    }
    group.finish();
}

criterion_group!(benches, upcasting);
criterion_main!(benches);
