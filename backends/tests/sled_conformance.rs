//! The conformance suite on sled directories.
#![cfg(feature = "sled")]

mod common;

eventkv::conformance_tests!(
    tokio::test(flavor = "multi_thread", worker_threads = 2),
    common::TempDirFactory::new("sled", |path| async move {
        eventkv_backends::SledKv::open(&path)
            .await
            .expect("open sled")
    })
);
