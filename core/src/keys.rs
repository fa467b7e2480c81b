//! The key layout: where every record lives. This is a storage format; see `docs/format.md`.
//!
//! ```text
//! event          'e' | name(aggregate type) | name(aggregate id) | u64 BE version
//! global log     'g' | u64 BE position of the first event of an append
//! global head    'h'
//! snapshot       's' | name(aggregate type) | name(aggregate id)
//! older snapshot 's' | name(aggregate type) | name(aggregate id) | u64 BE version
//! checkpoint     'c' | name(checkpoint)
//! read model     'p' | name(projection) | the projection's own key
//! name(x)        u16 BE length of x | the UTF-8 bytes of x
//! ```
//!
//! Names are length-prefixed, so the prefix of one aggregate never covers another's.

use bytes::{BufMut, Bytes, BytesMut};

use crate::kv::KeyRange;

const EVENT: u8 = b'e';
const GLOBAL_LOG: u8 = b'g';
const GLOBAL_HEAD: u8 = b'h';
const SNAPSHOT: u8 = b's';
const CHECKPOINT: u8 = b'c';
const READ_MODEL: u8 = b'p';

/// The longest aggregate type or aggregate id accepted, in bytes of UTF-8.
pub const MAX_NAME_LEN: usize = 1024;

/// Which name of a key was invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameKind {
    /// The aggregate type.
    AggregateType,
    /// The aggregate id.
    AggregateId,
    /// The name of a checkpoint or a projection.
    Checkpoint,
}

impl std::fmt::Display for NameKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NameKind::AggregateType => "aggregate type",
            NameKind::AggregateId => "aggregate id",
            NameKind::Checkpoint => "checkpoint name",
        })
    }
}

/// A name that cannot be part of a key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {name:?}: {reason}")]
pub struct InvalidName {
    /// Which name.
    pub kind: NameKind,
    /// The name, cut to its first 64 characters.
    pub name: String,
    /// Why it was refused.
    pub reason: &'static str,
}

impl InvalidName {
    /// What kind of failure it is: always [`ErrorKind::InvalidInput`](crate::ErrorKind).
    pub fn kind(&self) -> crate::ErrorKind {
        crate::ErrorKind::InvalidInput
    }
}

crate::__error_class!(InvalidName);

fn validate(kind: NameKind, name: &str) -> Result<(), InvalidName> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.len() > MAX_NAME_LEN {
        "it is longer than 1024 bytes"
    } else {
        return Ok(());
    };
    Err(InvalidName {
        kind,
        name: name.chars().take(64).collect(),
        reason,
    })
}

/// The key prefix of one aggregate's records of kind `tag`.
fn aggregate_prefix(
    tag: u8,
    aggregate_type: &str,
    aggregate_id: &str,
    extra: usize,
) -> Result<BytesMut, InvalidName> {
    validate(NameKind::AggregateType, aggregate_type)?;
    validate(NameKind::AggregateId, aggregate_id)?;
    let mut key = BytesMut::with_capacity(5 + aggregate_type.len() + aggregate_id.len() + extra);
    key.put_u8(tag);
    put_name(&mut key, aggregate_type);
    put_name(&mut key, aggregate_id);
    Ok(key)
}

fn put_name(key: &mut BytesMut, name: &str) {
    // validate() bounds the length by MAX_NAME_LEN, which fits in a u16.
    key.put_u16(name.len() as u16);
    key.put_slice(name.as_bytes());
}

/// One aggregate's stream: builds the keys of its events.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StreamKeys {
    prefix: Bytes,
}

impl StreamKeys {
    /// The stream of `aggregate_type` / `aggregate_id`.
    pub fn new(aggregate_type: &str, aggregate_id: &str) -> Result<Self, InvalidName> {
        Ok(StreamKeys {
            prefix: aggregate_prefix(EVENT, aggregate_type, aggregate_id, 0)?.freeze(),
        })
    }

    /// Rebuilds the stream of an event key, with the event's version.
    pub fn from_event_key(key: &[u8]) -> Option<(Self, u64)> {
        let prefix_len = key.len().checked_sub(8)?;
        let (prefix, version) = key.split_at(prefix_len);
        let (&tag, rest) = prefix.split_first()?;
        let rest = skip_name(rest)?;
        let rest = skip_name(rest)?;
        if tag != EVENT || !rest.is_empty() {
            return None;
        }
        let keys = StreamKeys {
            prefix: Bytes::copy_from_slice(prefix),
        };
        Some((keys, be_u64(version)?))
    }

    /// The aggregate type and id this stream belongs to.
    pub fn names(&self) -> Option<(&str, &str)> {
        let rest = self.prefix.get(1..)?;
        let (aggregate_type, rest) = read_name(rest)?;
        let (aggregate_id, _) = read_name(rest)?;
        Some((aggregate_type, aggregate_id))
    }

    /// The key of the event at `version`.
    pub fn event(&self, version: u64) -> Bytes {
        let mut key = BytesMut::with_capacity(self.prefix.len() + 8);
        key.put_slice(&self.prefix);
        key.put_u64(version);
        key.freeze()
    }

    /// The keys of the events from `from` to `to`, both inclusive.
    pub fn versions(&self, from: u64, to: u64) -> KeyRange {
        KeyRange::inclusive(self.event(from), self.event(to))
    }

    /// The keys of every event of the stream.
    pub fn all(&self) -> KeyRange {
        KeyRange::prefix(self.prefix.clone())
    }

    /// The first key of the stream's range: every event key of it sorts after it.
    pub fn start(&self) -> Bytes {
        self.prefix.clone()
    }
}

/// The keys of every event of every aggregate of `aggregate_type`.
pub fn streams_of_type(aggregate_type: &str) -> Result<KeyRange, InvalidName> {
    validate(NameKind::AggregateType, aggregate_type)?;
    let mut prefix = BytesMut::with_capacity(3 + aggregate_type.len());
    prefix.put_u8(EVENT);
    put_name(&mut prefix, aggregate_type);
    Ok(KeyRange::prefix(prefix.freeze()))
}

/// The version encoded at the end of an event key.
pub fn event_version(key: &[u8]) -> Option<u64> {
    be_u64(key.get(key.len().checked_sub(8)?..)?)
}

/// The key of the global log entry at `position`.
pub fn global_log(position: u64) -> Bytes {
    let mut key = BytesMut::with_capacity(9);
    key.put_u8(GLOBAL_LOG);
    key.put_u64(position);
    key.freeze()
}

/// The first key after every global log key.
pub fn global_log_end() -> Bytes {
    Bytes::from_static(&[GLOBAL_LOG + 1])
}

/// The position encoded in a global log key.
pub fn global_log_position(key: &[u8]) -> Option<u64> {
    match key {
        [GLOBAL_LOG, position @ ..] => be_u64(position),
        _ => None,
    }
}

/// The key holding the last position of the global log.
pub fn global_head() -> Bytes {
    Bytes::from_static(&[GLOBAL_HEAD])
}

/// The key of the snapshot of `aggregate_type` / `aggregate_id`.
pub fn snapshot(aggregate_type: &str, aggregate_id: &str) -> Result<Bytes, InvalidName> {
    Ok(aggregate_prefix(SNAPSHOT, aggregate_type, aggregate_id, 0)?.freeze())
}

/// The key of an older snapshot of `aggregate_type` / `aggregate_id`, kept as history: the
/// snapshot key followed by its version.
pub fn older_snapshot(
    aggregate_type: &str,
    aggregate_id: &str,
    version: u64,
) -> Result<Bytes, InvalidName> {
    let mut key = aggregate_prefix(SNAPSHOT, aggregate_type, aggregate_id, 8)?;
    key.put_u64(version);
    Ok(key.freeze())
}

/// The keys of the older snapshots of `aggregate_type` / `aggregate_id` up to `version`,
/// in version order.
pub fn older_snapshots(
    aggregate_type: &str,
    aggregate_id: &str,
    version: u64,
) -> Result<KeyRange, InvalidName> {
    Ok(KeyRange::inclusive(
        older_snapshot(aggregate_type, aggregate_id, 0)?,
        older_snapshot(aggregate_type, aggregate_id, version)?,
    ))
}

/// The keys of every snapshot of `aggregate_type`.
pub fn snapshots_of_type(aggregate_type: &str) -> Result<KeyRange, InvalidName> {
    validate(NameKind::AggregateType, aggregate_type)?;
    let mut prefix = BytesMut::with_capacity(3 + aggregate_type.len());
    prefix.put_u8(SNAPSHOT);
    put_name(&mut prefix, aggregate_type);
    Ok(KeyRange::prefix(prefix.freeze()))
}

/// The keys of every snapshot.
pub fn all_snapshots() -> KeyRange {
    KeyRange::prefix(Bytes::from_static(&[SNAPSHOT]))
}

/// The aggregate type and id of a snapshot key (the latest or an older one).
pub fn snapshot_names(key: &[u8]) -> Option<(&str, &str)> {
    snapshot_parts(key).map(|(aggregate_type, aggregate_id, _)| (aggregate_type, aggregate_id))
}

/// The aggregate type and id of a snapshot key, and the version an older snapshot's key
/// names (`None`: the aggregate's latest snapshot).
pub fn snapshot_parts(key: &[u8]) -> Option<(&str, &str, Option<u64>)> {
    let (&tag, rest) = key.split_first()?;
    let (aggregate_type, rest) = read_name(rest)?;
    let (aggregate_id, rest) = read_name(rest)?;
    let version = match rest {
        [] => None,
        version => Some(be_u64(version)?),
    };
    (tag == SNAPSHOT).then_some((aggregate_type, aggregate_id, version))
}

/// The key of the checkpoint called `name`.
pub fn checkpoint(name: &str) -> Result<Bytes, InvalidName> {
    named(CHECKPOINT, name)
}

/// The name of a checkpoint key.
pub fn checkpoint_name(key: &[u8]) -> Option<&str> {
    let (&tag, rest) = key.split_first()?;
    let (name, rest) = read_name(rest)?;
    (tag == CHECKPOINT && rest.is_empty()).then_some(name)
}

/// The prefix of the read model of the projection called `name`: its keys follow it.
pub fn read_model(name: &str) -> Result<Bytes, InvalidName> {
    named(READ_MODEL, name)
}

/// The projection name and the projection's own key of a read model key.
pub fn read_model_parts(key: &[u8]) -> Option<(&str, &[u8])> {
    let (&tag, rest) = key.split_first()?;
    let (name, own) = read_name(rest)?;
    (tag == READ_MODEL).then_some((name, own))
}

fn named(tag: u8, name: &str) -> Result<Bytes, InvalidName> {
    validate(NameKind::Checkpoint, name)?;
    let mut key = BytesMut::with_capacity(3 + name.len());
    key.put_u8(tag);
    put_name(&mut key, name);
    Ok(key.freeze())
}

fn read_name(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let (len, rest) = bytes.split_first_chunk::<2>()?;
    let len = usize::from(u16::from_be_bytes(*len));
    let name = rest.get(..len)?;
    Some((std::str::from_utf8(name).ok()?, rest.get(len..)?))
}

fn skip_name(bytes: &[u8]) -> Option<&[u8]> {
    read_name(bytes).map(|(_, rest)| rest)
}

fn be_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_keys_sort_by_version_and_round_trip() {
        let stream = StreamKeys::new("Account", "a-1").expect("valid names");
        assert!(stream.event(255) < stream.event(256));
        let (parsed, version) = StreamKeys::from_event_key(&stream.event(42)).expect("event key");
        assert_eq!(version, 42);
        assert_eq!(parsed.names(), Some(("Account", "a-1")));
    }

    #[test]
    fn one_aggregate_prefix_never_covers_another() {
        let ab_c = StreamKeys::new("ab", "c").expect("valid");
        let a_bc = StreamKeys::new("a", "bc").expect("valid");
        assert!(!ab_c.all().contains(&a_bc.event(1)));
        assert!(!a_bc.all().contains(&ab_c.event(1)));
    }

    #[test]
    fn empty_and_long_names_are_refused() {
        let err = StreamKeys::new("", "x").expect_err("empty type");
        assert_eq!(err.kind, NameKind::AggregateType);
        let long = "x".repeat(MAX_NAME_LEN + 1);
        let err = snapshot("T", &long).expect_err("long id");
        assert_eq!(err.kind, NameKind::AggregateId);
    }
}
