//! Group commit: appends that queue while a write waits join its batch when it is built;
//! an append whose future is dropped while it waits in the queue (tests/cancellation.rs
//! drops them everywhere else).

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use eventkv::testkit::aggregates::AccountEvent;
use eventkv::testkit::counted::Counted;
use eventkv::{
    Codec, Direction, EventStore, KeyRange, KvError, KvEventStore, KvPage, MemoryKv, NewEvent,
    OrderedKv, WriteBatch,
};
use futures_util::FutureExt;

/// `MemoryKv` whose writes are counted and take a scheduler turn after the batch is built
/// (it keeps the default `write_with`): a leader dropped then is dropped mid-write.
#[derive(Default)]
struct SlowWrites {
    inner: MemoryKv,
    writes: AtomicU64,
}

impl OrderedKv for SlowWrites {
    async fn get(&self, key: &[u8]) -> Result<Option<Bytes>, KvError> {
        self.inner.get(key).await
    }

    async fn scan(
        &self,
        range: &KeyRange,
        direction: Direction,
        limit: usize,
    ) -> Result<KvPage, KvError> {
        self.inner.scan(range, direction, limit).await
    }

    async fn write(&self, batch: WriteBatch) -> Result<(), KvError> {
        tokio::task::yield_now().await;
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.write(batch).await
    }
}

impl SlowWrites {
    fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }
}

/// Appends that queue while the leader's write waits for the engine (before its batch is
/// built) are written in that batch.
#[tokio::test]
async fn appends_queued_before_the_build_join_the_batch() {
    let kv = Arc::new(Counted::new(MemoryKv::new()));
    let store = KvEventStore::new(Arc::clone(&kv));
    let (a, b, c) = (deposit(1), deposit(2), deposit(3));

    let mut first = pin!(store.append("Account", "a", 0, &a));
    assert!(
        first.as_mut().now_or_never().is_none(),
        "waiting for the engine"
    );
    let mut second = pin!(store.append("Account", "b", 0, &b));
    let mut third = pin!(store.append("Account", "a", 0, &c));
    assert!(second.as_mut().now_or_never().is_none(), "queued");
    assert!(third.as_mut().now_or_never().is_none(), "queued");
    let appended = first.now_or_never().expect("written").expect("appended");
    assert_eq!(appended.first_position, 1);
    let joined = second
        .now_or_never()
        .expect("written with it")
        .expect("appended");
    assert_eq!((joined.first_position, kv.writes()), (2, 1), "one write");
    // One append per stream per batch: the second append to "a" waits for the next, and
    // is refused there (the stream moved).
    let refused = third.await.expect_err("a is at version 1");
    assert!(
        matches!(
            refused,
            eventkv::EventStoreError::Conflict { actual: 1, .. }
        ),
        "{refused}"
    );
}

fn deposit(amount: u64) -> Vec<NewEvent> {
    vec![
        NewEvent::encode(
            "Deposited",
            &AccountEvent::Deposited { amount },
            Codec::Json,
        )
        .expect("encode"),
    ]
}

/// An append dropped while it waits in the queue is never written.
#[tokio::test]
async fn an_append_dropped_while_queued_is_not_written() {
    let kv = Arc::new(SlowWrites::default());
    let store = KvEventStore::new(Arc::clone(&kv));
    let (a, b, c) = (deposit(1), deposit(2), deposit(3));

    let mut first = pin!(store.append("Account", "a", 0, &a));
    assert!(first.as_mut().now_or_never().is_none(), "writing");
    let mut dropped = Box::pin(store.append("Account", "b", 0, &b));
    assert!(dropped.as_mut().now_or_never().is_none(), "queued");
    let mut third = pin!(store.append("Account", "c", 0, &c));
    assert!(third.as_mut().now_or_never().is_none(), "queued");
    drop(dropped);
    first.now_or_never().expect("written").expect("appended");
    // The lead skips the dropped append and goes to the third.
    let mut third_result = None;
    for _ in 0..4 {
        if let Some(result) = third.as_mut().now_or_never() {
            third_result = Some(result);
            break;
        }
    }
    let appended = third_result
        .expect("the third was written")
        .expect("appended");
    assert_eq!(appended.first_position, 2);
    assert_eq!(
        store
            .current_version("Account", "b")
            .await
            .expect("version"),
        0
    );
    assert_eq!(kv.writes(), 2);
}

/// A store remembers how far it saw streams go, to answer stale appends without a write;
/// when the engine's data is replaced behind its back (a restore), what it remembered must
/// not refuse an append that is right for the data now there.
#[tokio::test]
async fn what_a_store_saw_does_not_outlive_a_restore() {
    use eventkv::{OrderedKv, WriteBatch, keys::StreamKeys};
    let kv = Arc::new(MemoryKv::new());
    let store = KvEventStore::new(Arc::clone(&kv));
    for version in 0..3 {
        store
            .append("Account", "a", version, &deposit(version))
            .await
            .expect("append");
    }
    // An older copy of the data comes back: the stream is at version 1 again.
    let stream = StreamKeys::new("Account", "a").expect("stream");
    let mut restore = WriteBatch::new();
    restore.delete(stream.event(2)).delete(stream.event(3));
    kv.write(restore).await.expect("restore");

    let appended = store
        .append("Account", "a", 1, &deposit(7))
        .await
        .expect("an append at the version now stored lands");
    assert_eq!(appended.first_version, 2);
    let stale = store.append("Account", "a", 1, &deposit(8)).await;
    assert!(
        matches!(
            stale,
            Err(eventkv::EventStoreError::Conflict { actual: 2, .. })
        ),
        "{stale:?}"
    );
}

/// A stream's queued appends keep their order: when one does not fit in the batch being
/// formed, the one behind it (the next version) waits too, instead of being written first
/// and refused.
#[tokio::test]
async fn an_append_that_does_not_fit_keeps_its_stream_in_order() {
    let kv = Arc::new(SlowWrites::default());
    let store = KvEventStore::new(Arc::clone(&kv));
    let many = |count: u64| -> Vec<NewEvent> { (0..count).flat_map(deposit).collect() };
    let (lead, large, next, after) = (deposit(1), many(8000), many(500), deposit(2));

    let mut first = pin!(store.append("Account", "lead", 0, &lead));
    assert!(first.as_mut().now_or_never().is_none(), "writing");
    let mut large = pin!(store.append("Account", "large", 0, &large));
    let mut next_one = pin!(store.append("Account", "b", 0, &next));
    let mut after_it = pin!(store.append("Account", "b", 500, &after));
    for queued in [
        large.as_mut().now_or_never(),
        next_one.as_mut().now_or_never(),
    ] {
        assert!(queued.is_none(), "queued");
    }
    assert!(after_it.as_mut().now_or_never().is_none(), "queued");
    first.await.expect("appended");
    // The large append leads next: b's 500 events do not fit beside its 8,000.
    large.await.expect("appended");
    next_one.await.expect("b's first append");
    let appended = after_it.await.expect("b's next append, after it");
    assert_eq!(appended.first_version, 501);
}
