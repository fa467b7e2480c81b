//! eventkv engines, each behind a cargo feature, each a thin adapter of
//! [`eventkv::OrderedKv`]: sled, redb, SQLite and PostgreSQL.
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

#[cfg(any(feature = "sled", feature = "redb", feature = "sqlite"))]
mod blocking;
mod error;
#[cfg(any(feature = "sled", feature = "redb"))]
mod held;
mod options;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redb")]
mod redb;
#[cfg(feature = "sled")]
mod sled;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;
mod url;

pub use error::OpenError;
pub use options::{PostgresOptions, RedbDurability, RedbOptions, SqliteSynchronous};
#[cfg(feature = "postgres")]
pub use postgres::PostgresKv;
#[cfg(feature = "redb")]
pub use redb::RedbKv;
#[cfg(feature = "sled")]
pub use sled::SledKv;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteKv;
pub use url::{ACCEPTED_URLS, EngineUrl, Location, SqliteTarget, redact};

use eventkv::{DynKv, MemoryKv};

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
    open_parsed(EngineUrl::parse(url)?).await
}

/// Opens the store `url` names, which must exist already: a file, directory or
/// PostgreSQL table that is not there is [`OpenError::Missing`], and nothing is created.
/// For tools that read a store, where a mistyped path must not read as an empty store.
pub async fn open_existing(url: &str) -> Result<DynKv, OpenError> {
    let parsed = EngineUrl::parse(url)?;
    #[cfg(feature = "postgres")]
    if let EngineUrl::Postgres { url, options } = parsed {
        return Ok(DynKv::new(
            PostgresKv::connect_existing(&url, options).await?,
        ));
    }
    if let Location::Path(path) = parsed.location()
        && parsed.is_compiled_in()
        && !path.exists()
    {
        return Err(OpenError::Missing {
            engine: parsed.engine(),
            location: path.display().to_string(),
        });
    }
    open_parsed(parsed).await
}

#[cfg_attr(
    not(any(
        feature = "sled",
        feature = "redb",
        feature = "sqlite",
        feature = "postgres"
    )),
    allow(clippy::unused_async)
)]
async fn open_parsed(parsed: EngineUrl) -> Result<DynKv, OpenError> {
    tracing::debug!(engine = parsed.engine(), "opening engine");
    match parsed {
        EngineUrl::Memory => Ok(DynKv::new(MemoryKv::new())),
        #[cfg(feature = "sled")]
        EngineUrl::Sled { path } => Ok(DynKv::new(SledKv::open(&path).await?)),
        #[cfg(feature = "redb")]
        EngineUrl::Redb { path, options } => Ok(DynKv::new(RedbKv::open(&path, options).await?)),
        #[cfg(feature = "sqlite")]
        EngineUrl::Sqlite {
            target,
            synchronous,
        } => Ok(DynKv::new(SqliteKv::open(&target, synchronous).await?)),
        #[cfg(feature = "postgres")]
        EngineUrl::Postgres { url, options } => {
            Ok(DynKv::new(PostgresKv::connect(&url, options).await?))
        }
        #[allow(unreachable_patterns)]
        other => Err(OpenError::FeatureDisabled {
            engine: other.engine(),
            feature: other.engine(),
        }),
    }
}
