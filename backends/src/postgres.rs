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
use eventkv::{
    BuildBatch, Check, Direction, FinalMutations, KeyRange, KvError, KvPage, OrderedKv, WriteBatch,
};
use futures_util::{Stream, TryStreamExt};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgDatabaseError, PgPool, PgPoolOptions, PgRow, PgSeverity};
use sqlx::{AssertSqlSafe, Column, Connection, PgConnection, Postgres, Row};

use crate::error::OpenError;
use crate::options::PostgresOptions;
use crate::sql::{scan_statement, sql_limit};
use crate::url::redact;

const ENGINE: &str = "postgres";
/// How long opening waits for the server's first answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// sqlx's error as a [`KvError`]: a full disk (53100) is [`KvError::StorageFull`]; a
/// lost connection, a pool timeout or a serialization failure is retryable.
fn engine_error(error: sqlx::Error) -> KvError {
    let code = error.as_database_error().and_then(|e| e.code());
    match code.as_deref() {
        Some("53100") => KvError::StorageFull {
            engine: ENGINE,
            message: error.to_string(),
        },
        Some(code) => {
            let retryable = code.starts_with("08") || code.starts_with("40") || code == "57P01";
            KvError::from_source(ENGINE, retryable, error)
        }
        None => {
            let retryable = matches!(
                error,
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
            );
            KvError::from_source(ENGINE, retryable, error)
        }
    }
}

/// Whether PostgreSQL aborted the transaction only because of a concurrent one.
fn is_retryable(error: &sqlx::Error) -> bool {
    let code = error.as_database_error().and_then(|e| e.code());
    matches!(code.as_deref(), Some("40001" | "40P01"))
}

/// The name under which every pooled connection prepares the batch statement.
const APPLY: &str = "eventkv_apply";

/// The statements of one table, built once.
#[derive(Debug)]
struct Statements {
    table: String,
    get: String,
    get_many: String,
    /// The transaction and the write lock: the start of every batch.
    lock: String,
    /// Prepares [`APPLY`] on a new connection.
    prepare: String,
}

impl Statements {
    fn new(options: &PostgresOptions) -> Self {
        let table = format!("\"{}\".\"{}\"", options.schema, options.table);
        Statements {
            get: format!("SELECT value FROM {table} WHERE key = $1"),
            get_many: format!(
                "SELECT t.key, t.value FROM UNNEST($1::bytea[]) WITH ORDINALITY AS k(key, n) \
                 JOIN {table} t ON t.key = k.key ORDER BY k.n"
            ),
            // The transaction, and the table's write lock (one per schema-qualified table),
            // held until COMMIT or ROLLBACK. Every statement after the lock sees every
            // commit made before it (READ COMMITTED takes a snapshot per statement). The
            // batch statement is planned once per connection: planning it took 0.1 ms,
            // twice its run. (The connection's `enable_seqscan = off` keeps that plan on
            // the primary key as the table grows.)
            lock: format!(
                "BEGIN ISOLATION LEVEL READ COMMITTED; \
                 SET LOCAL plan_cache_mode = force_generic_plan; \
                 SELECT pg_advisory_xact_lock(hashtextextended('eventkv write ' || {}, 0))",
                quote_literal(&table)
            ),
            // The checks ($1 keys, $2 kinds, $3 values) and, only if none fails, the
            // deletes ($4) and upserts ($5, $6): one statement, one snapshot. Answers the
            // number of the first check that fails, if one does.
            prepare: format!(
                "PREPARE {APPLY} (bytea[], int2[], bytea[], bytea[], bytea[], bytea[]) AS \
                 WITH failed AS ( \
                   SELECT c.n FROM UNNEST($1, $2, $3) \
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
                   SELECT * FROM UNNEST($5, $6) \
                   WHERE NOT EXISTS (SELECT FROM failed) \
                   ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value) \
                 SELECT n AS {FAILED_CHECK} FROM failed"
            ),
            table,
        }
    }

    /// The first round trip of a batch that reads: the transaction, the write lock, then
    /// the values of `reads` (keys inlined: the simple query protocol has no parameters).
    fn begin(&self, reads: &[Bytes]) -> String {
        let mut sql = format!(
            "{}; SELECT key, value FROM {} WHERE key = ANY(",
            self.lock, self.table
        );
        push_bytea_array(&mut sql, reads.iter().map(|key| Some(&key[..])));
        sql.push(')');
        sql
    }
}

/// The column of the batch statement's answer: the number of the first failed check.
const FAILED_CHECK: &str = "failed_check";

/// The kinds of [`Check`] in the batch statement.
const ABSENT: i16 = 0;
const PRESENT: i16 = 1;
const EQUALS: i16 = 2;

/// A batch ready to apply: the checks (those of its reads first), then its mutations.
struct Sealed {
    checks: Vec<(Bytes, Check)>,
    mutations: FinalMutations,
}

impl Sealed {
    /// `batch`, guarded by checks that `reads` still hold `values`.
    fn new(reads: &[Bytes], values: Vec<Option<Bytes>>, batch: WriteBatch) -> Self {
        let mut guarded = WriteBatch::new();
        for (key, value) in reads.iter().zip(values) {
            guarded.check(key.clone(), value.map_or(Check::Absent, Check::Equals));
        }
        guarded.extend(batch);
        let (checks, mutations) = guarded.into_parts();
        Sealed {
            checks,
            mutations: FinalMutations::new(mutations),
        }
    }

    /// `EXECUTE` of the prepared batch statement with the batch's arrays inlined, then
    /// `COMMIT`: one round trip, so the write lock is held for no other. When a check
    /// fails, the statement changes nothing and the COMMIT only ends the transaction.
    fn apply_and_commit(&self) -> String {
        let bytes: usize = self.checks.iter().map(|(key, _)| key.len()).sum::<usize>()
            + self
                .mutations
                .upserts
                .iter()
                .map(|(key, value)| key.len() + value.len())
                .sum::<usize>();
        let mut sql = String::with_capacity(64 + 2 * bytes + 24 * self.checks.len());
        sql.push_str("EXECUTE ");
        sql.push_str(APPLY);
        sql.push('(');
        push_bytea_array(&mut sql, self.checks.iter().map(|(key, _)| Some(&key[..])));
        sql.push_str(", '{");
        for (index, (_, check)) in self.checks.iter().enumerate() {
            if index > 0 {
                sql.push(',');
            }
            let kind = match check {
                Check::Absent => ABSENT,
                Check::Present => PRESENT,
                Check::Equals(_) => EQUALS,
            };
            sql.push_str(&kind.to_string());
        }
        sql.push_str("}', ");
        push_bytea_array(
            &mut sql,
            self.checks.iter().map(|(_, check)| match check {
                Check::Equals(value) => Some(&value[..]),
                Check::Absent | Check::Present => None,
            }),
        );
        sql.push_str(", ");
        push_bytea_array(
            &mut sql,
            self.mutations.deletes.iter().map(|key| Some(&key[..])),
        );
        sql.push_str(", ");
        push_bytea_array(
            &mut sql,
            self.mutations.upserts.iter().map(|(key, _)| Some(&key[..])),
        );
        sql.push_str(", ");
        push_bytea_array(
            &mut sql,
            self.mutations
                .upserts
                .iter()
                .map(|(_, value)| Some(&value[..])),
        );
        sql.push_str("); COMMIT");
        sql
    }
}

/// Appends `items` as a `bytea[]` expression (`None` is NULL). Bytes go as hex through
/// `decode`, whatever the server's `standard_conforming_strings`.
fn push_bytea_array<'b>(sql: &mut String, items: impl Iterator<Item = Option<&'b [u8]>>) {
    sql.push_str("ARRAY[");
    for (index, item) in items.enumerate() {
        if index > 0 {
            sql.push(',');
        }
        match item {
            Some(bytes) => {
                sql.push_str("decode('");
                sql.push_str(&hex::encode(bytes));
                sql.push_str("','hex')");
            }
            None => sql.push_str("NULL"),
        }
    }
    sql.push_str("]::bytea[]");
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
        require_tokio(ENGINE).map_err(|message| OpenError::Engine {
            engine: ENGINE,
            message,
        })?;
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
                    message: error.to_string(),
                }
            }
            other => OpenError::Engine {
                engine: ENGINE,
                message: format!("{host}:{port}: {other}"),
            },
        };
        // One direct connection first: an unreachable server fails at once, not after the
        // pool's acquire timeout.
        let mut probe = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&connect))
            .await
            .map_err(|_| OpenError::Unreachable {
                engine: ENGINE,
                host: host.clone(),
                port,
                message: format!(
                    "no answer within {} s (is it a PostgreSQL server, and is it overloaded?)",
                    CONNECT_TIMEOUT.as_secs()
                ),
            })?
            .map_err(connect_error)?;
        // The table exists before the pool connects: each connection prepares the batch
        // statement on it.
        let sql = Arc::new(Statements::new(&options));
        if create {
            create_table(&mut probe, &options, &sql.table)
                .await
                .map_err(|error| OpenError::Engine {
                    engine: ENGINE,
                    message: format!("creating {}: {error}", sql.table),
                })?;
        } else if !table_exists(&mut probe, &sql.table)
            .await
            .map_err(connect_error)?
        {
            return Err(OpenError::Missing {
                engine: ENGINE,
                location: format!("{} of {}", sql.table, redact(url)),
            });
        }
        probe.close().await.map_err(connect_error)?;
        let setup = format!(
            // Every statement of the engine reaches rows through the primary key: a plan
            // cached while the table was small must not keep scanning it whole (measured:
            // 5.5 ms per statement at 10,000 rows, against 0.1 ms through the index).
            "SET enable_seqscan = off; {}",
            sql.prepare
        );
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .test_before_acquire(false)
            .after_connect(move |connection, _| {
                let setup = setup.clone();
                Box::pin(async move {
                    sqlx::raw_sql(AssertSqlSafe(setup))
                        .execute(connection)
                        .await?;
                    Ok(())
                })
            })
            .connect_with(connect)
            .await
            .map_err(connect_error)?;
        Ok(PostgresKv { pool, sql })
    }

    /// The schema-qualified table, quoted.
    pub fn table(&self) -> &str {
        &self.sql.table
    }

    /// One transaction of two round trips: the write lock and `reads`; then the batch
    /// `build` makes of them (on the first attempt: `build` is taken) and COMMIT. Without
    /// reads, the batch is known before the lock: one round trip. The batch kept in
    /// `built` for a retry checks that `reads` still hold what `build` saw.
    async fn write_once(
        &self,
        reads: &[Bytes],
        build: &mut Option<BuildBatch<'_>>,
        built: &mut Option<Sealed>,
    ) -> Result<bool, WriteError> {
        let mut tx = OpenTransaction(Some(self.pool.acquire().await?));
        let mut statement = String::new();
        if reads.is_empty() {
            if let Some(build) = build.take() {
                *built = build(&[]).map(|batch| Sealed::new(reads, Vec::new(), batch));
            }
            statement = format!("{}; ", self.sql.lock);
        } else {
            let rows = sqlx::raw_sql(AssertSqlSafe(self.sql.begin(reads)))
                .fetch_all(tx.connection()?)
                .await?;
            if let Some(build) = build.take() {
                let values = read_values(reads, &rows)?;
                *built = build(&values).map(|batch| Sealed::new(reads, values, batch));
            }
        }
        let Some(sealed) = built.as_ref() else {
            if reads.is_empty() {
                tx.release();
            } else {
                tx.roll_back().await?;
            }
            return Ok(false);
        };
        statement.push_str(&sealed.apply_and_commit());
        let rows = sqlx::raw_sql(AssertSqlSafe(statement))
            .fetch_all(tx.connection()?)
            .await
            .map_err(|error| {
                if refused(&error) {
                    WriteError::Sql(error)
                } else {
                    WriteError::Unconfirmed(error)
                }
            })?;
        tx.release();
        let failed = rows.iter().find(|row| {
            row.columns()
                .first()
                .is_some_and(|c| c.name() == FAILED_CHECK)
        });
        let Some(row) = failed else {
            return Ok(true);
        };
        let number: i64 = row.try_get(0)?;
        let key = usize::try_from(number - 1)
            .ok()
            .and_then(|index| sealed.checks.get(index))
            .map(|(key, _)| key.clone())
            .ok_or_else(|| {
                WriteError::Sql(sqlx::Error::Protocol(format!(
                    "the server named check {number} of {} as failed",
                    sealed.checks.len()
                )))
            })?;
        Err(WriteError::Conflict(key))
    }
}

/// Whether the server refused a statement before COMMIT, so that nothing was committed:
/// an error of severity ERROR aborts the transaction and skips the rest of the query, its
/// COMMIT included. Without an answer (the connection dropped), or when the server ends
/// the session (FATAL, PANIC: it may do so after committing), the commit may have happened.
fn refused(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|error| error.try_downcast_ref::<PgDatabaseError>())
        .is_some_and(|error| matches!(error.severity(), PgSeverity::Error))
}

/// The values of `reads` in the rows of [`Statements::begin`] (the lock's own row has one
/// column).
fn read_values(reads: &[Bytes], rows: &[PgRow]) -> Result<Vec<Option<Bytes>>, sqlx::Error> {
    let mut current = HashMap::with_capacity(reads.len());
    for row in rows.iter().filter(|row| row.len() == 2) {
        current.insert(row.try_get::<Vec<u8>, _>(0)?, row.try_get::<Vec<u8>, _>(1)?);
    }
    Ok(reads
        .iter()
        .map(|key| {
            current
                .get(&key[..])
                .map(|value| Bytes::copy_from_slice(value))
        })
        .collect())
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

    /// The transaction has ended (or never began): the connection goes back to the pool.
    fn release(&mut self) {
        self.0 = None;
    }

    async fn roll_back(&mut self) -> Result<(), sqlx::Error> {
        sqlx::raw_sql("ROLLBACK")
            .execute(self.connection()?)
            .await?;
        self.release();
        Ok(())
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
async fn table_exists(connection: &mut PgConnection, table: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(table)
        .fetch_one(connection)
        .await
}

/// Creates the schema and table when they are missing. A table that exists is used as it
/// is, so a role with only the rights to read and write it (no CREATE) can open it.
async fn create_table(
    connection: &mut PgConnection,
    options: &PostgresOptions,
    table: &str,
) -> Result<(), sqlx::Error> {
    if table_exists(connection, table).await? {
        return Ok(());
    }
    let schema_exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(&options.schema)
            .fetch_one(&mut *connection)
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
                    .execute(&mut *connection)
                    .await?;
            }
            sqlx::query(AssertSqlSafe(create.as_str()))
                .execute(&mut *connection)
                .await
        }
        .await;
        match result {
            Ok(_) => return Ok(()),
            Err(error)
                if attempts < 3
                    && error
                        .as_database_error()
                        .is_some_and(|e| e.is_unique_violation()) =>
            {
                attempts += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

impl OrderedKv for PostgresKv {
    async fn get(&self, key: &[u8]) -> Result<Option<Bytes>, KvError> {
        require_tokio(ENGINE).map_err(|message| KvError::engine(ENGINE, message))?;
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
        require_tokio(ENGINE).map_err(|message| KvError::engine(ENGINE, message))?;
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
        require_tokio(ENGINE).map_err(|message| KvError::engine(ENGINE, message))?;
        if keys.is_empty() {
            return Ok(KvPage::default());
        }
        let keys: Vec<&[u8]> = keys.iter().map(|key| &key[..]).collect();
        let mut rows = sqlx::query(AssertSqlSafe(self.sql.get_many.as_str()))
            .bind(keys)
            .fetch(&self.pool);
        let mut page = KvPage::default();
        while let Some(row) = rows.try_next().await.map_err(engine_error)? {
            let key: &[u8] = row.try_get(0).map_err(engine_error)?;
            let value: &[u8] = row.try_get(1).map_err(engine_error)?;
            page.push(key, value);
        }
        Ok(page)
    }

    async fn write(&self, batch: WriteBatch) -> Result<(), KvError> {
        self.write_with(Vec::new(), Box::new(move |_: &[Option<Bytes>]| Some(batch)))
            .await
            .map(drop)
    }

    /// Reads `reads` under the table's write lock: writers of other connections and
    /// processes queue on the lock, and none can change them before the batch applies.
    async fn write_with<'a>(
        &'a self,
        reads: Vec<Bytes>,
        build: BuildBatch<'a>,
    ) -> Result<bool, KvError> {
        require_tokio(ENGINE).map_err(|message| KvError::engine(ENGINE, message))?;
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
                    return Err(KvError::Ambiguous {
                        engine: ENGINE,
                        what: "the connection failed before COMMIT was acknowledged",
                        source: Box::new(error),
                    });
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
