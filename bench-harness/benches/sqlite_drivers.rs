//! The SQLite engine's driver against a direct binding, on the same file: sqlx (what
//! `SqliteKv` runs on: a worker thread per connection, rows sent through a channel)
//! against rusqlite with its statement cache, run on tokio's blocking pool. Both read the
//! same 100,000-event stream with the engine's own statements: a range scan of every
//! event (pages of 4,096, as the engine pages) and a point read of one key.
#![allow(missing_docs)] // criterion's macros write undocumented functions

use std::hint::black_box;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use eventkv::testkit::aggregates::seed_account;
use eventkv::{
    Direction, DynKv, KeyRange, KvEventStore, KvPage, KvSnapshotStore, MAX_SCAN_ENTRIES, OrderedKv,
    Repository, keys,
};

const EVENTS: u64 = 100_000;
const SCAN: &str =
    "SELECT key, value FROM eventkv WHERE key >= ?1 AND key < ?2 ORDER BY key ASC LIMIT ?3";
const SCAN_AFTER: &str =
    "SELECT key, value FROM eventkv WHERE key > ?1 AND key < ?2 ORDER BY key ASC LIMIT ?3";
const GET: &str = "SELECT value FROM eventkv WHERE key = ?1";

/// rusqlite on the blocking pool: one connection, its statements cached.
#[derive(Clone)]
struct Direct(Arc<Mutex<rusqlite::Connection>>);

impl Direct {
    fn open(path: &std::path::Path) -> Self {
        let connection = rusqlite::Connection::open(path).expect("open with rusqlite");
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .expect("WAL");
        Direct(Arc::new(Mutex::new(connection)))
    }

    /// Every entry of `[start, end)`, a page of at most 4,096 at a time.
    async fn scan_all(&self, start: Bytes, end: Bytes) -> usize {
        let mut after: Option<Vec<u8>> = None;
        let mut read = 0;
        loop {
            let connection = self.0.clone();
            let (start, end) = (start.clone(), end.clone());
            let from = after.take();
            let page = tokio::task::spawn_blocking(move || {
                let connection = connection.lock().expect("lock");
                let limit = MAX_SCAN_ENTRIES as i64;
                let (sql, first): (&str, Vec<u8>) = match &from {
                    Some(key) => (SCAN_AFTER, key.clone()),
                    None => (SCAN, start.to_vec()),
                };
                let mut statement = connection.prepare_cached(sql).expect("prepare");
                let mut rows = statement
                    .query(rusqlite::params![first, &end[..], limit])
                    .expect("query");
                let mut page = KvPage::default();
                while let Some(row) = rows.next().expect("row") {
                    let key = row.get_ref(0).expect("key").as_blob().expect("blob");
                    let value = row.get_ref(1).expect("value").as_blob().expect("blob");
                    page.push(key, value);
                }
                page
            })
            .await
            .expect("blocking task");
            read += page.len();
            match page.last_key() {
                Some(last) if page.may_have_more(MAX_SCAN_ENTRIES) => after = Some(last.to_vec()),
                _ => return read,
            }
        }
    }

    async fn get(&self, key: Bytes) -> Option<Vec<u8>> {
        let connection = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let connection = connection.lock().expect("lock");
            let mut statement = connection.prepare_cached(GET).expect("prepare");
            let mut rows = statement.query([&key[..]]).expect("query");
            rows.next()
                .expect("row")
                .map(|row| row.get::<_, Vec<u8>>(0).expect("value"))
        })
        .await
        .expect("blocking task")
    }
}

/// Every entry of `range` through the engine (sqlx), page by page.
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
                range = range.after_page(last, Direction::Forward)
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
        .expect("open with sqlx");
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
    let direct = Direct::open(&path);
    let stream = keys::StreamKeys::new("Account", "acc").expect("stream");
    let range = stream.all();
    let (start, end) = (range_start(&range), range_end(&range));
    let snapshot = keys::snapshot("Account", "acc").expect("snapshot key");

    let read = runtime.block_on(scan_all(&kv, range.clone()));
    assert_eq!(read as u64, EVENTS, "the engine reads every event");
    let read = runtime.block_on(direct.scan_all(start.clone(), end.clone()));
    assert_eq!(read as u64, EVENTS, "rusqlite reads every event");
    let through_sqlx = runtime.block_on(kv.get(&snapshot)).expect("get");
    let through_rusqlite = runtime.block_on(direct.get(snapshot.clone()));
    assert_eq!(through_sqlx.as_deref(), through_rusqlite.as_deref());

    let mut scans = c.benchmark_group("sqlite_drivers/scan_100k");
    scans.sample_size(20);
    scans.throughput(Throughput::Elements(EVENTS));
    scans.bench_function("sqlx", |b| {
        b.iter(|| runtime.block_on(async { black_box(scan_all(&kv, range.clone()).await) }))
    });
    scans.bench_function("rusqlite", |b| {
        b.iter(|| {
            runtime.block_on(async { black_box(direct.scan_all(start.clone(), end.clone()).await) })
        })
    });
    scans.finish();

    let mut gets = c.benchmark_group("sqlite_drivers/point_read");
    gets.bench_function("sqlx", |b| {
        b.iter(|| runtime.block_on(async { black_box(kv.get(&snapshot).await.expect("get")) }))
    });
    gets.bench_function("rusqlite", |b| {
        b.iter(|| runtime.block_on(async { black_box(direct.get(snapshot.clone()).await) }))
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
