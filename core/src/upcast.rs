//! Upcasting: events stored in an old shape are turned into the current shapes as they are
//! read, so application code only ever sees current shapes.

use std::any::{Any, TypeId};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use bytes::Bytes;
use foldhash::fast::FixedState;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{Codec, CodecError};
use crate::error::{ErrorKind, SharedError, shared};
use crate::kv::{BoxError, MaybeSend, MaybeSync};

/// How many upcasts one stored event may go through: a longer chain is a cycle.
pub const MAX_UPCAST_STEPS: usize = 64;

/// One registered step: reads the old event and emits the newer ones.
#[cfg(not(target_arch = "wasm32"))]
type Step = dyn Fn(Input<'_>, &mut Upcasted<'_>) -> Result<(), UpcastFailure> + Send + Sync;
/// One registered step: reads the old event and emits the newer ones.
#[cfg(target_arch = "wasm32")]
type Step = dyn Fn(Input<'_>, &mut Upcasted<'_>) -> Result<(), UpcastFailure>;

/// What a step reads: a stored payload, or an event an earlier step emitted.
enum Input<'a> {
    Stored(Codec, &'a [u8]),
    Emitted(&'a UpcastedEvent),
}

impl Input<'_> {
    fn decode<T: DeserializeOwned + 'static>(&self) -> Result<T, CodecError> {
        match self {
            Input::Stored(codec, payload) => codec.decode(payload),
            Input::Emitted(event) => event.take_or_decode(),
        }
    }
}

/// The steps registered for one event type, by the shape version they read.
#[derive(Clone, Default)]
struct TypeSteps {
    /// A few per type: a list is faster to search than a map.
    steps: Vec<(u32, Arc<Step>)>,
    /// The highest shape version a step reads: older shapes without a step are an error.
    newest_from: u32,
}

impl TypeSteps {
    /// The step that reads `shape_version`; `Ok(None)` when that shape is current.
    fn step(&self, shape_version: u32) -> Result<Option<&Arc<Step>>, UpcastFailure> {
        match self.steps.iter().find(|(shape, _)| *shape == shape_version) {
            Some((_, step)) => Ok(Some(step)),
            None if shape_version < self.newest_from => Err(UpcastFailure::Missing {
                newest_from: self.newest_from,
            }),
            None => Ok(None),
        }
    }
}

/// The upcasters of an application: for an event type and an old shape version, a function
/// that turns the stored payload into zero, one or several events of newer shapes.
///
/// A store given upcasters ([`KvEventStore::with_upcasters`](crate::KvEventStore::with_upcasters))
/// runs them on every read: `read_stream`, `read_all`, repository loads, subscriptions and
/// projections. Steps chain: an event of shape 1 goes through the step of shape 1, its
/// output through the step of its own type and shape, and so on until no step applies. An
/// event type with steps registered from shape `n` must have a step for every older
/// shape it is stored with: one without is an error naming the type and shape, never a
/// silent default. Event types without steps are read as stored.
///
/// An emitted value is handed on as it is, not encoded: to the next step when it reads
/// that type, and to a repository's fold when it is the aggregate's event type. It is
/// encoded only when asked for as bytes ([`StoredEvent::payload`](crate::StoredEvent::payload)).
///
/// ```
/// use eventkv::{Upcasters, Codec};
/// use serde_json::{Value, json};
///
/// // Shape 1 of "Deposited" stored `amount` in cents as a string; shape 2 is a number.
/// let upcasters = Upcasters::new().register("Deposited", 1, |old: Value, out| {
///     let cents: u64 = old["amount"].as_str().unwrap_or("0").parse()?;
///     out.emit("Deposited", 2, json!({ "amount": cents }));
///     Ok(())
/// });
/// assert!(upcasters.handles("Deposited", 1));
/// ```
#[derive(Clone, Default)]
pub struct Upcasters {
    by_type: HashMap<Box<str>, TypeSteps, FixedState>,
}

impl std::fmt::Debug for Upcasters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut steps: Vec<(&str, u32)> = self
            .by_type
            .iter()
            .flat_map(|(name, steps)| steps.steps.iter().map(move |(shape, _)| (&**name, *shape)))
            .collect();
        steps.sort_unstable();
        f.debug_struct("Upcasters").field("steps", &steps).finish()
    }
}

/// Buffers one read's upcasting reuses from event to event.
#[derive(Default)]
pub(crate) struct UpcastBuffers {
    emitted: Vec<UpcastedEvent>,
    pending: Vec<(UpcastedEvent, usize)>,
}

impl Upcasters {
    /// No upcaster: every event is read as stored.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the step that reads events of `event_type` stored with shape
    /// `shape_version`: `upcast` gets the payload decoded as `Old` (with the event's own
    /// codec, or as emitted by an earlier step) and emits the events that replace it
    /// through [`Upcasted::emit`]: none to drop it, several to split it. Use
    /// `Old = serde_json::Value` to work on JSON events without a type for their old shape
    /// (weak schema); use the old shape's own type for bincode events, which do not
    /// describe themselves. A later step for the same type and shape replaces the earlier
    /// one.
    #[must_use]
    pub fn register<Old, F>(mut self, event_type: &str, shape_version: u32, upcast: F) -> Self
    where
        Old: DeserializeOwned + 'static,
        F: Fn(Old, &mut Upcasted<'_>) -> Result<(), BoxError> + MaybeSend + MaybeSync + 'static,
    {
        let step = move |input: Input<'_>, out: &mut Upcasted<'_>| {
            let old = input.decode::<Old>().map_err(UpcastFailure::Decode)?;
            upcast(old, out).map_err(|e| UpcastFailure::Upcaster(shared(e)))
        };
        let steps = self.by_type.entry(event_type.into()).or_default();
        steps.steps.retain(|(shape, _)| *shape != shape_version);
        steps.steps.push((shape_version, Arc::new(step)));
        steps.newest_from = steps.newest_from.max(shape_version);
        self
    }

    /// Whether no step is registered.
    pub fn is_empty(&self) -> bool {
        self.by_type.is_empty()
    }

    /// Whether a step reads events of `event_type` stored with shape `shape_version`.
    pub fn handles(&self, event_type: &str, shape_version: u32) -> bool {
        self.by_type
            .get(event_type)
            .is_some_and(|steps| steps.steps.iter().any(|(shape, _)| *shape == shape_version))
    }

    /// The step that reads this type and shape; `Ok(None)` when it is current.
    fn step(
        &self,
        event_type: &str,
        shape_version: u32,
    ) -> Result<Option<&Arc<Step>>, UpcastFailure> {
        match self.by_type.get(event_type) {
            Some(steps) => steps.step(shape_version),
            None => Ok(None),
        }
    }

    /// Upcasts a stored event of `event_type` and `shape_version`: `Ok(false)` when it is
    /// current as stored; else the current events that replace it are appended to `out`.
    pub(crate) fn upcast(
        &self,
        stored: (&str, u32, Codec, &[u8]),
        buffers: &mut UpcastBuffers,
        out: &mut Vec<UpcastedEvent>,
    ) -> Result<bool, UpcastError> {
        let (event_type, shape_version, codec, payload) = stored;
        let error = |event_type: &str, shape_version, failure| UpcastError {
            event_type: event_type.to_owned(),
            shape_version,
            failure,
        };
        let Some(step) = self
            .step(event_type, shape_version)
            .map_err(|f| error(event_type, shape_version, f))?
        else {
            return Ok(false);
        };
        let UpcastBuffers { emitted, pending } = buffers;
        emitted.clear();
        pending.clear();
        let mut output = Upcasted {
            codec,
            events: emitted,
        };
        step(Input::Stored(codec, payload), &mut output)
            .map_err(|f| error(event_type, shape_version, f))?;
        self.sort(event_type, shape_version, 0, emitted, pending, out)
            .map_err(|f| error(event_type, shape_version, f))?;
        // Events still to upcast, last first.
        while let Some((event, steps)) = pending.pop() {
            let fail = |failure| error(&event.event_type, event.shape_version, failure);
            let Some(step) = self
                .step(&event.event_type, event.shape_version)
                .map_err(fail)?
            else {
                out.push(event);
                continue;
            };
            if steps >= MAX_UPCAST_STEPS {
                return Err(fail(UpcastFailure::TooManySteps));
            }
            let mut output = Upcasted {
                codec,
                events: emitted,
            };
            step(Input::Emitted(&event), &mut output).map_err(fail)?;
            self.sort(
                &event.event_type,
                event.shape_version,
                steps,
                emitted,
                pending,
                out,
            )
            .map_err(fail)?;
        }
        Ok(true)
    }

    /// Moves what a step at `steps` emitted for (`event_type`, `shape_version`) to `out`
    /// when current, else to `pending`, keeping their order.
    fn sort(
        &self,
        event_type: &str,
        shape_version: u32,
        steps: usize,
        emitted: &mut Vec<UpcastedEvent>,
        pending: &mut Vec<(UpcastedEvent, usize)>,
        out: &mut Vec<UpcastedEvent>,
    ) -> Result<(), UpcastFailure> {
        if let Some(newer) = emitted
            .iter()
            .find(|next| *next.event_type == *event_type && next.shape_version <= shape_version)
        {
            return Err(UpcastFailure::NotNewer {
                emitted: newer.shape_version,
            });
        }
        let mut later = Vec::new();
        for next in emitted.drain(..) {
            // After one that needs upcasting, the rest wait their turn, in order.
            let waits = !pending.is_empty() || !later.is_empty();
            if waits || self.step(&next.event_type, next.shape_version)?.is_some() {
                later.push(next);
            } else {
                out.push(next);
            }
        }
        pending.extend(later.into_iter().rev().map(|next| (next, steps + 1)));
        Ok(())
    }
}

/// What an upcaster emits: the events that replace the one it read, in order.
pub struct Upcasted<'a> {
    codec: Codec,
    events: &'a mut Vec<UpcastedEvent>,
}

impl std::fmt::Debug for Upcasted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upcasted")
            .field("codec", &self.codec)
            .field("events", &self.events.len())
            .finish()
    }
}

impl Upcasted<'_> {
    /// Emits an event of `event_type` with shape `shape_version` whose payload is
    /// `payload`. An event of the same type must have a newer shape. The value is handed
    /// on as it is, and encoded (with the codec of the event being upcast) only when its
    /// bytes are read.
    pub fn emit<T>(
        &mut self,
        event_type: impl Into<Cow<'static, str>>,
        shape_version: u32,
        payload: T,
    ) where
        T: Serialize + MaybeSend + MaybeSync + 'static,
    {
        self.events.push(UpcastedEvent {
            event_type: event_type.into(),
            shape_version,
            codec: self.codec,
            type_id: TypeId::of::<T>(),
            value: Mutex::new(Some(Box::new(payload))),
            bytes: OnceLock::new(),
        });
    }

    /// The codec of the event being upcast, which emitted events are encoded with.
    pub fn codec(&self) -> Codec {
        self.codec
    }
}

/// An emitted value, which knows how to encode itself.
trait Value: Any + MaybeSend + MaybeSync {
    fn encode(&self, codec: Codec) -> Result<Vec<u8>, CodecError>;
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
}

impl<T: Serialize + MaybeSend + MaybeSync + 'static> Value for T {
    fn encode(&self, codec: Codec) -> Result<Vec<u8>, CodecError> {
        codec.encode(self)
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// An event an upcaster emitted: it replaces a stored event in reads.
pub(crate) struct UpcastedEvent {
    pub event_type: Cow<'static, str>,
    pub shape_version: u32,
    codec: Codec,
    /// The type of the emitted value.
    type_id: TypeId,
    /// The emitted value, until a decode to its own type takes it.
    value: Mutex<Option<Box<dyn Value>>>,
    /// The value encoded, once asked for.
    bytes: OnceLock<Result<Bytes, CodecError>>,
}

impl std::fmt::Debug for UpcastedEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpcastedEvent")
            .field("event_type", &self.event_type)
            .field("shape_version", &self.shape_version)
            .finish_non_exhaustive()
    }
}

impl Clone for UpcastedEvent {
    /// A copy holds the payload's bytes (encoding the value, if not done yet).
    fn clone(&self) -> Self {
        UpcastedEvent {
            event_type: self.event_type.clone(),
            shape_version: self.shape_version,
            codec: self.codec,
            type_id: self.type_id,
            value: Mutex::new(None),
            bytes: OnceLock::from(self.payload().cloned().map_err(Clone::clone)),
        }
    }
}

impl PartialEq for UpcastedEvent {
    fn eq(&self, other: &Self) -> bool {
        self.event_type == other.event_type
            && self.shape_version == other.shape_version
            && self.codec == other.codec
            && self.payload().ok() == other.payload().ok()
    }
}

impl Eq for UpcastedEvent {}

impl UpcastedEvent {
    /// The payload encoded with the event's codec (encoded on the first call).
    pub(crate) fn payload(&self) -> Result<&Bytes, &CodecError> {
        self.bytes
            .get_or_init(|| {
                let value = self.value.lock().unwrap_or_else(PoisonError::into_inner);
                match value.as_ref() {
                    Some(value) => value.encode(self.codec).map(Bytes::from),
                    None => Err(CodecError::Encode {
                        codec: self.codec,
                        source: shared("the upcast value was handed on already"),
                    }),
                }
            })
            .as_ref()
    }

    /// The payload as `T`: the emitted value itself when it is a `T` and its bytes were
    /// never asked for (it is handed over: the event's bytes cannot be read after), else
    /// decoded from its bytes. For the one reader of an event that is dropped after.
    pub(crate) fn take_or_decode<T: DeserializeOwned + 'static>(&self) -> Result<T, CodecError> {
        if self.type_id == TypeId::of::<T>() && self.bytes.get().is_none() {
            let mut value = self.value.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(taken) = value.take().and_then(|v| v.into_any().downcast::<T>().ok()) {
                return Ok(*taken);
            }
        }
        match self.payload() {
            Ok(bytes) => self.codec.decode(bytes),
            Err(error) => Err(error.clone()),
        }
    }
}

/// Why an event could not be upcast.
#[derive(Clone, Debug, thiserror::Error)]
#[error("event type {event_type:?} shape version {shape_version}: {failure}")]
pub struct UpcastError {
    /// The type of the event that failed.
    pub event_type: String,
    /// Its shape version.
    pub shape_version: u32,
    /// What went wrong.
    pub failure: UpcastFailure,
}

/// What went wrong when upcasting an event.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpcastFailure {
    /// The shape is older than the steps registered for its type, and none reads it.
    #[error(
        "no upcaster is registered for this shape (the type has upcasters from shape {newest_from} only)"
    )]
    Missing {
        /// The newest shape a registered step reads.
        newest_from: u32,
    },
    /// The stored payload does not decode as the step's old shape.
    #[error("the stored payload does not decode as the upcaster's old shape: {0}")]
    Decode(CodecError),
    /// The upcaster returned an error.
    #[error("the upcaster failed: {0}")]
    Upcaster(SharedError),
    /// The upcaster emitted an event of its own type whose shape is not newer.
    #[error("the upcaster emitted shape {emitted} of the same type, which is not newer")]
    NotNewer {
        /// The shape it emitted.
        emitted: u32,
    },
    /// The chain of upcasts did not end within [`MAX_UPCAST_STEPS`] steps.
    #[error("the chain of upcasters is longer than {MAX_UPCAST_STEPS} steps (a cycle?)")]
    TooManySteps,
}

impl UpcastError {
    /// What kind of failure it is: a missing upcaster is unsupported; an upcaster that
    /// failed (or emitted what it may not) is a handler failure; a payload that does not
    /// decode is corrupt.
    pub fn kind(&self) -> ErrorKind {
        match self.failure {
            UpcastFailure::Missing { .. } => ErrorKind::Unsupported,
            UpcastFailure::Decode(_) => ErrorKind::Corrupt,
            UpcastFailure::Upcaster(_)
            | UpcastFailure::NotNewer { .. }
            | UpcastFailure::TooManySteps => ErrorKind::Handler,
        }
    }
}

crate::__error_class!(UpcastError);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// An upcast event: its type, shape and payload.
    type Seen = (String, u32, Value);

    fn upcast(
        upcasters: &Upcasters,
        event_type: &str,
        shape: u32,
        payload: &Value,
    ) -> Result<Option<Vec<Seen>>, UpcastError> {
        let bytes = Codec::Json.encode(payload).unwrap_or_default();
        let mut out = Vec::new();
        let stored = (event_type, shape, Codec::Json, &bytes[..]);
        let upcast = upcasters.upcast(stored, &mut UpcastBuffers::default(), &mut out)?;
        Ok(upcast.then(|| {
            out.into_iter()
                .map(|e| {
                    let payload = e.take_or_decode().unwrap_or(Value::Null);
                    (e.event_type.into_owned(), e.shape_version, payload)
                })
                .collect()
        }))
    }

    fn chain() -> Upcasters {
        Upcasters::new()
            .register("Moved", 1, |old: Value, out| {
                out.emit("Moved", 2, json!({ "to": old["place"] }));
                Ok(())
            })
            .register("Moved", 2, |old: Value, out| {
                out.emit("Left", 1, json!({}));
                out.emit("Arrived", 1, json!({ "at": old["to"] }));
                Ok(())
            })
            .register("Noise", 1, |_: Value, _| Ok(()))
    }

    #[test]
    fn steps_chain_split_and_drop() {
        let upcasters = chain();
        let out = upcast(&upcasters, "Moved", 1, &json!({"place": "Oslo"})).ok();
        assert_eq!(
            out,
            Some(Some(vec![
                ("Left".into(), 1, json!({})),
                ("Arrived".into(), 1, json!({"at": "Oslo"})),
            ]))
        );
        assert_eq!(
            upcast(&upcasters, "Noise", 1, &json!(null)).ok(),
            Some(Some(vec![]))
        );
        assert_eq!(upcast(&upcasters, "Moved", 3, &json!({})).ok(), Some(None));
        assert_eq!(upcast(&upcasters, "Other", 1, &json!({})).ok(), Some(None));
    }

    /// A value emitted as the type its reader asks for is handed over, never encoded.
    #[test]
    fn values_of_the_readers_type_are_handed_over() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static ENCODED: AtomicUsize = AtomicUsize::new(0);
        #[derive(serde::Deserialize, PartialEq, Debug)]
        struct Current(u64);
        impl Serialize for Current {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                ENCODED.fetch_add(1, Ordering::Relaxed);
                serializer.serialize_newtype_struct("Current", &self.0)
            }
        }
        let upcasters = Upcasters::new()
            .register("A", 1, |old: u64, out| {
                out.emit("A", 2, old + 1);
                Ok(())
            })
            .register("A", 2, |old: u64, out| {
                out.emit("A", 3, Current(old * 10));
                Ok(())
            });
        let mut events = Vec::new();
        let stored = Codec::Json.encode(&4u64).unwrap_or_default();
        let read = ("A", 1, Codec::Json, &stored[..]);
        let upcast = upcasters.upcast(read, &mut UpcastBuffers::default(), &mut events);
        assert!(matches!(upcast, Ok(true)));
        let [event] = &events[..] else {
            panic!("one event, got {}", events.len());
        };
        assert_eq!(event.take_or_decode::<Current>().ok(), Some(Current(50)));
        assert_eq!(ENCODED.load(Ordering::Relaxed), 0, "nothing was encoded");
        // Its bytes are gone with it; a copy taken before keeps them.
        assert!(event.payload().is_err());
        let mut again = Vec::new();
        let upcast = upcasters.upcast(read, &mut UpcastBuffers::default(), &mut again);
        assert!(matches!(upcast, Ok(true)));
        assert_eq!(
            again[0].payload().ok().map(|b| b.to_vec()),
            Some(b"50".to_vec())
        );
        assert_eq!(again[0].take_or_decode::<Current>().ok(), Some(Current(50)));
    }

    #[test]
    fn a_missing_step_is_named() {
        let upcasters = Upcasters::new().register("Moved", 2, |v: Value, out| {
            out.emit("Moved", 3, v);
            Ok(())
        });
        let error = upcast(&upcasters, "Moved", 1, &json!({})).expect_err("no step for 1");
        assert_eq!(error.kind(), ErrorKind::Unsupported);
        let message = error.to_string();
        assert!(
            message.contains("\"Moved\"") && message.contains("shape version 1"),
            "{message}"
        );
    }

    #[test]
    fn cycles_and_older_shapes_are_refused() {
        let backwards = Upcasters::new().register("A", 2, |v: Value, out| {
            out.emit("A", 1, v);
            Ok(())
        });
        let error = upcast(&backwards, "A", 2, &json!({})).expect_err("not newer");
        assert!(matches!(
            error.failure,
            UpcastFailure::NotNewer { emitted: 1 }
        ));
        let cycle = Upcasters::new()
            .register("A", 1, |v: Value, out| {
                out.emit("B", 1, v);
                Ok(())
            })
            .register("B", 1, |v: Value, out| {
                out.emit("A", 1, v);
                Ok(())
            });
        let error = upcast(&cycle, "A", 1, &json!({})).expect_err("cycle");
        assert!(matches!(error.failure, UpcastFailure::TooManySteps));
    }

    #[test]
    fn typed_steps_read_bincode() {
        #[derive(serde::Deserialize)]
        struct OldShape(u32, String);
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct NewShape {
            amount: u64,
            currency: String,
        }
        let upcasters = Upcasters::new().register("Paid", 1, |old: OldShape, out| {
            let new = NewShape {
                amount: u64::from(old.0),
                currency: old.1,
            };
            out.emit("Paid", 2, new);
            Ok(())
        });
        let stored = Codec::Bincode.encode(&(7u32, "EUR")).unwrap_or_default();
        let mut events = Vec::new();
        let read = ("Paid", 1, Codec::Bincode, &stored[..]);
        let upcast = upcasters.upcast(read, &mut UpcastBuffers::default(), &mut events);
        assert!(matches!(upcast, Ok(true)));
        // As bytes (encoded with the stored event's codec), and as the value handed on.
        let decoded: Vec<NewShape> = events
            .iter()
            .filter_map(|e| Codec::Bincode.decode(e.payload().ok()?).ok())
            .collect();
        assert_eq!(
            decoded,
            vec![NewShape {
                amount: 7,
                currency: "EUR".into()
            }]
        );
        let read = ("Paid", 1, Codec::Bincode, &[0xff][..]);
        let error = upcasters
            .upcast(read, &mut UpcastBuffers::default(), &mut Vec::new())
            .expect_err("undecodable");
        assert_eq!(error.kind(), ErrorKind::Corrupt);
    }
}
