//! Why the SQLite engine runs on rusqlite: sqlx's SQLite driver (a worker thread per
//! connection, rows sent through a channel; what `SqliteKv` ran on before) against the
//! engine itself (rusqlite, statements cached, run in place), on the same file. Both read
//! the same 100,000-event stream with the same statements: a range scan of every event
//! (pages of 4,096, as the engine pages) and a point read of one key.
#![allow(missing_docs)] // criterion's macros write undocumented functions

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use eventkv::raw::MAX_SCAN_ENTRIES;
use eventkv::testkit::aggregates::seed_account;
use eventkv::{
    Direction, DynKv, KeyRange, KvEventStore, KvPage, KvSnapshotStore, OrderedKv, Repository, keys,
};
use futures_util::TryStreamExt;
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

const EVENTS: u64 = 100_000;
const SCAN: &str =
    "SELECT key, value FROM eventkv WHERE key >= ?1 AND key < ?2 ORDER BY key ASC LIMIT ?3";
const SCAN_AFTER: &str =
    "SELECT key, value FROM eventkv WHERE key > ?1 AND key < ?2 ORDER BY key ASC LIMIT ?3";
const GET: &str = "SELECT value FROM eventkv WHERE key = ?1";

/// sqlx's SQLite pool, set up as the engine used it.
struct Sqlx(SqlitePool);

impl Sqlx {
    async fn open(path: &std::path::Path) -> Self {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .journal_mode(SqliteJournalMode::Wal)
            .row_buffer_size(MAX_SCAN_ENTRIES);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .expect("open with sqlx");
        Sqlx(pool)
    }

    /// Every entry of `[start, end)`, a page of at most 4,096 at a time.
    async fn scan_all(&self, start: Bytes, end: Bytes) -> usize {
        let mut after: Option<Vec<u8>> = None;
        let mut read = 0;
        loop {
            let (sql, first) = match after.take() {
                Some(key) => (SCAN_AFTER, key),
                None => (SCAN, start.to_vec()),
            };
            let mut rows = sqlx::query(sql)
                .bind(first)
                .bind(&end[..])
                .bind(MAX_SCAN_ENTRIES as i64)
                .fetch(&self.0);
            let mut page = KvPage::default();
            while let Some(row) = rows.try_next().await.expect("row") {
                page.push(row.try_get(0).expect("key"), row.try_get(1).expect("value"));
            }
            read += page.len();
            match page.last_key() {
                Some(last) if page.may_have_more(MAX_SCAN_ENTRIES) => after = Some(last.to_vec()),
                _ => return read,
            }
        }
    }

    async fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        sqlx::query(GET)
            .bind(key)
            .fetch_optional(&self.0)
            .await
            .expect("get")
            .map(|row| row.try_get::<Vec<u8>, _>(0).expect("value"))
    }
}

/// Every entry of `range` through the engine, page by page.
async fn scan_all(kv: &DynKv, range: KeyRange) -> usize {
    let mut range = range;
    let mut read = 0;
    loop {
        let page = kv
            .scan(&range, Direction::Forward, MAX_SCAN_ENTRIES)
            .await
            .expect("scan");
        read += page.len();
        match page.last_key() {
            Some(last) if page.may_have_more(MAX_SCAN_ENTRIES) => {
                range = range.after_page(last, Direction::Forward);
            }
            _ => return read,
        }
    }
}

fn drivers(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("drivers.sqlite");
    let kv = runtime
        .block_on(eventkv_backends::open(&format!(
            "sqlite:{}",
            path.display()
        )))
        .expect("open the engine");
    runtime
        .block_on(seed_account(
            &Repository::new(
                KvEventStore::new(kv.clone()),
                KvSnapshotStore::new(kv.clone()),
            ),
            "acc",
            EVENTS,
            Some(99),
        ))
        .expect("seed");
    let sqlx = runtime.block_on(Sqlx::open(&path));
    let stream = keys::StreamKeys::new("Account", "acc").expect("stream");
    let range = stream.all();
    let (start, end) = (range_start(&range), range_end(&range));
    let snapshot = keys::snapshot("Account", "acc").expect("snapshot key");

    let read = runtime.block_on(scan_all(&kv, range.clone()));
    assert_eq!(read as u64, EVENTS, "the engine reads every event");
    let read = runtime.block_on(sqlx.scan_all(start.clone(), end.clone()));
    assert_eq!(read as u64, EVENTS, "sqlx reads every event");
    let through_engine = runtime.block_on(kv.get(&snapshot)).expect("get");
    let through_sqlx = runtime.block_on(sqlx.get(&snapshot));
    assert!(through_engine.is_some(), "the snapshot is stored");
    assert_eq!(through_engine.as_deref(), through_sqlx.as_deref());

    let mut scans = c.benchmark_group("sqlite_drivers/scan_100k");
    scans.sample_size(20);
    scans.throughput(Throughput::Elements(EVENTS));
    scans.bench_function("sqlx", |b| {
        b.iter(|| {
            runtime.block_on(async { black_box(sqlx.scan_all(start.clone(), end.clone()).await) })
        });
    });
    scans.bench_function("engine (rusqlite)", |b| {
        b.iter(|| runtime.block_on(async { black_box(scan_all(&kv, range.clone()).await) }));
    });
    scans.finish();

    let mut gets = c.benchmark_group("sqlite_drivers/point_read");
    gets.bench_function("sqlx", |b| {
        b.iter(|| runtime.block_on(async { black_box(sqlx.get(&snapshot).await) }));
    });
    gets.bench_function("engine (rusqlite)", |b| {
        b.iter(|| runtime.block_on(async { black_box(kv.get(&snapshot).await.expect("get")) }));
    });
    gets.finish();
}

fn range_start(range: &KeyRange) -> Bytes {
    match &range.start {
        std::ops::Bound::Included(key) | std::ops::Bound::Excluded(key) => key.clone(),
        std::ops::Bound::Unbounded => Bytes::new(),
    }
}

fn range_end(range: &KeyRange) -> Bytes {
    match &range.end {
        std::ops::Bound::Included(key) | std::ops::Bound::Excluded(key) => key.clone(),
        std::ops::Bound::Unbounded => Bytes::from_static(&[0xff; 64]),
    }
}

criterion_group!(benches, drivers);
criterion_main!(benches);
