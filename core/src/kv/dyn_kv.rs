//! [`DynKv`]: an engine chosen at run time, behind the dyn-compatible [`ErasedKv`].

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use super::{
    BoxFuture, BuildBatch, Direction, KeyRange, KvError, KvPage, MaybeSend, MaybeSync, OrderedKv,
    WriteBatch, WriteLimits,
};

/// The dyn-compatible form of [`OrderedKv`], implemented for every engine.
///
/// Use it through [`DynKv`] when the engine is chosen at run time.
pub trait ErasedKv: MaybeSend + MaybeSync {
    /// See [`OrderedKv::get`].
    fn get_boxed<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<Option<Bytes>, KvError>>;
    /// See [`OrderedKv::scan`].
    fn scan_boxed<'a>(
        &'a self,
        range: &'a KeyRange,
        direction: Direction,
        limit: usize,
    ) -> BoxFuture<'a, Result<KvPage, KvError>>;
    /// See [`OrderedKv::write`].
    fn write_boxed(&self, batch: WriteBatch) -> BoxFuture<'_, Result<(), KvError>>;
    /// See [`OrderedKv::limits`].
    fn limits_erased(&self) -> WriteLimits;
    /// See [`OrderedKv::get_many`].
    fn get_many_boxed<'a>(&'a self, keys: &'a [Bytes]) -> BoxFuture<'a, Result<KvPage, KvError>>;
    /// See [`OrderedKv::write_with`].
    fn write_with_boxed<'a>(
        &'a self,
        reads: Vec<Bytes>,
        build: BuildBatch<'a>,
    ) -> BoxFuture<'a, Result<bool, KvError>>;
}

impl<K: OrderedKv> ErasedKv for K {
    fn get_boxed<'a>(&'a self, key: &'a [u8]) -> BoxFuture<'a, Result<Option<Bytes>, KvError>> {
        Box::pin(self.get(key))
    }

    fn scan_boxed<'a>(
        &'a self,
        range: &'a KeyRange,
        direction: Direction,
        limit: usize,
    ) -> BoxFuture<'a, Result<KvPage, KvError>> {
        Box::pin(self.scan(range, direction, limit))
    }

    fn write_boxed(&self, batch: WriteBatch) -> BoxFuture<'_, Result<(), KvError>> {
        Box::pin(self.write(batch))
    }

    fn limits_erased(&self) -> WriteLimits {
        self.limits()
    }

    fn get_many_boxed<'a>(&'a self, keys: &'a [Bytes]) -> BoxFuture<'a, Result<KvPage, KvError>> {
        Box::pin(self.get_many(keys))
    }

    fn write_with_boxed<'a>(
        &'a self,
        reads: Vec<Bytes>,
        build: BuildBatch<'a>,
    ) -> BoxFuture<'a, Result<bool, KvError>> {
        Box::pin(self.write_with(reads, build))
    }
}

/// An engine chosen at run time: a shared, type-erased [`OrderedKv`].
#[derive(Clone)]
pub struct DynKv(Arc<dyn ErasedKv>);

impl DynKv {
    /// Erases the type of `engine`.
    pub fn new(engine: impl OrderedKv + 'static) -> Self {
        DynKv(Arc::new(engine))
    }
}

impl fmt::Debug for DynKv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DynKv")
    }
}

impl OrderedKv for DynKv {
    async fn get(&self, key: &[u8]) -> Result<Option<Bytes>, KvError> {
        self.0.get_boxed(key).await
    }

    async fn scan(
        &self,
        range: &KeyRange,
        direction: Direction,
        limit: usize,
    ) -> Result<KvPage, KvError> {
        self.0.scan_boxed(range, direction, limit).await
    }

    fn write(&self, batch: WriteBatch) -> impl Future<Output = Result<(), KvError>> + MaybeSend {
        self.0.write_boxed(batch)
    }

    fn limits(&self) -> WriteLimits {
        self.0.limits_erased()
    }

    fn get_many<'a>(
        &'a self,
        keys: &'a [Bytes],
    ) -> impl Future<Output = Result<KvPage, KvError>> + MaybeSend + 'a {
        self.0.get_many_boxed(keys)
    }

    fn write_with<'a>(
        &'a self,
        reads: Vec<Bytes>,
        build: BuildBatch<'a>,
    ) -> impl Future<Output = Result<bool, KvError>> + MaybeSend + 'a {
        self.0.write_with_boxed(reads, build)
    }
}
