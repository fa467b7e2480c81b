//! SQLite beyond the suite every engine runs (`conformance.rs`, on files): the suite on
//! private in-memory databases (`sqlite::memory:`), whose one connection reads and writes,
//! and the writers' queue of a file.
#![cfg(feature = "sqlite")]

mod common;

use eventkv::testkit::EngineFactory;
use eventkv_backends::{SqliteKv, SqliteSynchronous, SqliteTarget};

struct SqliteMemory;

impl EngineFactory for SqliteMemory {
    type Kv = SqliteKv;

    async fn create(&self) -> SqliteKv {
        SqliteKv::open(&SqliteTarget::Memory, SqliteSynchronous::Full)
            .await
            .expect("open sqlite::memory:")
    }
}

eventkv::conformance_tests!(
    tokio::test(flavor = "multi_thread", worker_threads = 2),
    SqliteMemory
);

/// Writers of a file queue on `FILE-writers` (a lock the kernel hands to the next waiter
/// as it is released), not on SQLite's lock alone (polled with sleeps of up to 100 ms).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_waits_its_turn_in_the_writers_queue() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("queued.sqlite");
    let kv = SqliteKv::open(&SqliteTarget::File(path.clone()), SqliteSynchronous::Full)
        .await
        .expect("open");
    let queue = std::fs::File::open(dir.path().join("queued.sqlite-writers"))
        .expect("the writers' queue is beside the database");
    queue.lock().expect("another writer's turn");
    let writer = tokio::spawn({
        let kv = kv.clone();
        async move {
            let mut batch = eventkv::WriteBatch::new();
            batch.put(&b"key"[..], &b"value"[..]);
            eventkv::OrderedKv::write(&kv, batch).await
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!writer.is_finished(), "the writer waits for its turn");
    queue.unlock().expect("the turn ends");
    tokio::time::timeout(std::time::Duration::from_secs(10), writer)
        .await
        .expect("the writer is woken")
        .expect("writer task")
        .expect("the write lands");
    let value = eventkv::OrderedKv::get(&kv, b"key").await.expect("get");
    assert_eq!(value.as_deref(), Some(&b"value"[..]));
}
