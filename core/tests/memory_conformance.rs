//! The conformance suite on `MemoryKv`.

eventkv::conformance_tests!(tokio::test, eventkv::testkit::MemoryFactory);
