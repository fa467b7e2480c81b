//! [`RecordedEvent`]: a stored event that owns its data, to keep or send between tasks.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::codec::{Codec, CodecError};
use crate::envelope::EventMetadata;
use crate::event_store::StoredEvent;
use crate::timestamp::Timestamp;

/// An event as stored, with every field of a [`StoredEvent`], owned: `Send`, `'static`,
/// cheap to clone (the payload is shared).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedEvent {
    /// The type of the aggregate it belongs to.
    pub aggregate_type: String,
    /// The id of the aggregate it belongs to.
    pub aggregate_id: String,
    /// Its version in the aggregate's stream, from 1.
    pub version: u64,
    /// Its position in the global log, from 1, in commit order.
    pub position: u64,
    /// The event's unique id.
    pub event_id: Uuid,
    /// The event's type name.
    pub event_type: String,
    /// The version of the payload's shape, from 1.
    pub shape_version: u32,
    /// When it was appended.
    pub timestamp: Timestamp,
    /// How the payload is encoded.
    pub codec: Codec,
    /// Correlation and causation ids.
    pub metadata: EventMetadata,
    /// The encoded event.
    pub payload: Bytes,
}

impl RecordedEvent {
    /// Decodes the payload with the event's own codec.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, CodecError> {
        self.codec.decode(&self.payload)
    }
}

impl From<StoredEvent<'_>> for RecordedEvent {
    fn from(event: StoredEvent<'_>) -> Self {
        RecordedEvent {
            aggregate_type: event.aggregate_type().to_owned(),
            aggregate_id: event.aggregate_id().to_owned(),
            version: event.version(),
            position: event.position(),
            event_id: event.event_id(),
            event_type: event.event_type().to_owned(),
            shape_version: event.shape_version(),
            timestamp: event.timestamp(),
            codec: event.codec(),
            metadata: event.metadata(),
            payload: Bytes::copy_from_slice(event.payload()),
        }
    }
}
