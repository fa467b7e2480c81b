//! The stored values: each starts with a format version byte. See `docs/format.md`.
//!
//! ```text
//! event       u8 format=1 | u8 codec | u64 position | 16B event id | i64 timestamp µs
//!             | u16 len + event type | u8 metadata flags | [16B correlation] [16B causation]
//!             | payload (the rest)
//! snapshot    u8 format=1 | u8 codec | u64 version | u32 schema version | i64 created µs
//!             | state (the rest)
//! log entry   u8 format=1 | u32 event count | the key of the append's first event
//! head        u64 last position
//! ```
//! Integers are big-endian.

use bytes::{BufMut, Bytes, BytesMut};
use uuid::Uuid;

use crate::codec::{Codec, CodecError};
use crate::timestamp::Timestamp;

/// The format version this eventkv writes and reads.
pub const FORMAT_VERSION: u8 = 1;

const HAS_CORRELATION: u8 = 0b01;
const HAS_CAUSATION: u8 = 0b10;

/// A stored value that does not follow the format.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// Written by a newer (or unknown) format version.
    #[error(
        "format version {found} is not supported (this eventkv reads version {FORMAT_VERSION})"
    )]
    UnsupportedVersion {
        /// The version byte found.
        found: u8,
    },
    /// The value ends before a field.
    #[error("value ends inside the {field}")]
    Truncated {
        /// The field that is cut.
        field: &'static str,
    },
    /// A field holds an impossible value.
    #[error("invalid {field}")]
    Invalid {
        /// The field.
        field: &'static str,
    },
    /// The codec tag is unknown.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// Correlation and causation ids carried with an event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EventMetadata {
    /// The id of the request or process this event belongs to.
    pub correlation_id: Option<Uuid>,
    /// The id of the message (command or event) that caused this event.
    pub causation_id: Option<Uuid>,
}

/// Everything of an event value but the payload.
pub(crate) struct EventHeader<'a> {
    pub codec: Codec,
    pub position: u64,
    pub event_id: Uuid,
    pub timestamp: Timestamp,
    pub event_type: &'a str,
    pub metadata: EventMetadata,
}

const POSITION_AT: usize = 2;
const EVENT_ID_AT: usize = 10;
const TIMESTAMP_AT: usize = 26;
const TYPE_LEN_AT: usize = 34;
const TYPE_AT: usize = 36;

pub(crate) fn encode_event(header: &EventHeader<'_>, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(TYPE_AT + 33 + header.event_type.len() + payload.len());
    out.put_u8(FORMAT_VERSION);
    out.put_u8(header.codec.tag());
    out.put_u64(header.position);
    out.put_slice(header.event_id.as_bytes());
    out.put_i64(header.timestamp.as_micros());
    // The event store refuses type names longer than u16::MAX bytes.
    out.put_u16(header.event_type.len() as u16);
    out.put_slice(header.event_type.as_bytes());
    let metadata = header.metadata;
    let flags = metadata.correlation_id.map_or(0, |_| HAS_CORRELATION)
        | metadata.causation_id.map_or(0, |_| HAS_CAUSATION);
    out.put_u8(flags);
    for id in [metadata.correlation_id, metadata.causation_id]
        .into_iter()
        .flatten()
    {
        out.put_slice(id.as_bytes());
    }
    out.put_slice(payload);
    out.freeze()
}

/// Where the variable fields of a validated event value are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EventLayout {
    codec: Codec,
    type_end: usize,
    payload_at: usize,
}

/// A validated event value: its fields are read in place, on demand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EventValue<'a> {
    value: &'a [u8],
    layout: EventLayout,
}

impl<'a> EventValue<'a> {
    /// Checks that `value` is a complete event of this format.
    pub(crate) fn parse(value: &'a [u8]) -> Result<Self, FormatError> {
        let mut r = Reader::new(value)?;
        let codec = Codec::from_tag(r.u8("codec tag")?)?;
        r.take(TYPE_LEN_AT - r.offset, "event header")?;
        let type_len = usize::from(r.u16("event type length")?);
        std::str::from_utf8(r.take(type_len, "event type")?).map_err(|_| FormatError::Invalid {
            field: "event type (not UTF-8)",
        })?;
        let type_end = r.offset;
        let flags = r.u8("metadata flags")?;
        if flags & !(HAS_CORRELATION | HAS_CAUSATION) != 0 {
            return Err(FormatError::Invalid {
                field: "metadata flags",
            });
        }
        let ids = (flags & HAS_CORRELATION).count_ones() + (flags & HAS_CAUSATION).count_ones();
        r.take(16 * ids as usize, "metadata ids")?;
        let layout = EventLayout {
            codec,
            type_end,
            payload_at: r.offset,
        };
        Ok(EventValue { value, layout })
    }

    /// The value `layout` was parsed from, without checking it again.
    pub(crate) fn with_layout(value: &'a [u8], layout: EventLayout) -> Self {
        EventValue { value, layout }
    }

    pub(crate) fn layout(&self) -> EventLayout {
        self.layout
    }

    fn array<const N: usize>(&self, at: usize) -> [u8; N] {
        // parse() checked that the whole header is present.
        self.value
            .get(at..at + N)
            .and_then(|bytes| bytes.try_into().ok())
            .unwrap_or([0; N])
    }

    pub(crate) fn codec(&self) -> Codec {
        self.layout.codec
    }

    pub(crate) fn position(&self) -> u64 {
        u64::from_be_bytes(self.array(POSITION_AT))
    }

    pub(crate) fn event_id(&self) -> Uuid {
        Uuid::from_bytes(self.array(EVENT_ID_AT))
    }

    pub(crate) fn timestamp(&self) -> Timestamp {
        Timestamp::from_micros(i64::from_be_bytes(self.array(TIMESTAMP_AT)))
    }

    pub(crate) fn event_type(&self) -> &'a str {
        let bytes = self
            .value
            .get(TYPE_AT..self.layout.type_end)
            .unwrap_or_default();
        std::str::from_utf8(bytes).unwrap_or_default()
    }

    pub(crate) fn metadata(&self) -> EventMetadata {
        let [flags] = self.array::<1>(self.layout.type_end);
        let mut at = self.layout.type_end + 1;
        let mut next_id = |present: bool| {
            present.then(|| {
                let id = Uuid::from_bytes(self.array(at));
                at += 16;
                id
            })
        };
        let correlation_id = next_id(flags & HAS_CORRELATION != 0);
        let causation_id = next_id(flags & HAS_CAUSATION != 0);
        EventMetadata {
            correlation_id,
            causation_id,
        }
    }

    pub(crate) fn payload(&self) -> &'a [u8] {
        self.value.get(self.layout.payload_at..).unwrap_or_default()
    }
}

/// The fields of a snapshot value.
#[derive(Debug)]
pub(crate) struct SnapshotFields {
    pub codec: Codec,
    pub version: u64,
    pub schema_version: u32,
    pub created_at: Timestamp,
    pub state: Bytes,
}

pub(crate) fn encode_snapshot(fields: &SnapshotFields) -> Bytes {
    let mut out = BytesMut::with_capacity(22 + fields.state.len());
    out.put_u8(FORMAT_VERSION);
    out.put_u8(fields.codec.tag());
    out.put_u64(fields.version);
    out.put_u32(fields.schema_version);
    out.put_i64(fields.created_at.as_micros());
    out.put_slice(&fields.state);
    out.freeze()
}

/// The version and schema version of a stored snapshot, read without decoding the rest
/// (or checking its codec).
pub(crate) fn snapshot_header(value: &[u8]) -> Result<(u64, u32), FormatError> {
    let mut r = Reader::new(value)?;
    r.u8("codec tag")?;
    Ok((r.u64("version")?, r.u32("schema version")?))
}

pub(crate) fn decode_snapshot(value: &Bytes) -> Result<SnapshotFields, FormatError> {
    let mut r = Reader::new(value)?;
    let codec = Codec::from_tag(r.u8("codec tag")?)?;
    let version = r.u64("version")?;
    let schema_version = r.u32("schema version")?;
    let created_at = Timestamp::from_micros(r.i64("created-at time")?);
    Ok(SnapshotFields {
        codec,
        version,
        schema_version,
        created_at,
        state: value.slice(r.offset..),
    })
}

pub(crate) fn encode_log_entry(count: u32, first_event_key: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + first_event_key.len());
    out.put_u8(FORMAT_VERSION);
    out.put_u32(count);
    out.put_slice(first_event_key);
    out.freeze()
}

/// How many events a global log entry covers, and the key of the first.
pub(crate) fn decode_log_entry(value: &[u8]) -> Result<(u32, &[u8]), FormatError> {
    let mut r = Reader::new(value)?;
    let count = r.u32("event count")?;
    Ok((count, value.get(r.offset..).unwrap_or_default()))
}

pub(crate) fn encode_head(position: u64) -> Bytes {
    Bytes::copy_from_slice(&position.to_be_bytes())
}

pub(crate) fn decode_head(value: &[u8]) -> Result<u64, FormatError> {
    let bytes: [u8; 8] = value.try_into().map_err(|_| FormatError::Invalid {
        field: "global head (not 8 bytes)",
    })?;
    Ok(u64::from_be_bytes(bytes))
}

/// Reads big-endian fields after the format version byte.
struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Result<Self, FormatError> {
        match bytes.first() {
            None => Err(FormatError::Truncated {
                field: "format version",
            }),
            Some(&FORMAT_VERSION) => Ok(Reader { bytes, offset: 1 }),
            Some(&found) => Err(FormatError::UnsupportedVersion { found }),
        }
    }

    fn take(&mut self, len: usize, field: &'static str) -> Result<&'a [u8], FormatError> {
        let end = self.offset.checked_add(len);
        let taken = end.and_then(|end| self.bytes.get(self.offset..end));
        let taken = taken.ok_or(FormatError::Truncated { field })?;
        self.offset += len;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], FormatError> {
        let bytes = self.take(N, field)?;
        bytes
            .try_into()
            .map_err(|_| FormatError::Truncated { field })
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, FormatError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, FormatError> {
        self.array(field).map(u16::from_be_bytes)
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, FormatError> {
        self.array(field).map(u32::from_be_bytes)
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, FormatError> {
        self.array(field).map(u64::from_be_bytes)
    }

    fn i64(&mut self, field: &'static str) -> Result<i64, FormatError> {
        self.array(field).map(i64::from_be_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_round_trips_with_metadata() {
        let correlation = Uuid::new_v4();
        let header = EventHeader {
            codec: Codec::Json,
            position: 7,
            event_id: Uuid::new_v4(),
            timestamp: Timestamp::from_micros(1_700_000_000_000_000),
            event_type: "Deposited",
            metadata: EventMetadata {
                correlation_id: Some(correlation),
                causation_id: None,
            },
        };
        let value = encode_event(&header, b"{\"amount\":5}");
        let event = EventValue::parse(&value).expect("parses");
        assert_eq!(event.codec(), Codec::Json);
        assert_eq!(event.position(), 7);
        assert_eq!(event.event_id(), header.event_id);
        assert_eq!(event.timestamp(), header.timestamp);
        assert_eq!(event.event_type(), "Deposited");
        assert_eq!(event.metadata(), header.metadata);
        assert_eq!(event.payload(), b"{\"amount\":5}");
        let payload_at = value.len() - 12;
        for cut in 0..payload_at {
            assert!(EventValue::parse(&value[..cut]).is_err(), "cut at {cut}");
        }
        assert!(
            EventValue::parse(&value[..payload_at]).is_ok(),
            "an empty payload is valid"
        );
    }

    #[test]
    fn unknown_format_version_and_codec_are_named() {
        let value = Bytes::from_static(&[9, 1, 0]);
        assert_eq!(
            decode_snapshot(&value).expect_err("version 9"),
            FormatError::UnsupportedVersion { found: 9 }
        );
        let fields = SnapshotFields {
            codec: Codec::Bincode,
            version: 3,
            schema_version: 1,
            created_at: Timestamp::from_micros(0),
            state: Bytes::from_static(b"x"),
        };
        let mut value = encode_snapshot(&fields).to_vec();
        value[1] = 77;
        let err = decode_snapshot(&Bytes::from(value)).expect_err("codec 77");
        assert_eq!(
            err,
            FormatError::Codec(CodecError::UnknownCodec { tag: 77 })
        );
    }
}
