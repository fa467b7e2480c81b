//! [`MemoryKv`]: the reference engine, a `BTreeMap` behind a lock.

use std::collections::BTreeMap;
use std::future::{Future, ready};
use std::ops::Bound;
use std::sync::{PoisonError, RwLock};

use bytes::Bytes;

use crate::kv::{Direction, KeyRange, KvEntry, KvError, MaybeSend, Mutation, OrderedKv, WriteBatch};

/// An in-memory engine: fast, exact, and gone when dropped.
///
/// Every operation completes without waiting; a batch holds the write lock while its
/// checks are evaluated and its mutations applied, so it is atomic and isolated.
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
        self.map.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether no key is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn scan_now(&self, range: &KeyRange, direction: Direction, limit: usize) -> Vec<KvEntry> {
        if range.is_empty() || limit == 0 {
            return Vec::new();
        }
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        let bounds = (as_slice(&range.start), as_slice(&range.end));
        let entries = map.range::<[u8], _>(bounds);
        let to_entry = |(key, value): (&Bytes, &Bytes)| KvEntry {
            key: key.clone(),
            value: value.clone(),
        };
        match direction {
            Direction::Forward => entries.take(limit).map(to_entry).collect(),
            Direction::Reverse => entries.rev().take(limit).map(to_entry).collect(),
        }
    }

    fn write_now(&self, batch: WriteBatch) -> Result<(), KvError> {
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        let (checks, mutations) = batch.into_parts();
        for (key, check) in &checks {
            if !check.holds(map.get(&key[..]).map(|value| &value[..])) {
                return Err(KvError::Conflict { key: key.clone() });
            }
        }
        for mutation in mutations {
            match mutation {
                Mutation::Put { key, value } => {
                    map.insert(key, value);
                }
                Mutation::Delete { key } => {
                    map.remove(&key[..]);
                }
            }
        }
        Ok(())
    }
}

fn as_slice(bound: &Bound<Bytes>) -> Bound<&[u8]> {
    match bound {
        Bound::Included(key) => Bound::Included(&key[..]),
        Bound::Excluded(key) => Bound::Excluded(&key[..]),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl OrderedKv for MemoryKv {
    fn get(&self, key: &[u8]) -> impl Future<Output = Result<Option<Bytes>, KvError>> + MaybeSend {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        ready(Ok(map.get(key).cloned()))
    }

    fn scan(
        &self,
        range: &KeyRange,
        direction: Direction,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<KvEntry>, KvError>> + MaybeSend {
        ready(Ok(self.scan_now(range, direction, limit)))
    }

    fn write(&self, batch: WriteBatch) -> impl Future<Output = Result<(), KvError>> + MaybeSend {
        ready(self.write_now(batch))
    }
}
