//! eventkv engines, each behind a cargo feature, each a thin adapter of
//! [`eventkv::OrderedKv`]: sled, redb, SQLite, PostgreSQL and etcd.
//!
//! A deployment picks its engine by configuration: [`open`] turns a URL into a ready
//! engine, so changing engines is changing one string.
//!
//! | URL | engine |
//! | --- | --- |
//! | `memory:` | [`eventkv::MemoryKv`] |
//! | `sled:PATH` | [`SledKv`] (feature `sled`) |
//! | `redb:PATH[?durability=immediate\|none&cache_mib=N]` | [`RedbKv`] (feature `redb`) |
//! | `sqlite:PATH[?synchronous=full\|normal]`, `sqlite::memory:` | [`SqliteKv`] (feature `sqlite`) |
//! | `postgres://…[?schema=S&table=T]`, `postgresql://…` | [`PostgresKv`] (feature `postgres`) |
//! | `etcd://HOST:PORT[,HOST:PORT…]/PREFIX[?timeout_ms=N&max_txn_ops=N&max_request_bytes=N]` | `EtcdKv` (feature `etcd`, not on by default: it needs `protoc` to build) |
//!
//! The list of engines is [`ENGINES`]: adding one is its file, its feature and its line
//! in [`engines!`].

#[cfg(any(feature = "sled", feature = "redb", feature = "sqlite"))]
mod blocking;
mod engines;
mod error;
#[cfg(any(feature = "sled", feature = "redb"))]
mod held;
mod memory;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
mod url;

use engines::declare_engines;
engines!(declare_engines);

pub use engines::{Engine, Scratch, accepted_urls, engine};
pub use error::OpenError;
pub use url::{EngineUrl, Location, redact};

use eventkv::DynKv;

/// Opens the engine `url` names, ready to use.
///
/// ```
/// # tokio_test_block_on(async {
/// let kv = eventkv_backends::open("memory:").await?;
/// let events = eventkv::KvEventStore::new(kv);
/// # Ok::<(), eventkv_backends::OpenError>(()) });
/// # fn tokio_test_block_on<F: std::future::Future<Output = Result<(), eventkv_backends::OpenError>>>(f: F) {
/// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f).unwrap()
/// # }
/// ```
pub async fn open(url: &str) -> Result<DynKv, OpenError> {
    EngineUrl::parse(url)?.open().await
}

/// Opens the store `url` names, which must exist already: a file, directory, table or
/// prefix that is not there is [`OpenError::Missing`], and nothing is created. For tools
/// that read a store, where a mistyped path must not read as an empty store.
pub async fn open_existing(url: &str) -> Result<DynKv, OpenError> {
    EngineUrl::parse(url)?.open_existing().await
}

/// Removes the store `url` names and everything in it (a file, directory, table or key
/// prefix; nothing for `memory:`). A store that is not there is no error. For scratch
/// stores of tests and benchmarks: nothing asks for confirmation.
pub async fn destroy(url: &str) -> Result<(), OpenError> {
    EngineUrl::parse(url)?.destroy().await
}
