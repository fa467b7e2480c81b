//! [`Gated`]: any engine whose writes wait at a gate while the test holds it, so that a
//! test can drop an append while its write is in flight, at a point of its choosing.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

use crate::kv::{BuildBatch, Direction, KeyRange, KvError, KvPage, OrderedKv, WriteBatch};

/// Wraps an engine; writes pass at once until [`hold`](Gated::hold).
#[derive(Debug)]
pub struct Gated<K> {
    inner: K,
    held: AtomicBool,
    waiting: AtomicUsize,
    wakers: Mutex<Vec<Waker>>,
}

impl<K> Gated<K> {
    /// `inner`, its gate open.
    pub fn new(inner: K) -> Self {
        Gated {
            inner,
            held: AtomicBool::new(false),
            waiting: AtomicUsize::new(0),
            wakers: Mutex::new(Vec::new()),
        }
    }

    /// Writes that start from now on wait before they reach the engine.
    pub fn hold(&self) {
        self.held.store(true, Ordering::SeqCst);
    }

    /// Lets every waiting write go on, and those that come.
    pub fn release(&self) {
        self.held.store(false, Ordering::SeqCst);
        let wakers =
            std::mem::take(&mut *self.wakers.lock().unwrap_or_else(PoisonError::into_inner));
        wakers.into_iter().for_each(Waker::wake);
    }

    /// How many writes wait at the gate.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    fn pass(&self) -> Pass<'_, K> {
        Pass {
            gated: self,
            counted: false,
        }
    }
}

/// A write's wait at the gate; dropped, it no longer counts as waiting.
struct Pass<'a, K> {
    gated: &'a Gated<K>,
    counted: bool,
}

impl<K> Future for Pass<'_, K> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let gated = self.gated;
        let mut wakers = gated.wakers.lock().unwrap_or_else(PoisonError::into_inner);
        if !gated.held.load(Ordering::SeqCst) {
            drop(wakers);
            self.leave();
            return Poll::Ready(());
        }
        wakers.push(cx.waker().clone());
        if !self.counted {
            self.counted = true;
            gated.waiting.fetch_add(1, Ordering::SeqCst);
        }
        Poll::Pending
    }
}

impl<K> Pass<'_, K> {
    fn leave(&mut self) {
        if std::mem::take(&mut self.counted) {
            self.gated.waiting.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl<K> Drop for Pass<'_, K> {
    fn drop(&mut self) {
        self.leave();
    }
}

impl<K: OrderedKv> OrderedKv for Gated<K> {
    fn limits(&self) -> crate::WriteLimits {
        self.inner.limits()
    }

    async fn get(&self, key: &[u8]) -> Result<Option<Bytes>, KvError> {
        self.inner.get(key).await
    }

    async fn scan(
        &self,
        range: &KeyRange,
        direction: Direction,
        limit: usize,
    ) -> Result<KvPage, KvError> {
        self.inner.scan(range, direction, limit).await
    }

    async fn get_many<'a>(&'a self, keys: &'a [Bytes]) -> Result<KvPage, KvError> {
        self.inner.get_many(keys).await
    }

    async fn write(&self, batch: WriteBatch) -> Result<(), KvError> {
        self.pass().await;
        self.inner.write(batch).await
    }

    async fn write_with<'a>(
        &'a self,
        reads: Vec<Bytes>,
        build: BuildBatch<'a>,
    ) -> Result<bool, KvError> {
        self.pass().await;
        self.inner.write_with(reads, build).await
    }
}
