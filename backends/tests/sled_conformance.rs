//! The conformance suite on sled files.
#![cfg(feature = "sled")]

use std::sync::atomic::{AtomicUsize, Ordering};

use eventkv::testkit::EngineFactory;
use eventkv_backends::SledKv;

struct SledFactory {
    dir: tempfile::TempDir,
    next: AtomicUsize,
}

impl EngineFactory for SledFactory {
    type Kv = SledKv;

    async fn create(&self) -> SledKv {
        let path = self.dir.path().join(format!(
            "{}.sled",
            self.next.fetch_add(1, Ordering::Relaxed)
        ));
        SledKv::open(&path).await.expect("open sled")
    }
}

fn sled() -> SledFactory {
    SledFactory {
        dir: tempfile::tempdir().expect("temp dir"),
        next: AtomicUsize::new(0),
    }
}

eventkv::conformance_tests!(
    tokio::test(flavor = "multi_thread", worker_threads = 2),
    sled()
);
