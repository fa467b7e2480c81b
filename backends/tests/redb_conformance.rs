//! The conformance suite on redb files.
#![cfg(feature = "redb")]

mod common;

eventkv::conformance_tests!(
    tokio::test(flavor = "multi_thread", worker_threads = 2),
    common::TempDirFactory::new("redb", |path| async move {
        eventkv_backends::RedbKv::open(&path, eventkv_backends::RedbOptions::default())
            .await
            .expect("open redb")
    })
);
