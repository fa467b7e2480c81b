//! [`PostgresKv`]: a table of (key BYTEA PRIMARY KEY, value BYTEA) in PostgreSQL, through sqlx.
//!
//! A batch is one transaction that first takes the table's write lock (a transaction-level
//! advisory lock), then reads its checks with `key = ANY($1)` and writes its deletes and
//! upserts with one statement each (arrays bound with `UNNEST`). Writers of the table, from
//! any number of processes, queue on the lock instead of aborting each other, and each
//! sees every write committed before it: checks hold, at READ COMMITTED, with no retry.
//! Readers never wait.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use eventkv::backoff::Backoff;
use eventkv::raw::{BoxFuture, BuildBatch, FinalMutations, MAX_SCAN_BYTES};
use eventkv::{
    Check, ContextError, Direction, DynKv, ErrorKind, KeyRange, KvError, KvPage, OrderedKv,
    WriteBatch,
};
use futures_util::{Stream, TryStreamExt};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgDatabaseError, PgPool, PgPoolOptions, PgRow, PgSeverity};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection, Postgres, Row};

use crate::engines::{EngineParts, Scratch, Target};
use crate::error::{OpenError, shared};
use crate::sql::{scan_statement, sql_limit};
use crate::url::{Location, Params, parse_url, redact};

const ENGINE: &str = "postgres";
/// How long opening waits for the server's first answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// sqlx's error as a [`KvError`], of the kind [`kind_of`] says.
fn engine_error(error: sqlx::Error) -> KvError {
    match kind_of(&error) {
        ErrorKind::StorageFull => KvError::storage_full(ENGINE, error),
        kind => KvError::engine(ENGINE, kind, error),
    }
}

/// What kind of failure a sqlx error is: a full disk (53100) is storage full; a lost
/// connection, a server shutting down or a pool timeout is unavailable and a serialization
/// failure or deadlock contended (both retryable); refused credentials or privileges are
/// permission denied; data the server found damaged is corrupt; a closed pool is closed.
fn kind_of(error: &sqlx::Error) -> ErrorKind {
    let code = error
        .as_database_error()
        .and_then(sqlx::error::DatabaseError::code);
    match code.as_deref() {
        Some("53100") => ErrorKind::StorageFull,
        Some(code) if code.starts_with("08") || code.starts_with("57P") => ErrorKind::Unavailable,
        Some(code) if code.starts_with("40") => ErrorKind::Contended,
        Some(code) if code.starts_with("28") || code == "42501" => ErrorKind::PermissionDenied,
        Some(code) if code.starts_with("XX00") => ErrorKind::Corrupt,
        Some(_) => ErrorKind::Unexpected,
        None => match error {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => ErrorKind::Unavailable,
            sqlx::Error::PoolClosed => ErrorKind::Closed,
            _ => ErrorKind::Unexpected,
        },
    }
}

/// Whether PostgreSQL aborted the transaction only because of a concurrent one.
fn is_retryable(error: &sqlx::Error) -> bool {
    let code = error
        .as_database_error()
        .and_then(sqlx::error::DatabaseError::code);
    matches!(code.as_deref(), Some("40001" | "40P01"))
}

/// The statements of one table, built once.
#[derive(Debug)]
struct Statements {
    table: String,
    get: String,
    get_many: String,
    /// The transaction and the write lock: the start of [`Statements::begin`].
    lock: String,
    apply: String,
}

impl Statements {
    fn new(options: &PostgresOptions) -> Self {
        let table = format!("\"{}\".\"{}\"", options.schema, options.table);
        Statements {
            get: format!("SELECT value FROM {table} WHERE key = $1"),
            // The entries in the order asked, up to the one that reaches $2 bytes and at
            // most $3 of them: the server sends no more than a page.
            get_many: format!(
                "SELECT key, value FROM (SELECT t.key, t.value, k.n, \
                 SUM(octet_length(t.key) + octet_length(t.value)) OVER (ORDER BY k.n \
                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before \
                 FROM UNNEST($1::bytea[]) WITH ORDINALITY AS k(key, n) \
                 JOIN {table} t ON t.key = k.key) s \
                 WHERE before IS NULL OR before < $2 ORDER BY n LIMIT $3"
            ),
            // The transaction, and the table's write lock (one per schema-qualified table),
            // held until COMMIT or ROLLBACK. Every statement after the lock sees every
            // commit made before it (READ COMMITTED takes a snapshot per statement). Its
            // statements are planned once per connection: planning the batch's statement
            // took 0.1 ms, twice its run. (The connection's `enable_seqscan = off` keeps
            // that plan on the primary key as the table grows.)
            lock: format!(
                "BEGIN ISOLATION LEVEL READ COMMITTED; \
                 SET LOCAL plan_cache_mode = force_generic_plan; \
                 SELECT pg_advisory_xact_lock(hashtextextended('eventkv write ' || {}, 0))",
                quote_literal(&table)
            ),
            // The checks ($1 keys, $2 kinds, $3 values) and, only if none fails, the
            // deletes ($4) and upserts ($5, $6): one statement, one snapshot. Answers the
            // number of the first check that fails, if one does.
            apply: format!(
                "WITH failed AS ( \
                   SELECT c.n FROM UNNEST($1::bytea[], $2::int2[], $3::bytea[]) \
                     WITH ORDINALITY AS c(key, kind, expected, n) \
                   LEFT JOIN {table} t ON t.key = c.key \
                   WHERE CASE c.kind WHEN {ABSENT} THEN t.key IS NOT NULL \
                                     WHEN {PRESENT} THEN t.key IS NULL \
                                     ELSE t.value IS DISTINCT FROM c.expected END \
                   ORDER BY c.n LIMIT 1), \
                 deleted AS ( \
                   DELETE FROM {table} WHERE key = ANY($4) AND NOT EXISTS (SELECT FROM failed)), \
                 upserted AS ( \
                   INSERT INTO {table} (key, value) \
                   SELECT * FROM UNNEST($5::bytea[], $6::bytea[]) \
                   WHERE NOT EXISTS (SELECT FROM failed) \
                   ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value) \
                 SELECT n FROM failed"
            ),
            table,
        }
    }

    /// The first round trip of a batch: the transaction, the write lock, then the values
    /// of `reads` (keys inlined as hex: the simple query protocol has no parameters).
    fn begin(&self, reads: &[Bytes]) -> String {
        if reads.is_empty() {
            return self.lock.clone();
        }
        let keys: Vec<String> = reads
            .iter()
            .map(|key| format!("decode('{}', 'hex')", hex(key)))
            .collect();
        format!(
            "{}; SELECT key, value FROM {} WHERE key IN ({})",
            self.lock,
            self.table,
            keys.join(", ")
        )
    }
}

/// The kinds of [`Check`] in the `apply` statement.
const ABSENT: i16 = 0;
const PRESENT: i16 = 1;
const EQUALS: i16 = 2;

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

/// An engine on one PostgreSQL table: many processes and machines may share it.
#[derive(Clone, Debug)]
pub struct PostgresKv {
    pool: PgPool,
    sql: Arc<Statements>,
}

impl PostgresKv {
    /// Connects to `url` (`postgres://USER@HOST:PORT/DB`) and creates the schema and table
    /// of `options` when they are missing.
    pub async fn connect(url: &str, options: PostgresOptions) -> Result<Self, OpenError> {
        Self::connect_to(url, options, true).await
    }

    /// Connects to `url`, whose table of `options` must exist: a missing one is
    /// [`OpenError::Missing`], and nothing is created.
    pub async fn connect_existing(url: &str, options: PostgresOptions) -> Result<Self, OpenError> {
        Self::connect_to(url, options, false).await
    }

    async fn connect_to(
        url: &str,
        options: PostgresOptions,
        create: bool,
    ) -> Result<Self, OpenError> {
        require_tokio(ENGINE)
            .map_err(|message| OpenError::engine(ENGINE, ErrorKind::Unsupported, message))?;
        PostgresOptions::validate_identifier(&options.schema)
            .and(PostgresOptions::validate_identifier(&options.table))
            .map_err(|reason| OpenError::Malformed {
                url: redact(url),
                reason,
            })?;
        let connect = PgConnectOptions::from_str(url).map_err(|error| OpenError::Malformed {
            url: redact(url),
            reason: error.to_string(),
        })?;
        let (host, port) = (connect.get_host().to_owned(), connect.get_port());
        let connect_error = |error: sqlx::Error| match error {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => {
                OpenError::Unreachable {
                    engine: ENGINE,
                    host: host.clone(),
                    port,
                    source: shared(error),
                }
            }
            other => {
                let kind = kind_of(&other);
                OpenError::engine(
                    ENGINE,
                    kind,
                    ContextError::new(format!("{host}:{port}"), other),
                )
            }
        };
        // One direct connection first: an unreachable server fails at once, not after the
        // pool's acquire timeout.
        let probe = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&connect))
            .await
            .map_err(|_| OpenError::Unreachable {
                engine: ENGINE,
                host: host.clone(),
                port,
                source: shared(format!(
                    "no answer within {} s (is it a PostgreSQL server, and is it overloaded?)",
                    CONNECT_TIMEOUT.as_secs()
                )),
            })?
            .map_err(connect_error)?;
        probe.close().await.map_err(connect_error)?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .test_before_acquire(false)
            // Every statement of the engine reaches rows through the primary key: a plan
            // cached while the table was small must not keep scanning it whole (measured:
            // 5.5 ms per statement at 10,000 rows, against 0.1 ms through the index).
            .after_connect(|connection, _| {
                Box::pin(async move {
                    connection.execute("SET enable_seqscan = off").await?;
                    Ok(())
                })
            })
            .connect_with(connect)
            .await
            .map_err(connect_error)?;
        let sql = Statements::new(&options);
        if create {
            create_table(&pool, &options, &sql.table)
                .await
                .map_err(|error| {
                    let kind = kind_of(&error);
                    OpenError::engine(
                        ENGINE,
                        kind,
                        ContextError::new(format!("creating {}", sql.table), error),
                    )
                })?;
        } else if !table_exists(&pool, &sql.table)
            .await
            .map_err(connect_error)?
        {
            return Err(OpenError::Missing {
                engine: ENGINE,
                location: format!("{} of {}", sql.table, redact(url)),
            });
        }
        Ok(PostgresKv {
            pool,
            sql: Arc::new(sql),
        })
    }

    /// The schema-qualified table, quoted.
    pub fn table(&self) -> &str {
        &self.sql.table
    }

    /// Drops the table and everything in it, then closes the connections.
    async fn drop_table(self) -> Result<(), sqlx::Error> {
        let statement = format!("DROP TABLE IF EXISTS {}", self.sql.table);
        sqlx::query(AssertSqlSafe(statement)).execute(&self.pool).await?;
        self.close().await;
        Ok(())
    }

    /// Closes the connections of this engine and of its clones, once each finishes what it
    /// is doing (a graceful shutdown). Later calls fail with [`ErrorKind::Closed`].
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// One transaction of three round trips: the write lock and `reads`; the batch
    /// `build` makes of them (on the first attempt: `build` is taken) with its checks and
    /// mutations; COMMIT. The batch kept in `built` for a retry checks that `reads` still
    /// hold what `build` saw.
    async fn write_once(
        &self,
        reads: &[Bytes],
        build: &mut Option<BuildBatch<'_>>,
        built: &mut Option<(Vec<(Bytes, Check)>, FinalMutations)>,
    ) -> Result<bool, WriteError> {
        let mut tx = OpenTransaction(Some(self.pool.acquire().await?));
        let rows = sqlx::raw_sql(AssertSqlSafe(self.sql.begin(reads)))
            .fetch_all(tx.connection()?)
            .await?;
        if let Some(build) = build.take() {
            // The rows of the read: the lock's own row has one column.
            let mut current = HashMap::with_capacity(reads.len());
            for row in rows.iter().filter(|row| row.len() == 2) {
                current.insert(row.try_get::<Vec<u8>, _>(0)?, row.try_get::<Vec<u8>, _>(1)?);
            }
            let values: Vec<Option<Bytes>> = reads
                .iter()
                .map(|key| {
                    current
                        .get(&key[..])
                        .map(|value| Bytes::copy_from_slice(value))
                })
                .collect();
            *built = build(&values).map(|batch| {
                let mut guarded = WriteBatch::new();
                for (key, value) in reads.iter().zip(values) {
                    guarded.check(key.clone(), value.map_or(Check::Absent, Check::Equals));
                }
                guarded.extend(batch);
                let (checks, mutations) = guarded.into_parts();
                (checks, FinalMutations::new(mutations))
            });
        }
        let Some((checks, mutations)) = built.as_ref() else {
            tx.roll_back().await?;
            return Ok(false);
        };
        let check_keys: Vec<&[u8]> = checks.iter().map(|(key, _)| &key[..]).collect();
        let (kinds, expected): (Vec<i16>, Vec<Option<&[u8]>>) = checks
            .iter()
            .map(|(_, check)| match check {
                Check::Absent => (ABSENT, None),
                Check::Present => (PRESENT, None),
                Check::Equals(value) => (EQUALS, Some(&value[..])),
            })
            .unzip();
        let deletes: Vec<&[u8]> = mutations.deletes.iter().map(|key| &key[..]).collect();
        let (keys, values): (Vec<&[u8]>, Vec<&[u8]>) = mutations
            .upserts
            .iter()
            .map(|(key, value)| (&key[..], &value[..]))
            .unzip();
        let failed: Option<i64> = sqlx::query_scalar(AssertSqlSafe(self.sql.apply.as_str()))
            .bind(&check_keys)
            .bind(&kinds)
            .bind(&expected)
            .bind(&deletes)
            .bind(&keys)
            .bind(&values)
            .fetch_optional(tx.connection()?)
            .await?;
        if let Some(number) = failed {
            tx.roll_back().await?;
            let key = usize::try_from(number - 1)
                .ok()
                .and_then(|index| checks.get(index))
                .map(|(key, _)| key.clone())
                .ok_or_else(|| {
                    WriteError::Sql(sqlx::Error::Protocol(format!(
                        "the server named check {number} of {} as failed",
                        checks.len()
                    )))
                })?;
            return Err(WriteError::Conflict(key));
        }
        tx.commit().await.map_err(|error| {
            if refused(&error) {
                WriteError::Sql(error)
            } else {
                WriteError::Unconfirmed(error)
            }
        })?;
        Ok(true)
    }
}

/// Whether the server refused COMMIT, so that nothing was committed: an error of severity
/// ERROR (the transaction failed). Without an answer (the connection dropped), or when the
/// server ends the session (FATAL, PANIC: a shutdown may come after the commit), the
/// commit may have happened.
fn refused(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|error| error.try_downcast_ref::<PgDatabaseError>())
        .is_some_and(|error| matches!(error.severity(), PgSeverity::Error))
}

/// A pooled connection in a transaction begun by hand (so that its first round trip can
/// also take the lock and read). Dropped before it ends (an error, or the write's future
/// dropped mid-way), the connection is closed, never pooled: the server rolls back and
/// releases the lock.
struct OpenTransaction(Option<PoolConnection<Postgres>>);

impl OpenTransaction {
    fn connection(&mut self) -> Result<&mut PgConnection, sqlx::Error> {
        self.0
            .as_deref_mut()
            .ok_or_else(|| sqlx::Error::Protocol("the transaction has ended".into()))
    }

    /// Ends the transaction with `statement`; the connection goes back to the pool.
    async fn end(&mut self, statement: &'static str) -> Result<(), sqlx::Error> {
        sqlx::raw_sql(statement).execute(self.connection()?).await?;
        self.0 = None;
        Ok(())
    }

    async fn commit(mut self) -> Result<(), sqlx::Error> {
        self.end("COMMIT").await
    }

    async fn roll_back(&mut self) -> Result<(), sqlx::Error> {
        self.end("ROLLBACK").await
    }
}

impl Drop for OpenTransaction {
    fn drop(&mut self) {
        if let Some(connection) = self.0.as_mut() {
            connection.close_on_drop();
        }
    }
}

enum WriteError {
    Conflict(Bytes),
    Sql(sqlx::Error),
    /// COMMIT was sent, but its answer never came.
    Unconfirmed(sqlx::Error),
}

impl From<sqlx::Error> for WriteError {
    fn from(error: sqlx::Error) -> Self {
        WriteError::Sql(error)
    }
}

/// Whether `table` (schema-qualified, quoted) exists.
async fn table_exists(pool: &PgPool, table: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(table)
        .fetch_one(pool)
        .await
}

/// Creates the schema and table when they are missing. A table that exists is used as it
/// is, so a role with only the rights to read and write it (no CREATE) can open it.
/// Whether `error` is a collision in the catalog with another session creating the same
/// schema or table at the same moment (a unique violation on `pg_type`, or the type,
/// table or schema already there): creating again finds it made.
fn created_meanwhile(error: &sqlx::Error) -> bool {
    let code = error
        .as_database_error()
        .and_then(sqlx::error::DatabaseError::code);
    matches!(code.as_deref(), Some("23505" | "42710" | "42P07" | "42P06"))
}

async fn create_table(
    pool: &PgPool,
    options: &PostgresOptions,
    table: &str,
) -> Result<(), sqlx::Error> {
    if table_exists(pool, table).await? {
        return Ok(());
    }
    let schema_exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(&options.schema)
            .fetch_one(pool)
            .await?;
    let schema = format!("CREATE SCHEMA IF NOT EXISTS \"{}\"", options.schema);
    let create =
        format!("CREATE TABLE IF NOT EXISTS {table} (key BYTEA PRIMARY KEY, value BYTEA NOT NULL)");
    // Two processes creating the same table at once may collide in the catalog: retry.
    let mut attempts = 0;
    loop {
        let result = async {
            if !schema_exists {
                sqlx::query(AssertSqlSafe(schema.as_str()))
                    .execute(pool)
                    .await?;
            }
            sqlx::query(AssertSqlSafe(create.as_str()))
                .execute(pool)
                .await
        }
        .await;
        match result {
            Ok(_) => return Ok(()),
            Err(error) if attempts < 3 && created_meanwhile(&error) => {
                attempts += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

impl OrderedKv for PostgresKv {
    async fn get(&self, key: &[u8]) -> Result<Option<Bytes>, KvError> {
        require_tokio(ENGINE)
            .map_err(|message| KvError::engine(ENGINE, ErrorKind::Unsupported, message))?;
        let row = sqlx::query(AssertSqlSafe(self.sql.get.as_str()))
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
        require_tokio(ENGINE)
            .map_err(|message| KvError::engine(ENGINE, ErrorKind::Unsupported, message))?;
        if range.is_empty() || limit == 0 {
            return Ok(KvPage::default());
        }
        let mut next = 0;
        let (sql, binds) = scan_statement(&self.sql.table, range, direction, &mut || {
            next += 1;
            format!("${next}")
        });
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for bind in &binds {
            query = query.bind(&bind[..]);
        }
        let rows = query.bind(sql_limit(limit)).fetch(&self.pool);
        fill_page(rows).await.map_err(engine_error)
    }

    /// One statement.
    async fn get_many<'a>(&'a self, keys: &'a [Bytes]) -> Result<KvPage, KvError> {
        require_tokio(ENGINE)
            .map_err(|message| KvError::engine(ENGINE, ErrorKind::Unsupported, message))?;
        if keys.is_empty() {
            return Ok(KvPage::default());
        }
        let keys: Vec<&[u8]> = keys.iter().map(|key| &key[..]).collect();
        let rows = sqlx::query(AssertSqlSafe(self.sql.get_many.as_str()))
            .bind(keys)
            .bind(i64::try_from(MAX_SCAN_BYTES).unwrap_or(i64::MAX))
            .bind(sql_limit(usize::MAX))
            .fetch(&self.pool);
        fill_page(rows).await.map_err(engine_error)
    }

    async fn write(&self, batch: WriteBatch) -> Result<(), KvError> {
        eventkv::raw::write_built(self, batch).await
    }

    /// Reads `reads` under the table's write lock: writers of other connections and
    /// processes queue on the lock, and none can change them before the batch applies.
    async fn write_with<'a>(
        &'a self,
        reads: Vec<Bytes>,
        build: BuildBatch<'a>,
    ) -> Result<bool, KvError> {
        require_tokio(ENGINE)
            .map_err(|message| KvError::engine(ENGINE, ErrorKind::Unsupported, message))?;
        let mut build = Some(build);
        let mut built = None;
        let mut backoff = Backoff::new();
        loop {
            match self.write_once(&reads, &mut build, &mut built).await {
                Ok(written) => return Ok(written),
                Err(WriteError::Conflict(key)) => return Err(KvError::Conflict { key }),
                // Not expected under the table lock, but a server may still cancel a
                // transaction as a deadlock victim or a serialization failure.
                Err(WriteError::Sql(error)) if is_retryable(&error) && backoff.pause().await => {
                    tracing::debug!(
                        attempt = backoff.attempts(),
                        "postgres aborted the transaction ({error}); retrying the batch"
                    );
                }
                Err(WriteError::Sql(error)) => return Err(engine_error(error)),
                Err(WriteError::Unconfirmed(error)) => {
                    return Err(KvError::ambiguous(
                        ENGINE,
                        "the connection failed before COMMIT was acknowledged",
                        error,
                    ));
                }
            }
        }
    }
}

/// `text` as an SQL string literal.
fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// sqlx runs on tokio: outside a tokio runtime it would panic, so calls refuse first.
fn require_tokio(engine: &'static str) -> Result<(), String> {
    match tokio::runtime::Handle::try_current() {
        Ok(_) => Ok(()),
        Err(_) => Err(format!(
            "the {engine} engine runs on sqlx, which needs a tokio runtime: open and use it inside one (e.g. under #[tokio::main])"
        )),
    }
}

/// Copies rows of (key, value) into a page as they arrive, until the page is full (the
/// rest of the result is not fetched).
async fn fill_page(
    mut rows: impl Stream<Item = Result<PgRow, sqlx::Error>> + Unpin,
) -> Result<KvPage, sqlx::Error> {
    let mut page = KvPage::default();
    while let Some(row) = rows.try_next().await? {
        page.push(row.try_get(0)?, row.try_get(1)?);
        if page.is_full() {
            break;
        }
    }
    Ok(page)
}

/// The first column of `row`, as owned bytes.
fn first_bytes(row: Option<PgRow>) -> Result<Option<Bytes>, sqlx::Error> {
    row.map(|row| row.try_get::<&[u8], _>(0).map(Bytes::copy_from_slice))
        .transpose()
}

/// Where in PostgreSQL the engine keeps its table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostgresOptions {
    /// The schema (created if missing). Default `public`.
    pub schema: String,
    /// The table (created if missing). Default `eventkv`.
    pub table: String,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            schema: "public".into(),
            table: "eventkv".into(),
        }
    }
}

impl PostgresOptions {
    /// Checks that `name` can be a schema or table name: letters, digits and `_`, not
    /// starting with a digit, at most 63 bytes.
    pub fn validate_identifier(name: &str) -> Result<(), String> {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !name.as_bytes()[0].is_ascii_digit();
        if valid {
            Ok(())
        } else {
            Err(format!(
                "{name:?} is not a valid schema or table name (letters, digits and _, not starting with a digit, at most 63 bytes)"
            ))
        }
    }
}

/// PostgreSQL in the list of engines: a table on a server.
pub(crate) const ENTRY: EngineParts = EngineParts {
    forms: "postgres://USER@HOST:PORT/DB[?schema=NAME&table=NAME] (or postgresql://)",
    parse: |text| Ok(Box::new(parse(text)?)),
    scratch: Scratch::Server {
        var: "EVENTKV_POSTGRES_URL",
        default: "postgres://postgres@127.0.0.1:5432/test",
        url: |server, unique| {
            let join = if server.contains('?') { '&' } else { '?' };
            format!("{server}{join}schema=eventkv_scratch&table=t_{unique}")
        },
    },
    shared_by_processes: true,
};

/// `postgres://…[?schema=S&table=T]`: the connection URL without eventkv's parameters.
#[derive(PartialEq, Eq)]
struct PostgresUrl {
    url: String,
    options: PostgresOptions,
}

impl std::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresUrl")
            .field("url", &redact(&self.url))
            .field("options", &self.options)
            .finish()
    }
}

fn parse(text: &str) -> Result<PostgresUrl, String> {
    let url = &parse_url(text)?;
    if !url.has_host() || url.host_str() == Some("") {
        return Err("expected postgres://[USER[:PASSWORD]@]HOST[:PORT]/DATABASE".into());
    }
    let params = Params::of(url);
    let mut options = PostgresOptions::default();
    if let Some(schema) = params.get("schema") {
        schema.clone_into(&mut options.schema);
    }
    if let Some(table) = params.get("table") {
        table.clone_into(&mut options.table);
    }
    PostgresOptions::validate_identifier(&options.schema)?;
    PostgresOptions::validate_identifier(&options.table)?;
    let passed: Vec<&(String, String)> = params
        .0
        .iter()
        .filter(|(key, _)| key != "schema" && key != "table")
        .collect();
    let mut url = url.clone();
    if passed.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(passed);
    }
    Ok(PostgresUrl {
        url: url.to_string(),
        options,
    })
}

impl Target for PostgresUrl {
    fn location(&self) -> Location {
        Location::Table {
            server: redact(&self.url),
            schema: self.options.schema.clone(),
            table: self.options.table.clone(),
        }
    }

    fn open(&self, existing: bool) -> BoxFuture<'_, Result<DynKv, OpenError>> {
        Box::pin(async move {
            let options = self.options.clone();
            Ok(DynKv::new(
                PostgresKv::connect_to(&self.url, options, !existing).await?,
            ))
        })
    }

    fn destroy(&self) -> BoxFuture<'_, Result<(), OpenError>> {
        Box::pin(async {
            let kv = match PostgresKv::connect_to(&self.url, self.options.clone(), false).await {
                Err(OpenError::Missing { .. }) => return Ok(()),
                other => other?,
            };
            kv.drop_table().await.map_err(|error| {
                OpenError::engine(ENGINE, kind_of(&error), ContextError::new("dropping the table", error))
            })
        })
    }
}

#[cfg(test)]
mod url_tests {
    use super::*;

    #[test]
    fn urls_keep_the_driver_parameters_and_take_eventkv_ones() {
        let parsed = parse(
            "postgresql://postgres@127.0.0.1:5432/test?schema=app&sslmode=disable&table=kv",
        )
        .expect("parses");
        assert_eq!(
            parsed.url,
            "postgresql://postgres@127.0.0.1:5432/test?sslmode=disable"
        );
        assert_eq!(
            (parsed.options.schema.as_str(), parsed.options.table.as_str()),
            ("app", "kv")
        );
        crate::url::assert_refused(parse, &[
            ("postgres://", "expected postgres://"),
            ("postgres://h/db?table=bad-name", "not a valid schema or table name"),
        ]);
    }

    #[test]
    fn passwords_never_leave_in_errors_or_debug() {
        let secret = "pa55:w@rd";
        let encoded = "pa55%3Aw%40rd";
        let url = format!("postgres://app:{encoded}@db.internal:5432/events?schema=app");
        let parsed = crate::EngineUrl::parse(&url).expect("parses");
        let shown = format!("{parsed:?}");
        assert!(!shown.contains(encoded) && !shown.contains(secret), "{shown}");
        assert!(shown.contains("postgres://app:***@db.internal:5432/events"), "{shown}");
        for bad in [
            format!("postgres://app:{encoded}@db/x?table=bad-name"),
            format!("postgres://app:{encoded}@db/x?password=other&schema=1x"),
            format!("postgres://app:{encoded}@[::1/x"),
        ] {
            let error = crate::EngineUrl::parse(&bad).expect_err(&bad);
            for text in [error.to_string(), format!("{error:?}")] {
                assert!(!text.contains(encoded) && !text.contains("other"), "{bad}: {text}");
                assert!(text.contains("app:***@"), "{bad}: {text}");
            }
        }
    }
}
