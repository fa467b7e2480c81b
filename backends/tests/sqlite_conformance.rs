//! The conformance suite on SQLite: private in-memory databases (`sqlite::memory:`), whose
//! one connection reads and writes, and files, read through a pool of connections and
//! written through one.
#![cfg(feature = "sqlite")]

use std::sync::atomic::{AtomicUsize, Ordering};

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

struct SqliteFile {
    dir: tempfile::TempDir,
    next: AtomicUsize,
}

impl EngineFactory for SqliteFile {
    type Kv = SqliteKv;

    async fn create(&self) -> SqliteKv {
        let path = self.dir.path().join(format!(
            "{}.sqlite",
            self.next.fetch_add(1, Ordering::Relaxed)
        ));
        SqliteKv::open(&SqliteTarget::File(path), SqliteSynchronous::Normal)
            .await
            .expect("open a SQLite file")
    }
}

fn sqlite_file() -> SqliteFile {
    SqliteFile {
        dir: tempfile::tempdir().expect("temp dir"),
        next: AtomicUsize::new(0),
    }
}

mod memory {
    use super::*;

    eventkv::conformance_tests!(
        tokio::test(flavor = "multi_thread", worker_threads = 2),
        SqliteMemory
    );
}

mod file {
    use super::*;

    eventkv::conformance_tests!(
        tokio::test(flavor = "multi_thread", worker_threads = 2),
        sqlite_file()
    );
}
