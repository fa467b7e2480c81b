//! The ordered key-value trait every engine implements, and its building blocks.
//!
//! An engine implements three operations: [`OrderedKv::get`], [`OrderedKv::scan`] in byte
//! order of the keys, and [`OrderedKv::write`], which applies a [`WriteBatch`] of puts,
//! deletes and checks atomically. It may override two more where it can do better than
//! their defaults: [`OrderedKv::get_many`] (many keys in one call) and
//! [`OrderedKv::write_with`] (a batch built from values read under its write lock).

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::ops::Bound;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::{ErrorKind, SharedError, shared};

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

/// An error of a key-value engine.
///
/// After [`KvError::Ambiguous`] the batch may have been applied; after any other error of
/// [`OrderedKv::write`], nothing of it was.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    /// A check of the batch failed; nothing of the batch was applied.
    #[error("conflict: a check on key {} failed, nothing of the batch was applied", DisplayKey(.key))]
    Conflict {
        /// The key whose check failed (the first failing check in batch order).
        key: Bytes,
    },
    /// The engine failed (I/O, connection, corruption inside the engine, ...); nothing
    /// of the batch was applied.
    #[error("{engine}: {source}")]
    Engine {
        /// The engine's name, e.g. `"sled"`.
        engine: &'static str,
        /// What kind of failure it is: [`ErrorKind::Unavailable`] when the same call may
        /// succeed later (a dropped connection, a busy database), else the permanent kind
        /// that fits best ([`ErrorKind::Unexpected`] when none does).
        kind: ErrorKind,
        /// The engine's own error.
        #[source]
        source: SharedError,
    },
    /// The batch may or may not have been applied: the engine failed after the point
    /// where it could still promise that nothing landed (a commit whose acknowledgement
    /// was lost, a flush that failed after the transaction was visible). Read again, or
    /// retry: appends of the same events are idempotent.
    #[error("{engine}: {what}; the batch may have been applied: {source}")]
    Ambiguous {
        /// The engine's name.
        engine: &'static str,
        /// What was not confirmed.
        what: &'static str,
        /// The engine's own error.
        #[source]
        source: SharedError,
    },
    /// The request itself is invalid (e.g. a key the engine cannot store).
    #[error("invalid request: {0}")]
    InvalidInput(String),
    /// The engine's storage is full (a full disk, a browser's quota). A write that fails
    /// with it applied nothing of its batch.
    #[error("{engine}: storage full: {source}")]
    StorageFull {
        /// The engine's name, e.g. `"indexeddb"`.
        engine: &'static str,
        /// The engine's own error.
        #[source]
        source: SharedError,
    },
}

impl KvError {
    /// An engine failure of `kind`, caused by `source`.
    pub fn engine(engine: &'static str, kind: ErrorKind, source: impl Into<BoxError>) -> Self {
        KvError::Engine {
            engine,
            kind,
            source: shared(source),
        }
    }

    /// A write that may or may not have been applied: `what` was not confirmed.
    pub fn ambiguous(
        engine: &'static str,
        what: &'static str,
        source: impl Into<BoxError>,
    ) -> Self {
        KvError::Ambiguous {
            engine,
            what,
            source: shared(source),
        }
    }

    /// Full storage, as the engine said it in `source`.
    pub fn storage_full(engine: &'static str, source: impl Into<BoxError>) -> Self {
        KvError::StorageFull {
            engine,
            source: shared(source),
        }
    }

    /// The error of a commit that failed after the engine began making it durable: an
    /// engine failure becomes [`KvError::Ambiguous`] (`what` was not confirmed); a full
    /// disk, which engines refuse before anything lands, and other errors stay as they are.
    pub fn unconfirmed(self, what: &'static str) -> Self {
        match self {
            KvError::Engine { engine, source, .. } => KvError::Ambiguous {
                engine,
                what,
                source,
            },
            other => other,
        }
    }

    /// What kind of failure it is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            KvError::Conflict { .. } => ErrorKind::Conflict,
            KvError::Engine { kind, .. } => *kind,
            KvError::Ambiguous { .. } => ErrorKind::Ambiguous,
            KvError::InvalidInput(_) => ErrorKind::InvalidInput,
            KvError::StorageFull { .. } => ErrorKind::StorageFull,
        }
    }
}

crate::__error_class!(KvError);

/// The key of the first of `checks` (in order) that fails, if one does. `current` reads
/// a key's value as the engine holds it inside the batch's transaction. Every engine's
/// `write` evaluates its checks through this, then answers [`KvError::Conflict`].
pub fn first_failed_check<V: AsRef<[u8]>, E>(
    checks: &[(Bytes, Check)],
    mut current: impl FnMut(&[u8]) -> Result<Option<V>, E>,
) -> Result<Option<&Bytes>, E> {
    for (key, check) in checks {
        let value = current(key)?;
        if !check.holds(value.as_ref().map(AsRef::as_ref)) {
            return Ok(Some(key));
        }
    }
    Ok(None)
}

/// Shows a key as text where it is printable ASCII, with other bytes as `\xNN`.
pub struct DisplayKey<'a>(pub &'a [u8]);

impl fmt::Display for DisplayKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.0.escape_ascii())
    }
}

/// A range of keys in byte order: a start bound and an end bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRange {
    /// Where the range starts.
    pub start: Bound<Bytes>,
    /// Where the range ends.
    pub end: Bound<Bytes>,
}

impl KeyRange {
    /// Every key.
    pub fn all() -> Self {
        KeyRange {
            start: Bound::Unbounded,
            end: Bound::Unbounded,
        }
    }

    /// Keys from `start` (inclusive) to `end` (exclusive).
    pub fn between(start: impl Into<Bytes>, end: impl Into<Bytes>) -> Self {
        KeyRange {
            start: Bound::Included(start.into()),
            end: Bound::Excluded(end.into()),
        }
    }

    /// Keys from `start` to `end`, both inclusive.
    pub fn inclusive(start: impl Into<Bytes>, end: impl Into<Bytes>) -> Self {
        KeyRange {
            start: Bound::Included(start.into()),
            end: Bound::Included(end.into()),
        }
    }

    /// Every key that starts with `prefix`.
    pub fn prefix(prefix: impl Into<Bytes>) -> Self {
        let prefix = prefix.into();
        let end = match prefix_successor(&prefix) {
            Some(next) => Bound::Excluded(Bytes::from(next)),
            None => Bound::Unbounded,
        };
        KeyRange {
            start: Bound::Included(prefix),
            end,
        }
    }

    /// The bounds as borrowed byte slices, as ordered maps take them.
    pub fn as_slices(&self) -> (Bound<&[u8]>, Bound<&[u8]>) {
        (
            self.start.as_ref().map(|key| &key[..]),
            self.end.as_ref().map(|key| &key[..]),
        )
    }

    /// Whether `key` lies in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        let after_start = match &self.start {
            Bound::Included(s) => key >= &s[..],
            Bound::Excluded(s) => key > &s[..],
            Bound::Unbounded => true,
        };
        let before_end = match &self.end {
            Bound::Included(e) => key <= &e[..],
            Bound::Excluded(e) => key < &e[..],
            Bound::Unbounded => true,
        };
        after_start && before_end
    }

    /// Whether no key can lie in the range.
    pub fn is_empty(&self) -> bool {
        match (&self.start, &self.end) {
            (Bound::Unbounded, _) | (_, Bound::Unbounded) => false,
            (Bound::Included(s), Bound::Included(e)) => s > e,
            (Bound::Included(s) | Bound::Excluded(s), Bound::Excluded(e))
            | (Bound::Excluded(s), Bound::Included(e)) => s >= e,
        }
    }

    /// The rest of the range after a page of a scan in `direction` ended at `last_key`.
    pub fn after_page(&self, last_key: &[u8], direction: Direction) -> Self {
        let last_key = Bytes::copy_from_slice(last_key);
        match direction {
            Direction::Forward => KeyRange {
                start: Bound::Excluded(last_key),
                end: self.end.clone(),
            },
            Direction::Reverse => KeyRange {
                start: self.start.clone(),
                end: Bound::Excluded(last_key),
            },
        }
    }
}

/// The smallest key greater than every key that starts with `prefix`, if there is one.
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut next = prefix.to_vec();
    while let Some(last) = next.pop() {
        if last < u8::MAX {
            next.push(last + 1);
            return Some(next);
        }
    }
    None
}

/// The order of a scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Ascending byte order.
    Forward,
    /// Descending byte order.
    Reverse,
}

/// The most entries one scan returns, whatever limit the caller passes.
pub const MAX_SCAN_ENTRIES: usize = 4096;
/// The most key and value bytes one scan returns: a page ends with the entry that
/// reaches this (so a page always holds at least one entry when the range has one).
pub const MAX_SCAN_BYTES: usize = 4 * 1024 * 1024;

/// The entries of one scan, in scan order, copied into one buffer: one allocation per
/// page, and borrowed slices per entry.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KvPage {
    data: Vec<u8>,
    /// For each entry: where its key ends and where its value ends in `data`.
    ends: Vec<(usize, usize)>,
}

impl KvPage {
    /// An empty page with room for `entries` entries of `bytes` bytes in all.
    pub fn with_capacity(entries: usize, bytes: usize) -> Self {
        KvPage {
            data: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(entries),
        }
    }

    /// Appends an entry: engines push entries in scan order.
    pub fn push(&mut self, key: &[u8], value: &[u8]) {
        self.data.extend_from_slice(key);
        let key_end = self.data.len();
        self.data.extend_from_slice(value);
        self.ends.push((key_end, self.data.len()));
    }

    /// How many entries the page holds.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// How many key and value bytes the page holds.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// Whether the page reached a bound every engine enforces ([`MAX_SCAN_ENTRIES`],
    /// [`MAX_SCAN_BYTES`]): an engine filling a page stops pushing entries once it is.
    pub fn is_full(&self) -> bool {
        self.len() >= MAX_SCAN_ENTRIES || self.bytes() >= MAX_SCAN_BYTES
    }

    /// Pushes the entries of `entries` in order, each through `push`, until `limit`
    /// entries are in the page or it is full: how an engine fills a bounded page.
    pub fn fill<T, E>(
        &mut self,
        entries: impl Iterator<Item = Result<T, E>>,
        limit: usize,
        mut push: impl FnMut(&mut KvPage, T),
    ) -> Result<(), E> {
        for entry in entries {
            if self.len() >= limit || self.is_full() {
                break;
            }
            push(self, entry?);
        }
        Ok(())
    }

    /// Whether a scan asked for `limit` entries may have left entries of its range
    /// unread: it returned `limit` entries or a full page. Continue with
    /// [`KeyRange::after_page`] while this holds.
    pub fn may_have_more(&self, limit: usize) -> bool {
        !self.is_empty() && (self.len() >= limit || self.is_full())
    }

    /// Keeps the first `len` entries (all, when it holds no more).
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len() {
            return;
        }
        let data_end = len
            .checked_sub(1)
            .and_then(|last| self.ends.get(last))
            .map_or(0, |&(_, value_end)| value_end);
        self.data.truncate(data_end);
        self.ends.truncate(len);
    }

    /// Whether the page holds no entry.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The key and value of entry `index`.
    pub fn get(&self, index: usize) -> Option<(&[u8], &[u8])> {
        let &(key_end, value_end) = self.ends.get(index)?;
        let key_start = match index.checked_sub(1) {
            Some(previous) => self.ends.get(previous)?.1,
            None => 0,
        };
        Some((
            self.data.get(key_start..key_end)?,
            self.data.get(key_end..value_end)?,
        ))
    }

    /// The entries, in scan order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&[u8], &[u8])> + '_ {
        self.ends
            .iter()
            .enumerate()
            .map(|(index, &(key_end, value_end))| {
                let start = index
                    .checked_sub(1)
                    .and_then(|previous| self.ends.get(previous))
                    .map_or(0, |end| end.1);
                let key = self.data.get(start..key_end).unwrap_or_default();
                let value = self.data.get(key_end..value_end).unwrap_or_default();
                (key, value)
            })
    }

    /// The key of the last entry: where the next page of the same scan continues.
    pub fn last_key(&self) -> Option<&[u8]> {
        self.get(self.len().checked_sub(1)?).map(|(key, _)| key)
    }
}

impl fmt::Debug for KvPage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries = self
            .iter()
            .map(|(key, value)| (DisplayKey(key).to_string(), value.len()));
        f.debug_map().entries(entries).finish()
    }
}

/// A precondition of a batch, evaluated against the state before the batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// The key has no value.
    Absent,
    /// The key has a value.
    Present,
    /// The key's value equals this one.
    Equals(Bytes),
}

impl Check {
    /// Whether the check holds for a key whose current value is `current`.
    pub fn holds(&self, current: Option<&[u8]>) -> bool {
        match (self, current) {
            (Check::Absent, current) => current.is_none(),
            (Check::Present, current) => current.is_some(),
            (Check::Equals(expected), Some(current)) => &expected[..] == current,
            (Check::Equals(_), None) => false,
        }
    }
}

/// One operation of a [`WriteBatch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// Set `key` to `value`.
    Put {
        /// The key.
        key: Bytes,
        /// The new value.
        value: Bytes,
    },
    /// Remove `key` (no error if it has no value).
    Delete {
        /// The key.
        key: Bytes,
    },
}

/// Puts, deletes and checks applied all together or not at all.
///
/// Every check is evaluated against the state before the batch, in the order the checks
/// were added; the first that fails rejects the batch with [`KvError::Conflict`] naming
/// its key. Mutations are applied in order, so a later one on the same key wins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    checks: Vec<(Bytes, Check)>,
    mutations: Vec<Mutation>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> &mut Self {
        self.mutations.push(Mutation::Put {
            key: key.into(),
            value: value.into(),
        });
        self
    }

    /// Removes `key`.
    pub fn delete(&mut self, key: impl Into<Bytes>) -> &mut Self {
        self.mutations.push(Mutation::Delete { key: key.into() });
        self
    }

    /// Adds a precondition on `key`.
    pub fn check(&mut self, key: impl Into<Bytes>, check: Check) -> &mut Self {
        self.checks.push((key.into(), check));
        self
    }

    /// The preconditions, in the order they are evaluated.
    pub fn checks(&self) -> &[(Bytes, Check)] {
        &self.checks
    }

    /// The puts and deletes, in the order they are applied.
    pub fn mutations(&self) -> &[Mutation] {
        &self.mutations
    }

    /// Splits the batch into its checks and its mutations.
    pub fn into_parts(self) -> (Vec<(Bytes, Check)>, Vec<Mutation>) {
        (self.checks, self.mutations)
    }

    /// Adds the checks and then the mutations of `other` after this batch's own.
    pub fn extend(&mut self, other: WriteBatch) -> &mut Self {
        self.checks.extend(other.checks);
        self.mutations.extend(other.mutations);
        self
    }

    /// Whether the batch has neither checks nor mutations.
    pub fn is_empty(&self) -> bool {
        self.checks.is_empty() && self.mutations.is_empty()
    }
}

/// A batch's mutations reduced to the last one per key: disjoint upserts and deletes, so
/// an engine may apply them in any order (e.g. as multi-row statements).
pub struct FinalMutations {
    /// The keys to set, with their final values, in key order.
    pub upserts: Vec<(Bytes, Bytes)>,
    /// The keys to remove, in key order.
    pub deletes: Vec<Bytes>,
}

impl FinalMutations {
    /// Reduces `mutations` (in batch order) to the last one per key.
    pub fn new(mutations: Vec<Mutation>) -> Self {
        let mut last: BTreeMap<Bytes, Option<Bytes>> = BTreeMap::new();
        for mutation in mutations {
            match mutation {
                Mutation::Put { key, value } => last.insert(key, Some(value)),
                Mutation::Delete { key } => last.insert(key, None),
            };
        }
        let mut upserts = Vec::new();
        let mut deletes = Vec::new();
        for (key, value) in last {
            match value {
                Some(value) => upserts.push((key, value)),
                None => deletes.push(key),
            }
        }
        FinalMutations { upserts, deletes }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_mutation_of_a_key_wins() {
        let put = |k: &'static [u8], v: &'static [u8]| Mutation::Put {
            key: Bytes::from_static(k),
            value: Bytes::from_static(v),
        };
        let delete = |k: &'static [u8]| Mutation::Delete {
            key: Bytes::from_static(k),
        };
        let reduced = FinalMutations::new(vec![
            put(b"a", b"1"),
            delete(b"a"),
            delete(b"b"),
            put(b"b", b"2"),
            put(b"c", b"3"),
        ]);
        assert_eq!(reduced.deletes, vec![Bytes::from_static(b"a")]);
        assert_eq!(
            reduced.upserts,
            vec![
                (Bytes::from_static(b"b"), Bytes::from_static(b"2")),
                (Bytes::from_static(b"c"), Bytes::from_static(b"3"))
            ]
        );
    }
}
