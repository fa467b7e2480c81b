//! The sync protocol's messages, version [`PROTOCOL`]: plain serde types, shared by the
//! server, the browser client and anyone writing another client. `docs/sync.md` is the
//! specification they follow.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use eventkv::{Codec, EventMetadata, NewEvent, RecordedEvent, StoredEvent, Timestamp, Uuid, keys};
use serde::{Deserialize, Serialize};

/// The protocol version this crate speaks. A request names the version it was written
/// for; another one is refused with [`ErrorCode::UnsupportedProtocol`].
pub const PROTOCOL: u32 = 1;

/// `POST /push`: appends to make, each to one aggregate, answered one by one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushRequest {
    /// [`PROTOCOL`].
    pub protocol: u32,
    /// The appends, in the order the client made them. Appends to one aggregate are made
    /// in this order; once one of them is not stored (a conflict, a refusal), the later
    /// ones of that aggregate are not tried: they were made on top of it.
    pub appends: Vec<PushAppend>,
}

/// One append of a push: events for one aggregate whose stream must be at
/// `expected_version`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushAppend {
    /// The aggregate type.
    pub aggregate_type: String,
    /// The aggregate id.
    pub aggregate_id: String,
    /// The stream's version the events were made on (0 for a new aggregate).
    pub expected_version: u64,
    /// The events, with the ids the client gave them: the same ids pushed again are a
    /// [`AppendResult::Duplicate`], never stored twice.
    pub events: Vec<PushEvent>,
}

/// An event to append.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushEvent {
    /// Its id, made by the client (UUID).
    pub event_id: Uuid,
    /// Its type name.
    pub event_type: String,
    /// The version of its shape (1, the default, is left out).
    #[serde(default = "first_shape", skip_serializing_if = "is_first_shape")]
    pub shape_version: u32,
    /// `json` (the default) or `bincode`.
    #[serde(default = "json_codec", skip_serializing_if = "is_json")]
    pub codec: String,
    /// The event: JSON for `json`, a base64 string for `bincode`.
    pub payload: serde_json::Value,
    /// The correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    /// The causation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
}

fn first_shape() -> u32 {
    1
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_first_shape(shape_version: &u32) -> bool {
    *shape_version == 1
}

fn json_codec() -> String {
    Codec::Json.name().to_owned()
}

fn is_json(codec: &String) -> bool {
    codec == Codec::Json.name()
}

impl PushEvent {
    /// The event to append, checked: its type and payload can be stored.
    pub fn to_new_event(&self) -> Result<NewEvent, String> {
        new_event(
            self.event_id,
            (&self.event_type, self.shape_version),
            &self.codec,
            &self.payload,
            (self.correlation_id, self.causation_id),
        )
    }
}

/// The answer to a push: one result per append, in the order of the request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PushResponse {
    /// [`PROTOCOL`].
    pub protocol: u32,
    /// One per append of the request.
    pub results: Vec<AppendResult>,
}

/// What became of one append of a push.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum AppendResult {
    /// Stored now, at these versions and global positions.
    Applied(Placed),
    /// These event ids were already stored at exactly these versions (an earlier push
    /// whose answer was lost): nothing was written; where they are.
    Duplicate(Placed),
    /// The stream is not at the expected version: nothing was written. The events after
    /// the expected version come with it (those the caller may read, up to a page), so the
    /// client can rebase without another request.
    Conflict {
        /// The stream's version now.
        actual_version: u64,
        /// Its events after the expected version, in version order.
        events: Vec<JsonEvent>,
        /// Whether more events follow those (pull for them).
        more: bool,
    },
    /// Not tried: an earlier append of the same aggregate in this push was not stored,
    /// and this one was made on top of it. Nothing was written.
    Skipped,
    /// Refused for good: pushing it again is refused again.
    Rejected {
        /// Why, as a stable word.
        reason: RejectReason,
        /// What was wrong, for people.
        message: String,
    },
}

/// Where an append's events are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placed {
    /// The version of the first event.
    pub first_version: u64,
    /// The version of the last event: the stream's version after it.
    pub last_version: u64,
    /// The global position of the first event.
    pub first_position: u64,
    /// The global position of the last event.
    pub last_position: u64,
}

impl From<eventkv::Appended> for Placed {
    fn from(appended: eventkv::Appended) -> Self {
        Placed {
            first_version: appended.first_version,
            last_version: appended.last_version,
            first_position: appended.first_position,
            last_position: appended.last_position,
        }
    }
}

/// Why an append was refused for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// A bad name, an empty append, or an event that cannot be stored.
    Invalid,
    /// The caller may not write this aggregate type.
    Forbidden,
    /// Larger than the server or its engine takes in one append.
    TooLarge,
}

/// `GET /pull?protocol=1&after=P&limit=N&wait_ms=W`: the answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PullResponse {
    /// [`PROTOCOL`].
    pub protocol: u32,
    /// The events after `after` that the caller may read, in global order.
    pub events: Vec<JsonEvent>,
    /// The last position this answer covers, events the caller may not read included:
    /// pass it as `after` next time. Never behind the request's `after`.
    pub cursor: u64,
    /// The store's last position when the answer was made (below `cursor` only when
    /// the request's `after` was past it: a cursor of another store).
    pub head: u64,
    /// Whether more may follow at once (pull again without waiting).
    pub more: bool,
}

/// `GET /info`: what the server speaks and takes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InfoResponse {
    /// The protocol versions the server speaks.
    pub protocols: Vec<u32>,
    /// Who the caller is.
    pub principal: String,
    /// The aggregate types the caller may read (`*`: all).
    pub read: Vec<String>,
    /// The aggregate types the caller may write (`*`: all).
    pub write: Vec<String>,
    /// The server's limits.
    pub limits: LimitsInfo,
}

/// The limits a server enforces, as `GET /info` reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitsInfo {
    /// The largest request body, in bytes.
    pub max_body_bytes: usize,
    /// The most appends in one push.
    pub max_appends_per_push: usize,
    /// The most events in one push, all appends together.
    pub max_events_per_push: usize,
    /// The most events one pull returns.
    pub max_page: usize,
    /// The longest a pull waits for new events, in milliseconds.
    pub max_wait_ms: u64,
}

/// An error answer (any status but 200): `{"error": {"code": …, "message": …}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// The error.
    pub error: ErrorBody,
}

/// What went wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable: clients decide on it.
    pub code: ErrorCode,
    /// One line, for people.
    pub message: String,
    /// Whether the same request may succeed later (the server or its engine was
    /// unavailable, busy, or did not answer in time).
    pub retryable: bool,
}

/// The stable code of an error answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// 400: the body is not JSON, or not a message of this protocol.
    MalformedBody,
    /// 400: the request names a protocol version the server does not speak.
    UnsupportedProtocol,
    /// 400: a query parameter or name is invalid.
    InvalidRequest,
    /// 413: the body, or the number of appends or events in it, is over the server's
    /// limit.
    TooLarge,
    /// 401: no bearer token, or one the server does not know.
    Unauthorized,
    /// 403: the caller may not do this at all.
    Forbidden,
    /// 404: no such route.
    NotFound,
    /// 405: the route takes another method.
    MethodNotAllowed,
    /// 503: the store is unavailable, busy or full; try again later. A push that got it
    /// may be partly stored: pushing the same appends again is safe (idempotent).
    Unavailable,
    /// 503: the store did not say whether a write landed, or the request ran out of time;
    /// pushing the same appends again is safe and says where they are.
    Ambiguous,
    /// 500: a fault of the server or of the data it holds.
    Internal,
}

impl ErrorCode {
    /// The HTTP status it is answered with.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::MalformedBody
            | ErrorCode::UnsupportedProtocol
            | ErrorCode::InvalidRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::TooLarge => 413,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable | ErrorCode::Ambiguous => 503,
        }
    }

    /// Whether the same request may succeed later.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorCode::Unavailable | ErrorCode::Ambiguous)
    }
}

/// An event as JSON, with where it is stored: what a pull returns, what a conflict
/// carries, and one line of `eventkv export`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonEvent {
    /// Its position in the global log it was read from.
    #[serde(default)]
    pub position: Option<u64>,
    /// The aggregate type.
    pub aggregate_type: String,
    /// The aggregate id.
    pub aggregate_id: String,
    /// Its version in the stream.
    pub version: u64,
    /// Its id.
    pub event_id: Uuid,
    /// Its type name.
    pub event_type: String,
    /// The version of its shape (1, the default, is left out).
    #[serde(default = "first_shape", skip_serializing_if = "is_first_shape")]
    pub shape_version: u32,
    /// When it was appended (RFC 3339, UTC, microseconds).
    #[serde(default)]
    pub timestamp: Option<String>,
    /// The correlation id.
    #[serde(default)]
    pub correlation_id: Option<Uuid>,
    /// The causation id.
    #[serde(default)]
    pub causation_id: Option<Uuid>,
    /// `json` or `bincode`.
    pub codec: String,
    /// The event: JSON for `json`, a base64 string for `bincode`.
    pub payload: serde_json::Value,
}

impl JsonEvent {
    /// The JSON of a stored event; fails when a JSON payload does not parse.
    pub fn of(event: &StoredEvent<'_>) -> Result<Self, String> {
        let payload = match event.codec() {
            Codec::Json => serde_json::from_slice(event.payload()).map_err(|error| {
                format!(
                    "event at position {}: its JSON payload does not parse: {error}",
                    event.position()
                )
            })?,
            _ => serde_json::Value::String(BASE64.encode(event.payload())),
        };
        let metadata = event.metadata();
        Ok(JsonEvent {
            position: Some(event.position()),
            aggregate_type: event.aggregate_type().to_owned(),
            aggregate_id: event.aggregate_id().to_owned(),
            version: event.version(),
            event_id: event.event_id(),
            event_type: event.event_type().to_owned(),
            shape_version: event.shape_version(),
            timestamp: Some(rfc3339(event.timestamp())),
            correlation_id: metadata.correlation_id,
            causation_id: metadata.causation_id,
            codec: event.codec().name().to_owned(),
            payload,
        })
    }

    /// The event as stored on the server, for a replica: its position and timestamp are
    /// required.
    pub fn to_recorded(&self) -> Result<RecordedEvent, String> {
        let position = self
            .position
            .ok_or_else(|| format!("event {} has no position", self.event_id))?;
        let timestamp = self
            .timestamp
            .as_deref()
            .ok_or_else(|| format!("event at position {position} has no timestamp"))?;
        let timestamp = parse_rfc3339(timestamp).map_err(|why| {
            format!("event at position {position}: timestamp {timestamp:?}: {why}")
        })?;
        let event = self
            .to_new_event()
            .map_err(|why| format!("event at position {position}: {why}"))?;
        Ok(RecordedEvent {
            aggregate_type: self.aggregate_type.clone(),
            aggregate_id: self.aggregate_id.clone(),
            version: self.version,
            position,
            event_id: event.event_id,
            event_type: event.event_type,
            shape_version: event.shape_version,
            timestamp,
            codec: event.codec,
            metadata: event.metadata,
            payload: event.payload,
        })
    }

    /// The event to append again, checked: its names, version, type and payload can be
    /// stored.
    pub fn to_new_event(&self) -> Result<NewEvent, String> {
        keys::StreamKeys::new(&self.aggregate_type, &self.aggregate_id)
            .map_err(|error| error.to_string())?;
        if self.version == 0 {
            return Err("version 0: versions start at 1".to_owned());
        }
        new_event(
            self.event_id,
            (&self.event_type, self.shape_version),
            &self.codec,
            &self.payload,
            (self.correlation_id, self.causation_id),
        )
    }
}

/// An event to append from its JSON fields, checked.
fn new_event(
    event_id: Uuid,
    (event_type, shape_version): (&str, u32),
    codec: &str,
    payload: &serde_json::Value,
    (correlation_id, causation_id): (Option<Uuid>, Option<Uuid>),
) -> Result<NewEvent, String> {
    if event_type.is_empty() || event_type.len() > usize::from(u16::MAX) {
        return Err(format!(
            "event type must be 1 to 65535 bytes, got {} bytes",
            event_type.len()
        ));
    }
    if shape_version == 0 {
        return Err("shape version 0: shape versions start at 1".to_owned());
    }
    let codec: Codec = codec
        .parse()
        .map_err(|error: eventkv::CodecError| error.to_string())?;
    let payload = match (codec, payload) {
        (Codec::Json, value) => {
            Bytes::from(serde_json::to_vec(value).map_err(|error| error.to_string())?)
        }
        (_, serde_json::Value::String(text)) => Bytes::from(
            BASE64
                .decode(text)
                .map_err(|error| format!("payload is not base64: {error}"))?,
        ),
        (codec, _) => return Err(format!("a {codec} payload must be a base64 string")),
    };
    Ok(NewEvent {
        event_id,
        event_type: event_type.to_owned(),
        shape_version,
        codec,
        payload,
        metadata: EventMetadata {
            correlation_id,
            causation_id,
        },
    })
}

/// An RFC 3339 time (as [`rfc3339`] writes it) as a timestamp.
pub fn parse_rfc3339(text: &str) -> Result<Timestamp, String> {
    let time = humantime::parse_rfc3339(text).map_err(|error| error.to_string())?;
    let micros = match time.duration_since(std::time::UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_micros()),
        Err(before) => i64::try_from(before.duration().as_micros()).map(|micros| -micros),
    };
    micros
        .map(Timestamp::from_micros)
        .map_err(|_| "out of range".to_owned())
}

/// `timestamp` as RFC 3339 with microseconds, in UTC.
pub fn rfc3339(timestamp: Timestamp) -> String {
    // From the micros, not `to_system_time`: on wasm32 that is another `SystemTime`.
    let micros = timestamp.as_micros();
    match u64::try_from(micros) {
        Ok(after) => {
            let time = std::time::UNIX_EPOCH + std::time::Duration::from_micros(after);
            humantime::format_rfc3339_micros(time).to_string()
        }
        Err(_) => format!("{micros} µs from the Unix epoch"),
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_rfc3339, rfc3339};
    use eventkv::Timestamp;

    #[test]
    fn timestamps_round_trip_through_rfc3339() {
        for micros in [0, 1_764_000_000_123_456, 1] {
            let timestamp = Timestamp::from_micros(micros);
            assert_eq!(parse_rfc3339(&rfc3339(timestamp)), Ok(timestamp));
        }
        assert!(parse_rfc3339("yesterday").is_err());
    }
}
