//! Reading a store record by record, for tools that copy, check or export it (the
//! `eventkv` command): every stored key and value decoded into what it holds, with the
//! checksums checked. Applications use the event store and the repository instead.

use bytes::Bytes;
use uuid::Uuid;

use crate::codec::Codec;
use crate::envelope::{self, EventMetadata, EventValue, FormatError};
use crate::keys::{self, StreamKeys};
use crate::kv::DisplayKey;
use crate::timestamp::Timestamp;

/// One stored record: what a key and its value hold.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// An event of a stream.
    Event(EventRecord),
    /// An entry of the global log: the append whose first event is at `position`.
    LogEntry {
        /// The position of the append's first event.
        position: u64,
        /// How many events the append wrote.
        count: u32,
        /// The key of the append's first event.
        first_event_key: Bytes,
    },
    /// The global head: the last position given.
    Head {
        /// The last position.
        position: u64,
    },
    /// The snapshot of one aggregate.
    Snapshot(SnapshotRecord),
    /// Where a named consumer of the global log is.
    Checkpoint {
        /// The consumer's name.
        name: String,
        /// The position of the last event it handled.
        position: u64,
    },
    /// An entry of a projection's read model (its value is the projection's own bytes).
    ReadModel {
        /// The projection's name.
        projection: String,
        /// The projection's own key.
        key: Bytes,
        /// The value, as the projection wrote it.
        value: Bytes,
    },
}

/// An event as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct EventRecord {
    /// Its stream.
    pub stream: StreamKeys,
    /// The aggregate type.
    pub aggregate_type: String,
    /// The aggregate id.
    pub aggregate_id: String,
    /// Its version in the stream.
    pub version: u64,
    /// Its position in the global log.
    pub position: u64,
    /// Its id.
    pub event_id: Uuid,
    /// When it was appended.
    pub timestamp: Timestamp,
    /// Its type name.
    pub event_type: String,
    /// Correlation and causation ids.
    pub metadata: EventMetadata,
    /// How the payload is encoded.
    pub codec: Codec,
    /// The encoded event.
    pub payload: Bytes,
}

/// A snapshot as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct SnapshotRecord {
    /// The aggregate type.
    pub aggregate_type: String,
    /// The aggregate id.
    pub aggregate_id: String,
    /// The version of the last event folded into the state.
    pub version: u64,
    /// The aggregate's schema version when the state was encoded.
    pub schema_version: u32,
    /// The id of the event at `version` (`None` in format 1).
    pub anchor: Option<Uuid>,
    /// When it was made.
    pub created_at: Timestamp,
    /// How the state is encoded.
    pub codec: Codec,
    /// The encoded state.
    pub state: Bytes,
}

/// A key or value that is not a record of this format.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct RecordError {
    /// The key, printable.
    pub key: String,
    /// What is wrong.
    pub problem: String,
}

impl RecordError {
    fn new(key: &[u8], problem: impl std::fmt::Display) -> Self {
        RecordError {
            key: DisplayKey(key).to_string(),
            problem: problem.to_string(),
        }
    }
}

/// The kinds of record, by the byte their keys start with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordKind {
    /// Events (`e`).
    Event,
    /// Global log entries (`g`).
    LogEntry,
    /// The global head (`h`).
    Head,
    /// Snapshots (`s`).
    Snapshot,
    /// Checkpoints (`c`).
    Checkpoint,
    /// Read models of projections (`p`).
    ReadModel,
}

impl RecordKind {
    /// The kind of record `key` is the key of, if it is one.
    pub fn of(key: &[u8]) -> Option<Self> {
        match key.first()? {
            b'e' => Some(RecordKind::Event),
            b'g' => Some(RecordKind::LogEntry),
            b'h' if key.len() == 1 => Some(RecordKind::Head),
            b's' => Some(RecordKind::Snapshot),
            b'c' => Some(RecordKind::Checkpoint),
            b'p' => Some(RecordKind::ReadModel),
            _ => None,
        }
    }

    /// Its name, in the plural.
    pub fn name(self) -> &'static str {
        match self {
            RecordKind::Event => "events",
            RecordKind::LogEntry => "log entries",
            RecordKind::Head => "head",
            RecordKind::Snapshot => "snapshots",
            RecordKind::Checkpoint => "checkpoints",
            RecordKind::ReadModel => "read model entries",
        }
    }
}

/// Decodes the record stored under `key`, checking its checksum.
pub fn decode(key: &[u8], value: &Bytes) -> Result<Record, RecordError> {
    let format = |error: FormatError| RecordError::new(key, error);
    match RecordKind::of(key) {
        Some(RecordKind::Event) => {
            let (stream, version) = StreamKeys::from_event_key(key)
                .ok_or_else(|| RecordError::new(key, "not a valid event key"))?;
            let (aggregate_type, aggregate_id) = stream
                .names()
                .ok_or_else(|| RecordError::new(key, "not a valid event key"))?;
            let (aggregate_type, aggregate_id) =
                (aggregate_type.to_owned(), aggregate_id.to_owned());
            let event = EventValue::parse(key, value).map_err(format)?;
            Ok(Record::Event(EventRecord {
                aggregate_type,
                aggregate_id,
                version,
                position: event.position(),
                event_id: event.event_id(),
                timestamp: event.timestamp(),
                event_type: event.event_type().to_owned(),
                metadata: event.metadata(),
                codec: event.codec(),
                payload: Bytes::copy_from_slice(event.payload()),
                stream,
            }))
        }
        Some(RecordKind::LogEntry) => {
            let position = keys::global_log_position(key)
                .ok_or_else(|| RecordError::new(key, "not a valid global log key"))?;
            let (count, first_event_key) = envelope::decode_log_entry(value).map_err(format)?;
            Ok(Record::LogEntry {
                position,
                count,
                first_event_key: Bytes::copy_from_slice(first_event_key),
            })
        }
        Some(RecordKind::Head) => Ok(Record::Head {
            position: envelope::decode_head(value).map_err(format)?,
        }),
        Some(RecordKind::Snapshot) => {
            let (aggregate_type, aggregate_id) = keys::snapshot_names(key)
                .ok_or_else(|| RecordError::new(key, "not a valid snapshot key"))?;
            let (aggregate_type, aggregate_id) =
                (aggregate_type.to_owned(), aggregate_id.to_owned());
            let fields = envelope::decode_snapshot(key, value).map_err(format)?;
            Ok(Record::Snapshot(SnapshotRecord {
                aggregate_type,
                aggregate_id,
                version: fields.version,
                schema_version: fields.schema_version,
                anchor: fields.anchor,
                created_at: fields.created_at,
                codec: fields.codec,
                state: fields.state,
            }))
        }
        Some(RecordKind::Checkpoint) => {
            let name = keys::checkpoint_name(key)
                .ok_or_else(|| RecordError::new(key, "not a valid checkpoint key"))?;
            Ok(Record::Checkpoint {
                name: name.to_owned(),
                position: envelope::decode_checkpoint(key, value).map_err(format)?,
            })
        }
        Some(RecordKind::ReadModel) => {
            let (projection, own) = keys::read_model_parts(key)
                .ok_or_else(|| RecordError::new(key, "not a valid read model key"))?;
            Ok(Record::ReadModel {
                projection: projection.to_owned(),
                key: Bytes::copy_from_slice(own),
                value: value.clone(),
            })
        }
        None => Err(RecordError::new(key, "not a key eventkv writes")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EventStore, KvEventStore, MemoryKv, NewEvent, OrderedKv};

    #[tokio::test]
    async fn every_record_of_an_append_decodes_and_a_flipped_byte_is_named() {
        let kv = std::sync::Arc::new(MemoryKv::new());
        let store = KvEventStore::new(kv.clone());
        let event = NewEvent::encode("Opened", &"x", Codec::Json).expect("encode");
        store
            .append("T", "a", 0, std::slice::from_ref(&event))
            .await
            .expect("append");
        let page = kv
            .scan(&crate::KeyRange::all(), crate::Direction::Forward, 100)
            .await
            .expect("scan");
        let records: Vec<Record> = page
            .iter()
            .map(|(key, value)| decode(key, &Bytes::copy_from_slice(value)).expect("decode"))
            .collect();
        let Record::Event(stored) = &records[0] else {
            panic!("the event comes first: {records:?}");
        };
        assert_eq!(
            (stored.aggregate_type.as_str(), stored.aggregate_id.as_str()),
            ("T", "a")
        );
        assert_eq!((stored.version, stored.position), (1, 1));
        assert_eq!(stored.event_id, event.event_id);
        assert_eq!(stored.payload, event.payload);
        assert!(matches!(
            &records[1],
            Record::LogEntry { position: 1, count: 1, first_event_key } if first_event_key == &stored.stream.event(1)
        ));
        assert_eq!(records[2], Record::Head { position: 1 });

        let (key, value) = page.iter().next().expect("the event");
        let mut flipped = value.to_vec();
        flipped[12] ^= 1;
        let error = decode(key, &Bytes::from(flipped)).expect_err("a flipped byte");
        assert!(error.problem.contains("checksum"), "{error}");
        assert!(decode(b"x", &Bytes::new()).is_err());
    }
}
