//! The conformance suite on SQLite: private in-memory databases (`sqlite::memory:`).
#![cfg(feature = "sqlite")]

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
