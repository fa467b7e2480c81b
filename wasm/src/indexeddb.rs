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

/// rexie's errors display as "idb error"; their debug form says what failed.
fn engine_error(error: rexie::Error) -> KvError {
    KvError::engine(ENGINE, format!("{error:?}"))
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

/// An engine on one IndexedDB database of the current origin.
#[derive(Debug)]
pub struct IndexedDbKv {
    db: Rexie,
    name: String,
}

impl IndexedDbKv {
    /// Opens (or creates) the database `name`.
    pub async fn open(name: &str) -> Result<Self, KvError> {
        let db = Rexie::builder(name)
            .version(SCHEMA_VERSION)
            .add_object_store(ObjectStore::new(STORE))
            .build()
            .await
            .map_err(|error| {
                KvError::engine(ENGINE, format!("cannot open database {name:?}: {error:?}"))
            })?;
        if !db.store_names().iter().any(|store| store == STORE) {
            return Err(KvError::engine(
                ENGINE,
                format!(
                    "database {name:?} exists but was not created by eventkv (no object store {STORE:?})"
                ),
            ));
        }
        Ok(IndexedDbKv {
            db,
            name: name.to_owned(),
        })
    }

    /// Deletes the database `name` and everything in it.
    pub async fn delete(name: &str) -> Result<(), KvError> {
        Rexie::delete(name).await.map_err(engine_error)
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
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
        let tx = self
            .db
            .transaction(&[STORE], TransactionMode::ReadOnly)
            .map_err(engine_error)?;
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
        let tx = self
            .db
            .transaction(&[STORE], TransactionMode::ReadOnly)
            .map_err(engine_error)?;
        let store = tx.store(STORE).map_err(engine_error)?;
        let entries = store
            .scan(key_range, Some(limit), None, Some(direction))
            .await
            .map_err(engine_error)?;
        for (key, value) in &entries {
            page.push(&rust_bytes(key)?, &rust_bytes(value)?);
        }
        Ok(page)
    }

    async fn write(&self, batch: WriteBatch) -> Result<(), KvError> {
        let (checks, mutations) = batch.into_parts();
        let tx = self
            .db
            .transaction(&[STORE], TransactionMode::ReadWrite)
            .map_err(engine_error)?;
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
