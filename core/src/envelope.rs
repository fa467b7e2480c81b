//! The stored values: each starts with a format version byte. See `docs/format.md`.
//!
//! ```text
//! event       u8 format=3 | u8 codec | u64 position | 16B event id | i64 timestamp µs
//!             | u16 len + event type | u32 shape version | u8 metadata flags
//!             | [16B correlation] [16B causation] | payload | u32 CRC-32C of key and value
//!             before it
//! snapshot    u8 format=2 | u8 codec | u64 version | u32 schema version | i64 created µs
//!             | 16B anchor event id | state | u32 CRC-32C of key and value before it
//! log entry   u8 format=1 | u32 event count | the key of the append's first event
//! head        u64 last position
//! ```
//! Integers are big-endian. Format 2 events (no shape version) and format 1 events and
//! snapshots (no checksum, no anchor) are still read.

use bytes::{BufMut, Bytes, BytesMut};
use uuid::Uuid;

use crate::codec::{Codec, CodecError};
use crate::error::ErrorKind;
use crate::timestamp::Timestamp;

/// The store format this eventkv writes: events carry the version of their shape. It reads
/// this one, version 2 (events without a shape version) and version 1 (written before
/// checksums and snapshot anchors).
pub const FORMAT_VERSION: u8 = 3;
/// The format of values without checksums: log entries (still written) and the events and
/// snapshots of eventkv 0.1.
const FORMAT_V1: u8 = 1;
/// Checksummed values: snapshots and checkpoints (still written), and events written
/// before they carried a shape version.
const FORMAT_V2: u8 = 2;
/// The size of the checksum that ends every value of format 2.
const CHECKSUM_LEN: usize = 4;

const HAS_CORRELATION: u8 = 0b01;
const HAS_CAUSATION: u8 = 0b10;

/// A stored value that does not follow the format.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// Written by a newer (or unknown) format version.
    #[error(
        "format version {found} is not supported (this eventkv reads versions 1 to {FORMAT_VERSION})"
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
    /// The checksum does not match the key and value: a byte changed after it was written.
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    ChecksumMismatch {
        /// The checksum stored in the value.
        stored: u32,
        /// The checksum of what is stored.
        computed: u32,
    },
    /// The codec tag is unknown.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

impl FormatError {
    /// What kind of failure it is: a format or codec this eventkv does not know is
    /// unsupported; anything else is corrupt.
    pub fn kind(&self) -> ErrorKind {
        match self {
            FormatError::UnsupportedVersion { .. } => ErrorKind::Unsupported,
            FormatError::Codec(error) => error.kind(),
            _ => ErrorKind::Corrupt,
        }
    }
}

crate::__error_class!(FormatError);

/// CRC-32C of `key` followed by `body`: binds a value to the key it was written under.
fn checksum(key: &[u8], body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(key), body)
}

/// Appends the checksum of `key` and everything in `out` so far.
fn seal(key: &[u8], mut out: BytesMut) -> Bytes {
    let crc = checksum(key, &out);
    out.put_u32(crc);
    out.freeze()
}

/// Recomputes the checksum of a format-2 `value` after a test edited it on purpose.
#[cfg(any(test, feature = "testkit"))]
pub(crate) fn reseal(key: &[u8], value: &mut Vec<u8>) {
    if let Some(body_len) = value.len().checked_sub(CHECKSUM_LEN) {
        let crc = checksum(key, &value[..body_len]);
        value.truncate(body_len);
        value.extend_from_slice(&crc.to_be_bytes());
    }
}

/// The part of a value its checksum covers, after checking it (format 2), or the whole
/// value (format 1).
fn verified_body<'a>(key: &[u8], value: &'a [u8]) -> Result<&'a [u8], FormatError> {
    match value.first() {
        None => Err(FormatError::Truncated {
            field: "format version",
        }),
        Some(&FORMAT_V1) => {
            // One flipped bit turns version 3 into 1, which has no checksum: a value whose
            // end is the checksum it would have as version 3 was written as version 3.
            let split = value.len().checked_sub(CHECKSUM_LEN).filter(|&len| len > 0);
            if let Some((body, stored)) = split.map(|at| value.split_at(at)) {
                let as_v3 = crc32c::crc32c_append(
                    crc32c::crc32c_append(crc32c::crc32c(key), &[FORMAT_VERSION]),
                    &body[1..],
                );
                if stored == as_v3.to_be_bytes() {
                    return Err(FormatError::ChecksumMismatch {
                        stored: as_v3,
                        computed: checksum(key, body),
                    });
                }
            }
            Ok(value)
        }
        Some(&(FORMAT_V2 | FORMAT_VERSION)) => {
            let body_len = value
                .len()
                .checked_sub(CHECKSUM_LEN)
                .filter(|&len| len > 0)
                .ok_or(FormatError::Truncated { field: "checksum" })?;
            let (body, stored) = value.split_at(body_len);
            let stored = u32::from_be_bytes(
                stored
                    .try_into()
                    .map_err(|_| FormatError::Truncated { field: "checksum" })?,
            );
            let computed = checksum(key, body);
            if stored == computed {
                Ok(body)
            } else {
                Err(FormatError::ChecksumMismatch { stored, computed })
            }
        }
        Some(&found) => Err(FormatError::UnsupportedVersion { found }),
    }
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
    /// The version of the payload's shape, from 1.
    pub shape_version: u32,
    pub metadata: EventMetadata,
}

const POSITION_AT: usize = 2;
const EVENT_ID_AT: usize = 10;
const TIMESTAMP_AT: usize = 26;
const TYPE_LEN_AT: usize = 34;
const TYPE_AT: usize = 36;

/// The value of the event stored under `key`.
pub(crate) fn encode_event(key: &[u8], header: &EventHeader<'_>, payload: &[u8]) -> Bytes {
    let capacity = TYPE_AT + 41 + CHECKSUM_LEN + header.event_type.len() + payload.len();
    let mut out = BytesMut::with_capacity(capacity);
    out.put_u8(FORMAT_VERSION);
    out.put_u8(header.codec.tag());
    out.put_u64(header.position);
    out.put_slice(header.event_id.as_bytes());
    out.put_i64(header.timestamp.as_micros());
    // The event store refuses type names longer than u16::MAX bytes.
    out.put_u16(header.event_type.len() as u16);
    out.put_slice(header.event_type.as_bytes());
    out.put_u32(header.shape_version);
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
    seal(key, out)
}

/// Where the variable fields of a validated event value are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EventLayout {
    codec: Codec,
    type_end: usize,
    shape_version: u32,
    /// Where the metadata flags are: after the shape version (format 3) or the type.
    flags_at: usize,
    payload_at: usize,
    payload_end: usize,
}

/// A validated event value: its fields are read in place, on demand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EventValue<'a> {
    value: &'a [u8],
    layout: EventLayout,
}

impl<'a> EventValue<'a> {
    /// Checks that `value`, stored under `key`, is a complete event of a format this
    /// eventkv reads, with the right checksum.
    pub(crate) fn parse(key: &[u8], value: &'a [u8]) -> Result<Self, FormatError> {
        let body = verified_body(key, value)?;
        let mut r = Reader::new(body);
        let codec = Codec::from_tag(r.u8("codec tag")?)?;
        r.take(TYPE_LEN_AT - r.offset, "event header")?;
        let type_len = usize::from(r.u16("event type length")?);
        let event_type = r.take(type_len, "event type")?;
        // Type names are nearly always ASCII, which is checked far faster.
        if !event_type.is_ascii() && std::str::from_utf8(event_type).is_err() {
            return Err(FormatError::Invalid {
                field: "event type (not UTF-8)",
            });
        }
        let type_end = r.offset;
        let shape_version = match body.first() {
            Some(&FORMAT_VERSION) => r.u32("shape version")?,
            _ => 1,
        };
        if shape_version == 0 {
            return Err(FormatError::Invalid {
                field: "shape version (0)",
            });
        }
        let flags_at = r.offset;
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
            shape_version,
            flags_at,
            payload_at: r.offset,
            payload_end: body.len(),
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

    pub(crate) fn shape_version(&self) -> u32 {
        self.layout.shape_version
    }

    pub(crate) fn metadata(&self) -> EventMetadata {
        let [flags] = self.array::<1>(self.layout.flags_at);
        let mut at = self.layout.flags_at + 1;
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
        self.value
            .get(self.layout.payload_at..self.layout.payload_end)
            .unwrap_or_default()
    }
}

/// The fields of a snapshot value.
#[derive(Debug)]
pub(crate) struct SnapshotFields {
    pub codec: Codec,
    pub version: u64,
    pub schema_version: u32,
    pub created_at: Timestamp,
    /// The id of the event at `version` (absent in format 1).
    pub anchor: Option<Uuid>,
    pub state: Bytes,
}

/// The value of the snapshot stored under `key`.
pub(crate) fn encode_snapshot(key: &[u8], fields: &SnapshotFields) -> Bytes {
    let mut out = BytesMut::with_capacity(38 + CHECKSUM_LEN + fields.state.len());
    out.put_u8(FORMAT_V2);
    out.put_u8(fields.codec.tag());
    out.put_u64(fields.version);
    out.put_u32(fields.schema_version);
    out.put_i64(fields.created_at.as_micros());
    out.put_slice(fields.anchor.unwrap_or(Uuid::nil()).as_bytes());
    out.put_slice(&fields.state);
    seal(key, out)
}

/// The version and schema version of a snapshot stored under `key`, read without
/// decoding the rest (or checking its codec); the checksum is checked.
pub(crate) fn snapshot_header(key: &[u8], value: &[u8]) -> Result<(u64, u32), FormatError> {
    let mut r = Reader::new(verified_body(key, value)?);
    r.u8("codec tag")?;
    Ok((r.u64("version")?, r.u32("schema version")?))
}

/// The fields of the snapshot stored under `key`.
pub(crate) fn decode_snapshot(key: &[u8], value: &Bytes) -> Result<SnapshotFields, FormatError> {
    let body = verified_body(key, value)?;
    let mut r = Reader::new(body);
    let codec = Codec::from_tag(r.u8("codec tag")?)?;
    let version = r.u64("version")?;
    let schema_version = r.u32("schema version")?;
    let created_at = Timestamp::from_micros(r.i64("created-at time")?);
    let anchor = match body.first() {
        Some(&FORMAT_V1) => None,
        _ => Some(Uuid::from_bytes(r.array("anchor event id")?)).filter(|id| !id.is_nil()),
    };
    Ok(SnapshotFields {
        codec,
        version,
        schema_version,
        created_at,
        anchor,
        state: value.slice(r.offset..body.len()),
    })
}

pub(crate) fn encode_log_entry(count: u32, first_event_key: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + first_event_key.len());
    out.put_u8(FORMAT_V1);
    out.put_u32(count);
    out.put_slice(first_event_key);
    out.freeze()
}

/// How many events a global log entry covers, and the key of the first.
pub(crate) fn decode_log_entry(value: &[u8]) -> Result<(u32, &[u8]), FormatError> {
    match value.first() {
        Some(&FORMAT_V1) => {}
        Some(&found) => return Err(FormatError::UnsupportedVersion { found }),
        None => {
            return Err(FormatError::Truncated {
                field: "format version",
            });
        }
    }
    let mut r = Reader::new(value);
    let count = r.u32("event count")?;
    Ok((count, value.get(r.offset..).unwrap_or_default()))
}

/// A checkpoint: the position of the last event its consumer handled.
pub(crate) fn encode_checkpoint(key: &[u8], position: u64) -> Bytes {
    let mut out = BytesMut::with_capacity(1 + 8 + CHECKSUM_LEN);
    out.put_u8(FORMAT_V2);
    out.put_u64(position);
    seal(key, out)
}

pub(crate) fn decode_checkpoint(key: &[u8], value: &[u8]) -> Result<u64, FormatError> {
    if value.first() == Some(&FORMAT_V1) {
        return Err(FormatError::UnsupportedVersion { found: FORMAT_V1 });
    }
    let body = verified_body(key, value)?;
    let mut r = Reader::new(body);
    let position = r.u64("position")?;
    if r.offset != body.len() {
        return Err(FormatError::Invalid {
            field: "checkpoint (bytes after the position)",
        });
    }
    Ok(position)
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

/// Reads big-endian fields after the format version byte, which the caller checked.
struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, offset: 1 }
    }

    fn take(&mut self, len: usize, field: &'static str) -> Result<&'a [u8], FormatError> {
        let end = self.offset.checked_add(len);
        let taken = end.and_then(|end| self.bytes.get(self.offset..end));
        let taken = taken.ok_or(FormatError::Truncated { field })?;
        self.offset += taken.len();
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

    const KEY: &[u8] = b"e\x00\x01A\x00\x01a\x00\x00\x00\x00\x00\x00\x00\x07";

    fn header(event_id: Uuid) -> EventHeader<'static> {
        EventHeader {
            codec: Codec::Json,
            position: 7,
            event_id,
            timestamp: Timestamp::from_micros(1_700_000_000_000_000),
            event_type: "Deposited",
            shape_version: 3,
            metadata: EventMetadata {
                correlation_id: Some(Uuid::new_v4()),
                causation_id: None,
            },
        }
    }

    /// An event type that is not UTF-8 (written with a valid checksum) is refused; one
    /// that is UTF-8 but not ASCII is read.
    #[test]
    fn event_types_must_be_utf8() {
        let typed = |event_type: &'static str| {
            let header = EventHeader {
                event_type,
                ..header(Uuid::new_v4())
            };
            encode_event(KEY, &header, b"1").to_vec()
        };
        let unicode = typed("Dépôt");
        let event = EventValue::parse(KEY, &unicode).expect("UTF-8 parses");
        assert_eq!(event.event_type(), "Dépôt");
        let mut invalid = typed("Deposited");
        let at = TYPE_AT + 1;
        invalid[at] = 0xFF;
        reseal(KEY, &mut invalid);
        assert!(matches!(
            EventValue::parse(KEY, &invalid),
            Err(FormatError::Invalid {
                field: "event type (not UTF-8)"
            })
        ));
    }

    #[test]
    fn event_round_trips_with_metadata() {
        let header = header(Uuid::new_v4());
        let value = encode_event(KEY, &header, b"{\"amount\":5}");
        let event = EventValue::parse(KEY, &value).expect("parses");
        assert_eq!(event.codec(), Codec::Json);
        assert_eq!(event.position(), 7);
        assert_eq!(event.event_id(), header.event_id);
        assert_eq!(event.timestamp(), header.timestamp);
        assert_eq!(event.event_type(), "Deposited");
        assert_eq!(event.shape_version(), 3);
        assert_eq!(event.metadata(), header.metadata);
        assert_eq!(event.payload(), b"{\"amount\":5}");
        for cut in 0..value.len() {
            assert!(
                EventValue::parse(KEY, &value[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let empty = encode_event(KEY, &header, b"");
        let event = EventValue::parse(KEY, &empty).expect("an empty payload is valid");
        assert_eq!(event.payload(), b"");
    }

    #[test]
    fn every_flipped_bit_of_an_event_or_snapshot_is_detected() {
        let event = encode_event(KEY, &header(Uuid::new_v4()), b"{\"amount\":5}");
        let snapshot = encode_snapshot(KEY, &snapshot_fields(Some(Uuid::new_v4())));
        for value in [event, snapshot] {
            for at in 0..value.len() {
                for bit in 0..8 {
                    let mut flipped = value.to_vec();
                    flipped[at] ^= 1 << bit;
                    let flipped = Bytes::from(flipped);
                    assert!(
                        EventValue::parse(KEY, &flipped).is_err(),
                        "byte {at} bit {bit}"
                    );
                    assert!(
                        decode_snapshot(KEY, &flipped).is_err(),
                        "byte {at} bit {bit}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_value_under_another_key_is_detected() {
        let value = encode_event(KEY, &header(Uuid::new_v4()), b"{}");
        let mut other_key = KEY.to_vec();
        other_key[KEY.len() - 1] = 8;
        assert!(matches!(
            EventValue::parse(&other_key, &value),
            Err(FormatError::ChecksumMismatch { .. })
        ));
    }

    fn snapshot_fields(anchor: Option<Uuid>) -> SnapshotFields {
        SnapshotFields {
            codec: Codec::Bincode,
            version: 3,
            schema_version: 1,
            created_at: Timestamp::from_micros(-5),
            anchor,
            state: Bytes::from_static(b"xyz"),
        }
    }

    #[test]
    fn snapshot_round_trips_with_and_without_anchor() {
        for anchor in [Some(Uuid::new_v4()), None] {
            let value = encode_snapshot(KEY, &snapshot_fields(anchor));
            let fields = decode_snapshot(KEY, &value).expect("decodes");
            assert_eq!(fields.anchor, anchor);
            assert_eq!((fields.version, fields.schema_version), (3, 1));
            assert_eq!(fields.created_at, Timestamp::from_micros(-5));
            assert_eq!(&fields.state[..], b"xyz");
            assert_eq!(snapshot_header(KEY, &value).ok(), Some((3, 1)));
        }
    }

    #[test]
    fn format_2_events_have_shape_version_1() {
        let header = header(Uuid::new_v4());
        let v3 = encode_event(KEY, &header, b"{}").to_vec();
        // Format 2: the same value without the shape version.
        let shape_at = TYPE_AT + header.event_type.len();
        let mut v2 = v3[..shape_at].to_vec();
        v2.extend_from_slice(&v3[shape_at + 4..]);
        v2[0] = FORMAT_V2;
        reseal(KEY, &mut v2);
        let event = EventValue::parse(KEY, &v2).expect("format 2");
        assert_eq!(event.shape_version(), 1);
        assert_eq!(event.metadata(), header.metadata);
        assert_eq!(event.payload(), b"{}");
        let mut zero = v3;
        zero[shape_at..shape_at + 4].copy_from_slice(&0u32.to_be_bytes());
        reseal(KEY, &mut zero);
        assert!(matches!(
            EventValue::parse(KEY, &zero),
            Err(FormatError::Invalid {
                field: "shape version (0)"
            })
        ));
    }

    #[test]
    fn format_1_values_are_read() {
        // Written by eventkv 0.1: no checksum, no anchor.
        let mut snapshot = vec![1, 2];
        snapshot.extend_from_slice(&9u64.to_be_bytes());
        snapshot.extend_from_slice(&4u32.to_be_bytes());
        snapshot.extend_from_slice(&0i64.to_be_bytes());
        snapshot.extend_from_slice(b"st");
        let fields = decode_snapshot(KEY, &Bytes::from(snapshot)).expect("format 1");
        assert_eq!(
            (fields.version, fields.schema_version, fields.anchor),
            (9, 4, None)
        );
        assert_eq!(&fields.state[..], b"st");
        let mut event = vec![1, 1];
        event.extend_from_slice(&7u64.to_be_bytes());
        event.extend_from_slice(&[0xab; 16]);
        event.extend_from_slice(&0i64.to_be_bytes());
        event.extend_from_slice(&1u16.to_be_bytes());
        event.extend_from_slice(b"T\x00{}");
        let parsed = EventValue::parse(KEY, &event).expect("format 1");
        assert_eq!((parsed.position(), parsed.payload()), (7, &b"{}"[..]));
        assert_eq!(parsed.shape_version(), 1);
    }

    #[test]
    fn unknown_format_version_and_codec_are_named() {
        let value = Bytes::from_static(&[9, 1, 0]);
        assert!(matches!(
            decode_snapshot(KEY, &value).expect_err("version 9"),
            FormatError::UnsupportedVersion { found: 9 }
        ));
        let mut fields = snapshot_fields(None);
        fields.codec = Codec::Json;
        let mut value = encode_snapshot(KEY, &fields).to_vec();
        value[1] = 77;
        let body = value.len() - CHECKSUM_LEN;
        let crc = checksum(KEY, &value[..body]);
        value[body..].copy_from_slice(&crc.to_be_bytes());
        let err = decode_snapshot(KEY, &Bytes::from(value)).expect_err("codec 77");
        assert!(matches!(
            err,
            FormatError::Codec(CodecError::UnknownCodec { tag: 77 })
        ));
    }
}
