//! The ordered key-value trait every engine implements, and its building blocks.
//!
//! An engine implements three operations: [`OrderedKv::get`], [`OrderedKv::scan`] in byte
//! order of the keys, and [`OrderedKv::write`], which applies a [`WriteBatch`] of puts,
//! deletes and checks atomically. It may override two more where it can do better than
//! their defaults: [`OrderedKv::get_many`] (many keys in one call) and
//! [`OrderedKv::write_with`] (a batch built from values read under its write lock).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

mod batch;
mod dyn_kv;
mod error;
mod page;
mod range;

pub use batch::{
    BatchRoom, Check, FinalMutations, Mutation, WriteBatch, WriteLimits, first_failed_check,
};
pub use dyn_kv::{DynKv, ErasedKv};
pub use error::KvError;
pub use page::{KvPage, MAX_SCAN_BYTES, MAX_SCAN_ENTRIES};
pub use range::{Direction, DisplayKey, KeyRange, prefix_successor};

/// `Send` off wasm32, nothing on it: futures of browser engines are not `Send`.
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSend: Send {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Send + ?Sized> MaybeSend for T {}
/// `Send` off wasm32, nothing on it: futures of browser engines are not `Send`.
#[cfg(target_arch = "wasm32")]
pub trait MaybeSend {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSend for T {}

/// `Sync` off wasm32, nothing on it.
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSync: Sync {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Sync + ?Sized> MaybeSync for T {}
/// `Sync` off wasm32, nothing on it.
#[cfg(target_arch = "wasm32")]
pub trait MaybeSync {}
#[cfg(target_arch = "wasm32")]
impl<T: ?Sized> MaybeSync for T {}

/// A boxed future that is `Send` off wasm32.
#[cfg(not(target_arch = "wasm32"))]
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
/// A boxed future that is `Send` off wasm32.
#[cfg(target_arch = "wasm32")]
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Builds a batch from the current values of the keys an [`OrderedKv::write_with`] read
/// (in the order given); `None` writes nothing. It runs while the engine holds its write
/// lock, if it has one: keep it to CPU work.
#[cfg(not(target_arch = "wasm32"))]
pub type BuildBatch<'a> = Box<dyn FnOnce(&[Option<Bytes>]) -> Option<WriteBatch> + Send + 'a>;
/// Builds a batch from the current values of the keys an [`OrderedKv::write_with`] read
/// (in the order given); `None` writes nothing.
#[cfg(target_arch = "wasm32")]
pub type BuildBatch<'a> = Box<dyn FnOnce(&[Option<Bytes>]) -> Option<WriteBatch> + 'a>;

/// The error an engine wraps: its own, kept as the [`std::error::Error::source`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An ordered key-value engine: the only thing eventkv asks of storage.
///
/// Futures are `Send` off wasm32 (see [`MaybeSend`]). Engines that block must not block
/// the async runtime's worker threads.
pub trait OrderedKv: MaybeSend + MaybeSync {
    /// The value of `key`, if it has one.
    fn get(&self, key: &[u8]) -> impl Future<Output = Result<Option<Bytes>, KvError>> + MaybeSend;

    /// At most `limit` entries of `range`, in byte order of their keys (descending for
    /// [`Direction::Reverse`]), and never more than a full page ([`KvPage::is_full`]:
    /// [`MAX_SCAN_ENTRIES`] entries, or the entry that reaches [`MAX_SCAN_BYTES`]),
    /// whatever `limit` is. Callers page with [`KeyRange::after_page`] while
    /// [`KvPage::may_have_more`].
    fn scan(
        &self,
        range: &KeyRange,
        direction: Direction,
        limit: usize,
    ) -> impl Future<Output = Result<KvPage, KvError>> + MaybeSend;

    /// Applies `batch` atomically: all of it, or, on an error, none of it.
    fn write(&self, batch: WriteBatch) -> impl Future<Output = Result<(), KvError>> + MaybeSend;

    /// The largest batch one [`write`](Self::write) applies; a larger one is refused with
    /// [`KvError::TooLarge`]. Unbounded unless the engine says otherwise.
    fn limits(&self) -> WriteLimits {
        WriteLimits::UNBOUNDED
    }

    /// The entries of those of `keys` that have a value, in the order of `keys` (a key
    /// given twice, twice), up to a full page as [`scan`](Self::scan) bounds it: the
    /// answer ends with the entry that makes it [`full`](KvPage::is_full), so a caller
    /// that gets a full page asks again for the keys after its last entry. This default
    /// reads them one by one; engines read them in one call where they can (one
    /// transaction, one statement).
    fn get_many<'a>(
        &'a self,
        keys: &'a [Bytes],
    ) -> impl Future<Output = Result<KvPage, KvError>> + MaybeSend + 'a {
        async move {
            let mut page = KvPage::default();
            for key in keys {
                if page.is_full() {
                    break;
                }
                if let Some(value) = self.get(key).await? {
                    page.push(key, &value);
                }
            }
            Ok(page)
        }
    }

    /// Reads `reads`, builds a batch from their values with `build`, and applies it as
    /// [`write`](Self::write) does; returns whether a batch was written (`build` may
    /// decline). The batch applies only if `reads` still hold the values `build` saw.
    ///
    /// This default reads before writing and checks the values in the batch, so a writer
    /// that changed one in between makes it fail with [`KvError::Conflict`] on that key.
    /// An engine with a write lock reads them under the lock instead, so the batch never
    /// fails on them: writers of other processes then queue instead of racing.
    fn write_with<'a>(
        &'a self,
        reads: Vec<Bytes>,
        build: BuildBatch<'a>,
    ) -> impl Future<Output = Result<bool, KvError>> + MaybeSend + 'a {
        async move {
            let mut values = Vec::with_capacity(reads.len());
            for key in &reads {
                values.push(self.get(key).await?);
            }
            let Some(built) = build(&values) else {
                return Ok(false);
            };
            let mut batch = WriteBatch::new();
            for (key, value) in reads.into_iter().zip(values) {
                let check = value.map_or(Check::Absent, Check::Equals);
                batch.check(key, check);
            }
            batch.extend(built);
            self.write(batch).await.map(|()| true)
        }
    }
}

/// [`OrderedKv::write`] for an engine whose [`OrderedKv::write_with`] does the work: the
/// batch, built from no reads. Such an engine implements `write` with this.
pub async fn write_built<K: OrderedKv + ?Sized>(kv: &K, batch: WriteBatch) -> Result<(), KvError> {
    kv.write_with(Vec::new(), Box::new(move |_: &[Option<Bytes>]| Some(batch)))
        .await
        .map(drop)
}

impl<K: OrderedKv + ?Sized> OrderedKv for Arc<K> {
    fn get(&self, key: &[u8]) -> impl Future<Output = Result<Option<Bytes>, KvError>> + MaybeSend {
        (**self).get(key)
    }

    fn scan(
        &self,
        range: &KeyRange,
        direction: Direction,
        limit: usize,
    ) -> impl Future<Output = Result<KvPage, KvError>> + MaybeSend {
        (**self).scan(range, direction, limit)
    }

    fn write(&self, batch: WriteBatch) -> impl Future<Output = Result<(), KvError>> + MaybeSend {
        (**self).write(batch)
    }

    fn limits(&self) -> WriteLimits {
        (**self).limits()
    }

    fn get_many<'a>(
        &'a self,
        keys: &'a [Bytes],
    ) -> impl Future<Output = Result<KvPage, KvError>> + MaybeSend + 'a {
        (**self).get_many(keys)
    }

    fn write_with<'a>(
        &'a self,
        reads: Vec<Bytes>,
        build: BuildBatch<'a>,
    ) -> impl Future<Output = Result<bool, KvError>> + MaybeSend + 'a {
        (**self).write_with(reads, build)
    }
}
