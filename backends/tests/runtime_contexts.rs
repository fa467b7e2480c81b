//! Engines work from any runtime context: without a tokio runtime (another executor, or
//! none), on a current-thread runtime, and beside sibling futures of the same task.

mod common;

use std::time::{Duration, Instant};

use eventkv::testkit::aggregates::{Account, seed_account};
use eventkv::{Codec, DynKv, EventStore, KvEventStore, KvSnapshotStore, NewEvent, Repository};

async fn append_and_read(kv: DynKv) {
    let store = KvEventStore::new(kv);
    let event = NewEvent::encode("Opened", &"x", Codec::Json).expect("encode");
    store.append("T", "x", 0, &[event]).await.expect("append");
    let page = store
        .read_stream("T", "x", 1, u64::MAX, 10)
        .await
        .expect("read");
    assert_eq!(page.len(), 1);
}

/// No tokio runtime at all: the embedded engines open and work (their blocking calls run
/// inline); PostgreSQL (sqlx) refuses with a clear error instead of panicking.
#[test]
fn engines_outside_a_tokio_runtime() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut urls = vec!["memory:".to_owned()];
    if cfg!(feature = "redb") {
        urls.push(format!("redb:{}", dir.path().join("plain.redb").display()));
    }
    if cfg!(feature = "sled") {
        urls.push(format!("sled:{}", dir.path().join("plain.sled").display()));
    }
    if cfg!(feature = "sqlite") {
        urls.push("sqlite::memory:".to_owned());
        urls.push(format!(
            "sqlite:{}",
            dir.path().join("plain.sqlite").display()
        ));
    }
    for url in &urls {
        futures_executor::block_on(async {
            let kv = eventkv_backends::open(url)
                .await
                .unwrap_or_else(|error| panic!("{url}: {error}"));
            append_and_read(kv).await;
        });
    }
    if cfg!(feature = "postgres") {
        let url = common::postgres_url();
        let error =
            futures_executor::block_on(eventkv_backends::open(&url)).expect_err("sqlx needs tokio");
        assert!(
            error.to_string().contains("needs a tokio runtime"),
            "{url}: {error}"
        );
    }
}

/// On a current-thread runtime SQLite writes on tokio's blocking pool while the batch is
/// built on the caller's task: concurrent appends share writes and all land.
#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "current_thread")]
async fn sqlite_on_a_current_thread_runtime() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite:{}", dir.path().join("current.sqlite").display());
    let kv = eventkv_backends::open(&url).await.expect("open");
    append_and_read(kv.clone()).await;

    let store = KvEventStore::new(kv.clone());
    let appends = (0..8).map(|writer| {
        let store = &store;
        async move {
            let event = NewEvent::encode("Opened", &writer, Codec::Json).expect("encode");
            store.append("T", &format!("w{writer}"), 0, &[event]).await
        }
    });
    for result in futures_util::future::join_all(appends).await {
        result.expect("append");
    }
    let all = store.read_all(0, 100).await.expect("read_all");
    assert_eq!(all.len(), 9, "every append landed once");
}

/// A load joined with a timer in the same task: the timer keeps ticking while the load
/// runs, because the engine's blocking calls are one page each. Prints the longest gap
/// between ticks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_does_not_freeze_sibling_futures() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut urls = Vec::new();
    if cfg!(feature = "redb") {
        urls.push(format!("redb:{}", dir.path().join("join.redb").display()));
    }
    if cfg!(feature = "sled") {
        urls.push(format!("sled:{}", dir.path().join("join.sled").display()));
    }
    for url in &urls {
        let kv = eventkv_backends::open(url).await.expect("open");
        let repo = Repository::<Account, _, _>::new(
            KvEventStore::new(kv.clone()),
            KvSnapshotStore::new(kv),
        );
        seed_account(&repo, "acc", 50_000, None)
            .await
            .expect("seed");
        let loading = std::sync::atomic::AtomicBool::new(true);
        let load = async {
            let started = Instant::now();
            let loaded = repo.load("acc").await.expect("load");
            loading.store(false, std::sync::atomic::Ordering::Relaxed);
            (loaded.version(), started.elapsed())
        };
        let ticker = async {
            let mut interval = tokio::time::interval(Duration::from_millis(1));
            let (mut ticks, mut longest, mut last) = (0u32, Duration::ZERO, Instant::now());
            while loading.load(std::sync::atomic::Ordering::Relaxed) {
                interval.tick().await;
                longest = longest.max(last.elapsed());
                last = Instant::now();
                ticks += 1;
            }
            (ticks, longest)
        };
        let ((version, took), (ticks, longest)) = tokio::join!(load, ticker);
        assert_eq!(version, 50_000);
        eprintln!(
            "{}: load of 50,000 events took {took:?}; a 1 ms timer in the same task ticked {ticks} times, longest gap {longest:?}",
            url.split(':').next().unwrap_or_default()
        );
        assert!(ticks > 1, "{url}: the timer ticked while the load ran");
    }
}
