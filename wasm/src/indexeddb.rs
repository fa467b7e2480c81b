//! [`IndexedDbKv`]: one IndexedDB database with one object store of binary keys, through
//! the `idb` crate (the one rexie wraps: rexie hides the transaction's `error`, and a full
//! quota is reported there only).
//!
//! Keys are `Uint8Array`s, which IndexedDB stores as binary keys and orders bytewise, exactly
//! like Rust byte slices (string keys would sort by UTF-16 units). A batch is one readwrite
//! transaction: its checks are read inside it, and only the transaction's own requests are
//! awaited inside it (awaiting anything else would let it auto-commit). A failed check
//! aborts the transaction, so nothing of the batch lands.

use bytes::Bytes;
use eventkv::raw::{BuildBatch, FinalMutations, MAX_SCAN_ENTRIES, first_failed_check};
use eventkv::{Direction, ErrorKind, KeyRange, KvError, KvPage, OrderedKv, WriteBatch};
use idb::{
    CursorDirection, Database, DatabaseEvent as _, Factory, ObjectStore, Query, TransactionMode,
    TransactionResult,
};
use js_sys::{Object, Reflect, Uint8Array};
use std::cell::Cell;
use std::collections::HashMap;
use std::future::IntoFuture;
use std::ops::Bound;
use std::rc::Rc;
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::IdbDatabase;

#[wasm_bindgen]
extern "C" {
    /// An `IDBDatabase`, for the one call web-sys has only behind its unstable-API flag.
    #[wasm_bindgen(extends = IdbDatabase, js_name = IDBDatabase)]
    type Connection;

    /// `IDBDatabase.transaction(storeNames, mode, options)`.
    #[wasm_bindgen(method, catch, js_name = transaction)]
    fn transaction_with_options(
        this: &Connection,
        store_names: &str,
        mode: &str,
        options: &Object,
    ) -> Result<web_sys::IdbTransaction, JsValue>;
}

/// When the browser reports a write batch committed (IndexedDB's `durability` hint for
/// readwrite transactions).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// `"strict"`: once flushed to disk, so what a write resolved for survives an OS
    /// crash or a power loss. The default.
    #[default]
    Strict,
    /// `"relaxed"` (Chromium's own default): once handed to the OS. Faster, but the last
    /// writes can be lost on an OS crash or a power loss (never on a tab or browser crash).
    Relaxed,
    /// `"default"`: whatever the browser does by default.
    BrowserDefault,
}

impl Durability {
    /// The name IndexedDB uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Strict => "strict",
            Durability::Relaxed => "relaxed",
            Durability::BrowserDefault => "default",
        }
    }
}

const ENGINE: &str = "indexeddb";
/// The object store holding every key.
const STORE: &str = "kv";
/// The database schema version this engine creates and reads.
const SCHEMA_VERSION: u32 = 1;

/// The name and message of the DOM exception behind an error, if there is one.
fn dom_exception(error: &idb::Error) -> Option<(String, String)> {
    match error {
        idb::Error::DomException(exception) => Some((exception.name(), exception.message())),
        _ => None,
    }
}

/// The engine error for a DOM exception: a full quota is [`KvError::StorageFull`]; a
/// database closed under the call is closed. (JavaScript values cannot be shared between
/// threads, so the exception is kept as its name and message.)
fn exception_error(name: String, message: String) -> KvError {
    let kind = match name.as_str() {
        "QuotaExceededError" => ErrorKind::StorageFull,
        "InvalidStateError" => ErrorKind::Closed,
        "DataError" => ErrorKind::InvalidInput,
        "VersionError" => ErrorKind::Unsupported,
        _ => ErrorKind::Unexpected,
    };
    let message = format!("{name}: {message}");
    match kind {
        ErrorKind::StorageFull => KvError::storage_full(ENGINE, message),
        kind => KvError::engine(ENGINE, kind, message),
    }
}

fn engine_error(error: idb::Error) -> KvError {
    match dom_exception(&error) {
        Some((name, message)) => exception_error(name, message),
        None => KvError::engine(ENGINE, ErrorKind::Unexpected, error.to_string()),
    }
}

/// Why a database could not be opened.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// IndexedDB is missing (Node, a worklet) or refuses this context (some private
    /// modes, sandboxed frames, opaque origins).
    #[error("IndexedDB is unavailable here: {0}")]
    Unavailable(String),
    /// The database exists but was made by another application or a newer schema; it
    /// was left untouched.
    #[error("database {name:?} cannot be used by eventkv and was left untouched: {reason}")]
    Incompatible {
        /// The database name.
        name: String,
        /// What was found.
        reason: String,
    },
    /// IndexedDB failed in another way.
    #[error(transparent)]
    Engine(KvError),
}

impl OpenError {
    /// What kind of failure it is: IndexedDB missing or refused is unavailable; a database
    /// eventkv cannot use, unsupported.
    pub fn kind(&self) -> ErrorKind {
        match self {
            OpenError::Unavailable(_) => ErrorKind::Unavailable,
            OpenError::Incompatible { .. } => ErrorKind::Unsupported,
            OpenError::Engine(error) => error.kind(),
        }
    }
}

eventkv::__error_class!(OpenError);

fn open_error(name: &str, error: idb::Error) -> OpenError {
    if let idb::Error::IndexedDbNotFound(_) = error {
        return OpenError::Unavailable(
            "this global scope has no indexedDB (Node, or a context without storage)".into(),
        );
    }
    if let idb::Error::IndexedDbOpenFailed(thrown) = &error {
        return OpenError::Unavailable(format!("indexedDB.open threw {thrown:?}"));
    }
    match dom_exception(&error) {
        Some((exception, message)) if exception == "VersionError" => OpenError::Incompatible {
            name: name.to_owned(),
            reason: format!(
                "its IndexedDB version is newer than eventkv's {SCHEMA_VERSION} ({message})"
            ),
        },
        Some((exception, message))
            if ["InvalidStateError", "SecurityError", "NotAllowedError"]
                .contains(&exception.as_str()) =>
        {
            OpenError::Unavailable(format!("{exception}: {message}"))
        }
        _ => OpenError::Engine(engine_error(error)),
    }
}

fn js_bytes(bytes: &[u8]) -> JsValue {
    Uint8Array::from(bytes).into()
}

/// The bytes of a stored key (an `ArrayBuffer`) or value (a `Uint8Array`).
fn rust_bytes(value: &JsValue) -> Result<Vec<u8>, KvError> {
    if value.is_instance_of::<Uint8Array>() || value.is_instance_of::<js_sys::ArrayBuffer>() {
        Ok(Uint8Array::new(value).to_vec())
    } else {
        Err(KvError::engine(
            ENGINE,
            ErrorKind::Corrupt,
            format!("a stored entry is not binary: {value:?}"),
        ))
    }
}

/// An engine on one IndexedDB database of the current origin. Dropping it closes its
/// connection (so the database can then be deleted or upgraded). When another connection,
/// in this tab or another, deletes or upgrades the database, this one closes itself
/// instead of blocking it; its later calls fail, and [`IndexedDbKv::is_closed`] says why.
#[derive(Debug)]
pub struct IndexedDbKv {
    db: Database,
    /// The same connection, for the transactions `idb` cannot open.
    raw: IdbDatabase,
    /// `{ durability }`, the options of every readwrite transaction.
    write_options: Object,
    name: String,
    /// Set when a `versionchange` event closed the connection.
    closed: Rc<Cell<bool>>,
}

impl Drop for IndexedDbKv {
    fn drop(&mut self) {
        self.db.close();
    }
}

impl IndexedDbKv {
    /// Opens (or creates) the database `name`, committing writes with
    /// [`Durability::Strict`]. A database of that name made by another application or
    /// schema is refused, untouched.
    pub async fn open(name: &str) -> Result<Self, OpenError> {
        Self::open_with(name, Durability::Strict).await
    }

    /// Opens (or creates) the database `name`, committing writes with `durability`.
    pub async fn open_with(name: &str, durability: Durability) -> Result<Self, OpenError> {
        let factory = Factory::new().map_err(|error| open_error(name, error))?;
        let mut request = factory
            .open(name, Some(SCHEMA_VERSION))
            .map_err(|error| open_error(name, error))?;
        // Runs only when the database is new: an existing one is at version 1 already, or
        // newer (refused with a VersionError).
        request.on_upgrade_needed(|event| {
            if let Ok(db) = event.database() {
                // A failure here aborts the upgrade, and the open fails with its reason.
                let _ = db.create_object_store(STORE, idb::ObjectStoreParams::new());
            }
        });
        let db = request.await.map_err(|error| open_error(name, error))?;
        let raw = IdbDatabase::from(db);
        let mut db = Database::from(raw.clone());
        let stores = db.store_names();
        if stores != [STORE] {
            db.close();
            return Err(OpenError::Incompatible {
                name: name.to_owned(),
                reason: format!(
                    "it exists at version {SCHEMA_VERSION} with the object stores {stores:?}, not only {STORE:?}"
                ),
            });
        }
        let closed = Rc::new(Cell::new(false));
        let flag = Rc::clone(&closed);
        db.on_version_change(move |event| {
            flag.set(true);
            if let Some(connection) = event
                .target()
                .and_then(|target| target.dyn_into::<IdbDatabase>().ok())
            {
                connection.close();
            }
        });
        let write_options = Object::new();
        // Setting a property on a fresh object cannot fail.
        let _ = Reflect::set(
            &write_options,
            &"durability".into(),
            &durability.as_str().into(),
        );
        Ok(IndexedDbKv {
            db,
            raw,
            write_options,
            name: name.to_owned(),
            closed,
        })
    }

    /// Deletes the database `name` and everything in it.
    /// It completes once every connection to it, in every tab, is closed.
    pub async fn delete(name: &str) -> Result<(), OpenError> {
        let factory = Factory::new().map_err(|error| open_error(name, error))?;
        let request = factory
            .delete(name)
            .map_err(|error| open_error(name, error))?;
        request.await.map_err(|error| open_error(name, error))
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the connection closed itself so that another could delete or upgrade the
    /// database: open it again to go on.
    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// A transaction on the one object store, and that store.
    fn transaction(
        &self,
        mode: TransactionMode,
    ) -> Result<(idb::Transaction, ObjectStore), KvError> {
        if self.is_closed() {
            return Err(KvError::engine(
                ENGINE,
                ErrorKind::Closed,
                format!(
                    "the connection to {:?} closed itself because another connection deletes or upgrades the database; open it again",
                    self.name
                ),
            ));
        }
        let tx = match mode {
            TransactionMode::ReadWrite => self
                .raw
                .unchecked_ref::<Connection>()
                .transaction_with_options(STORE, "readwrite", &self.write_options)
                .map(idb::Transaction::from)
                .map_err(|error| engine_error(idb::Error::TransactionOpenFailed(error)))?,
            _ => self.db.transaction(&[STORE], mode).map_err(engine_error)?,
        };
        let store = tx.object_store(STORE).map_err(engine_error)?;
        Ok((tx, store))
    }

    fn key_range(range: &KeyRange) -> Result<Option<Query>, KvError> {
        let bound = |bound: &Bound<Bytes>| match bound {
            Bound::Included(key) => Some((js_bytes(key), false)),
            Bound::Excluded(key) => Some((js_bytes(key), true)),
            Bound::Unbounded => None,
        };
        let range = match (bound(&range.start), bound(&range.end)) {
            (None, None) => return Ok(None),
            (Some((lower, open)), None) => idb::KeyRange::lower_bound(&lower, Some(open)),
            (None, Some((upper, open))) => idb::KeyRange::upper_bound(&upper, Some(open)),
            (Some((lower, lower_open)), Some((upper, upper_open))) => {
                idb::KeyRange::bound(&lower, &upper, Some(lower_open), Some(upper_open))
            }
        };
        range
            .map(|range| Some(Query::KeyRange(range)))
            .map_err(|error| {
                KvError::engine(
                    ENGINE,
                    ErrorKind::InvalidInput,
                    format!("invalid key range: {error}"),
                )
            })
    }
}

/// The values of `keys`, read in `store`'s transaction. Every read is requested (and its
/// handlers attached, by `into_future`) before the first is awaited: they run in order,
/// without a round trip each.
async fn read_all(
    store: &ObjectStore,
    keys: &[Bytes],
) -> Result<HashMap<Bytes, Option<Vec<u8>>>, KvError> {
    let reads = keys
        .iter()
        .map(|key| {
            let read = store.get(js_bytes(key)).map_err(engine_error)?;
            Ok(IntoFuture::into_future(read))
        })
        .collect::<Result<Vec<_>, KvError>>()?;
    let mut current = HashMap::with_capacity(keys.len());
    for (key, read) in keys.iter().zip(reads) {
        let value = read.await.map_err(engine_error)?;
        current.insert(
            key.clone(),
            value.map(|value| rust_bytes(&value)).transpose()?,
        );
    }
    Ok(current)
}

impl OrderedKv for IndexedDbKv {
    async fn get(&self, key: &[u8]) -> Result<Option<Bytes>, KvError> {
        let (_tx, store) = self.transaction(TransactionMode::ReadOnly)?;
        let value = store
            .get(js_bytes(key))
            .map_err(engine_error)?
            .await
            .map_err(engine_error)?;
        value
            .map(|value| rust_bytes(&value).map(Bytes::from))
            .transpose()
    }

    /// One transaction: every request is made before the first is awaited.
    async fn get_many<'a>(&'a self, keys: &'a [Bytes]) -> Result<KvPage, KvError> {
        let mut page = KvPage::default();
        if keys.is_empty() {
            return Ok(page);
        }
        let (_tx, store) = self.transaction(TransactionMode::ReadOnly)?;
        let requests = keys
            .iter()
            .map(|key| store.get(js_bytes(key)).map_err(engine_error))
            .collect::<Result<Vec<_>, _>>()?;
        // The values past a full page are left to the JavaScript heap's collector: only
        // a page is copied into the module's memory, which never shrinks.
        for (key, request) in keys.iter().zip(requests) {
            if page.is_full() {
                break;
            }
            if let Some(value) = request.await.map_err(engine_error)? {
                page.push(key, &rust_bytes(&value)?);
            }
        }
        Ok(page)
    }

    async fn scan(
        &self,
        range: &KeyRange,
        direction: Direction,
        limit: usize,
    ) -> Result<KvPage, KvError> {
        let mut page = KvPage::default();
        if range.is_empty() || limit == 0 {
            return Ok(page);
        }
        let query = Self::key_range(range)?;
        // Never more entries than a full page; the byte bound is applied as they are copied.
        let count = u32::try_from(limit.min(MAX_SCAN_ENTRIES)).unwrap_or(u32::MAX);
        let (_tx, store) = self.transaction(TransactionMode::ReadOnly)?;
        match direction {
            Direction::Forward => {
                // Two requests for the whole page (keys, then values, from one snapshot)
                // instead of one cursor step, and one trip through the event loop, per entry.
                let keys = store
                    .get_all_keys(query.clone(), Some(count))
                    .map_err(engine_error)?
                    .await
                    .map_err(engine_error)?;
                let values = store
                    .get_all(query, Some(count))
                    .map_err(engine_error)?
                    .await
                    .map_err(engine_error)?;
                if keys.len() != values.len() {
                    return Err(KvError::engine(
                        ENGINE,
                        ErrorKind::Unexpected,
                        "getAllKeys and getAll disagree within one transaction",
                    ));
                }
                let entries = keys
                    .iter()
                    .zip(&values)
                    .map(|(key, value)| Ok::<_, KvError>((rust_bytes(key)?, rust_bytes(value)?)));
                page.fill(entries, limit, |page, (key, value)| page.push(&key, &value))?;
            }
            Direction::Reverse => {
                let cursor = store
                    .open_cursor(query, Some(CursorDirection::Prev))
                    .map_err(engine_error)?
                    .await
                    .map_err(engine_error)?;
                let Some(cursor) = cursor else {
                    return Ok(page);
                };
                let mut cursor = cursor.into_managed();
                while page.len() < limit && !page.is_full() {
                    let entry = (
                        cursor.key().map_err(engine_error)?,
                        cursor.value().map_err(engine_error)?,
                    );
                    let (Some(key), Some(value)) = entry else {
                        break;
                    };
                    page.push(&rust_bytes(&key)?, &rust_bytes(&value)?);
                    cursor.next(None).await.map_err(engine_error)?;
                }
            }
        }
        Ok(page)
    }

    async fn write(&self, batch: WriteBatch) -> Result<(), KvError> {
        eventkv::raw::write_built(self, batch).await
    }

    /// Reads `reads` inside the readwrite transaction, which other connections (other
    /// tabs) wait for: none can change them before the batch applies.
    async fn write_with<'a>(
        &'a self,
        reads: Vec<Bytes>,
        build: BuildBatch<'a>,
    ) -> Result<bool, KvError> {
        let (tx, store) = self.transaction(TransactionMode::ReadWrite)?;
        let current = read_all(&store, &reads).await?;
        let values: Vec<Option<Bytes>> = reads
            .iter()
            .map(|key| {
                current
                    .get(key)
                    .and_then(Option::as_deref)
                    .map(Bytes::copy_from_slice)
            })
            .collect();
        let Some(batch) = build(&values) else {
            tx.abort()
                .map_err(engine_error)?
                .await
                .map_err(engine_error)?;
            return Ok(false);
        };
        let (checks, mutations) = batch.into_parts();
        let keys: Vec<Bytes> = checks.iter().map(|(key, _)| key.clone()).collect();
        let current = read_all(&store, &keys).await?;
        let failed = first_failed_check(&checks, |key| {
            Ok::<_, KvError>(current.get(key).and_then(Option::as_ref))
        })?;
        if let Some(key) = failed {
            tx.abort()
                .map_err(engine_error)?
                .await
                .map_err(engine_error)?;
            return Err(KvError::Conflict { key: key.clone() });
        }
        let FinalMutations { upserts, deletes } = FinalMutations::new(mutations);
        for key in &deletes {
            store.delete(js_bytes(key)).map_err(engine_error)?;
        }
        // Requests run in the order they were made; the transaction completes after all.
        for (key, value) in &upserts {
            store
                .put(&js_bytes(value), Some(&js_bytes(key)))
                .map_err(engine_error)?;
        }
        match tx.await.map_err(engine_error)? {
            TransactionResult::Committed => Ok(true),
            // The reason (a full quota, found at commit) is on the transaction.
            TransactionResult::Aborted => Err(match store.transaction().error() {
                Some(error) => exception_error(error.name(), error.message()),
                None => KvError::engine(
                    ENGINE,
                    ErrorKind::Unexpected,
                    "the browser aborted the transaction; nothing of the batch was applied",
                ),
            }),
        }
    }
}
