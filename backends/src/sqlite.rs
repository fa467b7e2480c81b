//! [`SqliteKv`]: one SQLite file (or a private in-memory database) through sqlx.
//!
//! Table `eventkv (key BLOB PRIMARY KEY, value BLOB) WITHOUT ROWID`, WAL journal. A batch is
//! one `BEGIN IMMEDIATE` transaction: its checks are read under the write lock, then its
//! deletes and upserts run as multi-row statements.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use eventkv::{
    BuildBatch, Direction, FinalMutations, KeyRange, KvError, KvPage, OrderedKv, WriteBatch,
    first_failed_check,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{AssertSqlSafe, Connection, Row, SqliteConnection};

use crate::error::OpenError;
use crate::options::SqliteSynchronous;
use crate::sql::{fill_page, first_bytes, require_tokio, scan_statement, sql_limit};
use crate::url::SqliteTarget;

const ENGINE: &str = "sqlite";
/// How long a writer waits for another (process or connection) to release the write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// How many rows the connection thread may send ahead of the reader: a full scan page.
const ROW_BUFFER: usize = 4096;

/// sqlx's error as a [`KvError`]: a full disk (SQLITE_FULL) is [`KvError::StorageFull`];
/// a busy or locked database is retryable.
fn engine_error(error: sqlx::Error) -> KvError {
    match primary_code(&error) {
        Some(SQLITE_FULL) => KvError::StorageFull {
            engine: ENGINE,
            message: error.to_string(),
        },
        Some(SQLITE_BUSY | SQLITE_LOCKED) => KvError::from_source(ENGINE, true, error),
        _ => KvError::from_source(ENGINE, false, error),
    }
}

/// SQLite's primary result code: the low byte of its extended code.
fn primary_code(error: &sqlx::Error) -> Option<i32> {
    error
        .as_database_error()
        .and_then(|e| e.code())
        .and_then(|code| code.parse::<i32>().ok())
        .map(|code| code & 0xff)
}

const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
const SQLITE_FULL: i32 = 13;
const SQLITE_CANTOPEN: i32 = 14;

/// An engine on one SQLite database: a single file, many readers, one writer at a time
/// (across processes too).
#[derive(Clone, Debug)]
pub struct SqliteKv {
    pool: SqlitePool,
}

impl SqliteKv {
    /// Opens (or creates) the database.
    pub async fn open(
        target: &SqliteTarget,
        synchronous: SqliteSynchronous,
    ) -> Result<Self, OpenError> {
        require_tokio(ENGINE).map_err(|message| OpenError::Engine {
            engine: ENGINE,
            message,
        })?;
        let synchronous = match synchronous {
            SqliteSynchronous::Full => sqlx::sqlite::SqliteSynchronous::Full,
            SqliteSynchronous::Normal => sqlx::sqlite::SqliteSynchronous::Normal,
        };
        let (options, pool) = match target {
            // One connection: a private in-memory database lives as long as it does.
            SqliteTarget::Memory => {
                let options =
                    SqliteConnectOptions::from_str("sqlite::memory:").map_err(|error| {
                        OpenError::Engine {
                            engine: ENGINE,
                            message: error.to_string(),
                        }
                    })?;
                let pool = SqlitePoolOptions::new()
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .test_before_acquire(false);
                (options, pool)
            }
            SqliteTarget::File(path) => {
                let options = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal);
                (
                    options,
                    SqlitePoolOptions::new()
                        .max_connections(4)
                        .test_before_acquire(false),
                )
            }
        };
        let options = options
            .synchronous(synchronous)
            .busy_timeout(BUSY_TIMEOUT)
            .row_buffer_size(ROW_BUFFER);
        let open_error = |error: sqlx::Error| match target {
            SqliteTarget::File(path) if primary_code(&error) == Some(SQLITE_CANTOPEN) => {
                OpenError::Engine {
                    engine: ENGINE,
                    message: format!(
                        "cannot open or create {} (does its directory exist, and may this process write there?): {error}",
                        path.display()
                    ),
                }
            }
            SqliteTarget::File(path) => OpenError::NotADatabase {
                engine: ENGINE,
                path: path.clone(),
                message: error.to_string(),
            },
            SqliteTarget::Memory => OpenError::Engine {
                engine: ENGINE,
                message: error.to_string(),
            },
        };
        let pool = pool.connect_with(options).await.map_err(open_error)?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS eventkv (key BLOB PRIMARY KEY NOT NULL, value BLOB NOT NULL) WITHOUT ROWID",
        )
        .execute(&pool)
        .await
        .map_err(open_error)?;
        Ok(SqliteKv { pool })
    }
}

impl OrderedKv for SqliteKv {
    async fn get(&self, key: &[u8]) -> Result<Option<Bytes>, KvError> {
        require_tokio(ENGINE).map_err(|message| KvError::engine(ENGINE, message))?;
        let row = sqlx::query("SELECT value FROM eventkv WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await;
        row.and_then(first_bytes).map_err(engine_error)
    }

    async fn scan(
        &self,
        range: &KeyRange,
        direction: Direction,
        limit: usize,
    ) -> Result<KvPage, KvError> {
        require_tokio(ENGINE).map_err(|message| KvError::engine(ENGINE, message))?;
        if range.is_empty() || limit == 0 {
            return Ok(KvPage::default());
        }
        let (sql, binds) = scan_statement("eventkv", range, direction, &mut || "?".to_owned());
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for bind in &binds {
            query = query.bind(&bind[..]);
        }
        let rows = query.bind(sql_limit(limit)).fetch(&self.pool);
        fill_page(rows).await.map_err(engine_error)
    }

    async fn write(&self, batch: WriteBatch) -> Result<(), KvError> {
        self.write_with(Vec::new(), Box::new(move |_: &[Option<Bytes>]| Some(batch)))
            .await
            .map(drop)
    }

    /// Reads `reads` under the write lock: writers of other connections and processes
    /// queue on the lock, and none can change them before the batch is applied.
    async fn write_with<'a>(
        &'a self,
        reads: Vec<Bytes>,
        build: BuildBatch<'a>,
    ) -> Result<bool, KvError> {
        require_tokio(ENGINE).map_err(|message| KvError::engine(ENGINE, message))?;
        let mut connection = self.pool.acquire().await.map_err(engine_error)?;
        let result = write_on(&mut connection, &reads, build).await;
        if matches!(&result, Err(error) if !matches!(error, KvError::Conflict { .. })) {
            // SQLite may have rolled the transaction back by itself (a full disk, an I/O
            // error), and sqlx then fails its own rollback and keeps counting the
            // connection as inside a transaction, refusing every later BEGIN on it: close
            // it instead of returning it to the pool (closing also rolls back).
            connection.close_on_drop();
        }
        result
    }
}

/// The current values of `keys`, read in `connection`'s transaction.
async fn read_keys(
    connection: &mut SqliteConnection,
    keys: &[&Bytes],
) -> Result<HashMap<Vec<u8>, Vec<u8>>, KvError> {
    let mut current = HashMap::with_capacity(keys.len());
    for chunk in chunks(keys) {
        let sql = format!(
            "SELECT key, value FROM eventkv WHERE key IN ({})",
            placeholders(chunk.len())
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for key in chunk {
            query = query.bind(&key[..]);
        }
        for row in query
            .fetch_all(&mut *connection)
            .await
            .map_err(engine_error)?
        {
            let key: Vec<u8> = row.try_get(0).map_err(engine_error)?;
            current.insert(key, row.try_get(1).map_err(engine_error)?);
        }
    }
    Ok(current)
}

/// In one `BEGIN IMMEDIATE` transaction on `connection`: reads `reads`, builds the batch
/// from them, and applies it.
async fn write_on(
    connection: &mut SqliteConnection,
    reads: &[Bytes],
    build: BuildBatch<'_>,
) -> Result<bool, KvError> {
    // Dropping the transaction without commit rolls it back: nothing is half-applied.
    let mut tx = connection
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(engine_error)?;
    let read: Vec<&Bytes> = reads.iter().collect();
    let current = read_keys(&mut tx, &read).await?;
    let values: Vec<Option<Bytes>> = reads
        .iter()
        .map(|key| {
            current
                .get(&key[..])
                .map(|value| Bytes::copy_from_slice(value))
        })
        .collect();
    let Some(batch) = build(&values) else {
        return Ok(false);
    };
    let (checks, mutations) = batch.into_parts();
    if !checks.is_empty() {
        let keys: Vec<&Bytes> = checks.iter().map(|(key, _)| key).collect();
        let current = read_keys(&mut tx, &keys).await?;
        let failed = first_failed_check(&checks, |key| Ok::<_, KvError>(current.get(key)))?;
        if let Some(key) = failed {
            return Err(KvError::Conflict { key: key.clone() });
        }
    }
    let FinalMutations { upserts, deletes } = FinalMutations::new(mutations);
    for chunk in chunks(&deletes) {
        let sql = format!(
            "DELETE FROM eventkv WHERE key IN ({})",
            placeholders(chunk.len())
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for key in chunk {
            query = query.bind(&key[..]);
        }
        query.execute(&mut *tx).await.map_err(engine_error)?;
    }
    for chunk in chunks(&upserts) {
        let rows = vec!["(?, ?)"; chunk.len()].join(", ");
        let sql = format!(
            "INSERT INTO eventkv (key, value) VALUES {rows} ON CONFLICT(key) DO UPDATE SET value = excluded.value"
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for (key, value) in chunk {
            query = query.bind(&key[..]).bind(&value[..]);
        }
        query.execute(&mut *tx).await.map_err(engine_error)?;
    }
    tx.commit()
        .await
        // A commit that finds the disk full writes no commit record: it stays StorageFull.
        .map_err(|error| engine_error(error).unconfirmed("the commit was not confirmed"))?;
    Ok(true)
}

/// The most rows one multi-row statement carries.
pub(crate) const MAX_CHUNK: usize = 256;

/// Splits `items` into chunks of at most [`MAX_CHUNK`], each a power of two long, so that
/// few distinct statements are prepared and cached.
pub(crate) fn chunks<T>(items: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let size = if rest.len() >= MAX_CHUNK {
            MAX_CHUNK
        } else {
            1 << rest.len().ilog2()
        };
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        Some(chunk)
    })
}

fn placeholders(count: usize) -> String {
    vec!["?"; count].join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_powers_of_two_and_cover_everything() {
        let items: Vec<u32> = (0..1000).collect();
        let sizes: Vec<usize> = chunks(&items).map(<[u32]>::len).collect();
        assert_eq!(sizes, vec![256, 256, 256, 128, 64, 32, 8]);
        assert_eq!(chunks(&items).flatten().copied().collect::<Vec<_>>(), items);
        assert_eq!(chunks::<u32>(&[]).count(), 0);
    }
}
