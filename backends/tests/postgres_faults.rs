//! PostgreSQL faults: a connection dropped in the middle of a batch leaves nothing of it.
#![cfg(feature = "postgres")]

mod common;

use std::time::Duration;

use bytes::Bytes;
use eventkv::{KeyRange, OrderedKv, WriteBatch};
use eventkv_backends::{PostgresKv, PostgresOptions};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};

/// A table of a new schema (named from `prefix`) holding "blocker" = "before", whose row
/// lock another session holds (in the transaction of the connection returned), so that a
/// batch writing "blocker" waits mid-statement.
async fn blocked_table(url: &str, prefix: &str) -> (String, PostgresKv, PgConnection) {
    let schema = common::unique_schema(prefix);
    let options = PostgresOptions {
        schema: schema.clone(),
        table: "kv".into(),
    };
    let kv = PostgresKv::connect(url, options).await.expect("connect");
    let mut setup = WriteBatch::new();
    setup.put(&b"blocker"[..], &b"before"[..]);
    kv.write(setup).await.expect("setup");
    let mut locker = PgConnection::connect(url).await.expect("locker connects");
    sqlx::query("BEGIN")
        .execute(&mut locker)
        .await
        .expect("begin");
    let lock = format!(
        "SELECT value FROM {} WHERE key = 'blocker'::bytea FOR UPDATE",
        kv.table()
    );
    sqlx::query(AssertSqlSafe(lock))
        .fetch_one(&mut locker)
        .await
        .expect("lock the row");
    (schema, kv, locker)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_killed_mid_batch_applies_nothing() {
    if common::require_postgres("a_connection_killed_mid_batch_applies_nothing")
        .await
        .is_err()
    {
        return;
    }
    let url = common::postgres_url();
    // The batch inserts its other rows, then waits on "blocker", mid-statement, until its
    // connection is killed.
    let (schema, kv, mut locker) = blocked_table(&url, "eventkv_fault").await;

    let mut batch = WriteBatch::new();
    for i in 0..1000u32 {
        batch.put(format!("a{i:04}").into_bytes(), b"new".to_vec());
    }
    batch.put(&b"blocker"[..], &b"after"[..]);
    let writer = {
        let kv = kv.clone();
        tokio::spawn(async move { kv.write(batch).await })
    };

    let mut killer = PgConnection::connect(&url).await.expect("killer connects");
    let find = "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%INSERT INTO%' \
                AND pid <> pg_backend_pid() AND query LIKE $1";
    let pattern = format!("%{}%", kv.table());
    let mut killed = false;
    for _ in 0..200 {
        let row = sqlx::query(find)
            .bind(&pattern)
            .fetch_optional(&mut killer)
            .await
            .expect("find writer");
        if let Some(row) = row {
            let pid: i32 = row.try_get(0).expect("pid");
            sqlx::query("SELECT pg_terminate_backend($1)")
                .bind(pid)
                .execute(&mut killer)
                .await
                .expect("kill");
            killed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(killed, "the batch never waited on the locked row");
    let result = writer.await.expect("writer task");
    let error = result.expect_err("a batch whose connection died fails");
    assert!(error.to_string().starts_with("postgres:"), "{error}");
    sqlx::query("ROLLBACK")
        .execute(&mut locker)
        .await
        .expect("release the lock");

    let written = kv
        .scan(
            &KeyRange::prefix(&b"a"[..]),
            eventkv::Direction::Forward,
            10,
        )
        .await
        .expect("scan");
    assert!(
        written.is_empty(),
        "nothing of the batch was applied, found {written:?}"
    );
    assert_eq!(
        kv.get(b"blocker").await.expect("get").as_deref(),
        Some(&b"before"[..])
    );

    let mut after = WriteBatch::new();
    after.put(&b"after"[..], &b"ok"[..]);
    kv.write(after)
        .await
        .expect("the engine keeps working after a lost connection");
    common::drop_schema(&schema);
}

/// A batch whose future is dropped while it waits inside its transaction leaves no
/// transaction open behind it: its connection is closed, not pooled, so the write lock is
/// released and nothing of the batch lands with a later one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_dropped_mid_transaction_leaves_nothing_open() {
    if common::require_postgres("a_batch_dropped_mid_transaction_leaves_nothing_open")
        .await
        .is_err()
    {
        return;
    }
    let url = common::postgres_url();
    // The batch waits on "blocker", mid-statement.
    let (schema, kv, mut locker) = blocked_table(&url, "eventkv_drop").await;
    let mut batch = WriteBatch::new();
    batch.put(&b"dropped"[..], &b"never"[..]);
    batch.put(&b"blocker"[..], &b"after"[..]);
    let writer = {
        let kv = kv.clone();
        tokio::spawn(async move { kv.write(batch).await })
    };
    let mut watcher = PgConnection::connect(&url).await.expect("watcher connects");
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
                   AND pid <> pg_backend_pid() AND query LIKE $1";
    let open = "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%' \
                AND pid <> pg_backend_pid() AND query LIKE $1";
    let pattern = format!("%{}%", kv.table());
    assert!(
        until_sessions(&mut watcher, waiting, &pattern, |n| n > 0).await,
        "the batch never waited on the locked row"
    );
    drop_writer(writer, &mut locker).await;

    a_later_batch_lands(&kv).await;
    assert_eq!(
        sessions(&mut watcher, open, &pattern).await,
        0,
        "no transaction left open"
    );
    assert_eq!(kv.get(b"dropped").await.expect("get"), None);
    assert_eq!(
        kv.get(b"blocker").await.expect("get").as_deref(),
        Some(&b"before"[..])
    );
    common::drop_schema(&schema);
}

/// A batch that reads, dropped while it waits for the table's write lock, leaves no
/// transaction open behind it once the server gives it the lock: its connection is closed,
/// not pooled, so the lock is released and a later batch lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_dropped_while_it_waits_for_the_lock_leaves_nothing_open() {
    if common::require_postgres("a_batch_dropped_while_it_waits_for_the_lock_leaves_nothing_open")
        .await
        .is_err()
    {
        return;
    }
    let url = common::postgres_url();
    let (schema, kv, mut locker) = blocked_table(&url, "eventkv_lockdrop").await;
    let lock = format!(
        "SELECT pg_advisory_xact_lock(hashtextextended('eventkv write ' || '{}', 0))",
        kv.table().replace('\'', "''")
    );
    sqlx::query(AssertSqlSafe(lock))
        .execute(&mut locker)
        .await
        .expect("take the write lock");
    let writer = {
        let kv = kv.clone();
        tokio::spawn(async move {
            let build: eventkv::raw::BuildBatch<'static> = Box::new(|_: &[Option<Bytes>]| {
                let mut batch = WriteBatch::new();
                batch.put(&b"dropped"[..], &b"never"[..]);
                Some(batch)
            });
            kv.write_with(vec![Bytes::from_static(b"blocker")], build)
                .await
        })
    };
    let mut watcher = PgConnection::connect(&url).await.expect("watcher connects");
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'advisory' \
                   AND pid <> pg_backend_pid() AND query LIKE $1";
    // Waiting for the lock, or holding it in a transaction nobody will end.
    let pending = "SELECT count(*) FROM pg_stat_activity \
                   WHERE (wait_event = 'advisory' OR state LIKE 'idle in transaction%') \
                   AND pid <> pg_backend_pid() AND query LIKE $1";
    let pattern = format!("%{}%", kv.table());
    assert!(
        until_sessions(&mut watcher, waiting, &pattern, |n| n > 0).await,
        "the batch never waited for the write lock"
    );
    drop_writer(writer, &mut locker).await;
    // The server gives the dropped batch the lock and answers its read; then it finds the
    // connection closed and ends the transaction.
    assert!(
        until_sessions(&mut watcher, pending, &pattern, |n| n == 0).await,
        "the dropped batch left its transaction open"
    );

    a_later_batch_lands(&kv).await;
    assert_eq!(kv.get(b"dropped").await.expect("get"), None);
    common::drop_schema(&schema);
}

/// Whether [`sessions`] comes to a count `wanted` accepts within 5 s.
async fn until_sessions(
    watcher: &mut PgConnection,
    sql: &'static str,
    pattern: &str,
    wanted: impl Fn(i64) -> bool,
) -> bool {
    for _ in 0..200 {
        if wanted(sessions(watcher, sql, pattern).await) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

/// Drops the waiting `writer`'s future, then ends `locker`'s transaction (and its lock).
async fn drop_writer<T: std::fmt::Debug>(
    writer: tokio::task::JoinHandle<T>,
    locker: &mut PgConnection,
) {
    writer.abort();
    assert!(writer.await.expect_err("aborted").is_cancelled());
    sqlx::query("ROLLBACK")
        .execute(locker)
        .await
        .expect("end the locker's transaction");
}

/// A batch written after a dropped one lands: the write lock is free.
async fn a_later_batch_lands(kv: &PostgresKv) {
    let mut after = WriteBatch::new();
    after.put(&b"after"[..], &b"ok"[..]);
    tokio::time::timeout(Duration::from_secs(10), kv.write(after))
        .await
        .expect("the write lock was released")
        .expect("a later batch lands");
}

/// How many sessions other than `watcher`'s `sql` counts, for queries like `pattern`.
async fn sessions(watcher: &mut PgConnection, sql: &'static str, pattern: &str) -> i64 {
    sqlx::query_scalar(sql)
        .bind(pattern)
        .fetch_one(watcher)
        .await
        .expect("count sessions")
}

/// A role that may only read and write an existing table (no CREATE on the database or
/// the schema) opens it and appends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_without_create_opens_an_existing_table() {
    if common::require_postgres("a_role_without_create_opens_an_existing_table")
        .await
        .is_err()
    {
        return;
    }
    let url = common::postgres_url();
    let schema = common::unique_schema("eventkv_least");
    let role = format!("{schema}_app");
    let mut admin = PgConnection::connect(&url).await.expect("connect");
    for statement in [
        format!("CREATE ROLE \"{role}\" LOGIN"),
        format!("CREATE SCHEMA \"{schema}\""),
        format!("CREATE TABLE \"{schema}\".events (key BYTEA PRIMARY KEY, value BYTEA NOT NULL)"),
        format!("GRANT USAGE ON SCHEMA \"{schema}\" TO \"{role}\""),
        format!("GRANT SELECT, INSERT, UPDATE, DELETE ON \"{schema}\".events TO \"{role}\""),
    ] {
        sqlx::query(AssertSqlSafe(statement))
            .execute(&mut admin)
            .await
            .expect("setup");
    }
    let mut as_role = url::Url::parse(&url).expect("url");
    as_role.set_username(&role).expect("user");
    let _ = as_role.set_password(None);
    let options = PostgresOptions {
        schema: schema.clone(),
        table: "events".into(),
    };
    let opened = PostgresKv::connect(as_role.as_str(), options.clone()).await;
    let missing = PostgresOptions {
        schema: schema.clone(),
        table: "missing".into(),
    };
    let refused = PostgresKv::connect(as_role.as_str(), missing).await;
    let result = async {
        let kv = opened.map_err(|error| format!("open: {error}"))?;
        let store = eventkv::KvEventStore::new(kv);
        let event = eventkv::NewEvent::encode("Opened", &1, eventkv::Codec::Json)
            .map_err(|error| error.to_string())?;
        eventkv::EventStore::append(&store, "T", "x", 0, &[event])
            .await
            .map_err(|error| format!("append: {error}"))?;
        Ok::<_, String>(())
    }
    .await;
    common::drop_schema(&schema);
    for statement in [
        format!("DROP OWNED BY \"{role}\""),
        format!("DROP ROLE \"{role}\""),
    ] {
        sqlx::query(AssertSqlSafe(statement))
            .execute(&mut admin)
            .await
            .expect("cleanup");
    }
    result.expect("a least-privileged role opens and appends");
    let error = refused.expect_err("no right to create a missing table");
    assert!(
        error.to_string().contains("permission denied"),
        "the missing right is named: {error}"
    );
    assert_eq!(
        error.kind(),
        eventkv::ErrorKind::PermissionDenied,
        "{error}"
    );
}

/// A proxy to the PostgreSQL server that, once armed, forwards the next `COMMIT`, lets
/// the server run it, then cuts the connection before the answer reaches the client: an
/// acknowledgement lost after the commit.
async fn commit_cutting_proxy(
    server: std::net::SocketAddr,
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::net::SocketAddr {
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listen");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(upstream) = tokio::net::TcpStream::connect(server).await else {
                continue;
            };
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = upstream.into_split();
            // Set when the COMMIT to cut goes to the server: its answer is swallowed, and
            // only then is the client's connection closed, so the commit has happened.
            let cutting = std::sync::Arc::new(AtomicBool::new(false));
            let swallow = cutting.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 64 * 1024];
                loop {
                    let read = match server_read.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(read) => read,
                    };
                    if swallow.load(Ordering::SeqCst) {
                        break;
                    }
                    if client_write.write_all(&buffer[..read]).await.is_err() {
                        break;
                    }
                }
            });
            let armed = armed.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 64 * 1024];
                loop {
                    let read = match client_read.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(read) => read,
                    };
                    let chunk = &buffer[..read];
                    // The COMMIT statement, NUL-terminated ("READ COMMITTED" is not it).
                    if chunk.windows(7).any(|window| window == b"COMMIT\0")
                        && armed.swap(false, Ordering::SeqCst)
                    {
                        cutting.store(true, Ordering::SeqCst);
                    }
                    if server_write.write_all(chunk).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    address
}

/// PostgreSQL commits an append, and the connection drops before the client hears it:
/// the error says the append may have landed, and retrying the same events returns the
/// original positions without writing them twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_commit_acknowledgement_is_ambiguous_and_the_retry_is_idempotent() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    if common::require_postgres("a_lost_commit_acknowledgement")
        .await
        .is_err()
    {
        return;
    }
    let url = url::Url::parse(&common::postgres_url()).expect("url");
    let server = tokio::net::lookup_host((
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(5432),
    ))
    .await
    .expect("resolve")
    .next()
    .expect("an address");
    let armed = Arc::new(AtomicBool::new(false));
    let proxy = commit_cutting_proxy(server, armed.clone()).await;
    let mut through_proxy = url.clone();
    through_proxy.set_host(Some("127.0.0.1")).expect("host");
    through_proxy.set_port(Some(proxy.port())).expect("port");
    let schema = common::unique_schema("eventkv_ack");
    let options = PostgresOptions {
        schema: schema.clone(),
        table: "kv".into(),
    };
    let result = async {
        let flaky = eventkv::KvEventStore::new(
            PostgresKv::connect(through_proxy.as_str(), options.clone())
                .await
                .map_err(|error| error.to_string())?,
        );
        let direct = eventkv::KvEventStore::new(
            PostgresKv::connect(url.as_str(), options.clone())
                .await
                .map_err(|error| error.to_string())?,
        );
        let events: Vec<eventkv::NewEvent> = (0..3)
            .map(|n| eventkv::NewEvent::encode("Deposited", &n, eventkv::Codec::Json))
            .collect::<Result<_, _>>()
            .map_err(|error| error.to_string())?;
        use eventkv::EventStore;
        direct
            .append("Account", "other", 0, &events[..1])
            .await
            .map_err(|error| error.to_string())?;
        armed.store(true, Ordering::SeqCst);
        let lost = flaky.append("Account", "acc", 0, &events).await;
        let error = lost.expect_err("the acknowledgement was cut");
        assert!(error.is_ambiguous(), "{error}");
        assert_eq!(error.kind(), eventkv::ErrorKind::Ambiguous);
        assert!(
            error.to_string().contains("may have been applied"),
            "{error}"
        );
        let landed = direct
            .current_version("Account", "acc")
            .await
            .map_err(|error| error.to_string())?;
        assert_eq!(landed, 3, "the commit happened");
        let retried = direct
            .append("Account", "acc", 0, &events)
            .await
            .map_err(|error| format!("retry: {error}"))?;
        assert_eq!(
            (retried.first_version, retried.last_version),
            (1, 3),
            "the original append"
        );
        assert_eq!((retried.first_position, retried.last_position), (2, 4));
        let log = direct
            .read_all(1, 100)
            .await
            .map_err(|error| error.to_string())?;
        assert_eq!(log.len(), 4, "nothing written twice");
        Ok::<_, String>(())
    }
    .await;
    common::drop_schema(&schema);
    result.expect("the test ran");
}

/// Processes that open the same new store at the same moment all get it: their
/// `CREATE SCHEMA` and `CREATE TABLE` collide in PostgreSQL's catalog (a duplicate type or
/// key), and creating again finds it made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openers_of_one_new_table_at_once_all_succeed() {
    if common::require_postgres("openers_of_one_new_table_at_once_all_succeed")
        .await
        .is_err()
    {
        return;
    }
    for round in 0..5 {
        let schema = common::unique_schema("eventkv_race");
        let options = PostgresOptions {
            schema: schema.clone(),
            table: "events".into(),
        };
        let url = common::postgres_url();
        let opens = (0..8).map(|_| PostgresKv::connect(&url, options.clone()));
        let opened = futures_util::future::join_all(opens).await;
        common::drop_schema(&schema);
        for result in opened {
            if let Err(error) = result {
                panic!("round {round}: an opener failed: {error}");
            }
        }
    }
}
