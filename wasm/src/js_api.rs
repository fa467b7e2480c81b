//! `EventStore`, the JavaScript API: JSON events and snapshots in IndexedDB, for apps
//! that keep their reducer in JavaScript. Every call returns a promise; failures reject
//! with an `EventKvError` carrying a stable `code`.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;

use eventkv::{
    Codec, EventPage, EventStore as _, FormatError, KvEventStore, KvSnapshotStore, Snapshot,
    SnapshotStore as _, SnapshotStoreError, Timestamp,
};
use js_sys::{JSON, Promise};
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::indexeddb::IndexedDbKv;
use crate::js_error::{ApiError, ErrorCode};
use crate::js_types::{
    AppendedJson, LoadedJson, NewEventJson, NewSnapshotJson, SnapshotJson, StoredEventJson,
};

/// How many events `readStream` and `readAll` return when no limit is given.
const DEFAULT_LIMIT: usize = 1000;
/// How many events one read of `load` asks IndexedDB for.
const LOAD_PAGE: usize = 4096;
/// The largest integer a JS number holds exactly.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// The event and snapshot stores, each on its own connection to the same database.
struct Stores {
    events: KvEventStore<IndexedDbKv>,
    snapshots: KvSnapshotStore<IndexedDbKv>,
}

impl Stores {
    /// Whether a connection closed itself so that another could delete or upgrade the
    /// database.
    fn closed_itself(&self) -> bool {
        self.events.kv().is_closed() || self.snapshots.kv().is_closed()
    }
}

/// Events and snapshots of one IndexedDB database of this origin.
#[wasm_bindgen(js_name = EventStore)]
pub struct JsEventStore {
    name: String,
    /// `None` once closed. Calls in flight keep their own reference until they finish.
    stores: RefCell<Option<Rc<Stores>>>,
}

#[wasm_bindgen(js_class = EventStore)]
impl JsEventStore {
    /// Opens the IndexedDB database `name`, creating it when it does not exist. Rejects
    /// with `Unavailable` where there is no IndexedDB, and with `IncompatibleDatabase`
    /// when the name is taken by another application or schema (left untouched).
    pub async fn open(name: String) -> Result<JsEventStore, JsValue> {
        let events = IndexedDbKv::open(&name).await.map_err(ApiError::from)?;
        let snapshots = IndexedDbKv::open(&name).await.map_err(ApiError::from)?;
        let stores = Stores {
            events: KvEventStore::new(events),
            snapshots: KvSnapshotStore::new(snapshots),
        };
        Ok(JsEventStore {
            name,
            stores: RefCell::new(Some(Rc::new(stores))),
        })
    }

    /// Deletes the database `name` and everything in it. Completes once every
    /// connection to it (every open `EventStore`, in every tab) is closed.
    #[wasm_bindgen(js_name = deleteDatabase)]
    pub async fn delete_database(name: String) -> Result<(), JsValue> {
        IndexedDbKv::delete(&name).await.map_err(ApiError::from)?;
        Ok(())
    }

    /// The database's name.
    #[wasm_bindgen(getter)]
    pub fn name(&self) -> String {
        self.name.clone()
    }

    /// Closes the store: later calls reject with `Closed`; calls in flight finish first,
    /// then the connections close.
    pub fn close(&self) {
        self.stores.borrow_mut().take();
    }

    /// Appends `events` to one aggregate whose stream must be at `expectedVersion` (0 for
    /// a new aggregate): all land, with consecutive versions, or none does. Rejects with
    /// `Conflict` (with `expected` and `actual`) when the stream is elsewhere.
    #[wasm_bindgen(unchecked_return_type = "Promise<Appended>")]
    pub fn append(
        &self,
        #[wasm_bindgen(js_name = aggregateType)] aggregate_type: String,
        #[wasm_bindgen(js_name = aggregateId)] aggregate_id: String,
        #[wasm_bindgen(js_name = expectedVersion)] expected_version: f64,
        #[wasm_bindgen(unchecked_param_type = "NewEvent[]")] events: JsValue,
    ) -> Promise {
        let json = stringify("events", &events);
        self.run(move |stores| async move {
            let json = json?;
            let expected = whole_number("expectedVersion", expected_version)?;
            let parsed: Vec<NewEventJson> = serde_json::from_str(&json)
                .map_err(|error| ApiError::invalid(format!("events: {error}")))?;
            let events: Vec<_> = parsed
                .into_iter()
                .map(NewEventJson::into_new_event)
                .collect();
            let appended = stores
                .events
                .append(&aggregate_type, &aggregate_id, expected, &events)
                .await?;
            to_js(&AppendedJson {
                first_version: appended.first_version,
                last_version: appended.last_version,
                first_position: appended.first_position,
                last_position: appended.last_position,
            })
        })
    }

    /// At most `limit` (default 1000) events of one aggregate from `fromVersion`
    /// (default 1), in version order. Page by calling again after the last version.
    #[wasm_bindgen(js_name = readStream, unchecked_return_type = "Promise<StoredEvent[]>")]
    pub fn read_stream(
        &self,
        #[wasm_bindgen(js_name = aggregateType)] aggregate_type: String,
        #[wasm_bindgen(js_name = aggregateId)] aggregate_id: String,
        #[wasm_bindgen(js_name = fromVersion)] from_version: Option<f64>,
        limit: Option<f64>,
    ) -> Promise {
        self.run(move |stores| async move {
            let from = whole_number("fromVersion", from_version.unwrap_or(1.0))?;
            let limit = limit_of(limit)?;
            let page = stores
                .events
                .read_stream(&aggregate_type, &aggregate_id, from, u64::MAX, limit)
                .await?;
            events_to_js(&page)
        })
    }

    /// The version of the aggregate's last event; 0 when it has none.
    #[wasm_bindgen(js_name = currentVersion, unchecked_return_type = "Promise<number>")]
    pub fn current_version(
        &self,
        #[wasm_bindgen(js_name = aggregateType)] aggregate_type: String,
        #[wasm_bindgen(js_name = aggregateId)] aggregate_id: String,
    ) -> Promise {
        self.run(move |stores| async move {
            let version = stores
                .events
                .current_version(&aggregate_type, &aggregate_id)
                .await?;
            Ok(JsValue::from_f64(version as f64))
        })
    }

    /// At most `limit` (default 1000) events of all aggregates from global position
    /// `fromPosition` (default 1), in commit order.
    #[wasm_bindgen(js_name = readAll, unchecked_return_type = "Promise<StoredEvent[]>")]
    pub fn read_all(
        &self,
        #[wasm_bindgen(js_name = fromPosition)] from_position: Option<f64>,
        limit: Option<f64>,
    ) -> Promise {
        self.run(move |stores| async move {
            let from = whole_number("fromPosition", from_position.unwrap_or(1.0))?;
            let limit = limit_of(limit)?;
            events_to_js(&stores.events.read_all(from, limit).await?)
        })
    }

    /// Saves a snapshot, replacing the aggregate's unless that one is newer. Resolves
    /// to whether it was stored.
    #[wasm_bindgen(js_name = saveSnapshot, unchecked_return_type = "Promise<boolean>")]
    pub fn save_snapshot(
        &self,
        #[wasm_bindgen(unchecked_param_type = "NewSnapshot")] snapshot: JsValue,
    ) -> Promise {
        let json = stringify("snapshot", &snapshot);
        self.run(move |stores| async move {
            let json = json?;
            let parsed: NewSnapshotJson = serde_json::from_str(&json)
                .map_err(|error| ApiError::invalid(format!("snapshot: {error}")))?;
            // The snapshot is bound to the event it was taken at, which must exist.
            let at = stores
                .events
                .read_stream(
                    &parsed.aggregate_type,
                    &parsed.aggregate_id,
                    parsed.version,
                    parsed.version,
                    1,
                )
                .await?;
            let Some(anchor) = at.get(0).map(|event| event.event_id()) else {
                return Err(ApiError::invalid(format!(
                    "snapshot: {} {:?} has no event at version {}: a snapshot is taken at a stored event",
                    parsed.aggregate_type, parsed.aggregate_id, parsed.version
                )));
            };
            let snapshot = Snapshot {
                aggregate_id: parsed.aggregate_id,
                aggregate_type: parsed.aggregate_type,
                version: parsed.version,
                anchor_event_id: Some(anchor),
                schema_version: parsed.schema_version,
                codec: Codec::Json,
                state: bytes::Bytes::copy_from_slice(parsed.state.get().as_bytes()),
                created_at: Timestamp::now(),
            };
            let stored = stores.snapshots.save_snapshot(&snapshot).await?;
            Ok(JsValue::from_bool(stored))
        })
    }

    /// The aggregate's snapshot, or null.
    #[wasm_bindgen(js_name = getSnapshot, unchecked_return_type = "Promise<Snapshot | null>")]
    pub fn get_snapshot(
        &self,
        #[wasm_bindgen(js_name = aggregateType)] aggregate_type: String,
        #[wasm_bindgen(js_name = aggregateId)] aggregate_id: String,
    ) -> Promise {
        self.run(move |stores| async move {
            match stores
                .snapshots
                .get_snapshot(&aggregate_type, &aggregate_id)
                .await?
            {
                Some(snapshot) => to_js(&SnapshotJson::new(&snapshot)?),
                None => Ok(JsValue::NULL),
            }
        })
    }

    /// Deletes the aggregate's snapshot; resolves to whether there was one.
    #[wasm_bindgen(js_name = deleteSnapshot, unchecked_return_type = "Promise<boolean>")]
    pub fn delete_snapshot(
        &self,
        #[wasm_bindgen(js_name = aggregateType)] aggregate_type: String,
        #[wasm_bindgen(js_name = aggregateId)] aggregate_id: String,
    ) -> Promise {
        self.run(move |stores| async move {
            let deleted = stores
                .snapshots
                .delete_snapshot(&aggregate_type, &aggregate_id)
                .await?;
            Ok(JsValue::from_bool(deleted))
        })
    }

    /// Deletes every snapshot of `aggregateType`, or, with `schemaVersionBelow`, those of
    /// a lower schema version. Resolves to how many were deleted.
    #[wasm_bindgen(js_name = deleteSnapshots, unchecked_return_type = "Promise<number>")]
    pub fn delete_snapshots(
        &self,
        #[wasm_bindgen(js_name = aggregateType)] aggregate_type: String,
        #[wasm_bindgen(js_name = schemaVersionBelow)] schema_version_below: Option<f64>,
    ) -> Promise {
        self.run(move |stores| async move {
            let below = schema_version_below
                .map(|below| schema_version("schemaVersionBelow", below))
                .transpose()?;
            let deleted = stores
                .snapshots
                .delete_snapshots_by_type(&aggregate_type, below)
                .await?;
            Ok(JsValue::from_f64(deleted as f64))
        })
    }

    /// What a reducer needs to rebuild the aggregate fast: its latest snapshot, when
    /// its `schemaVersion` matches and it is readable, and the events after it (all
    /// events otherwise). Rejects with `NotFound` when the aggregate has no events.
    #[wasm_bindgen(unchecked_return_type = "Promise<Loaded>")]
    pub fn load(
        &self,
        #[wasm_bindgen(js_name = aggregateType)] aggregate_type: String,
        #[wasm_bindgen(js_name = aggregateId)] aggregate_id: String,
        #[wasm_bindgen(js_name = schemaVersion)] schema_version: f64,
    ) -> Promise {
        self.run(move |stores| async move {
            let schema_version = self::schema_version("schemaVersion", schema_version)?;
            load(&stores, &aggregate_type, &aggregate_id, schema_version).await
        })
    }
}

impl JsEventStore {
    /// Runs `task` on the stores as a promise, or rejects with `Closed`.
    fn run<F>(&self, task: impl FnOnce(Rc<Stores>) -> F) -> Promise
    where
        F: Future<Output = Result<JsValue, ApiError>> + 'static,
    {
        let Some(stores) = self.stores.borrow().clone() else {
            let closed = ApiError::new(
                ErrorCode::Closed,
                format!("the store {:?} is closed", self.name),
            );
            return Promise::reject(&closed.into());
        };
        let task = task(Rc::clone(&stores));
        future_to_promise(async move {
            task.await.map_err(|error| {
                if stores.closed_itself() {
                    error.with_code(ErrorCode::Closed).into()
                } else {
                    error.into()
                }
            })
        })
    }
}

async fn load(
    stores: &Stores,
    aggregate_type: &str,
    aggregate_id: &str,
    schema_version: u32,
) -> Result<JsValue, ApiError> {
    let stored = stores
        .snapshots
        .get_snapshot(aggregate_type, aggregate_id)
        .await;
    let (mut snapshot, mut miss) = match &stored {
        Ok(None) => (None, None),
        Ok(Some(found)) if found.schema_version != schema_version => (None, Some("SchemaMismatch")),
        Ok(Some(found)) => match SnapshotJson::new(found) {
            Ok(usable) => (Some(usable), None),
            Err(error) if error.code() == ErrorCode::UnsupportedCodec => {
                (None, Some("UnknownCodec"))
            }
            Err(_) => (None, Some("Undecodable")),
        },
        Err(SnapshotStoreError::UnknownCodec { .. }) => (None, Some("UnknownCodec")),
        Err(SnapshotStoreError::Corrupt {
            source: FormatError::ChecksumMismatch { .. },
            ..
        }) => (None, Some("ChecksumMismatch")),
        Err(SnapshotStoreError::Corrupt { .. }) => (None, Some("Undecodable")),
        Err(_) => (None, Some("Unreadable")),
    };
    // From the snapshot's own event, which must exist: else the snapshot is ahead.
    let anchor = snapshot.as_ref().map_or(0, SnapshotJson::version);
    let mut pages = read_stream_from(stores, aggregate_type, aggregate_id, anchor.max(1)).await?;
    let found = pages
        .first()
        .and_then(|page| page.get(0))
        .filter(|first| first.version() == anchor)
        .map(|first| first.event_id());
    if let (Some(_), Ok(Some(stored))) = (&snapshot, &stored) {
        let unusable = match found {
            None => Some("AheadOfStream"),
            Some(id) if stored.anchor_event_id.is_some_and(|anchor| anchor != id) => {
                Some("ForeignHistory")
            }
            Some(_) => None,
        };
        if unusable.is_some() {
            // Deleted, so that it neither blocks later snapshots nor is ever applied.
            stores.snapshots.discard_snapshot(stored).await?;
            snapshot = None;
            miss = unusable;
            pages = read_stream_from(stores, aggregate_type, aggregate_id, 1).await?;
        }
    }
    let start = snapshot.as_ref().map_or(0, SnapshotJson::version);
    let mut version = start;
    let mut events = Vec::new();
    for event in pages.iter().flat_map(EventPage::iter) {
        if event.version() <= start {
            continue;
        }
        if Some(event.version()) != version.checked_add(1) {
            return Err(ApiError::new(
                ErrorCode::Corrupt,
                format!(
                    "the stream of {aggregate_type} {aggregate_id:?} jumps from version {version} to {}",
                    event.version()
                ),
            ));
        }
        version = event.version();
        events.push(StoredEventJson::new(&event)?);
    }
    if version == 0 {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("{aggregate_type} {aggregate_id:?} has no events"),
        ));
    }
    to_js(&LoadedJson {
        aggregate_type,
        aggregate_id,
        version,
        snapshot,
        events,
        snapshot_miss: miss,
    })
}

/// Every event of one stream from version `from`, in pages of [`LOAD_PAGE`].
async fn read_stream_from(
    stores: &Stores,
    aggregate_type: &str,
    aggregate_id: &str,
    from: u64,
) -> Result<Vec<EventPage>, ApiError> {
    let mut pages = Vec::new();
    let mut next = from;
    loop {
        let page = stores
            .events
            .read_stream(aggregate_type, aggregate_id, next, u64::MAX, LOAD_PAGE)
            .await?;
        let after = page.last().and_then(|event| event.version().checked_add(1));
        let full = page.may_have_more();
        pages.push(page);
        match after {
            Some(after) if full => next = after,
            _ => return Ok(pages),
        }
    }
}

fn events_to_js(page: &EventPage) -> Result<JsValue, ApiError> {
    let events = page
        .iter()
        .map(|event| StoredEventJson::new(&event))
        .collect::<Result<Vec<_>, _>>()?;
    to_js(&events)
}

/// `value` as a JS value, through one `JSON.parse`.
fn to_js<T: Serialize>(value: &T) -> Result<JsValue, ApiError> {
    let json = serde_json::to_string(value)
        .map_err(|error| ApiError::new(ErrorCode::Engine, format!("encoding a result: {error}")))?;
    JSON::parse(&json).map_err(|error| {
        ApiError::new(
            ErrorCode::Engine,
            format!("JSON.parse refused a result: {error:?}"),
        )
    })
}

/// `value` through `JSON.stringify`, or why it cannot be.
fn stringify(argument: &str, value: &JsValue) -> Result<String, ApiError> {
    let json = JSON::stringify(value).map_err(|error| {
        ApiError::invalid(format!("{argument}: JSON.stringify threw {error:?}"))
    })?;
    json.as_string()
        .ok_or_else(|| ApiError::invalid(format!("{argument} is missing")))
}

/// A whole number from 0 to 2^53 - 1, the range where JS numbers are exact.
fn whole_number(argument: &str, value: f64) -> Result<u64, ApiError> {
    if value.is_finite() && value >= 0.0 && value.fract() == 0.0 && value <= MAX_SAFE_INTEGER {
        // Checked above: a whole number in u64's range.
        Ok(value as u64)
    } else {
        Err(ApiError::invalid(format!(
            "{argument} must be a whole number from 0 to 2^53 - 1, not {value}"
        )))
    }
}

fn schema_version(argument: &str, value: f64) -> Result<u32, ApiError> {
    u32::try_from(whole_number(argument, value)?).map_err(|_| {
        ApiError::invalid(format!(
            "{argument} must be at most {}, not {value}",
            u32::MAX
        ))
    })
}

fn limit_of(limit: Option<f64>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(limit) => Ok(usize::try_from(whole_number("limit", limit)?).unwrap_or(usize::MAX)),
    }
}
