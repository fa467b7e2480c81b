//! Fresh stores for every case, on every engine, removed afterwards.

use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context;
use eventkv::{Direction, DynKv, KeyRange, OrderedKv};
use sqlx::Connection;

use crate::cli::EngineName;

/// Makes fresh, empty stores: a new file or directory per store, a new PostgreSQL table
/// per store in a schema of this run, dropped by [`Stores::cleanup`].
pub struct Stores {
    dir: tempfile::TempDir,
    postgres: String,
    schema: String,
    next: AtomicUsize,
}

impl Stores {
    /// Stores under a new temporary directory and a new PostgreSQL schema.
    pub fn new(postgres: &str) -> anyhow::Result<Self> {
        Ok(Stores {
            dir: tempfile::tempdir().context("creating a temporary directory")?,
            postgres: postgres.to_owned(),
            schema: format!("eventkv_bench_{}", std::process::id()),
            next: AtomicUsize::new(0),
        })
    }

    /// The URL of a new, empty store of `engine`.
    pub fn url(&self, engine: EngineName) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let file = |name: &str| {
            self.dir
                .path()
                .join(format!("{n}.{name}"))
                .display()
                .to_string()
        };
        match engine {
            EngineName::Memory => "memory:".into(),
            EngineName::Redb => format!("redb:{}", file("redb")),
            EngineName::Sled => format!("sled:{}", file("sled")),
            EngineName::Sqlite => format!("sqlite:{}", file("sqlite")),
            EngineName::Postgres => {
                format!("{}?schema={}&table=case_{n}", self.postgres, self.schema)
            }
        }
    }

    /// A new, empty store of `engine`.
    pub async fn fresh(&self, engine: EngineName) -> anyhow::Result<DynKv> {
        let url = self.url(engine);
        eventkv_backends::open(&url)
            .await
            .with_context(|| format!("opening {}", eventkv_backends::redact(&url)))
    }

    /// Checks that PostgreSQL answers, within a few seconds.
    pub async fn postgres_reachable(&self) -> anyhow::Result<()> {
        let connect = sqlx::PgConnection::connect(&self.postgres);
        let shown = eventkv_backends::redact(&self.postgres);
        let connection = tokio::time::timeout(std::time::Duration::from_secs(5), connect)
            .await
            .map_err(|_| anyhow::anyhow!("PostgreSQL at {shown} did not answer within 5 s"))?
            .with_context(|| format!("PostgreSQL at {shown} is unreachable"))?;
        connection.close().await.ok();
        Ok(())
    }

    /// Drops the run's PostgreSQL schema, if it was used.
    pub async fn cleanup(&self, used_postgres: bool) {
        if !used_postgres {
            return;
        }
        if let Ok(mut connection) = sqlx::PgConnection::connect(&self.postgres).await {
            let statement = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema);
            let _ = sqlx::query(sqlx::AssertSqlSafe(statement))
                .execute(&mut connection)
                .await;
        }
    }
}

/// The bytes of every key and value `kv` holds.
pub async fn stored_bytes(kv: &DynKv) -> anyhow::Result<u64> {
    let mut range = KeyRange::all();
    let mut bytes = 0;
    loop {
        let page = kv.scan(&range, Direction::Forward, 4096).await?;
        bytes += page
            .iter()
            .map(|(key, value)| (key.len() + value.len()) as u64)
            .sum::<u64>();
        match page.last_key() {
            Some(last) if page.may_have_more(4096) => {
                range = range.after_page(last, Direction::Forward);
            }
            _ => return Ok(bytes),
        }
    }
}
