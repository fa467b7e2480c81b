//! Per engine: append throughput (1,000 events per save), full replay of 10,000 and 100,000 events,
//! load with a snapshot 99 events behind, `load_at` a version 99 events past an older
//! snapshot (one of the history kept), the engine's raw scan of the same stream
//! (the limit a replay can approach), and following 20,000 positions of the global log,
//! whole and filtered to a type that holds 1 event in 100.
//!
//! Engines: every engine of the list compiled in, at its scratch URL (a server engine when
//! its server answers: PostgreSQL at `EVENTKV_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`). `EVENTKV_BENCH_ENGINES` (comma-separated)
//! picks a subset.
#![allow(missing_docs)] // criterion's macros write undocumented functions

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use eventkv::testkit::aggregates::{Account, AccountEvent, seed_account};
use eventkv::{
    Codec, Direction, DynKv, EventStore, KvEventStore, KvSnapshotStore, NewEvent, OrderedKv,
    Repository, SnapshotMode, SubscribeOptions,
};
use futures_util::StreamExt;
use futures_util::future::join_all;

const EVENTS: u64 = 100_000;
/// Positions of the global log the follow benches cover: appends of one event, one in 100
/// on an `Order` stream, the others on `Account` streams.
const FOLLOWED: u64 = 20_000;
const SCAN_PAGE: usize = 2048;

type Repo = Repository<Account, KvEventStore<DynKv>, KvSnapshotStore<DynKv>>;

fn benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let wanted = std::env::var("EVENTKV_BENCH_ENGINES").ok();
    let wanted = |name: &str| {
        wanted
            .as_deref()
            .is_none_or(|list| list.split(',').any(|w| w == name))
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let directory = dir.path().display().to_string();
    let unique = format!("bench_{}", std::process::id());
    for engine in eventkv_backends::ENGINES {
        let Some(url) = engine.scratch_url(&directory, None, &unique) else {
            continue;
        };
        if !wanted(engine.name) {
            continue;
        }
        let kv = match runtime.block_on(eventkv_backends::open(&url)) {
            Ok(kv) => kv,
            Err(error) => {
                eprintln!("skipping {}: {error}", engine.name);
                continue;
            }
        };
        bench_engine(c, &runtime, engine.name, &kv);
        drop(kv);
        if let Err(error) = runtime.block_on(eventkv_backends::destroy(&url)) {
            eprintln!(
                "could not remove {}: {error}",
                eventkv_backends::redact(&url)
            );
        }
    }
}

fn bench_engine(c: &mut Criterion, runtime: &tokio::runtime::Runtime, name: &str, kv: &DynKv) {
    let repo: Repo = Repository::new(
        KvEventStore::new(kv.clone()),
        KvSnapshotStore::new(kv.clone()),
    );
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));

    group.throughput(Throughput::Elements(1000));
    let mut appender = repo.create_new("append");
    group.bench_function("append_1000_per_save", |b| {
        b.iter(|| {
            runtime.block_on(async {
                for amount in 0..1000 {
                    appender.record(AccountEvent::Deposited { amount });
                }
                repo.save(&mut appender).await.expect("save");
            });
        });
    });

    runtime
        .block_on(seed_account(&repo, "replay", EVENTS, None))
        .expect("seed replay");
    runtime
        .block_on(seed_account(&repo, "snapshot", EVENTS, Some(99)))
        .expect("seed snapshot");
    runtime
        .block_on(seed_account(&repo, "replay10k", 10_000, None))
        .expect("seed replay10k");
    group.throughput(Throughput::Elements(EVENTS));
    group.bench_function(BenchmarkId::new("raw_scan", EVENTS), |b| {
        let stream = eventkv::keys::StreamKeys::new("Account", "replay").expect("names");
        b.iter(|| runtime.block_on(async { black_box(scan_all(kv, &stream).await) }));
    });
    group.throughput(Throughput::Elements(10_000));
    group.bench_function(BenchmarkId::new("full_replay", 10_000), |b| {
        b.iter(|| {
            runtime.block_on(async { black_box(repo.load("replay10k").await.expect("load")) })
        });
    });
    group.throughput(Throughput::Elements(EVENTS));
    group.bench_function(BenchmarkId::new("full_replay", EVENTS), |b| {
        b.iter(|| runtime.block_on(async { black_box(repo.load("replay").await.expect("load")) }));
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("load_snapshot_99_behind", |b| {
        b.iter(|| {
            runtime.block_on(async { black_box(repo.load("snapshot").await.expect("load")) })
        });
    });

    // 10,000 events, a snapshot every 1,000, ten kept: version 5,099 is 99 events past the
    // snapshot at 5,000, an older one of the history.
    let historic: Repo = Repository::new(
        KvEventStore::new(kv.clone()),
        KvSnapshotStore::new(kv.clone()).with_history(10),
    )
    .with_snapshot_threshold(1000)
    .with_snapshot_mode(SnapshotMode::Sync);
    runtime
        .block_on(seed_account(&historic, "history", 10_000, None))
        .expect("seed history");
    let past = runtime
        .block_on(historic.load_at("history", 5_099))
        .expect("load_at");
    assert_eq!(past.load_info().snapshot_version, Some(5_000));
    group.bench_function("load_at_99_past_older_snapshot", |b| {
        b.iter(|| {
            runtime.block_on(async {
                black_box(historic.load_at("history", 5_099).await.expect("load_at"))
            })
        });
    });

    let store = KvEventStore::new(kv.clone());
    let first = runtime.block_on(seed_mixed_log(&store));
    group.throughput(Throughput::Elements(FOLLOWED));
    for (bench, options, events) in [
        ("follow_log", SubscribeOptions::default(), FOLLOWED),
        (
            "follow_log_one_type_in_100",
            SubscribeOptions::default().aggregate_type("Order"),
            FOLLOWED / 100,
        ),
    ] {
        group.bench_function(BenchmarkId::new(bench, FOLLOWED), |b| {
            b.iter(|| runtime.block_on(follow(&store, first, options.clone(), events)));
        });
    }
    group.finish();
}

/// Appends [`FOLLOWED`] events, one per append, 100 appends at a time: the first of each
/// hundred to a new `Order` stream, the others to 99 `Account` streams. Returns the
/// position of the first.
async fn seed_mixed_log(store: &KvEventStore<DynKv>) -> u64 {
    let first = store.last_position().await.expect("last position") + 1;
    for round in 0..FOLLOWED / 100 {
        let appends = (0..100u64).map(|slot| async move {
            let (aggregate_type, id, version) = match slot {
                0 => ("Order", format!("order-{round}"), 0),
                _ => ("Account", format!("follow-{slot}"), round),
            };
            let event = AccountEvent::Deposited { amount: slot };
            let event = NewEvent::encode("Deposited", &event, Codec::Json).expect("encode");
            store
                .append(aggregate_type, &id, version, &[event])
                .await
                .expect("append");
        });
        join_all(appends).await;
    }
    first
}

/// Subscribes from `first` with `options` until `events` events came.
async fn follow(
    store: &KvEventStore<DynKv>,
    first: u64,
    options: SubscribeOptions,
    events: u64,
) -> u64 {
    let mut subscription = Box::pin(store.subscribe(first, options));
    let mut last = 0;
    for _ in 0..events {
        let event = subscription.next().await.expect("an event").expect("read");
        last = event.position;
    }
    black_box(last)
}

/// Scans every entry of the stream in pages, as a replay does, without decoding.
async fn scan_all(kv: &DynKv, stream: &eventkv::keys::StreamKeys) -> usize {
    let mut range = stream.all();
    let mut entries = 0;
    loop {
        let page = kv
            .scan(&range, Direction::Forward, SCAN_PAGE)
            .await
            .expect("scan");
        entries += page.len();
        match page.last_key() {
            Some(last) if page.len() == SCAN_PAGE => {
                range = range.after_page(last, Direction::Forward);
            }
            _ => return entries,
        }
    }
}

criterion_group!(engine_benches, benches);
criterion_main!(engine_benches);
