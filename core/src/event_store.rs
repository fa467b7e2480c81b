//! The event store: append with an expected version, stream reads, global order.

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;
use uuid::Uuid;

use crate::codec::{Codec, CodecError};
use crate::envelope::{self, EventLayout, EventMetadata, EventValue};
use crate::error::ErrorKind;
use crate::group_commit::{AppendQueue, AppendRequest};
use crate::keys::{self, InvalidName, StreamKeys};
use crate::kv::{
    Direction, DisplayKey, KeyRange, KvError, KvPage, MAX_SCAN_BYTES, MAX_SCAN_ENTRIES, MaybeSend,
    MaybeSync, OrderedKv,
};
use crate::timestamp::Timestamp;
use crate::upcast::{UpcastBuffers, UpcastError, UpcastedEvent, Upcasters};

/// An event to append: its payload is already encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    /// A unique id (UUID v4 unless you set another).
    pub event_id: Uuid,
    /// The event's type name, e.g. `"Deposited"`.
    pub event_type: String,
    /// The version of the payload's shape, from 1: readers upcast older shapes (see
    /// [`Upcasters`](crate::Upcasters)).
    pub shape_version: u32,
    /// How `payload` is encoded.
    pub codec: Codec,
    /// The encoded event.
    pub payload: Bytes,
    /// Correlation and causation ids.
    pub metadata: EventMetadata,
}

impl NewEvent {
    /// Encodes `event` with `codec`, under a fresh UUID v4. Keep the result to retry an
    /// append: its id is what makes the retry idempotent.
    pub fn encode<T: Serialize + ?Sized>(
        event_type: impl Into<String>,
        event: &T,
        codec: Codec,
    ) -> Result<Self, CodecError> {
        Self::encode_with_id(Uuid::new_v4(), event_type, event, codec)
    }

    /// Encodes `event` with `codec`, under `event_id`.
    pub fn encode_with_id<T: Serialize + ?Sized>(
        event_id: Uuid,
        event_type: impl Into<String>,
        event: &T,
        codec: Codec,
    ) -> Result<Self, CodecError> {
        Ok(NewEvent {
            event_id,
            event_type: event_type.into(),
            shape_version: 1,
            codec,
            payload: Bytes::from(codec.encode(event)?),
            metadata: EventMetadata::default(),
        })
    }

    /// The same event, declared to have the shape `shape_version` (1 unless set).
    pub fn with_shape_version(mut self, shape_version: u32) -> Self {
        self.shape_version = shape_version;
        self
    }

    /// The same event with `metadata`.
    pub fn with_metadata(mut self, metadata: EventMetadata) -> Self {
        self.metadata = metadata;
        self
    }
}

/// An event as stored, read in place from an [`EventPage`]: its payload, where it
/// stands, and when it was written.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct StoredEvent<'a> {
    aggregate_type: &'a str,
    aggregate_id: &'a str,
    version: u64,
    value: EventValue<'a>,
    /// What an upcaster made of the stored event: its type, shape and payload.
    upcasted: Option<&'a UpcastedEvent>,
}

impl<'a> StoredEvent<'a> {
    /// The type of the aggregate it belongs to.
    pub fn aggregate_type(&self) -> &'a str {
        self.aggregate_type
    }

    /// The id of the aggregate it belongs to.
    pub fn aggregate_id(&self) -> &'a str {
        self.aggregate_id
    }

    /// Its version in the aggregate's stream, from 1.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Its position in the global log, from 1, in commit order.
    pub fn position(&self) -> u64 {
        self.value.position()
    }

    /// The event's unique id.
    pub fn event_id(&self) -> Uuid {
        self.value.event_id()
    }

    /// The event's type name (after upcasting, when the store upcasts).
    pub fn event_type(&self) -> &'a str {
        match self.upcasted {
            Some(upcasted) => &upcasted.event_type,
            None => self.value.event_type(),
        }
    }

    /// The version of the payload's shape, from 1 (events written before eventkv stored
    /// shape versions have shape 1); after upcasting, the shape the upcaster emitted.
    pub fn shape_version(&self) -> u32 {
        match self.upcasted {
            Some(upcasted) => upcasted.shape_version,
            None => self.value.shape_version(),
        }
    }

    /// Whether an upcaster made this event from a stored one of an older shape (an event
    /// split in two gives two events of the same version and position).
    pub fn is_upcasted(&self) -> bool {
        self.upcasted.is_some()
    }

    /// When it was appended.
    pub fn timestamp(&self) -> Timestamp {
        self.value.timestamp()
    }

    /// How the payload is encoded.
    pub fn codec(&self) -> Codec {
        self.value.codec()
    }

    /// The encoded event. An upcast event is encoded on the first call; one whose value
    /// cannot be encoded has an empty payload ([`decode`](Self::decode) says why).
    pub fn payload(&self) -> &'a [u8] {
        match self.upcasted {
            Some(upcasted) => upcasted.payload().map_or(&[], |bytes| &bytes[..]),
            None => self.value.payload(),
        }
    }

    /// Correlation and causation ids.
    pub fn metadata(&self) -> EventMetadata {
        self.value.metadata()
    }

    /// Decodes the payload with the event's own codec.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, CodecError> {
        match self.upcasted {
            Some(upcasted) => match upcasted.payload() {
                Ok(bytes) => self.codec().decode(bytes),
                Err(error) => Err(error.clone()),
            },
            None => self.codec().decode(self.payload()),
        }
    }

    /// Decodes the payload for its one reader (a repository's fold): an upcast value of
    /// type `T` is handed over without encoding it.
    pub(crate) fn decode_once<T: DeserializeOwned + 'static>(&self) -> Result<T, CodecError> {
        match self.upcasted {
            Some(upcasted) => upcasted.take_or_decode(),
            None => self.codec().decode(self.payload()),
        }
    }
}

impl std::fmt::Debug for StoredEvent<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredEvent")
            .field("aggregate_type", &self.aggregate_type)
            .field("aggregate_id", &self.aggregate_id)
            .field("version", &self.version)
            .field("position", &self.position())
            .field("event_type", &self.event_type())
            .field("shape_version", &self.shape_version())
            .field("event_id", &self.event_id())
            .field("timestamp", &self.timestamp())
            .field("codec", &self.codec())
            .field("metadata", &self.metadata())
            .field("payload_len", &self.payload().len())
            .field("upcasted", &self.is_upcasted())
            .finish()
    }
}

/// Events read together, validated, held in the engine's pages: iterating them copies and
/// allocates nothing per event.
#[derive(Clone, Debug, Default)]
pub struct EventPage {
    pages: Vec<KvPage>,
    streams: Vec<(Box<str>, Box<str>)>,
    slots: Vec<Slot>,
    /// The events as read when upcasters changed some: which slot each shows, and what
    /// replaced it. `None`: the slots as stored.
    views: Option<Vec<View>>,
    upcasted: Vec<UpcastedEvent>,
    more: bool,
    /// A read of the global log: the last position it covered, its events or those it
    /// passed over.
    through: Option<u64>,
}

/// One event of an upcast page: a stored slot, as stored or replaced by an upcast event.
#[derive(Clone, Copy, Debug)]
struct View {
    slot: usize,
    upcasted: Option<usize>,
}

/// Where one event of an [`EventPage`] is.
#[derive(Clone, Copy, Debug)]
struct Slot {
    page: usize,
    entry: usize,
    stream: usize,
    version: u64,
    layout: EventLayout,
}

impl EventPage {
    /// How many events the page holds (after upcasting: an upcaster may drop or split
    /// stored events).
    pub fn len(&self) -> usize {
        self.views.as_ref().map_or(self.slots.len(), Vec::len)
    }

    /// Whether the page holds no event. A page of a store that upcasts may be empty and
    /// still [`may_have_more`](Self::may_have_more): read on after
    /// [`read_through`](Self::read_through) or
    /// [`last_stored_version`](Self::last_stored_version).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the read stopped at its limit or at the bounds of a page
    /// ([`MAX_SCAN_ENTRIES`] events, about [`MAX_SCAN_BYTES`] bytes), so that reading on
    /// after its last event may find more. A read never returns more than those bounds,
    /// whatever limit it is given.
    pub fn may_have_more(&self) -> bool {
        self.more
    }

    /// Event `index`, in read order.
    pub fn get(&self, index: usize) -> Option<StoredEvent<'_>> {
        match &self.views {
            None => self.event(self.slots.get(index)?, None),
            Some(views) => {
                let view = views.get(index)?;
                let upcasted = match view.upcasted {
                    Some(at) => Some(self.upcasted.get(at)?),
                    None => None,
                };
                self.event(self.slots.get(view.slot)?, upcasted)
            }
        }
    }

    /// The last event.
    pub fn last(&self) -> Option<StoredEvent<'_>> {
        self.get(self.len().checked_sub(1)?)
    }

    /// The events, in read order.
    pub fn iter(&self) -> impl Iterator<Item = StoredEvent<'_>> + '_ {
        // Slots only point at entries that were validated when the page was built.
        (0..self.len()).filter_map(|index| self.get(index))
    }

    /// A read of one stream: the version of the last stored event it covered, whether an
    /// upcaster kept it or not; `None` when it covered none. Read on from the version
    /// after it (not after the last event shown, which an upcaster may have dropped).
    pub fn last_stored_version(&self) -> Option<u64> {
        self.slots.last().map(|slot| slot.version)
    }

    /// The events as stored, before upcasting (the same as [`iter`](Self::iter) when the
    /// store has no upcasters): one per stored version or position.
    pub fn stored(&self) -> impl Iterator<Item = StoredEvent<'_>> + '_ {
        self.slots.iter().filter_map(|slot| self.event(slot, None))
    }

    /// Runs `upcasters` over the stored events: reads then show their output.
    fn upcast(&mut self, upcasters: &Upcasters) -> Result<(), EventStoreError> {
        let mut views: Option<Vec<View>> = None;
        let mut upcasted = Vec::new();
        let mut buffers = UpcastBuffers::default();
        for (index, event) in self.stored().enumerate() {
            let first = upcasted.len();
            let stored = (
                event.event_type(),
                event.shape_version(),
                event.codec(),
                event.payload(),
            );
            let replaced = upcasters
                .upcast(stored, &mut buffers, &mut upcasted)
                .map_err(|source| EventStoreError::Upcast {
                    aggregate_type: event.aggregate_type().to_owned(),
                    aggregate_id: event.aggregate_id().to_owned(),
                    version: event.version(),
                    source: Box::new(source),
                })?;
            let as_stored = |slot| View {
                slot,
                upcasted: None,
            };
            if replaced {
                let views = views.get_or_insert_with(|| (0..index).map(as_stored).collect());
                views.extend((first..upcasted.len()).map(|at| View {
                    slot: index,
                    upcasted: Some(at),
                }));
            } else if let Some(views) = views.as_mut() {
                views.push(as_stored(index));
            }
        }
        self.views = views;
        self.upcasted = upcasted;
        Ok(())
    }

    /// A read of the global log: the last position it covered, whether its event is in
    /// the page or was passed over (filtered out); `None` when it covered none. Read on
    /// from the position after it.
    pub fn read_through(&self) -> Option<u64> {
        self.through
    }

    /// The key and value bytes of the pages held.
    fn bytes(&self) -> usize {
        self.pages.iter().map(KvPage::bytes).sum()
    }

    fn event<'p>(
        &'p self,
        slot: &Slot,
        upcasted: Option<&'p UpcastedEvent>,
    ) -> Option<StoredEvent<'p>> {
        let (_, value) = self.pages.get(slot.page)?.get(slot.entry)?;
        let (aggregate_type, aggregate_id) = self.streams.get(slot.stream)?;
        Some(StoredEvent {
            aggregate_type,
            aggregate_id,
            version: slot.version,
            value: EventValue::with_layout(value, slot.layout),
            upcasted,
        })
    }

    /// Adds a stream whose events [`push_logged`](Self::push_logged) will add; returns
    /// its index.
    fn add_stream(&mut self, aggregate_type: &str, aggregate_id: &str) -> usize {
        self.streams
            .push((aggregate_type.into(), aggregate_id.into()));
        self.streams.len() - 1
    }

    /// Adds the events of `page`, read for `wanted` by one `get_many`: one entry each, in
    /// order, each with the version and position the global log gave it, up to the event
    /// that brings the events held to [`MAX_SCAN_BYTES`]. Returns how many it added: all of
    /// `wanted`, unless the bound was reached (a full page from the engine answers a prefix).
    fn push_logged(
        &mut self,
        mut page: KvPage,
        wanted: &[Wanted],
    ) -> Result<usize, EventStoreError> {
        let page_index = self.pages.len();
        let mut bytes = self.bytes();
        let mut taken = 0;
        for (entry, (key, value)) in page.iter().enumerate() {
            let Some(wanted) = wanted.get(entry) else {
                return Err(corrupt(key, "read an event the global log did not ask for"));
            };
            let log_key = || keys::global_log(wanted.position);
            if key != &wanted.key[..] {
                return Err(corrupt(&log_key(), "global log points at a missing event"));
            }
            let event = EventValue::parse(key, value).map_err(|e| corrupt(key, e))?;
            if event.position() != wanted.position {
                return Err(corrupt(&log_key(), "global log and stream disagree"));
            }
            self.slots.push(Slot {
                page: page_index,
                entry,
                stream: wanted.stream,
                version: wanted.version,
                layout: event.layout(),
            });
            taken += 1;
            bytes += key.len() + value.len();
            if bytes >= MAX_SCAN_BYTES {
                break;
            }
        }
        let bounded = bytes >= MAX_SCAN_BYTES || page.is_full();
        if taken < wanted.len() && !bounded {
            let position = wanted.get(taken).map_or(0, |wanted| wanted.position);
            return Err(corrupt(
                &keys::global_log(position),
                "global log points at a missing event",
            ));
        }
        page.truncate(taken);
        self.pages.push(page);
        Ok(taken)
    }

    /// Adds the events of `page`, all of one stream, checking each.
    fn push_stream(
        &mut self,
        aggregate_type: &str,
        aggregate_id: &str,
        page: KvPage,
    ) -> Result<(), EventStoreError> {
        let stream = self.streams.len();
        let page_index = self.pages.len();
        self.slots.reserve(page.len());
        for (entry, (key, value)) in page.iter().enumerate() {
            let version =
                keys::event_version(key).ok_or_else(|| corrupt(key, "not an event key"))?;
            let layout = EventValue::parse(key, value)
                .map_err(|e| corrupt(key, e))?
                .layout();
            self.slots.push(Slot {
                page: page_index,
                entry,
                stream,
                version,
                layout,
            });
        }
        self.streams
            .push((aggregate_type.into(), aggregate_id.into()));
        self.pages.push(page);
        Ok(())
    }
}

/// Where an append put its events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// The version of the first event appended.
    pub first_version: u64,
    /// The version of the last event appended: the stream's new version.
    pub last_version: u64,
    /// The global position of the first event appended.
    pub first_position: u64,
    /// The global position of the last event appended.
    pub last_position: u64,
    /// Whether the events were already stored there by an earlier attempt of the same
    /// append (a retry): nothing was written this time.
    pub duplicate: bool,
}

/// An error of the event store.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventStoreError {
    /// The stream is not at the expected version; nothing was written.
    #[error(
        "concurrency conflict on {aggregate_type} {aggregate_id:?}: expected version {expected}, actual version {actual}; nothing was written"
    )]
    Conflict {
        /// The aggregate type.
        aggregate_type: String,
        /// The aggregate id.
        aggregate_id: String,
        /// The version the caller expected.
        expected: u64,
        /// The stream's version when the append was refused.
        actual: u64,
    },
    /// An aggregate type or id that cannot be stored.
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    /// Another invalid request, e.g. an append without events.
    #[error("invalid request: {0}")]
    InvalidInput(String),
    /// A stored value that does not follow the format.
    #[error("corrupt value at key {key}: {reason}")]
    Corrupt {
        /// The key, printable.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Writers of other processes (or other stores on the same engine) kept taking the
    /// next global position, for longer than [`crate::backoff::MAX_WAIT`]; nothing was
    /// written.
    #[error(
        "append to {aggregate_type} {aggregate_id:?} gave up after {attempts} attempts lost to concurrent writers; nothing was written"
    )]
    Contended {
        /// The aggregate type.
        aggregate_type: String,
        /// The aggregate id.
        aggregate_id: String,
        /// How many attempts were made.
        attempts: u32,
    },
    /// A stored event could not be upcast to a current shape (see
    /// [`Upcasters`](crate::Upcasters)): an old shape without an upcaster, a payload that
    /// does not decode as the old shape, or an upcaster that failed.
    #[error("cannot upcast {aggregate_type} {aggregate_id:?} version {version}: {source}")]
    Upcast {
        /// The aggregate type.
        aggregate_type: String,
        /// The aggregate id.
        aggregate_id: String,
        /// The event's version.
        version: u64,
        /// Why.
        source: Box<UpcastError>,
    },
    /// The engine failed.
    #[error(transparent)]
    Kv(#[from] KvError),
}

impl EventStoreError {
    /// What kind of failure it is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            EventStoreError::Conflict { .. } => ErrorKind::Conflict,
            EventStoreError::InvalidName(_) | EventStoreError::InvalidInput(_) => {
                ErrorKind::InvalidInput
            }
            EventStoreError::Corrupt { .. } => ErrorKind::Corrupt,
            EventStoreError::Contended { .. } => ErrorKind::Contended,
            EventStoreError::Upcast { source, .. } => source.kind(),
            EventStoreError::Kv(error) => error.kind(),
        }
    }
}

// An ambiguous append: retrying the same events (same ids) is safe; if they landed, the
// retry returns where they are and writes nothing.
crate::__error_class!(EventStoreError);

pub(crate) fn corrupt(key: &[u8], reason: impl std::fmt::Display) -> EventStoreError {
    EventStoreError::Corrupt {
        key: DisplayKey(key).to_string(),
        reason: reason.to_string(),
    }
}

/// Stores and reads events. [`KvEventStore`] implements it on any [`OrderedKv`].
pub trait EventStore: MaybeSend + MaybeSync {
    /// Appends `events` to one aggregate whose stream must be at `expected_version`
    /// (0 for a new aggregate). All events land, with consecutive versions and global
    /// positions, or none does.
    ///
    /// Idempotent: when the stream already holds events with exactly these ids at
    /// versions `expected_version + 1 ...`, nothing is written and the original
    /// [`Appended`] is returned. So after an error that may hide a landed append (see
    /// [`EventStoreError::is_ambiguous`]), retrying the same events is always safe.
    fn append(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        expected_version: u64,
        events: &[NewEvent],
    ) -> impl Future<Output = Result<Appended, EventStoreError>> + MaybeSend;

    /// At most `limit` events of one aggregate, versions `from_version` to `to_version`
    /// inclusive (`u64::MAX` for the end), in version order. Page by calling again from
    /// the last version read plus one.
    fn read_stream(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        from_version: u64,
        to_version: u64,
        limit: usize,
    ) -> impl Future<Output = Result<EventPage, EventStoreError>> + MaybeSend;

    /// The version of the aggregate's last event; 0 when it has none.
    fn current_version(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> impl Future<Output = Result<u64, EventStoreError>> + MaybeSend;

    /// At most `limit` events of all aggregates from global position `from_position`
    /// (positions start at 1), in commit order, each once.
    fn read_all(
        &self,
        from_position: u64,
        limit: usize,
    ) -> impl Future<Output = Result<EventPage, EventStoreError>> + MaybeSend;
}

/// The event store on an ordered key-value engine. Concurrent appends through one store
/// (or its clones) share engine writes: see [`EventStore::append`].
#[derive(Clone, Debug)]
pub struct KvEventStore<K> {
    kv: K,
    queue: Arc<AppendQueue>,
    /// Notified after each write of appends: wakes this store's subscriptions.
    appended: Arc<event_listener::Event>,
    /// Run on every event read, when set.
    upcasters: Option<Arc<Upcasters>>,
}

impl<K: OrderedKv> KvEventStore<K> {
    /// An event store on `kv`.
    pub fn new(kv: K) -> Self {
        KvEventStore {
            kv,
            queue: Arc::default(),
            appended: Arc::default(),
            upcasters: None,
        }
    }

    /// The same store (sharing its appends and subscriptions' wake-ups), reading through
    /// `upcasters`: `read_stream`, `read_all`, the loads of repositories, subscriptions and
    /// projections on it only see current shapes. Tools that copy or serve stored events
    /// as they are (replication, sync, `eventkv copy`) use a store without upcasters.
    #[must_use]
    // On wasm32 nothing is sent between threads: upcasters may hold JavaScript functions.
    #[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
    pub fn with_upcasters(mut self, upcasters: Upcasters) -> Self {
        self.upcasters = (!upcasters.is_empty()).then(|| Arc::new(upcasters));
        self
    }

    /// The upcasters reads go through, if any.
    pub fn upcasters(&self) -> Option<&Upcasters> {
        self.upcasters.as_deref()
    }

    /// Up to `limit` aggregates of `aggregate_type` with the version of their last event, in
    /// descending id order (by key bytes), from the one before `before` (`None`: from the
    /// last). Each costs one read of one entry, however long its stream.
    pub async fn aggregate_heads(
        &self,
        aggregate_type: &str,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, EventStoreError> {
        let streams = keys::streams_of_type(aggregate_type)?;
        let (start, _) = streams.as_slices();
        let std::ops::Bound::Included(start) = start else {
            return Ok(Vec::new());
        };
        let start = Bytes::copy_from_slice(start);
        let mut range = match before {
            Some(id) => {
                KeyRange::between(start.clone(), StreamKeys::new(aggregate_type, id)?.start())
            }
            None => streams.clone(),
        };
        let mut heads = Vec::new();
        while heads.len() < limit {
            let last = self.kv.scan(&range, Direction::Reverse, 1).await?;
            let Some(key) = last.last_key() else {
                break;
            };
            let (stream, head) =
                StreamKeys::from_event_key(key).ok_or_else(|| corrupt(key, "not an event key"))?;
            let (_, id) = stream
                .names()
                .ok_or_else(|| corrupt(key, "not an event key"))?;
            heads.push((id.to_owned(), head));
            range = KeyRange::between(start.clone(), stream.start());
        }
        Ok(heads)
    }

    /// Runs the store's upcasters, if any, over a page just read.
    fn upcast(&self, mut page: EventPage) -> Result<EventPage, EventStoreError> {
        if let Some(upcasters) = &self.upcasters {
            page.upcast(upcasters)?;
        }
        Ok(page)
    }

    pub(crate) fn queue(&self) -> &AppendQueue {
        &self.queue
    }

    pub(crate) fn appended(&self) -> &event_listener::Event {
        &self.appended
    }

    /// Wakes this store's subscriptions and projection runners at once, as an append
    /// through the store does: for a signal that another process or browser tab appended
    /// (a message on a channel), so that they need not wait for their next poll.
    pub fn notify_appended(&self) {
        self.appended.notify(usize::MAX);
    }

    /// The position of the last event appended (0 for an empty store).
    pub async fn last_position(&self) -> Result<u64, EventStoreError> {
        let key = keys::global_head();
        match self.kv().get(&key).await? {
            Some(value) => envelope::decode_head(&value).map_err(|e| corrupt(&key, e)),
            None => Ok(0),
        }
    }

    /// The engine underneath.
    pub fn kv(&self) -> &K {
        &self.kv
    }

    /// Completes at the next append through this store (or a clone of it); appends of
    /// other processes are not seen. Make it before reading, then wait on it when the
    /// read found nothing new: an append committed in between still wakes it.
    pub fn next_append(&self) -> impl Future<Output = ()> + MaybeSend + Unpin + 'static {
        self.appended.listen()
    }

    async fn append_impl(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        expected_version: u64,
        events: &[NewEvent],
    ) -> Result<Appended, EventStoreError> {
        let stream = StreamKeys::new(aggregate_type, aggregate_id)?;
        validate_events(events)?;
        let log_count = u32::try_from(events.len()).map_err(|_| {
            EventStoreError::InvalidInput("an append holds at most 2^32 - 1 events".into())
        })?;
        if expected_version.checked_add(u64::from(log_count)).is_none() {
            return Err(EventStoreError::InvalidInput(
                "version overflows u64".into(),
            ));
        }
        self.append_grouped(AppendRequest {
            stream,
            expected_version,
            events: Cow::Borrowed(events),
        })
        .await
    }

    /// Where the events were stored, if the stream holds exactly these event ids right
    /// after `expected_version` (an earlier attempt of the same append landed). Reads the
    /// stored events page by page, however many and however large they are, and stops at
    /// the first that differs.
    pub(crate) async fn already_appended(
        &self,
        stream: &StreamKeys,
        expected_version: u64,
        events: &[NewEvent],
    ) -> Result<Option<Appended>, EventStoreError> {
        let count = events.len() as u64;
        let first_version = expected_version + 1;
        let last_version = expected_version + count;
        let mut range = stream.versions(first_version, last_version);
        let mut matched = 0;
        let mut first_position = 0;
        let mut last_position = 0u64;
        while matched < events.len() {
            let limit = events.len() - matched;
            let page = self.kv.scan(&range, Direction::Forward, limit).await?;
            for (key, value) in page.iter() {
                let expected_key = stream.event(first_version + matched as u64);
                if key != &expected_key[..] {
                    return Ok(None);
                }
                let stored = EventValue::parse(key, value).map_err(|e| corrupt(key, e))?;
                if stored.event_id() != events[matched].event_id {
                    return Ok(None);
                }
                if matched == 0 {
                    first_position = stored.position();
                } else if last_position.checked_add(1) != Some(stored.position()) {
                    return Err(corrupt(
                        key,
                        "an append's events do not have consecutive positions",
                    ));
                }
                last_position = stored.position();
                matched += 1;
            }
            match page.last_key() {
                Some(last) if matched < events.len() && page.may_have_more(limit) => {
                    range = range.after_page(last, Direction::Forward);
                }
                _ => break,
            }
        }
        if matched < events.len() {
            return Ok(None);
        }
        Ok(Some(Appended {
            first_version,
            last_version,
            first_position,
            last_position,
            duplicate: true,
        }))
    }

    pub(crate) async fn current_version_impl(
        &self,
        stream: &StreamKeys,
    ) -> Result<u64, EventStoreError> {
        let last = self.kv.scan(&stream.all(), Direction::Reverse, 1).await?;
        match last.last_key() {
            None => Ok(0),
            Some(key) => keys::event_version(key).ok_or_else(|| corrupt(key, "not an event key")),
        }
    }

    async fn read_stream_impl(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        from_version: u64,
        to_version: u64,
        limit: usize,
    ) -> Result<EventPage, EventStoreError> {
        let stream = StreamKeys::new(aggregate_type, aggregate_id)?;
        let mut events = EventPage::default();
        if from_version <= to_version && limit > 0 {
            let range = stream.versions(from_version, to_version);
            let page = self.kv.scan(&range, Direction::Forward, limit).await?;
            events.more = page.may_have_more(limit);
            events.push_stream(aggregate_type, aggregate_id, page)?;
        }
        self.upcast(events)
    }

    /// The events of the global log from `from_position`, as [`EventStore::read_all`]
    /// reads them, covering at most `limit` positions, of the aggregate types `readable`
    /// accepts: the log names each append's stream, so the others are passed over unread
    /// ([`EventPage::read_through`] says how far the read went, to read on from there).
    pub async fn read_all_where(
        &self,
        from_position: u64,
        limit: usize,
        readable: impl Fn(&str) -> bool,
    ) -> Result<EventPage, EventStoreError> {
        let from_position = from_position.max(1);
        let limit = limit.min(MAX_SCAN_ENTRIES);
        let mut events = EventPage::default();
        if limit == 0 {
            return Ok(events);
        }
        // The entry of the append that holds `from_position` starts at or before it.
        let before = KeyRange::inclusive(keys::global_log(0), keys::global_log(from_position));
        let covering = self.kv.scan(&before, Direction::Reverse, 1).await?;
        let start = match covering.last_key() {
            Some(key) => Bytes::copy_from_slice(key),
            None => keys::global_log(from_position),
        };
        // Every entry holds at least one event: `limit` entries are enough.
        let range = KeyRange::between(start, keys::global_log_end());
        let log = self.kv.scan(&range, Direction::Forward, limit).await?;
        let mut wanted: Vec<Wanted> = Vec::new();
        let mut covered = 0;
        for (key, value) in log.iter() {
            let remaining = limit - covered;
            if remaining == 0 {
                events.more = true;
                break;
            }
            let mut run = LogRun::decode(key, value)?;
            let skip = from_position
                .saturating_sub(run.first_position)
                .min(run.len);
            run.skip(skip);
            run.len = run.len.min(u64::try_from(remaining).unwrap_or(u64::MAX));
            if run.len == 0 {
                continue;
            }
            covered += usize::try_from(run.len).unwrap_or(remaining);
            events.through = Some(run.first_position + (run.len - 1));
            let (run_type, aggregate_id) = run
                .stream
                .names()
                .ok_or_else(|| corrupt(key, "unreadable aggregate names"))?;
            if !readable(run_type) {
                continue;
            }
            let stream = events.add_stream(run_type, aggregate_id);
            for offset in 0..run.len {
                wanted.push(Wanted {
                    key: run.stream.event(run.first_version + offset),
                    stream,
                    version: run.first_version + offset,
                    position: run.first_position + offset,
                });
            }
        }
        // The events themselves, a bounded number of keys per engine call, whatever the
        // sizes of the appends, up to a page of bytes.
        let mut next = 0;
        while let Some(first) = wanted.get(next) {
            if events.bytes() >= MAX_SCAN_BYTES {
                // The read covers what comes before the first event it leaves out.
                events.through = Some(first.position - 1);
                events.more = true;
                break;
            }
            let chunk = &wanted[next..wanted.len().min(next + EVENTS_PER_GET)];
            let keys: Vec<Bytes> = chunk.iter().map(|wanted| wanted.key.clone()).collect();
            let page = self.kv.get_many(&keys).await?;
            next += events.push_logged(page, chunk)?;
        }
        events.more |= covered >= limit || log.may_have_more(limit);
        self.upcast(events)
    }
}

/// How many events [`KvEventStore::read_all`] asks the engine for in one call.
const EVENTS_PER_GET: usize = 256;

/// An event the global log says is at `position`.
struct Wanted {
    key: Bytes,
    /// Its stream's index in the [`EventPage`] being filled.
    stream: usize,
    version: u64,
    position: u64,
}

/// Checks what `append` cannot store.
pub(crate) fn validate_events(events: &[NewEvent]) -> Result<(), EventStoreError> {
    if events.is_empty() {
        return Err(EventStoreError::InvalidInput(
            "an append needs at least one event".into(),
        ));
    }
    for event in events {
        if event.event_type.is_empty() || event.event_type.len() > usize::from(u16::MAX) {
            return Err(EventStoreError::InvalidInput(format!(
                "event type must be 1 to 65535 bytes, got {} bytes",
                event.event_type.len()
            )));
        }
        if event.shape_version == 0 {
            return Err(EventStoreError::InvalidInput(format!(
                "event {} of type {:?}: shape versions start at 1, got 0",
                event.event_id, event.event_type
            )));
        }
    }
    // An event's id is its identity: an append that holds one twice would store it twice.
    if events.len() > 1 {
        let mut ids = std::collections::HashSet::with_capacity(events.len());
        if let Some(twice) = events.iter().find(|event| !ids.insert(event.event_id)) {
            return Err(EventStoreError::InvalidInput(format!(
                "event id {} appears twice in one append",
                twice.event_id
            )));
        }
    }
    Ok(())
}

/// The events one append put in the global log: consecutive positions and versions.
struct LogRun {
    first_position: u64,
    stream: StreamKeys,
    first_version: u64,
    len: u64,
}

impl LogRun {
    fn decode(key: &[u8], value: &[u8]) -> Result<Self, EventStoreError> {
        let first_position =
            keys::global_log_position(key).ok_or_else(|| corrupt(key, "not a global log key"))?;
        let (len, event_key) = envelope::decode_log_entry(value).map_err(|e| corrupt(key, e))?;
        let (stream, first_version) = StreamKeys::from_event_key(event_key)
            .ok_or_else(|| corrupt(key, "global log points at a non-event key"))?;
        if len == 0 {
            return Err(corrupt(key, "global log entry of no event"));
        }
        let extra = u64::from(len) - 1;
        if first_position.checked_add(extra).is_none() || first_version.checked_add(extra).is_none()
        {
            return Err(corrupt(
                key,
                "global log entry runs past the largest position",
            ));
        }
        Ok(LogRun {
            first_position,
            stream,
            first_version,
            len: u64::from(len),
        })
    }

    /// Drops the first `count` events of the run.
    fn skip(&mut self, count: u64) {
        self.first_position = self.first_position.saturating_add(count);
        self.first_version = self.first_version.saturating_add(count);
        self.len -= count;
    }
}

impl<K: OrderedKv> EventStore for KvEventStore<K> {
    fn append(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        expected_version: u64,
        events: &[NewEvent],
    ) -> impl Future<Output = Result<Appended, EventStoreError>> + MaybeSend {
        let span = tracing::debug_span!(
            "append",
            aggregate_type,
            aggregate_id,
            expected_version,
            events = events.len()
        );
        self.append_impl(aggregate_type, aggregate_id, expected_version, events)
            .instrument(span)
    }

    fn read_stream(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        from_version: u64,
        to_version: u64,
        limit: usize,
    ) -> impl Future<Output = Result<EventPage, EventStoreError>> + MaybeSend {
        let span = tracing::trace_span!(
            "read_stream",
            aggregate_type,
            aggregate_id,
            from_version,
            limit
        );
        self.read_stream_impl(
            aggregate_type,
            aggregate_id,
            from_version,
            to_version,
            limit,
        )
        .instrument(span)
    }

    async fn current_version(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<u64, EventStoreError> {
        let stream = StreamKeys::new(aggregate_type, aggregate_id)?;
        self.current_version_impl(&stream).await
    }

    fn read_all(
        &self,
        from_position: u64,
        limit: usize,
    ) -> impl Future<Output = Result<EventPage, EventStoreError>> + MaybeSend {
        let span = tracing::debug_span!("read_all", from_position, limit);
        self.read_all_where(from_position, limit, |_| true)
            .instrument(span)
    }
}
