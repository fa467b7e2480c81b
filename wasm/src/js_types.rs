//! The shapes the JS API takes and returns, as JSON, and their TypeScript types.
//!
//! Results cross back to JavaScript as one `JSON.parse` (a page of events at a time):
//! event payloads and snapshot states are JSON already, so they are checked and copied,
//! never re-encoded.

use eventkv::{Codec, NewEvent, RecordedEvent, Snapshot, StoredEvent, Uuid};
use serde::Serialize;
use serde_json::value::RawValue;
use wasm_bindgen::prelude::wasm_bindgen;

use crate::js_error::ApiError;
use eventkv::ErrorKind;

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/**
 * The stable `code` of an `EventKvError`: the name of its kind, as Rust's `ErrorKind`.
 * `Unavailable`, `Ambiguous` and `Contended` may succeed if tried again (an `Ambiguous`
 * write may have landed: retry it with the same event ids, which stores them once).
 */
export type ErrorCode =
  | "Conflict" | "NotFound" | "InvalidInput" | "Corrupt" | "Unavailable" | "Ambiguous"
  | "StorageFull" | "Contended" | "Closed" | "Unsupported" | "PermissionDenied"
  | "Refused" | "Handler" | "Unexpected";

/** What every call of an `EventStore` throws (or rejects with). */
export interface EventKvError extends Error {
  name: "EventKvError";
  code: ErrorCode;
  /** With `code: "Conflict"`: the version the append expected. */
  expected?: number;
  /** With `code: "Conflict"`: the stream's version when the append was refused. */
  actual?: number;
}

/** The options of `EventStore.open`. */
export interface OpenOptions {
  /** When a write is reported committed: `"strict"` (the default) once it is on disk, so
   * it survives an OS crash or power loss; `"relaxed"` once the OS has it (faster; the last
   * writes can be lost on an OS crash); `"default"`, the browser's choice. */
  durability?: "strict" | "relaxed" | "default";
  /** Makes the store a replica of an `eventkv serve` server: appends wait in an outbox
   * and are pushed when online; the log grows by pulls, in the server's order. */
  sync?: SyncOptions;
  /** Turn events stored in old shapes into current ones on every read (`readStream`,
   * `readAll`, `load`, subscriptions): steps chain, and an old shape without a step is
   * an `Unsupported` error naming its type and shape. */
  upcasters?: Upcaster[];
}

/** Reads events of `type` stored with shape `shapeVersion`. */
export interface Upcaster {
  type: string;
  shapeVersion: number;
  /** The events that replace one (its `data`): none drops it, several split it. */
  upcast: (data: unknown) => { type: string; shapeVersion?: number; data: unknown }[];
}

/** How a store syncs with its server. */
export interface SyncOptions {
  /** The server's base URL, e.g. `"https://example.com/sync"`. */
  url: string;
  /** The bearer token the server gave this user, if it wants one. */
  token?: string | null;
  /** Resolves a conflict: the server took versions this tab's pending events were made
   * on. Return the events to push instead (typically: run the command again on the new
   * state, made from `conflict.version`), `[]` to drop the pending ones, or `null` to
   * park them. Without it, or when it throws, they are parked: kept, reported in
   * `sync.outbox()`, never pushed, until discarded. */
  rebase?: (conflict: Conflict) => NewEvent[] | null | Promise<NewEvent[] | null>;
}

/** What `rebase` is given. */
export interface Conflict {
  aggregateType: string;
  aggregateId: string;
  /** The aggregate's confirmed version: the events `rebase` returns are made on it. */
  version: number;
  /** The server's events since the pending ones were made. */
  serverEvents: StoredEvent[];
  /** The pending events, in order. */
  pending: OutboxEvent[];
}

/** An event waiting in the outbox. */
export interface OutboxEvent {
  eventId: string;
  type: string;
  data: unknown;
  correlationId: string | null;
  causationId: string | null;
}

/** A local append waiting to be confirmed by the server, or set aside. */
export interface OutboxEntry {
  /** Its place in the outbox: entries are pushed in this order. */
  seq: number;
  aggregateType: string;
  aggregateId: string;
  /** The version its events were made on. */
  expectedVersion: number;
  events: OutboxEvent[];
  /** `pending` (to push), `pushed` (stored by the server, not pulled back yet) or
   * `parked` (set aside: see `reason`). */
  state: "pending" | "pushed" | "parked";
  reason: string | null;
}

/** Where a store's sync stands. */
export interface SyncStatus {
  /** Whether the last exchange with the server succeeded; null before the first. */
  online: boolean | null;
  /** Whether this tab pushes and pulls (one tab per origin and database does). */
  leader: boolean;
  /** Whether a push is under way. */
  pushing: boolean;
  /** The server position this replica has pulled up to. */
  pulledUpTo: number;
  /** The server's last position when it last said (pulledUpTo / head is the initial
   * sync's progress). */
  head: number;
  /** Local appends not yet confirmed by a pull. */
  pending: number;
  /** Local appends set aside: see `sync.outbox()`. */
  parked: number;
  /** The last failure, for people; null after a success. */
  lastError: string | null;
  /** Whether `stop` was called (or the store closed). */
  stopped: boolean;
}

/** An event to append. `data` is anything `JSON.stringify` accepts. */
export interface NewEvent {
  type: string;
  data: unknown;
  /** The version of the event's shape (1 when absent). */
  shapeVersion?: number;
  /** A UUID; a fresh v4 when absent. */
  eventId?: string;
  correlationId?: string | null;
  causationId?: string | null;
}

/** An event as stored. */
export interface StoredEvent {
  aggregateType: string;
  aggregateId: string;
  /** Its version in the aggregate's stream, from 1. */
  version: number;
  /** Its position in the global log, from 1, in commit order. */
  position: number;
  eventId: string;
  type: string;
  /** The version of its shape (after upcasting, the shape read). */
  shapeVersion: number;
  data: unknown;
  /** When it was appended, in milliseconds since the Unix epoch (`new Date(timestamp)`). */
  timestamp: number;
  correlationId: string | null;
  causationId: string | null;
}

/** A pending event of a synced store in `readStream` and `load`: appended here, not yet
 * confirmed by the server, so without a position or a timestamp. */
export interface PendingEvent extends Omit<StoredEvent, "position" | "timestamp"> {
  position: null;
  timestamp: null;
  pending: true;
}

/** What `readStream` and `load` return: stored events, then (on a synced store) the
 * pending ones. */
export type ReadEvent = StoredEvent | PendingEvent;

/** Where an append put its events. */
export interface Appended {
  firstVersion: number;
  /** The stream's new version. */
  lastVersion: number;
  /** null for a synced store's append, which waits in the outbox. */
  firstPosition: number | null;
  lastPosition: number | null;
  /** Whether it waits in the outbox (a synced store). */
  pending: boolean;
}

/** A snapshot to save: the state after the event at `version`. */
export interface NewSnapshot {
  aggregateType: string;
  aggregateId: string;
  version: number;
  /** The version of your state's shape; bump it when the shape changes. */
  schemaVersion: number;
  /** Anything `JSON.stringify` accepts. */
  state: unknown;
}

/** A stored snapshot. */
export interface Snapshot extends NewSnapshot {
  /** When it was saved, in milliseconds since the Unix epoch. */
  createdAt: number;
}

/** Called by `subscribe` with each batch of events, in position order. A returned
 * promise is awaited before the next batch (save your checkpoint there). */
export type OnEvents = (events: StoredEvent[]) => void | Promise<void>;

/** The options of `subscribe`. */
export interface SubscribeOptions {
  /** Called when a read fails (the subscription tries again, from where it was) or when
   * `onEvents` throws or rejects (the subscription stops). Without it, errors are logged
   * with `console.error`. */
  onError?: (error: EventKvError) => void;
  /** Only the events of aggregates of this type (the others are passed over unread). */
  aggregateType?: string;
  /** How often, in milliseconds (1 to 2^31 - 1), the subscription looks at the log when no
   * append was announced; default 30,000. Appends of this page, and of other tabs through
   * a `BroadcastChannel`, wake it at once: lower it only where appends can come unannounced
   * (a browser without `BroadcastChannel`, or another writer of the same database). */
  pollInterval?: number;
}

/** A read model kept by JavaScript: its state, and the position of the last event folded
 * into it. */
export interface ReadModelState {
  position: number;
  state: unknown;
}

/** Why `load` did not start from the stored snapshot. */
export type SnapshotMiss =
  | "SchemaMismatch" | "UnknownCodec" | "Undecodable" | "ChecksumMismatch"
  | "AheadOfStream" | "ForeignHistory" | "Unreadable";

/** What a JS reducer needs to rebuild an aggregate: fold `events` into `snapshot.state`
 * (or into the initial state when `snapshot` is null). */
export interface Loaded {
  aggregateType: string;
  aggregateId: string;
  /** The aggregate's version: that of its last event. */
  version: number;
  /** The snapshot the load started from, or null for a full replay. */
  snapshot: Snapshot | null;
  /** The events after the snapshot (all events without one), in version order; on a
   * synced store, the pending ones last. */
  events: ReadEvent[];
  /** Why a stored snapshot was not used; null when it was, or when there is none. */
  snapshotMiss: SnapshotMiss | null;
}
"#;

/// A `StoredEvent` for `JSON.parse`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredEventJson<'a> {
    aggregate_type: &'a str,
    aggregate_id: &'a str,
    version: u64,
    position: u64,
    event_id: Uuid,
    #[serde(rename = "type")]
    event_type: &'a str,
    shape_version: u32,
    data: &'a RawValue,
    timestamp: f64,
    correlation_id: Option<Uuid>,
    causation_id: Option<Uuid>,
}

impl<'a> StoredEventJson<'a> {
    /// The event, whose payload must be one JSON value.
    pub fn new(event: &StoredEvent<'a>) -> Result<Self, ApiError> {
        let metadata = event.metadata();
        Ok(StoredEventJson {
            aggregate_type: event.aggregate_type(),
            aggregate_id: event.aggregate_id(),
            version: event.version(),
            position: event.position(),
            event_id: event.event_id(),
            event_type: event.event_type(),
            shape_version: event.shape_version(),
            data: event_data(event.codec(), event.payload(), event.version(), || {
                (event.aggregate_type(), event.aggregate_id())
            })?,
            timestamp: millis(event.timestamp().as_micros()),
            correlation_id: metadata.correlation_id,
            causation_id: metadata.causation_id,
        })
    }

    /// The owned event (of a subscription), whose payload must be one JSON value.
    pub fn recorded(event: &'a RecordedEvent) -> Result<Self, ApiError> {
        Ok(StoredEventJson {
            aggregate_type: &event.aggregate_type,
            aggregate_id: &event.aggregate_id,
            version: event.version,
            position: event.position,
            event_id: event.event_id,
            event_type: &event.event_type,
            shape_version: event.shape_version,
            data: event_data(event.codec, &event.payload, event.version, || {
                (&event.aggregate_type, &event.aggregate_id)
            })?,
            timestamp: millis(event.timestamp.as_micros()),
            correlation_id: event.metadata.correlation_id,
            causation_id: event.metadata.causation_id,
        })
    }
}

/// An event's payload as one JSON value, or an error naming the event.
fn event_data<'a, 'n>(
    codec: Codec,
    payload: &'a [u8],
    version: u64,
    stream: impl FnOnce() -> (&'n str, &'n str),
) -> Result<&'a RawValue, ApiError> {
    json_value(codec, payload).map_err(|(code, why)| {
        let (aggregate_type, aggregate_id) = stream();
        ApiError::new(
            code,
            format!("event {version} of {aggregate_type} {aggregate_id:?}: {why}"),
        )
    })
}

/// A `Snapshot` for `JSON.parse`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotJson<'a> {
    aggregate_type: &'a str,
    aggregate_id: &'a str,
    version: u64,
    schema_version: u32,
    state: &'a RawValue,
    created_at: f64,
}

impl<'a> SnapshotJson<'a> {
    /// The snapshot, whose state must be one JSON value.
    pub fn new(snapshot: &'a Snapshot) -> Result<Self, ApiError> {
        let state = json_value(snapshot.codec, &snapshot.state).map_err(|(code, why)| {
            ApiError::new(
                code,
                format!(
                    "snapshot of {} {:?}: {why}",
                    snapshot.aggregate_type, snapshot.aggregate_id
                ),
            )
        })?;
        Ok(SnapshotJson {
            aggregate_type: &snapshot.aggregate_type,
            aggregate_id: &snapshot.aggregate_id,
            version: snapshot.version,
            schema_version: snapshot.schema_version,
            state,
            created_at: millis(snapshot.created_at.as_micros()),
        })
    }
}

/// The result of `load`, but its events (added a page at a time).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadedJson<'a> {
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    pub version: u64,
    pub snapshot: Option<SnapshotJson<'a>>,
    pub snapshot_miss: Option<&'static str>,
}

/// `Appended` for `JSON.parse`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppendedJson {
    pub first_version: u64,
    pub last_version: u64,
    pub first_position: Option<u64>,
    pub last_position: Option<u64>,
    pub pending: bool,
}

/// A pending event of a synced store (the optimistic view) as a `StoredEvent`: no
/// position or timestamp yet.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingEventJson<'a> {
    aggregate_type: &'a str,
    aggregate_id: &'a str,
    version: u64,
    position: Option<u64>,
    event_id: Uuid,
    #[serde(rename = "type")]
    event_type: &'a str,
    shape_version: u32,
    data: &'a RawValue,
    timestamp: Option<f64>,
    correlation_id: Option<Uuid>,
    causation_id: Option<Uuid>,
    pending: bool,
}

impl<'a> PendingEventJson<'a> {
    /// The pending `event` at `version` of the aggregate.
    pub fn new(
        aggregate_type: &'a str,
        aggregate_id: &'a str,
        version: u64,
        event: &'a NewEvent,
    ) -> Result<Self, ApiError> {
        Ok(PendingEventJson {
            aggregate_type,
            aggregate_id,
            version,
            position: None,
            event_id: event.event_id,
            event_type: &event.event_type,
            shape_version: event.shape_version,
            data: event_data(event.codec, &event.payload, version, || {
                (aggregate_type, aggregate_id)
            })?,
            timestamp: None,
            correlation_id: event.metadata.correlation_id,
            causation_id: event.metadata.causation_id,
            pending: true,
        })
    }
}

/// The stored bytes as one JSON value, or why they are not.
fn json_value(codec: Codec, bytes: &[u8]) -> Result<&RawValue, (ErrorKind, String)> {
    if codec != Codec::Json {
        return Err((
            ErrorKind::Unsupported,
            format!("it is encoded with {codec}, which JavaScript cannot read"),
        ));
    }
    serde_json::from_slice(bytes).map_err(|error| {
        (
            ErrorKind::Corrupt,
            format!("its JSON does not parse: {error}"),
        )
    })
}

fn millis(micros: i64) -> f64 {
    micros as f64 / 1000.0
}
