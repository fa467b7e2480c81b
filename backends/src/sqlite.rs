//! [`SqliteKv`]: one SQLite file (or a private in-memory database) through rusqlite.
//!
//! Table `eventkv (key BLOB PRIMARY KEY, value BLOB) WITHOUT ROWID`, WAL journal. Calls
//! run in place like the other embedded engines ([`blocking::run`]), each on a connection
//! whose statements are prepared once and cached: reads on a small pool of connections,
//! writes on the one writer connection. A batch is one `BEGIN IMMEDIATE` transaction: its
//! reads and checks happen under the write lock, then its mutations run in order.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use eventkv::raw::{BoxFuture, BuildBatch, Mutation, first_failed_check};
use eventkv::{
    ContextError, Direction, DynKv, ErrorKind, KeyRange, KvError, KvPage, OrderedKv, WriteBatch,
};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};

use crate::blocking;
use crate::engines::{EngineParts, Scratch, Target};
use crate::error::{OpenError, shared};
use crate::sql::{scan_statement, sql_limit};
use crate::url::{Location, Params, file_path, parse_url, remove_path};

const ENGINE: &str = "sqlite";
/// How long a writer waits for another (process or connection) to release the write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle read connections kept open: more may be opened while many reads run at once.
const IDLE_READERS: usize = 4;
/// Prepared statements cached per connection: every scan shape, the point read, the
/// mutations.
const CACHED_STATEMENTS: usize = 32;

const GET: &str = "SELECT value FROM eventkv WHERE key = ?1";
const UPSERT: &str = "INSERT INTO eventkv (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value";
const DELETE: &str = "DELETE FROM eventkv WHERE key = ?1";

/// rusqlite's error as a [`KvError`]: a full disk (SQLITE_FULL) is
/// [`KvError::StorageFull`]; a busy or locked database is unavailable (retryable); a
/// damaged file is corrupt; a read-only or forbidden one, permission denied.
fn engine_error(error: rusqlite::Error) -> KvError {
    let kind = match error.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => return KvError::storage_full(ENGINE, error),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => ErrorKind::Unavailable,
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => ErrorKind::Corrupt,
        Some(ErrorCode::PermissionDenied | ErrorCode::ReadOnly) => ErrorKind::PermissionDenied,
        _ => ErrorKind::Unexpected,
    };
    KvError::engine(ENGINE, kind, error)
}

/// An engine on one SQLite database: a single file, many readers, one writer at a time
/// (across processes too). Needs no async runtime of its own.
#[derive(Clone)]
pub struct SqliteKv {
    inner: Arc<Inner>,
}

struct Inner {
    /// The file, or `None` for a private in-memory database (its one connection is the
    /// writer, and reads use it too).
    file: Option<PathBuf>,
    synchronous: SqliteSynchronous,
    writer: Mutex<Connection>,
    /// `FILE-writers`, the queue of this file's eventkv writers (see [`WriterQueue`]).
    writer_queue: Option<WriterQueue>,
    readers: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for SqliteKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteKv")
            .field("file", &self.inner.file)
            .field("synchronous", &self.inner.synchronous)
            .finish()
    }
}

impl SqliteKv {
    /// Opens (or creates) the database.
    pub async fn open(
        target: &SqliteTarget,
        synchronous: SqliteSynchronous,
    ) -> Result<Self, OpenError> {
        let target = target.clone();
        let inner = blocking::run(ENGINE, move || open_blocking(&target, synchronous)).await?;
        Ok(SqliteKv {
            inner: Arc::new(inner),
        })
    }
}

fn open_blocking(
    target: &SqliteTarget,
    synchronous: SqliteSynchronous,
) -> Result<Inner, OpenError> {
    let open_error = |error: rusqlite::Error| match &target {
        SqliteTarget::File(path) if error.sqlite_error_code() == Some(ErrorCode::CannotOpen) => {
            let context = format!(
                "cannot open or create {} (does its directory exist, and may this process write there?)",
                path.display()
            );
            OpenError::engine(
                ENGINE,
                ErrorKind::PermissionDenied,
                ContextError::new(context, error),
            )
        }
        SqliteTarget::File(path) => OpenError::NotADatabase {
            engine: ENGINE,
            path: path.clone(),
            source: shared(error),
        },
        SqliteTarget::Memory => OpenError::engine(ENGINE, ErrorKind::Unexpected, error),
    };
    let file = match &target {
        SqliteTarget::File(path) => Some(path.clone()),
        SqliteTarget::Memory => None,
    };
    let writer = connect(file.as_deref(), synchronous).map_err(open_error)?;
    writer
        .execute_batch(
            "CREATE TABLE IF NOT EXISTS eventkv (key BLOB PRIMARY KEY NOT NULL, value BLOB NOT NULL) WITHOUT ROWID",
        )
        .map_err(open_error)?;
    let writer_queue = file.as_deref().map(WriterQueue::open).transpose()?;
    Ok(Inner {
        writer_queue,
        file,
        synchronous,
        writer: Mutex::new(writer),
        readers: Mutex::new(Vec::new()),
    })
}

/// A connection to `file` (`None`: a new private in-memory database), set up as every
/// connection of the engine is.
fn connect(file: Option<&Path>, synchronous: SqliteSynchronous) -> rusqlite::Result<Connection> {
    // No SQLITE_OPEN_URI: the path is a file name, never parsed for parameters.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = match file {
        Some(path) => Connection::open_with_flags(path, flags)?,
        None => Connection::open_in_memory_with_flags(flags)?,
    };
    connection.busy_timeout(BUSY_TIMEOUT)?;
    connection.set_prepared_statement_cache_capacity(CACHED_STATEMENTS);
    if file.is_some() {
        // Returns the mode as a row, which `pragma_update` accepts and ignores.
        connection.pragma_update(None, "journal_mode", "WAL")?;
    }
    let synchronous = match synchronous {
        SqliteSynchronous::Full => "FULL",
        SqliteSynchronous::Normal => "NORMAL",
    };
    connection.pragma_update(None, "synchronous", synchronous)?;
    Ok(connection)
}

/// An exclusive lock on the file `FILE-writers` beside the database, taken by every eventkv
/// writer of the file before `BEGIN IMMEDIATE`. SQLite's own write lock has no queue: a
/// writer that finds it taken sleeps (1 ms, then 2, 5, 10… up to 100 ms) and tries again,
/// far longer than a commit holds it (~0.1 ms), so the process that just committed kept it
/// and a second process added nothing. Waiters of a file lock sleep in the kernel and are
/// woken as it is released. SQLite's lock still decides: other programs need not take this
/// one.
struct WriterQueue {
    path: PathBuf,
    file: File,
}

/// A writer's turn: the queue's lock, released when dropped.
struct Turn<'q>(&'q WriterQueue);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        // Closing the file would release it too; an unlock that fails leaves it to that.
        let _ = self.0.file.unlock();
    }
}

impl WriterQueue {
    fn open(database: &Path) -> Result<Self, OpenError> {
        let mut path = database.as_os_str().to_owned();
        path.push("-writers");
        let path = PathBuf::from(path);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|error| {
                let context = format!("cannot open or create {}", path.display());
                OpenError::engine(
                    ENGINE,
                    ErrorKind::PermissionDenied,
                    ContextError::new(context, error),
                )
            })?;
        Ok(WriterQueue { path, file })
    }

    /// Waits for this writer's turn.
    fn wait(&self) -> Result<Turn<'_>, KvError> {
        self.file.lock().map_err(|error| {
            let context = format!("cannot lock {}", self.path.display());
            KvError::engine(
                ENGINE,
                ErrorKind::Unexpected,
                ContextError::new(context, error),
            )
        })?;
        Ok(Turn(self))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic never leaves a connection mid-transaction for long: a write rolls back
    // what it finds open before it begins.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inner {
    /// Runs `read` on a read connection: one of the pool, or a new one if all are busy.
    fn read<T>(&self, read: impl FnOnce(&Connection) -> Result<T, KvError>) -> Result<T, KvError> {
        let Some(file) = &self.file else {
            return read(&lock(&self.writer));
        };
        let idle = lock(&self.readers).pop();
        let connection = match idle {
            Some(connection) => connection,
            None => connect(Some(file), self.synchronous).map_err(engine_error)?,
        };
        let result = read(&connection);
        let mut readers = lock(&self.readers);
        if readers.len() < IDLE_READERS {
            readers.push(connection);
        }
        result
    }
}

/// Column `index` of `row`, which the table declares a BLOB.
fn blob<'r>(row: &'r rusqlite::Row<'_>, index: usize) -> Result<&'r [u8], KvError> {
    match row.get_ref(index).map_err(engine_error)? {
        ValueRef::Blob(bytes) => Ok(bytes),
        other => Err(KvError::engine(
            ENGINE,
            ErrorKind::Corrupt,
            format!(
                "the eventkv table holds a {:?} where a BLOB belongs: was it written by another program?",
                other.data_type()
            ),
        )),
    }
}

fn get_blocking(connection: &Connection, key: &[u8]) -> Result<Option<Bytes>, KvError> {
    let mut statement = connection.prepare_cached(GET).map_err(engine_error)?;
    let mut rows = statement.query([key]).map_err(engine_error)?;
    match rows.next().map_err(engine_error)? {
        Some(row) => Ok(Some(Bytes::copy_from_slice(blob(row, 0)?))),
        None => Ok(None),
    }
}

fn scan_blocking(
    connection: &Connection,
    range: &KeyRange,
    direction: Direction,
    limit: usize,
) -> Result<KvPage, KvError> {
    let mut page = KvPage::default();
    let (sql, binds) = scan_statement("eventkv", range, direction, &mut || "?".to_owned());
    let mut statement = connection.prepare_cached(&sql).map_err(engine_error)?;
    for (index, bind) in binds.iter().enumerate() {
        statement
            .raw_bind_parameter(index + 1, &bind[..])
            .map_err(engine_error)?;
    }
    statement
        .raw_bind_parameter(binds.len() + 1, sql_limit(limit))
        .map_err(engine_error)?;
    let mut rows = statement.raw_query();
    while let Some(row) = rows.next().map_err(engine_error)? {
        page.push(blob(row, 0)?, blob(row, 1)?);
        if page.is_full() {
            break;
        }
    }
    Ok(page)
}

/// In one `BEGIN IMMEDIATE` transaction on the writer: reads `reads`, builds the batch
/// from them, checks it and applies it.
fn write_blocking(
    connection: &mut Connection,
    reads: &[Bytes],
    build: BuildBatch<'_>,
) -> Result<bool, KvError> {
    if !connection.is_autocommit() {
        // A transaction left open (SQLite keeps some after an I/O error): end it first.
        connection.execute_batch("ROLLBACK").map_err(engine_error)?;
    }
    // Dropping the transaction without commit rolls it back: nothing is half-applied.
    let tx = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(engine_error)?;
    let values = reads
        .iter()
        .map(|key| get_blocking(&tx, key))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(batch) = build(&values) else {
        return Ok(false);
    };
    let (checks, mutations) = batch.into_parts();
    let failed = first_failed_check(&checks, |key| get_blocking(&tx, key))?;
    if let Some(key) = failed {
        return Err(KvError::Conflict { key: key.clone() });
    }
    {
        let mut upsert = tx.prepare_cached(UPSERT).map_err(engine_error)?;
        let mut delete = tx.prepare_cached(DELETE).map_err(engine_error)?;
        for mutation in &mutations {
            match mutation {
                Mutation::Put { key, value } => upsert.execute([&key[..], &value[..]]),
                Mutation::Delete { key } => delete.execute([&key[..]]),
            }
            .map_err(engine_error)?;
        }
    }
    tx.commit()
        // A commit that finds the disk full writes no commit record: it stays StorageFull.
        .map_err(|error| engine_error(error).unconfirmed("the commit was not confirmed"))?;
    Ok(true)
}

impl OrderedKv for SqliteKv {
    async fn get(&self, key: &[u8]) -> Result<Option<Bytes>, KvError> {
        let inner = Arc::clone(&self.inner);
        let key = key.to_vec();
        blocking::run(ENGINE, move || {
            inner.read(|connection| get_blocking(connection, &key))
        })
        .await
    }

    async fn scan(
        &self,
        range: &KeyRange,
        direction: Direction,
        limit: usize,
    ) -> Result<KvPage, KvError> {
        if range.is_empty() || limit == 0 {
            return Ok(KvPage::default());
        }
        let inner = Arc::clone(&self.inner);
        let range = range.clone();
        blocking::run(ENGINE, move || {
            inner.read(|connection| scan_blocking(connection, &range, direction, limit))
        })
        .await
    }

    /// One read connection, one cached statement.
    async fn get_many<'a>(&'a self, keys: &'a [Bytes]) -> Result<KvPage, KvError> {
        let inner = Arc::clone(&self.inner);
        let keys = keys.to_vec();
        blocking::run(ENGINE, move || {
            inner.read(|connection| {
                let mut page = KvPage::default();
                let mut statement = connection.prepare_cached(GET).map_err(engine_error)?;
                for key in &keys {
                    if page.is_full() {
                        break;
                    }
                    let mut rows = statement.query([&key[..]]).map_err(engine_error)?;
                    if let Some(row) = rows.next().map_err(engine_error)? {
                        page.push(key, blob(row, 0)?);
                    }
                }
                Ok(page)
            })
        })
        .await
    }

    async fn write(&self, batch: WriteBatch) -> Result<(), KvError> {
        eventkv::raw::write_built(self, batch).await
    }

    /// Reads `reads` under the write lock: writers of other connections and processes
    /// queue on the lock, and none can change them before the batch is applied.
    async fn write_with<'a>(
        &'a self,
        reads: Vec<Bytes>,
        build: BuildBatch<'a>,
    ) -> Result<bool, KvError> {
        let inner = Arc::clone(&self.inner);
        blocking::run_building(ENGINE, build, move |build| {
            let mut writer = lock(&inner.writer);
            let _turn = inner
                .writer_queue
                .as_ref()
                .map(WriterQueue::wait)
                .transpose()?;
            write_blocking(&mut writer, &reads, build)
        })
        .await
    }
}

/// SQLite's `synchronous` pragma, in WAL mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SqliteSynchronous {
    /// fsync on every commit: a committed batch survives power loss. The default.
    #[default]
    Full,
    /// fsync at checkpoints only: consistent after power loss, but the last commits may
    /// be lost. Never loses data on a process crash.
    Normal,
}

/// Where an SQLite database lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SqliteTarget {
    /// A private in-memory database.
    Memory,
    /// A file.
    File(PathBuf),
}

/// SQLite in the list of engines: `sqlite:PATH`, a file, or `sqlite::memory:`.
pub(crate) const ENTRY: EngineParts = EngineParts {
    forms: "sqlite:PATH[?synchronous=full|normal], sqlite::memory:",
    parse: |text| Ok(Box::new(parse(text)?)),
    scratch: Scratch::Path {
        url: |directory, unique| format!("sqlite:{directory}/{unique}.sqlite"),
    },
    shared_by_processes: true,
};

/// `sqlite:PATH[?synchronous=full|normal]` or `sqlite::memory:`
#[derive(Debug, PartialEq, Eq)]
struct SqliteUrl {
    target: SqliteTarget,
    synchronous: SqliteSynchronous,
}

fn parse(text: &str) -> Result<SqliteUrl, String> {
    let url = &parse_url(text)?;
    let params = Params::of(url);
    params.only(&["synchronous"])?;
    let synchronous = match params.get("synchronous") {
        None | Some("full") => SqliteSynchronous::Full,
        Some("normal") => SqliteSynchronous::Normal,
        Some(other) => {
            return Err(format!("synchronous must be full or normal, not {other:?}"));
        }
    };
    let target = match url.path() {
        ":memory:" if !url.has_host() => SqliteTarget::Memory,
        _ => SqliteTarget::File(file_path(url)?),
    };
    Ok(SqliteUrl {
        target,
        synchronous,
    })
}

impl Target for SqliteUrl {
    fn location(&self) -> Location {
        match &self.target {
            SqliteTarget::Memory => Location::Memory,
            SqliteTarget::File(path) => Location::Path(path.clone()),
        }
    }

    fn open(&self, _existing: bool) -> BoxFuture<'_, Result<DynKv, OpenError>> {
        Box::pin(async {
            Ok(DynKv::new(
                SqliteKv::open(&self.target, self.synchronous).await?,
            ))
        })
    }

    /// Removes the database with its write-ahead log, shared memory and writers' queue.
    fn destroy(&self) -> BoxFuture<'_, Result<(), OpenError>> {
        Box::pin(async {
            let SqliteTarget::File(path) = &self.target else {
                return Ok(());
            };
            for suffix in ["-wal", "-shm", "-writers"] {
                let mut side = path.clone().into_os_string();
                side.push(suffix);
                remove_path(ENGINE, Path::new(&side))?;
            }
            remove_path(ENGINE, path)
        })
    }
}

#[cfg(test)]
mod url_tests {
    use super::*;

    #[test]
    fn urls_parse_with_their_options() {
        assert_eq!(
            parse("sqlite::memory:"),
            Ok(SqliteUrl {
                target: SqliteTarget::Memory,
                synchronous: SqliteSynchronous::Full
            })
        );
        assert_eq!(
            parse("sqlite:///tmp/x.db?synchronous=normal"),
            Ok(SqliteUrl {
                target: SqliteTarget::File("/tmp/x.db".into()),
                synchronous: SqliteSynchronous::Normal
            })
        );
        crate::url::assert_refused(parse, &[
            ("sqlite:x?journal=wal", "unknown parameter \"journal\""),
            ("sqlite:x?synchronous=off", "synchronous must be full or normal"),
        ]);
    }
}
