//! Load time of a 100,000-event aggregate on `MemoryKv`: full replay, and from a snapshot
//! 99 events behind the stream.
#![allow(missing_docs)] // criterion's macros write undocumented functions

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use eventkv::testkit::aggregates::{Account, AccountEvent};
use eventkv::{Codec, KvEventStore, KvSnapshotStore, MemoryKv, Repository};

const EVENTS: u64 = 100_000;

type Repo = Repository<Account, KvEventStore<Arc<MemoryKv>>, KvSnapshotStore<Arc<MemoryKv>>>;

/// A repository holding one account of `EVENTS` events, saved 1,000 at a time, with its
/// events in `codec`; with `snapshot_behind`, a snapshot that many events behind.
fn setup(runtime: &tokio::runtime::Runtime, codec: Codec, snapshot_behind: Option<u64>) -> Repo {
    let kv = Arc::new(MemoryKv::new());
    let repo = Repository::new(KvEventStore::new(kv.clone()), KvSnapshotStore::new(kv))
        .with_event_codec(codec);
    runtime.block_on(async {
        let mut account = repo.create_new("acc");
        account.record(AccountEvent::Opened {
            owner: "bench".into(),
        });
        for i in 1..EVENTS {
            account.record(AccountEvent::Deposited { amount: i % 100 });
            if Some(EVENTS - account.version() - account.pending().len() as u64) == snapshot_behind
            {
                repo.save(&mut account).await.expect("save");
                repo.create_snapshot(&account).await.expect("snapshot");
            }
            if account.pending().len() == 1000 {
                repo.save(&mut account).await.expect("save");
            }
        }
        repo.save(&mut account).await.expect("save");
        assert_eq!(account.version(), EVENTS);
    });
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
