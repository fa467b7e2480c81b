//! [`IndexedDbKv`]: one IndexedDB database with one object store of binary keys.
//!
//! Keys are `Uint8Array`s, which IndexedDB stores as binary keys and orders bytewise, exactly
//! like Rust byte slices (string keys would sort by UTF-16 units). A batch is one readwrite
//! transaction: its checks are read inside it, and only the transaction's own requests are
//! awaited inside it (awaiting anything else would let it auto-commit). A failed check
//! aborts the transaction, so nothing of the batch lands.

use bytes::Bytes;
use eventkv::{Direction, FinalMutations, KeyRange, KvError, KvPage, OrderedKv, WriteBatch};
use js_sys::Uint8Array;
use rexie::{ObjectStore, Rexie, TransactionMode, TransactionResult};
use std::ops::Bound;
use wasm_bindgen::{JsCast, JsValue};

const ENGINE: &str = "indexeddb";
/// The object store holding every key.
const STORE: &str = "kv";
/// The database schema version this engine creates and reads.
const SCHEMA_VERSION: u32 = 1;

/// The name and message of the DOM exception behind a rexie error, if there is one.
fn dom_exception(error: &rexie::Error) -> Option<(String, String)> {
    match error {
        rexie::Error::IdbError(idb::Error::DomException(exception)) => {
            Some((exception.name(), exception.message()))
        }
        _ => None,
    }
}

/// rexie's errors display as "idb error": this says which DOM exception, or shows the
/// error's debug form. A full quota is [`KvError::StorageFull`].
fn engine_error(error: rexie::Error) -> KvError {
    match dom_exception(&error) {
        Some((name, message)) if name == "QuotaExceededError" => KvError::StorageFull {
            engine: ENGINE,
            message: format!("{name}: {message}"),
        },
        Some((name, message)) => KvError::engine(ENGINE, format!("{name}: {message}")),
        None => KvError::engine(ENGINE, format!("{error:?}")),
    }
}

/// Why a database could not be opened.
#[derive(Debug, thiserror::Error)]
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

fn open_error(name: &str, error: rexie::Error) -> OpenError {
    if let rexie::Error::IdbError(idb::Error::IndexedDbNotFound(_)) = error {
        return OpenError::Unavailable(
            "this global scope has no indexedDB (Node, or a context without storage)".into(),
        );
    }
    if let rexie::Error::IdbError(idb::Error::IndexedDbOpenFailed(thrown)) = &error {
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
            format!("a stored entry is not binary: {value:?}"),
        ))
    }
}

/// An engine on one IndexedDB database of the current origin. Dropping it closes its
/// connection (so the database can then be deleted or upgraded).
#[derive(Debug)]
pub struct IndexedDbKv {
    /// `None` only while being dropped.
    db: Option<Rexie>,
    name: String,
}

impl Drop for IndexedDbKv {
    fn drop(&mut self) {
        if let Some(db) = self.db.take() {
            db.close();
        }
    }
}

impl IndexedDbKv {
    /// Opens (or creates) the database `name`. A database of that name made by another
    /// application or schema is refused, untouched.
    pub async fn open(name: &str) -> Result<Self, OpenError> {
        let db = Rexie::builder(name)
            .version(SCHEMA_VERSION)
            .add_object_store(ObjectStore::new(STORE))
            .build()
            .await
            .map_err(|error| open_error(name, error))?;
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
        Ok(IndexedDbKv {
            db: Some(db),
            name: name.to_owned(),
        })
    }

    /// Deletes the database `name` and everything in it.
    /// It completes once every connection to it, in every tab, is closed.
    pub async fn delete(name: &str) -> Result<(), OpenError> {
        Rexie::delete(name)
            .await
            .map_err(|error| open_error(name, error))
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn transaction(&self, mode: TransactionMode) -> Result<rexie::Transaction, KvError> {
        let db = self
            .db
            .as_ref()
            .ok_or_else(|| KvError::engine(ENGINE, "the connection is closed"))?;
        db.transaction(&[STORE], mode).map_err(engine_error)
    }

    fn key_range(range: &KeyRange) -> Result<Option<rexie::KeyRange>, KvError> {
        let bound = |bound: &Bound<Bytes>| match bound {
            Bound::Included(key) => Some((js_bytes(key), false)),
            Bound::Excluded(key) => Some((js_bytes(key), true)),
            Bound::Unbounded => None,
        };
        let range = match (bound(&range.start), bound(&range.end)) {
            (None, None) => return Ok(None),
            (Some((lower, open)), None) => rexie::KeyRange::lower_bound(&lower, Some(open)),
            (None, Some((upper, open))) => rexie::KeyRange::upper_bound(&upper, Some(open)),
            (Some((lower, lower_open)), Some((upper, upper_open))) => {
                rexie::KeyRange::bound(&lower, &upper, Some(lower_open), Some(upper_open))
            }
        };
        range
            .map(Some)
            .map_err(|error| KvError::engine(ENGINE, format!("invalid key range: {error:?}")))
    }
}

impl OrderedKv for IndexedDbKv {
    async fn get(&self, key: &[u8]) -> Result<Option<Bytes>, KvError> {
        let tx = self.transaction(TransactionMode::ReadOnly)?;
        let store = tx.store(STORE).map_err(engine_error)?;
        let value = store.get(js_bytes(key)).await.map_err(engine_error)?;
        value
            .map(|value| rust_bytes(&value).map(Bytes::from))
            .transpose()
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
        let key_range = Self::key_range(range)?;
        let direction = match direction {
            Direction::Forward => rexie::Direction::Next,
            Direction::Reverse => rexie::Direction::Prev,
        };
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        let tx = self.transaction(TransactionMode::ReadOnly)?;
        let store = tx.store(STORE).map_err(engine_error)?;
        if direction == rexie::Direction::Next {
            // Two requests for the whole page (keys, then values, from one snapshot) instead
            // of one cursor step, and one trip through the event loop, per entry.
            let keys = store
                .get_all_keys(key_range.clone(), Some(limit))
                .await
                .map_err(engine_error)?;
            let values = store
                .get_all(key_range, Some(limit))
                .await
                .map_err(engine_error)?;
            if keys.len() != values.len() {
                return Err(KvError::engine(
                    ENGINE,
                    "getAllKeys and getAll disagree within one transaction",
                ));
            }
            for (key, value) in keys.iter().zip(&values) {
                page.push(&rust_bytes(key)?, &rust_bytes(value)?);
            }
        } else {
            let entries = store
                .scan(key_range, Some(limit), None, Some(direction))
                .await
                .map_err(engine_error)?;
            for (key, value) in &entries {
                page.push(&rust_bytes(key)?, &rust_bytes(value)?);
            }
        }
        Ok(page)
    }

    async fn write(&self, batch: WriteBatch) -> Result<(), KvError> {
        let (checks, mutations) = batch.into_parts();
        let tx = self.transaction(TransactionMode::ReadWrite)?;
        let store = tx.store(STORE).map_err(engine_error)?;
        for (key, check) in &checks {
            let current = store.get(js_bytes(key)).await.map_err(engine_error)?;
            let current = current.map(|value| rust_bytes(&value)).transpose()?;
            if !check.holds(current.as_deref()) {
                tx.abort().await.map_err(engine_error)?;
                return Err(KvError::Conflict { key: key.clone() });
            }
        }
        let FinalMutations { upserts, deletes } = FinalMutations::new(mutations);
        for key in &deletes {
            store.delete(js_bytes(key)).await.map_err(engine_error)?;
        }
        // Requests run in the order they were made; awaiting the last one awaits them all.
        let puts = upserts
            .iter()
            .map(|(key, value)| (js_bytes(value), Some(js_bytes(key))));
        store.put_all(puts).await.map_err(engine_error)?;
        match tx.done().await.map_err(engine_error)? {
            TransactionResult::Committed => Ok(()),
            TransactionResult::Aborted => Err(KvError::engine(
                ENGINE,
                "the transaction was aborted; nothing of the batch was applied",
            )),
        }
    }
}
