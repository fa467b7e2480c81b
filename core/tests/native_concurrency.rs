//! Concurrency and fault cases that need real threads or an engine that fails.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use eventkv::testkit::aggregates::{Account, AccountEvent, deposits};
use eventkv::testkit::events::append_retrying;
use eventkv::testkit::faults::Faulty;
use eventkv::{
    Codec, EventStore, KvEventStore, KvSnapshotStore, MemoryKv, NewEvent, Repository, SnapshotMode,
    SnapshotOutcome, SnapshotStore,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_threads_append_200_each_without_loss() {
    let store = Arc::new(KvEventStore::new(MemoryKv::new()));
    let mut tasks = Vec::new();
    for task in 0..8u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..200u64 {
                let event = NewEvent::encode(
                    "Deposited",
                    &AccountEvent::Deposited {
                        amount: task * 1000 + i,
                    },
                    Codec::Json,
                )
                .expect("encode");
                append_retrying(&*store, "Account", "shared", &event).await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let stream = store
        .read_stream("Account", "shared", 1, u64::MAX, usize::MAX)
        .await
        .expect("read");
    assert_eq!(
        stream.iter().map(|e| e.version()).collect::<Vec<_>>(),
        (1..=1600).collect::<Vec<_>>()
    );
    let ids: HashSet<_> = stream.iter().map(|e| e.event_id()).collect();
    assert_eq!(ids.len(), 1600, "no event duplicated");
    let log = store.read_all(1, usize::MAX).await.expect("read all");
    assert_eq!(
        log.iter().map(|e| e.position()).collect::<Vec<_>>(),
        (1..=1600).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_to_many_streams_share_one_gapless_log() {
    let store = Arc::new(KvEventStore::new(MemoryKv::new()));
    let mut tasks = Vec::new();
    for task in 0..8u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("acc-{task}");
            for i in 0..100u64 {
                let events: Vec<_> = (0..3)
                    .map(|j| {
                        NewEvent::encode(
                            "Deposited",
                            &AccountEvent::Deposited { amount: j },
                            Codec::Json,
                        )
                        .expect("encode")
                    })
                    .collect();
                store
                    .append("Account", &id, i * 3, &events)
                    .await
                    .expect("own stream never conflicts");
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let log = store.read_all(1, usize::MAX).await.expect("read all");
    assert_eq!(
        log.iter().map(|e| e.position()).collect::<Vec<_>>(),
        (1..=2400).collect::<Vec<_>>()
    );
    let ids: Vec<&str> = log.iter().map(|e| e.aggregate_id()).collect();
    for batch in ids.chunks(3) {
        assert!(
            batch.iter().all(|id| *id == batch[0]),
            "a batch is contiguous in the log"
        );
    }
}

/// MemoryKv whose snapshot writes fail while `failing` is set.
#[tokio::test]
async fn snapshot_failures_never_fail_a_save() {
    let snapshots = Arc::new(Faulty::new(MemoryKv::new()));
    snapshots.fail_writes.store(true, Ordering::SeqCst);
    let background = Repository::<Account, _, _>::new(
        KvEventStore::new(MemoryKv::new()),
        KvSnapshotStore::new(snapshots.clone()),
    )
    .with_snapshot_threshold(5)
    .with_snapshot_mode(SnapshotMode::Background);
    let mut handle = background.create_new("acc");
    deposits(1..=5).for_each(|e| handle.record(e));
    let outcome = background
        .save(&mut handle)
        .await
        .expect("background save succeeds");
    assert_eq!(outcome.snapshot, SnapshotOutcome::Scheduled);
    background.await_pending_snapshots().await;
    assert_eq!(
        background.metrics().snapshot_failures,
        1,
        "the failure is counted"
    );
    assert_eq!(background.pending_snapshot_count(), 0);

    let sync = background.clone().with_snapshot_mode(SnapshotMode::Sync);
    deposits(6..=10).for_each(|e| handle.record(e));
    let outcome = sync
        .save(&mut handle)
        .await
        .expect("events committed: the save succeeds");
    assert!(
        matches!(outcome.snapshot, SnapshotOutcome::Failed(ref message) if message.contains("disk full"))
    );
    assert_eq!(sync.metrics().snapshot_failures, 2);
    let loaded = sync.load("acc").await.expect("load");
    assert_eq!((loaded.version(), loaded.state().balance), (10, 55));

    snapshots.fail_writes.store(false, Ordering::SeqCst);
    assert!(sync.create_snapshot(&loaded).await.expect("snapshot"));
    assert!(
        sync.snapshot_store()
            .snapshot_exists("Account", "acc")
            .await
            .expect("exists")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_snapshots_race_but_the_newest_wins() {
    let repo = Repository::<Account, _, _>::new(
        KvEventStore::new(MemoryKv::new()),
        KvSnapshotStore::new(MemoryKv::new()),
    )
    .with_snapshot_threshold(1)
    .with_snapshot_mode(SnapshotMode::Background);
    let mut handle = repo.create_new("acc");
    for amount in 1..=200 {
        handle.record(AccountEvent::Deposited { amount });
        repo.save(&mut handle).await.expect("save");
    }
    repo.await_pending_snapshots().await;
    assert_eq!(repo.pending_snapshot_count(), 0);
    let snapshot = repo
        .snapshot_store()
        .get_snapshot("Account", "acc")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        snapshot.version, 200,
        "a slow older snapshot never replaces a newer one"
    );
    let metrics = repo.metrics();
    assert_eq!(
        metrics.snapshots_written + metrics.snapshots_superseded,
        200
    );
}
