//! The conformance suite on PostgreSQL: a real server (`EVENTKV_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`), one schema per test, dropped afterwards.
#![cfg(feature = "postgres")]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use eventkv::testkit::EngineFactory;
use eventkv_backends::{PostgresKv, PostgresOptions};

/// Makes a table per engine in a schema of its own, dropped with the factory.
struct PostgresFactory {
    schema: String,
    next: AtomicUsize,
}

impl PostgresFactory {
    async fn new(test: &str) -> Option<Self> {
        common::require_postgres(test).await.ok()?;
        Some(PostgresFactory {
            schema: common::unique_schema("eventkv_test"),
            next: AtomicUsize::new(0),
        })
    }
}

impl Drop for PostgresFactory {
    fn drop(&mut self) {
        common::drop_schema(&self.schema);
    }
}

impl EngineFactory for PostgresFactory {
    type Kv = PostgresKv;

    async fn create(&self) -> PostgresKv {
        let options = PostgresOptions {
            schema: self.schema.clone(),
            table: format!("kv_{}", self.next.fetch_add(1, Ordering::Relaxed)),
        };
        PostgresKv::connect(&common::postgres_url(), options)
            .await
            .expect("connect to PostgreSQL")
    }
}

eventkv::conformance_tests!(
    tokio::test(flavor = "multi_thread", worker_threads = 2),
    match PostgresFactory::new(module_path!()).await {
        Some(factory) => factory,
        None => return,
    }
);
