//! How the outbox is stored: its keys, its entries and the aggregates' tips.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{OUTBOX, OutboxEntry, OutboxState, SYNC_CURSOR};
use crate::codec::Codec;
use crate::envelope::EventMetadata;
use crate::event_store::{EventStoreError, NewEvent, corrupt};
use crate::keys;

const ENTRY: u8 = b'e';
const TIP: u8 = b't';
/// The key of the next entry's sequence number.
pub(super) const NEXT: u8 = b'n';

/// The stored form of an outbox entry.
#[derive(Serialize, Deserialize)]
pub(super) struct EntryRecord {
    aggregate_type: String,
    aggregate_id: String,
    expected_version: u64,
    events: Vec<EventRecord>,
    pub(super) state: OutboxState,
    /// The shape version of each event, stored after the record (all 1 in records
    /// written before events had shape versions).
    #[serde(skip)]
    shapes: Vec<u32>,
}

/// Starts an outbox entry whose events' shape versions follow the record: a byte no
/// record of the first form starts with (it is not a bincode length).
const WITH_SHAPES: u8 = 0xFF;

#[derive(Serialize, Deserialize)]
pub(super) struct EventRecord {
    event_id: Uuid,
    event_type: String,
    codec: u8,
    payload: Vec<u8>,
    correlation_id: Option<Uuid>,
    causation_id: Option<Uuid>,
}

/// An aggregate's optimistic version and how many of its entries are not yet confirmed
/// or parked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Tip {
    pub(super) version: u64,
    pub(super) entries: u64,
}

impl Tip {
    pub(super) fn encode(self) -> Bytes {
        let mut out = BytesMut::with_capacity(16);
        out.put_u64(self.version);
        out.put_u64(self.entries);
        out.freeze()
    }

    pub(super) fn decode(key: &[u8], value: &[u8]) -> Result<Self, EventStoreError> {
        let (version, entries) = value
            .split_first_chunk::<8>()
            .and_then(|(version, rest)| Some((*version, *rest.first_chunk::<8>()?)))
            .ok_or_else(|| corrupt(key, "an outbox tip is not 16 bytes"))?;
        Ok(Tip {
            version: u64::from_be_bytes(version),
            entries: u64::from_be_bytes(entries),
        })
    }
}

pub(super) fn outbox_key(suffix: &[u8]) -> Result<Bytes, EventStoreError> {
    let mut key = BytesMut::from(&keys::read_model(OUTBOX)?[..]);
    key.put_slice(suffix);
    Ok(key.freeze())
}

pub(super) fn entry_key(seq: u64) -> Result<Bytes, EventStoreError> {
    let mut suffix = [ENTRY; 9];
    suffix[1..].copy_from_slice(&seq.to_be_bytes());
    outbox_key(&suffix)
}

pub(super) fn tip_key(aggregate_type: &str, aggregate_id: &str) -> Result<Bytes, EventStoreError> {
    // The stream's key prefix names the aggregate unambiguously.
    let stream = keys::snapshot(aggregate_type, aggregate_id)?;
    let mut suffix = Vec::with_capacity(1 + stream.len());
    suffix.push(TIP);
    suffix.extend_from_slice(&stream[1..]);
    outbox_key(&suffix)
}

pub(super) fn cursor_key() -> Result<Bytes, EventStoreError> {
    Ok(keys::checkpoint(SYNC_CURSOR)?)
}

pub(super) fn be_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

impl EntryRecord {
    pub(super) fn new(
        aggregate_type: &str,
        aggregate_id: &str,
        expected_version: u64,
        events: &[NewEvent],
    ) -> Self {
        EntryRecord {
            aggregate_type: aggregate_type.to_owned(),
            aggregate_id: aggregate_id.to_owned(),
            expected_version,
            events: events.iter().map(EventRecord::of).collect(),
            state: OutboxState::Pending,
            shapes: events.iter().map(|event| event.shape_version).collect(),
        }
    }

    pub(super) fn of(entry: &OutboxEntry, state: OutboxState) -> Self {
        EntryRecord {
            state,
            ..EntryRecord::new(
                &entry.aggregate_type,
                &entry.aggregate_id,
                entry.expected_version,
                &entry.events,
            )
        }
    }

    pub(super) fn encode(&self) -> Result<Bytes, EventStoreError> {
        let mut out = vec![WITH_SHAPES];
        Codec::Bincode
            .encode(&(self, &self.shapes))
            .map(|record| {
                out.extend_from_slice(&record);
                Bytes::from(out)
            })
            .map_err(|error| EventStoreError::InvalidInput(format!("an outbox entry: {error}")))
    }

    pub(super) fn decode(key: &[u8], value: &[u8]) -> Result<Self, EventStoreError> {
        let error = |error| corrupt(key, format!("an outbox entry: {error}"));
        let mut record = match value.split_first() {
            Some((&WITH_SHAPES, rest)) => {
                let (mut record, shapes): (EntryRecord, Vec<u32>) =
                    Codec::Bincode.decode(rest).map_err(error)?;
                record.shapes = shapes;
                record
            }
            _ => Codec::Bincode.decode::<EntryRecord>(value).map_err(error)?,
        };
        if record.shapes.is_empty() {
            record.shapes = vec![1; record.events.len()];
        }
        if record.shapes.len() != record.events.len() || record.shapes.contains(&0) {
            return Err(corrupt(
                key,
                "an outbox entry's shape versions do not match its events",
            ));
        }
        Ok(record)
    }
}

impl EventRecord {
    fn of(event: &NewEvent) -> Self {
        EventRecord {
            event_id: event.event_id,
            event_type: event.event_type.clone(),
            codec: event.codec.tag(),
            payload: event.payload.to_vec(),
            correlation_id: event.metadata.correlation_id,
            causation_id: event.metadata.causation_id,
        }
    }
}

impl OutboxEntry {
    pub(super) fn decode(key: &[u8], value: &[u8]) -> Result<Self, EventStoreError> {
        let seq = key
            .len()
            .checked_sub(8)
            .and_then(|at| be_u64(&key[at..]))
            .ok_or_else(|| corrupt(key, "not an outbox entry key"))?;
        let record = EntryRecord::decode(key, value)?;
        let events = record
            .events
            .into_iter()
            .zip(record.shapes)
            .map(|(event, shape_version)| {
                Ok(NewEvent {
                    event_id: event.event_id,
                    event_type: event.event_type,
                    shape_version,
                    codec: Codec::from_tag(event.codec).map_err(|e| corrupt(key, e))?,
                    payload: Bytes::from(event.payload),
                    metadata: EventMetadata {
                        correlation_id: event.correlation_id,
                        causation_id: event.causation_id,
                    },
                })
            })
            .collect::<Result<_, EventStoreError>>()?;
        Ok(OutboxEntry {
            seq,
            aggregate_type: record.aggregate_type,
            aggregate_id: record.aggregate_id,
            expected_version: record.expected_version,
            events,
            state: record.state,
        })
    }
}
