//! The conformance suite on redb files.
#![cfg(feature = "redb")]

use std::sync::atomic::{AtomicUsize, Ordering};

use eventkv::testkit::EngineFactory;
use eventkv_backends::{RedbKv, RedbOptions};

struct RedbFactory {
    dir: tempfile::TempDir,
    next: AtomicUsize,
}

impl EngineFactory for RedbFactory {
    type Kv = RedbKv;

    async fn create(&self) -> RedbKv {
        let path = self.dir.path().join(format!(
            "{}.redb",
            self.next.fetch_add(1, Ordering::Relaxed)
        ));
        RedbKv::open(&path, RedbOptions::default())
            .await
            .expect("open redb")
    }
}

fn redb() -> RedbFactory {
    RedbFactory {
        dir: tempfile::tempdir().expect("temp dir"),
        next: AtomicUsize::new(0),
    }
}

eventkv::conformance_tests!(
    tokio::test(flavor = "multi_thread", worker_threads = 2),
    redb()
);
