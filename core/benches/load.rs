//! Load time of a 100,000-event aggregate on `MemoryKv`: full replay, and from a snapshot
//! 99 events behind the stream.
#![allow(missing_docs)] // criterion's macros write undocumented functions

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use eventkv::testkit::aggregates::{Account, seed_account};
use eventkv::{Codec, KvEventStore, KvSnapshotStore, MemoryKv, Repository};

const EVENTS: u64 = 100_000;

type Repo = Repository<Account, KvEventStore<Arc<MemoryKv>>, KvSnapshotStore<Arc<MemoryKv>>>;

/// A repository holding one account of `EVENTS` events in `codec`; with `snapshot_behind`,
/// a snapshot that many events behind.
fn setup(runtime: &tokio::runtime::Runtime, codec: Codec, snapshot_behind: Option<u64>) -> Repo {
    let kv = Arc::new(MemoryKv::new());
    let repo = Repository::new(KvEventStore::new(kv.clone()), KvSnapshotStore::new(kv))
        .with_event_codec(codec);
    runtime
        .block_on(seed_account(&repo, "acc", EVENTS, snapshot_behind))
        .expect("seed");
    repo
}

fn load(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("load_100k_memory");
    group.sample_size(30);
    for codec in [Codec::Json, Codec::Bincode] {
        let repo = setup(&runtime, codec, None);
        group.bench_function(format!("full_replay/{codec}_events"), |b| {
            b.iter(|| runtime.block_on(async { black_box(repo.load("acc").await.expect("load")) }));
        });
        let repo = setup(&runtime, codec, Some(99));
        let loaded = runtime.block_on(repo.load("acc")).expect("load");
        assert_eq!(
            loaded.load_info().events_replayed,
            99,
            "snapshot 99 events behind"
        );
        group.bench_function(format!("snapshot_99_behind/{codec}_events"), |b| {
            b.iter(|| runtime.block_on(async { black_box(repo.load("acc").await.expect("load")) }));
        });
    }
    group.finish();
}

criterion_group!(benches, load);
criterion_main!(benches);
