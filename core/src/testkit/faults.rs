//! [`Faulty`]: any engine with failures switched on at will, the way real engines fail
//! (a read that errors, a write whose acknowledgement is lost after it was applied).

use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;

use crate::error::ErrorKind;
use crate::kv::{BuildBatch, Direction, KeyRange, KvError, KvPage, OrderedKv, WriteBatch};

/// Wraps an engine; every fault is off until switched on.
#[derive(Debug)]
pub struct Faulty<K> {
    inner: K,
    /// Reads (get, scan, get_many) fail with a retryable engine error.
    pub fail_reads: AtomicBool,
    /// Writes fail with a full disk ([`KvError::StorageFull`]), applying nothing.
    pub fail_writes: AtomicBool,
    /// The next write is applied, then reported as [`KvError::Ambiguous`] (its
    /// acknowledgement was lost). Switches itself off.
    pub lose_next_ack: AtomicBool,
}

impl<K> Faulty<K> {
    /// `inner`, without faults.
    pub fn new(inner: K) -> Self {
        Faulty {
            inner,
            fail_reads: AtomicBool::new(false),
            fail_writes: AtomicBool::new(false),
            lose_next_ack: AtomicBool::new(false),
        }
    }

    fn write_fault(&self) -> Result<(), KvError> {
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err(KvError::storage_full("faulty", "disk full (injected)"));
        }
        Ok(())
    }

    /// After a write was applied: its acknowledgement lost, if so switched on.
    fn ack_fault(&self) -> Result<(), KvError> {
        if self.lose_next_ack.swap(false, Ordering::SeqCst) {
            return Err(KvError::ambiguous(
                "faulty",
                "the commit acknowledgement was lost",
                "connection reset (injected)",
            ));
        }
        Ok(())
    }

    fn read_fault(&self) -> Result<(), KvError> {
        if self.fail_reads.load(Ordering::SeqCst) {
            Err(KvError::engine(
                "faulty",
                ErrorKind::Unavailable,
                "connection refused (injected)",
            ))
        } else {
            Ok(())
        }
    }
}

impl<K: OrderedKv> OrderedKv for Faulty<K> {
    fn limits(&self) -> crate::WriteLimits {
        self.inner.limits()
    }

    async fn get(&self, key: &[u8]) -> Result<Option<Bytes>, KvError> {
        self.read_fault()?;
        self.inner.get(key).await
    }

    async fn scan(
        &self,
        range: &KeyRange,
        direction: Direction,
        limit: usize,
    ) -> Result<KvPage, KvError> {
        self.read_fault()?;
        self.inner.scan(range, direction, limit).await
    }

    async fn get_many<'a>(&'a self, keys: &'a [Bytes]) -> Result<KvPage, KvError> {
        self.read_fault()?;
        self.inner.get_many(keys).await
    }

    async fn write(&self, batch: WriteBatch) -> Result<(), KvError> {
        self.write_fault()?;
        self.inner.write(batch).await?;
        self.ack_fault()
    }

    async fn write_with<'a>(
        &'a self,
        reads: Vec<Bytes>,
        build: BuildBatch<'a>,
    ) -> Result<bool, KvError> {
        self.write_fault()?;
        let written = self.inner.write_with(reads, build).await?;
        self.ack_fault()?;
        Ok(written)
    }
}
