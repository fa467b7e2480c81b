//! `EventStore`, the JavaScript API: JSON events and snapshots in IndexedDB, for apps
//! that keep their reducer in JavaScript. Every call returns a promise; failures reject
//! with an `EventKvError` carrying a stable `code`. Arguments are taken as they come from
//! JavaScript and checked in [`crate::js_input`], at the call, before any await.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;

use eventkv::{
    Codec, EventPage, EventStore as _, EventStoreError, Fold, KvEventStore, KvSnapshotStore,
    NewEvent, ReplayError, ReplayOptions, Snapshot, SnapshotMiss, SnapshotReadFailure,
    SnapshotStore as _, StoredEvent, Timestamp, replay,
};
use js_sys::{Array, Function, JSON, Promise, Reflect};
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::indexeddb::{Durability, IndexedDbKv};
use crate::js_error::ApiError;
use crate::js_follow::AppendChannel;
use crate::js_input::{self, SyncInput};
use crate::js_sync::{JsSync, Syncer};
use crate::js_types::{AppendedJson, LoadedJson, PendingEventJson, SnapshotJson, StoredEventJson};
use eventkv::ErrorKind;
use eventkv::Upcasters;
use eventkv::replica::Replica;
use futures_util::future::AbortHandle;

/// How many events `readStream` and `readAll` return when no limit is given.
const DEFAULT_LIMIT: u64 = 1000;
/// The most events one `readStream` or `readAll` returns: page on for more.
const MAX_LIMIT: u64 = 10_000;
/// How many events one read from IndexedDB asks for; results cross to JavaScript a page at
/// a time, so memory on the Rust side stays bounded whatever the stream's length.
const PAGE: usize = 4096;

/// The event and snapshot stores, each on its own connection to the same database.
pub(crate) struct Stores {
    pub(crate) events: KvEventStore<Arc<IndexedDbKv>>,
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
    /// Tells the stores of other tabs (and other `EventStore`s of this page) of appends.
    pub(crate) channel: Option<AppendChannel>,
    /// The subscriptions running, stopped by `close`.
    pub(crate) subscriptions: RefCell<Vec<AbortHandle>>,
    /// The sync with a server, when opened with `{ sync }`: appends go to the outbox.
    sync: Option<Rc<Syncer>>,
    /// Whether the database is a sync replica (it has pulled or queued appends): appends
    /// need `{ sync }`.
    replica: bool,
}

#[wasm_bindgen(js_class = EventStore)]
impl JsEventStore {
    /// Opens the IndexedDB database `name`, creating it when it does not exist. `options`:
    /// `{ durability, sync }`: durability `"strict"` (the default), `"relaxed"` or
    /// `"default"`; `sync: { url, token?, rebase? }` makes the store a replica of an
    /// `eventkv serve` server (see `Sync`). Rejects with `Unavailable` where there is no
    /// IndexedDB, and with `Unsupported` when the name is taken by another application or
    /// schema (left untouched).
    #[wasm_bindgen(unchecked_return_type = "Promise<EventStore>")]
    pub fn open(
        #[wasm_bindgen(unchecked_param_type = "string")] name: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "OpenOptions")] options: Option<JsValue>,
    ) -> Promise {
        future_to_promise(async move {
            Ok(Self::open_from(&name, &options.unwrap_or_default())
                .await?
                .into())
        })
    }

    /// Deletes the database `name` and everything in it. Completes once every
    /// connection to it (every open `EventStore`, in every tab) is closed.
    #[wasm_bindgen(js_name = deleteDatabase, unchecked_return_type = "Promise<void>")]
    pub fn delete_database(
        #[wasm_bindgen(unchecked_param_type = "string")] name: JsValue,
    ) -> Promise {
        let name = js_input::string("name", &name);
        future_to_promise(async move {
            IndexedDbKv::delete(&name?).await.map_err(ApiError::from)?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// The database's name.
    #[wasm_bindgen(getter)]
    pub fn name(&self) -> String {
        self.name.clone()
    }

    /// The sync with the server (status, outbox, stop), or undefined when the store was
    /// opened without `{ sync }`.
    #[wasm_bindgen(getter)]
    pub fn sync(&self) -> Option<JsSync> {
        self.sync.as_ref().map(|syncer| JsSync {
            syncer: Rc::clone(syncer),
        })
    }

    /// Closes the store: later calls reject with `Closed`; calls in flight finish first,
    /// then the connections close.
    pub fn close(&self) {
        if let Some(sync) = &self.sync {
            sync.stop();
        }
        self.stores.borrow_mut().take();
        for subscription in self.subscriptions.borrow_mut().drain(..) {
            subscription.abort();
        }
        if let Some(channel) = &self.channel {
            channel.close();
        }
    }

    /// Appends `events` to one aggregate whose stream must be at `expectedVersion` (0 for
    /// a new aggregate): all land, with consecutive versions, or none does. Rejects with
    /// `Conflict` (with `expected` and `actual`) when the stream is elsewhere; an append of
    /// events whose ids are stored at exactly those versions already resolves to where
    /// they are, writing nothing (a retry).
    #[wasm_bindgen(unchecked_return_type = "Promise<Appended>")]
    pub fn append(
        &self,
        #[wasm_bindgen(js_name = aggregateType, unchecked_param_type = "string")]
        aggregate_type: JsValue,
        #[wasm_bindgen(js_name = aggregateId, unchecked_param_type = "string")]
        aggregate_id: JsValue,
        #[wasm_bindgen(js_name = expectedVersion, unchecked_param_type = "number")]
        expected_version: JsValue,
        #[wasm_bindgen(unchecked_param_type = "NewEvent[]")] events: JsValue,
    ) -> Promise {
        let input = (|| -> Result<_, ApiError> {
            let stream = stream_of(&aggregate_type, &aggregate_id)?;
            if Array::is_array(&expected_version) && events.is_undefined() {
                return Err(ApiError::invalid(
                    "expectedVersion is missing: append(aggregateType, aggregateId, expectedVersion, events) takes the stream's current version (0 for a new aggregate) before the events",
                ));
            }
            let expected = js_input::whole_number("expectedVersion", &expected_version, None)?;
            Ok((stream, expected, js_input::new_events(&events)?))
        })();
        let announce = self.channel.as_ref().map(AppendChannel::sender);
        let sync = self.sync.clone();
        let replica = self.replica;
        self.run(move |stores| async move {
            let ((aggregate_type, aggregate_id), expected, events) = input?;
            if let Some(sync) = sync {
                let pending = sync
                    .replica()
                    .append_pending(&aggregate_type, &aggregate_id, expected, &events)
                    .await?;
                sync.appended();
                return to_js(&AppendedJson {
                    first_version: pending.first_version,
                    last_version: pending.last_version,
                    first_position: None,
                    last_position: None,
                    pending: true,
                });
            }
            if replica {
                return Err(ApiError::invalid(
                    "this database is a sync replica: open it with { sync } to append (its log only grows by pulls from the server)",
                ));
            }
            let appended = stores
                .events
                .append(&aggregate_type, &aggregate_id, expected, &events)
                .await?;
            if let Some(announce) = announce {
                announce.appended(appended.last_position);
            }
            to_js(&AppendedJson {
                first_version: appended.first_version,
                last_version: appended.last_version,
                first_position: Some(appended.first_position),
                last_position: Some(appended.last_position),
                pending: false,
            })
        })
    }

    /// At most `limit` (default 1000, at most 10,000) events of one aggregate from
    /// `fromVersion` (default 1), in version order; fewer only at the stream's end. Page
    /// by calling again after the last version. On a synced store, the optimistic view:
    /// the confirmed events, then the pending ones (`pending: true`, no position).
    #[wasm_bindgen(js_name = readStream, unchecked_return_type = "Promise<ReadEvent[]>")]
    pub fn read_stream(
        &self,
        #[wasm_bindgen(js_name = aggregateType, unchecked_param_type = "string")]
        aggregate_type: JsValue,
        #[wasm_bindgen(js_name = aggregateId, unchecked_param_type = "string")]
        aggregate_id: JsValue,
        #[wasm_bindgen(js_name = fromVersion, unchecked_optional_param_type = "number")]
        from_version: Option<JsValue>,
        #[wasm_bindgen(unchecked_optional_param_type = "number")] limit: Option<JsValue>,
    ) -> Promise {
        let input = (|| -> Result<_, ApiError> {
            let stream = stream_of(&aggregate_type, &aggregate_id)?;
            let from = from_version.unwrap_or_default();
            let from = js_input::whole_number("fromVersion", &from, Some(1))?;
            Ok((stream, from, limit_of(&limit.unwrap_or_default())?))
        })();
        let sync = self.sync.clone();
        self.run(move |stores| async move {
            let ((aggregate_type, aggregate_id), from, limit) = input?;
            let read = async |from: u64, wanted: usize| {
                let events = &stores.events;
                events
                    .read_stream(&aggregate_type, &aggregate_id, from, u64::MAX, wanted)
                    .await
            };
            let events = read_up_to(limit, from, read, EventPage::last_stored_version).await?;
            if let Some(sync) = sync {
                let confirmed = stores
                    .events
                    .current_version(&aggregate_type, &aggregate_id)
                    .await?;
                let pending = sync
                    .replica()
                    .pending_events(&aggregate_type, &aggregate_id, confirmed)
                    .await?;
                let wanted = pending
                    .iter()
                    .filter(|(version, _)| *version >= from)
                    .take(limit.saturating_sub(events.len()));
                events.push_pending(&aggregate_type, &aggregate_id, wanted)?;
            }
            Ok(events.into())
        })
    }

    /// The version of the aggregate's last event; 0 when it has none. On a synced store,
    /// its version in the optimistic view (its pending events included).
    #[wasm_bindgen(js_name = currentVersion, unchecked_return_type = "Promise<number>")]
    pub fn current_version(
        &self,
        #[wasm_bindgen(js_name = aggregateType, unchecked_param_type = "string")]
        aggregate_type: JsValue,
        #[wasm_bindgen(js_name = aggregateId, unchecked_param_type = "string")]
        aggregate_id: JsValue,
    ) -> Promise {
        let stream = stream_of(&aggregate_type, &aggregate_id);
        let sync = self.sync.clone();
        self.run(move |stores| async move {
            let (aggregate_type, aggregate_id) = stream?;
            let version = match sync {
                Some(sync) => {
                    sync.replica()
                        .optimistic_version(&aggregate_type, &aggregate_id)
                        .await?
                }
                None => {
                    stores
                        .events
                        .current_version(&aggregate_type, &aggregate_id)
                        .await?
                }
            };
            Ok(JsValue::from_f64(version as f64))
        })
    }

    /// At most `limit` (default 1000, at most 10,000) events of all aggregates from
    /// global position `fromPosition` (default 1), in commit order; fewer only at the
    /// log's end.
    #[wasm_bindgen(js_name = readAll, unchecked_return_type = "Promise<StoredEvent[]>")]
    pub fn read_all(
        &self,
        #[wasm_bindgen(js_name = fromPosition, unchecked_optional_param_type = "number")]
        from_position: Option<JsValue>,
        #[wasm_bindgen(unchecked_optional_param_type = "number")] limit: Option<JsValue>,
    ) -> Promise {
        let from = from_position.unwrap_or_default();
        let input = js_input::whole_number("fromPosition", &from, Some(1))
            .and_then(|from| Ok((from, limit_of(&limit.unwrap_or_default())?)));
        self.run(move |stores| async move {
            let (from, limit) = input?;
            let read = async |from: u64, wanted: usize| stores.events.read_all(from, wanted).await;
            Ok(read_up_to(limit, from, read, EventPage::read_through)
                .await?
                .into())
        })
    }

    /// Saves a snapshot, replacing the aggregate's unless that one is newer. Resolves
    /// to whether it was stored.
    #[wasm_bindgen(js_name = saveSnapshot, unchecked_return_type = "Promise<boolean>")]
    pub fn save_snapshot(
        &self,
        #[wasm_bindgen(unchecked_param_type = "NewSnapshot")] snapshot: JsValue,
    ) -> Promise {
        let input = js_input::new_snapshot(&snapshot);
        self.run(move |stores| async move {
            let new = input?;
            // The snapshot is bound to the event it was taken at, which must exist.
            let at = stores
                .events
                .read_stream(
                    &new.aggregate_type,
                    &new.aggregate_id,
                    new.version,
                    new.version,
                    1,
                )
                .await?;
            let Some(anchor) = at.stored().next().map(|event| event.event_id()) else {
                return Err(ApiError::invalid(format!(
                    "snapshot: {} {:?} has no event at version {}: a snapshot is taken at a stored event",
                    new.aggregate_type, new.aggregate_id, new.version
                )));
            };
            let snapshot = Snapshot {
                aggregate_id: new.aggregate_id,
                aggregate_type: new.aggregate_type,
                version: new.version,
                anchor_event_id: Some(anchor),
                schema_version: new.schema_version,
                codec: Codec::Json,
                state: new.state.into_bytes().into(),
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
        #[wasm_bindgen(js_name = aggregateType, unchecked_param_type = "string")]
        aggregate_type: JsValue,
        #[wasm_bindgen(js_name = aggregateId, unchecked_param_type = "string")]
        aggregate_id: JsValue,
    ) -> Promise {
        let stream = stream_of(&aggregate_type, &aggregate_id);
        self.run(move |stores| async move {
            let (aggregate_type, aggregate_id) = stream?;
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
        #[wasm_bindgen(js_name = aggregateType, unchecked_param_type = "string")]
        aggregate_type: JsValue,
        #[wasm_bindgen(js_name = aggregateId, unchecked_param_type = "string")]
        aggregate_id: JsValue,
    ) -> Promise {
        let stream = stream_of(&aggregate_type, &aggregate_id);
        self.run(move |stores| async move {
            let (aggregate_type, aggregate_id) = stream?;
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
        #[wasm_bindgen(js_name = aggregateType, unchecked_param_type = "string")]
        aggregate_type: JsValue,
        #[wasm_bindgen(js_name = schemaVersionBelow, unchecked_optional_param_type = "number")]
        schema_version_below: Option<JsValue>,
    ) -> Promise {
        let input = js_input::string("aggregateType", &aggregate_type).and_then(|name| {
            let below = schema_version_below
                .map(|below| js_input::small_number("schemaVersionBelow", &below))
                .transpose()?;
            Ok((name, below))
        });
        self.run(move |stores| async move {
            let (aggregate_type, below) = input?;
            let deleted = stores
                .snapshots
                .delete_snapshots_by_type(&aggregate_type, below)
                .await?;
            Ok(JsValue::from_f64(deleted as f64))
        })
    }

    /// What a reducer needs to rebuild the aggregate fast: its latest snapshot, when
    /// its `schemaVersion` matches and it is readable, and the events after it (all
    /// events otherwise). Rejects with `NotFound` when the aggregate has no events. On a
    /// synced store, the pending events follow the confirmed ones (`pending: true`), and
    /// `version` counts them.
    #[wasm_bindgen(unchecked_return_type = "Promise<Loaded>")]
    pub fn load(
        &self,
        #[wasm_bindgen(js_name = aggregateType, unchecked_param_type = "string")]
        aggregate_type: JsValue,
        #[wasm_bindgen(js_name = aggregateId, unchecked_param_type = "string")]
        aggregate_id: JsValue,
        #[wasm_bindgen(js_name = schemaVersion, unchecked_param_type = "number")]
        schema_version: JsValue,
    ) -> Promise {
        let input = stream_of(&aggregate_type, &aggregate_id).and_then(|stream| {
            Ok((
                stream,
                js_input::small_number("schemaVersion", &schema_version)?,
            ))
        });
        let sync = self.sync.clone();
        self.run(move |stores| async move {
            let ((aggregate_type, aggregate_id), schema_version) = input?;
            load(
                &stores,
                sync.as_deref(),
                &aggregate_type,
                &aggregate_id,
                schema_version,
            )
            .await
        })
    }
}

impl JsEventStore {
    /// `EventStore.open` for Rust callers: the store on the database `name`.
    /// What `open` does, for Rust callers: `name` and `options` as JavaScript passes them.
    pub async fn open_from(name: &JsValue, options: &JsValue) -> Result<Self, JsValue> {
        let name = js_input::string("name", name)?;
        let options = js_input::open_options(options)?;
        let store = Self::connect_with(name, options.durability, options.upcasters).await?;
        Ok(store.synced(options.sync).await?)
    }

    /// Opens the database `name` (`open` without its options' checks).
    pub async fn connect(name: String, durability: Durability) -> Result<Self, JsValue> {
        Self::connect_with(name, durability, Upcasters::new()).await
    }

    /// Opens the database `name`, reading events through `upcasters`.
    pub async fn connect_with(
        name: String,
        durability: Durability,
        upcasters: Upcasters,
    ) -> Result<Self, JsValue> {
        let events = IndexedDbKv::open_with(&name, durability)
            .await
            .map_err(ApiError::from)?;
        let snapshots = IndexedDbKv::open_with(&name, durability)
            .await
            .map_err(ApiError::from)?;
        // The engine traits forward through `Arc`, the shared form of every engine; the
        // browser has one thread, so it is never sent anywhere.
        #[allow(clippy::arc_with_non_send_sync)]
        let events = Arc::new(events);
        let stores = Rc::new(Stores {
            events: KvEventStore::new(events).with_upcasters(upcasters),
            snapshots: KvSnapshotStore::new(snapshots),
        });
        let channel = AppendChannel::open(&name, Rc::downgrade(&stores));
        let replica = Replica::new(stores.events.clone());
        let is_replica = replica.cursor().await.map_err(ApiError::from)? > 0
            || !replica
                .outbox(0, 1)
                .await
                .map_err(ApiError::from)?
                .is_empty();
        Ok(JsEventStore {
            name,
            stores: RefCell::new(Some(stores)),
            channel,
            subscriptions: RefCell::default(),
            sync: None,
            replica: is_replica,
        })
    }

    /// The store, syncing with the server `sync` names, if any. A store that already
    /// holds events of its own (appended without sync) cannot become a replica.
    async fn synced(mut self, sync: Option<SyncInput>) -> Result<Self, ApiError> {
        let Some(input) = sync else {
            return Ok(self);
        };
        let stores = self.stores()?;
        if !self.replica && stores.events.last_position().await? > 0 {
            return Err(ApiError::invalid(format!(
                "database {:?} holds events appended without sync: a synced store is a replica of the server's log; open another database for it",
                self.name
            )));
        }
        let announce = self.channel.as_ref().map(AppendChannel::sender);
        self.sync = Some(Syncer::start(&self.name, &stores, input, announce).await?);
        self.replica = true;
        Ok(self)
    }

    /// The stores, or `Closed`.
    pub(crate) fn stores(&self) -> Result<Rc<Stores>, ApiError> {
        self.stores.borrow().clone().ok_or_else(|| {
            ApiError::new(
                ErrorKind::Closed,
                format!("the store {:?} is closed", self.name),
            )
        })
    }

    /// Runs `task` on the stores as a promise, or rejects with `Closed`.
    pub(crate) fn run<F>(&self, task: impl FnOnce(Rc<Stores>) -> F) -> Promise
    where
        F: Future<Output = Result<JsValue, ApiError>> + 'static,
    {
        let stores = match self.stores() {
            Ok(stores) => stores,
            Err(closed) => return Promise::reject(&closed.into()),
        };
        let task = task(Rc::clone(&stores));
        future_to_promise(async move {
            task.await.map_err(|error| {
                if stores.closed_itself() {
                    error.with_kind(ErrorKind::Closed).into()
                } else {
                    error.into()
                }
            })
        })
    }
}

/// The `aggregateType` and `aggregateId` arguments.
pub(crate) fn stream_of(
    aggregate_type: &JsValue,
    aggregate_id: &JsValue,
) -> Result<(String, String), ApiError> {
    Ok((
        js_input::string("aggregateType", aggregate_type)?,
        js_input::string("aggregateId", aggregate_id)?,
    ))
}

fn limit_of(limit: &JsValue) -> Result<usize, ApiError> {
    let limit = js_input::whole_number("limit", limit, Some(DEFAULT_LIMIT))?;
    if limit > MAX_LIMIT {
        return Err(ApiError::invalid(format!(
            "limit must be at most {MAX_LIMIT}, not {limit}: read on from after the last event for more"
        )));
    }
    // At most MAX_LIMIT: it fits.
    Ok(limit as usize)
}

/// Up to `limit` events from `from`, read a page at a time by `read(from, wanted)`; the
/// next page starts one past `key` of the last event read.
async fn read_up_to(
    limit: usize,
    mut from: u64,
    mut read: impl AsyncFnMut(u64, usize) -> Result<EventPage, EventStoreError>,
    key: impl Fn(&EventPage) -> Option<u64>,
) -> Result<JsEvents, ApiError> {
    let events = JsEvents::new()?;
    while events.len() < limit {
        let page = read(from, PAGE.min(limit - events.len())).await?;
        match events.extend(&page, &key)? {
            Some(next) => from = next,
            None => break,
        }
    }
    Ok(events)
}

/// A JS array of `StoredEvent`s, filled a page at a time: each page crosses to JavaScript
/// as one JSON text, parsed once.
struct JsEvents {
    array: Array,
    push: Function,
}

impl JsEvents {
    fn new() -> Result<Self, ApiError> {
        let array = Array::new();
        let push = Reflect::get(&array, &"push".into())
            .ok()
            .and_then(|push| push.dyn_into::<Function>().ok())
            .ok_or_else(|| {
                ApiError::new(ErrorKind::Unexpected, "Array.prototype.push is missing")
            })?;
        Ok(JsEvents { array, push })
    }

    fn len(&self) -> usize {
        self.array.length() as usize
    }

    /// Appends the events of `page`; returns where the next page starts (one past
    /// `key(page)`, the last stored version or position it covered, which an upcaster may
    /// have dropped), or `None` when the page was the last.
    fn extend(
        &self,
        page: &EventPage,
        key: impl Fn(&EventPage) -> Option<u64>,
    ) -> Result<Option<u64>, ApiError> {
        let events = page
            .iter()
            .map(|event| StoredEventJson::new(&event))
            .collect::<Result<Vec<_>, _>>()?;
        self.push_all(&events)?;
        Ok(key(page)
            .filter(|_| page.may_have_more())
            .and_then(|last| last.checked_add(1)))
    }

    /// Appends pending events of one aggregate (the optimistic view), at their versions.
    fn push_pending<'e>(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        events: impl Iterator<Item = &'e (u64, NewEvent)>,
    ) -> Result<(), ApiError> {
        let events = events
            .map(|(version, event)| {
                PendingEventJson::new(aggregate_type, aggregate_id, *version, event)
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.push_all(&events)
    }

    fn push_all<T: Serialize>(&self, events: &[T]) -> Result<(), ApiError> {
        if events.is_empty() {
            return Ok(());
        }
        let page = to_js(&events)?;
        Reflect::apply(&self.push, &self.array, page.unchecked_ref())
            .map(drop)
            .map_err(|error| {
                ApiError::new(
                    ErrorKind::Unexpected,
                    format!(
                        "adding events to the result failed: {}",
                        js_input::describe(&error)
                    ),
                )
            })
    }
}

impl From<JsEvents> for JsValue {
    fn from(events: JsEvents) -> JsValue {
        events.array.into()
    }
}

async fn load(
    stores: &Stores,
    sync: Option<&Syncer>,
    aggregate_type: &str,
    aggregate_id: &str,
    schema_version: u32,
) -> Result<JsValue, ApiError> {
    let options = ReplayOptions {
        aggregate_type,
        aggregate_id,
        schema_version,
        page: PAGE,
        read_failure: SnapshotReadFailure::Replay,
    };
    let fold = JsFold {
        events: JsEvents::new()?,
    };
    let replayed = replay(&stores.events, &stores.snapshots, options, &fold)
        .await
        .map_err(|error| match error {
            ReplayError::Events(error) => error.into(),
            ReplayError::SnapshotUnavailable(error) => error.into(),
            ReplayError::Gap { previous, found } => ApiError::new(
                ErrorKind::Corrupt,
                format!(
                    "the stream of {aggregate_type} {aggregate_id:?} jumps from version {previous} to {found}"
                ),
            ),
            ReplayError::Fold(error) => error,
            _ => ApiError::new(ErrorKind::Unexpected, "the load failed"),
        })?;
    let mut version = replayed.version;
    if let Some(sync) = sync {
        let pending = sync
            .replica()
            .pending_events(aggregate_type, aggregate_id, version)
            .await?;
        fold.events
            .push_pending(aggregate_type, aggregate_id, pending.iter())?;
        version = pending.last().map_or(version, |(last, _)| *last);
    }
    if version == 0 {
        return Err(ApiError::new(
            ErrorKind::NotFound,
            format!("{aggregate_type} {aggregate_id:?} has no events"),
        ));
    }
    let snapshot = replayed.state.as_ref().map(SnapshotJson::new).transpose()?;
    let loaded = to_js(&LoadedJson {
        aggregate_type,
        aggregate_id,
        version,
        snapshot,
        snapshot_miss: replayed.miss.map(|(reason, _)| reason.name()),
    })?;
    Reflect::set(&loaded, &"events".into(), &fold.events.into())
        .map_err(|_| ApiError::new(ErrorKind::Unexpected, "setting the loaded events failed"))?;
    Ok(loaded)
}

/// The JS `load`'s fold: the snapshot it starts from, if any, and the events after it as
/// JavaScript objects.
struct JsFold {
    events: JsEvents,
}

impl Fold for JsFold {
    type State = Option<Snapshot>;
    type Error = ApiError;

    fn initial(&self) -> Option<Snapshot> {
        None
    }

    fn snapshot_state(
        &self,
        snapshot: &Snapshot,
    ) -> Result<Option<Snapshot>, (SnapshotMiss, String)> {
        match SnapshotJson::new(snapshot) {
            Ok(_) => Ok(Some(snapshot.clone())),
            Err(error) if error.kind() == ErrorKind::Unsupported => {
                Err((SnapshotMiss::UnknownCodec, error.message().to_owned()))
            }
            Err(error) => Err((SnapshotMiss::Undecodable, error.message().to_owned())),
        }
    }

    fn apply(&self, _: &mut Option<Snapshot>, events: &[StoredEvent<'_>]) -> Result<(), ApiError> {
        let events = events
            .iter()
            .map(StoredEventJson::new)
            .collect::<Result<Vec<_>, _>>()?;
        self.events.push_all(&events)
    }
}

/// `value` as a JS value, through one `JSON.parse`.
pub(crate) fn to_js<T: Serialize>(value: &T) -> Result<JsValue, ApiError> {
    let json = serde_json::to_string(value).map_err(|error| {
        ApiError::new(ErrorKind::Unexpected, format!("encoding a result: {error}"))
    })?;
    JSON::parse(&json).map_err(|error| {
        ApiError::new(
            ErrorKind::Unexpected,
            format!(
                "JSON.parse refused a result: {}",
                js_input::describe(&error)
            ),
        )
    })
}
