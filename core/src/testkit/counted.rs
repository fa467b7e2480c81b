//! [`Counted`]: any engine whose calls are counted, each write taking a turn of the
//! scheduler before it starts, as a real engine's write does while it waits for I/O.
//! Appends that run meanwhile queue for the next write: what group commit is about.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::yield_now;
use crate::kv::{BuildBatch, Direction, KeyRange, KvError, KvPage, OrderedKv, WriteBatch};

/// Wraps an engine, counting its reads and writes.
#[derive(Debug)]
pub struct Counted<K> {
    inner: K,
    reads: AtomicU64,
    keys_read: AtomicU64,
    writes: AtomicU64,
}

impl<K> Counted<K> {
    /// `inner`, with no write counted yet.
    pub fn new(inner: K) -> Self {
        Counted {
            inner,
            reads: AtomicU64::new(0),
            keys_read: AtomicU64::new(0),
            writes: AtomicU64::new(0),
        }
    }

    /// How many reads (`get`, `scan`, `get_many`) were made.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::SeqCst)
    }

    /// How many keys `get` and `get_many` were asked for.
    pub fn keys_read(&self) -> u64 {
        self.keys_read.load(Ordering::SeqCst)
    }

    /// How many writes were made.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }
}

impl<K: OrderedKv> OrderedKv for Counted<K> {
    fn limits(&self) -> crate::WriteLimits {
        self.inner.limits()
    }

    async fn get(&self, key: &[u8]) -> Result<Option<Bytes>, KvError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.keys_read.fetch_add(1, Ordering::SeqCst);
        self.inner.get(key).await
    }

    async fn get_many<'a>(&'a self, keys: &'a [Bytes]) -> Result<KvPage, KvError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let asked = u64::try_from(keys.len()).unwrap_or(u64::MAX);
        self.keys_read.fetch_add(asked, Ordering::SeqCst);
        self.inner.get_many(keys).await
    }

    async fn scan(
        &self,
        range: &KeyRange,
        direction: Direction,
        limit: usize,
    ) -> Result<KvPage, KvError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.scan(range, direction, limit).await
    }

    async fn write(&self, batch: WriteBatch) -> Result<(), KvError> {
        yield_now().await;
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.write(batch).await
    }

    async fn write_with<'a>(
        &'a self,
        reads: Vec<Bytes>,
        build: BuildBatch<'a>,
    ) -> Result<bool, KvError> {
        yield_now().await;
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.write_with(reads, build).await
    }
}
