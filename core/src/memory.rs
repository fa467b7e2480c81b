//! [`MemoryKv`]: the reference engine, a `BTreeMap` behind a lock.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{PoisonError, RwLock};

use bytes::{Bytes, BytesMut};

use crate::kv::{
    Direction, KeyRange, KvError, KvPage, Mutation, OrderedKv, WriteBatch, first_failed_check,
};

/// An in-memory engine: fast, exact, and gone when dropped.
///
/// Every operation completes without waiting for I/O; a batch holds the write lock while
/// its checks are evaluated and its mutations applied, so it is atomic and isolated.
/// Operations run when their future is polled (a write that is never awaited writes
/// nothing), and they spend the tokio task's cooperative budget, so a loop of them yields
/// to the scheduler like a loop of I/O would.
/// A batch's keys and values are stored in one allocation, which lives as long as any of
/// them, so a stream written in batches is scanned from contiguous memory.
#[derive(Debug, Default)]
pub struct MemoryKv {
    map: RwLock<BTreeMap<Bytes, Bytes>>,
}

impl MemoryKv {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of keys stored.
    pub fn len(&self) -> usize {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no key is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn scan_now(&self, range: &KeyRange, direction: Direction, limit: usize) -> KvPage {
        if range.is_empty() || limit == 0 {
            return KvPage::default();
        }
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        let entries = map.range::<[u8], _>(range.as_slices());
        let entries_hint = limit.min(1024);
        let mut page = KvPage::with_capacity(entries_hint, entries_hint * 128);
        let entries = entries.map(Ok::<_, Infallible>);
        let push = |page: &mut KvPage, (key, value): (&Bytes, &Bytes)| page.push(key, value);
        let Ok(()) = match direction {
            Direction::Forward => page.fill(entries, limit, push),
            Direction::Reverse => page.fill(entries.rev(), limit, push),
        };
        page
    }

    fn write_now(&self, batch: WriteBatch) -> Result<(), KvError> {
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        let (checks, mutations) = batch.into_parts();
        let failed = first_failed_check(&checks, |key| Ok::<_, KvError>(map.get(key)))?;
        if let Some(key) = failed {
            return Err(KvError::Conflict { key: key.clone() });
        }
        let size = mutations.iter().map(|mutation| match mutation {
            Mutation::Put { key, value } => key.len() + value.len(),
            Mutation::Delete { .. } => 0,
        });
        let mut buffer = BytesMut::with_capacity(size.sum());
        for mutation in &mutations {
            if let Mutation::Put { key, value } = mutation {
                buffer.extend_from_slice(key);
                buffer.extend_from_slice(value);
            }
        }
        let mut buffer = buffer.freeze();
        for mutation in mutations {
            match mutation {
                Mutation::Put { key, value } => {
                    let key_copy = buffer.split_to(key.len());
                    let value_copy = buffer.split_to(value.len());
                    map.insert(key_copy, value_copy);
                }
                Mutation::Delete { key } => {
                    map.remove(&key[..]);
                }
            }
        }
        Ok(())
    }
}

/// Spends one unit of the tokio task's cooperative budget: once a task has done enough
/// work without waiting, it yields to the scheduler, so that timers and other tasks run.
#[cfg_attr(target_arch = "wasm32", allow(clippy::unused_async))] // nothing to spend there
async fn cooperate() {
    #[cfg(not(target_arch = "wasm32"))]
    tokio::task::consume_budget().await;
}

impl OrderedKv for MemoryKv {
    async fn get(&self, key: &[u8]) -> Result<Option<Bytes>, KvError> {
        cooperate().await;
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        Ok(map.get(key).cloned())
    }

    async fn scan(
        &self,
        range: &KeyRange,
        direction: Direction,
        limit: usize,
    ) -> Result<KvPage, KvError> {
        cooperate().await;
        Ok(self.scan_now(range, direction, limit))
    }

    async fn write(&self, batch: WriteBatch) -> Result<(), KvError> {
        cooperate().await;
        self.write_now(batch)
    }

    async fn get_many<'a>(&'a self, keys: &'a [Bytes]) -> Result<KvPage, KvError> {
        cooperate().await;
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        let mut page = KvPage::with_capacity(keys.len(), keys.len() * 128);
        for key in keys {
            if page.is_full() {
                break;
            }
            if let Some(value) = map.get(key) {
                page.push(key, value);
            }
        }
        Ok(page)
    }
}
