//! Upcasting: events stored in an old shape are turned into the current shapes as they are
//! read, so application code only ever sees current shapes.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{Codec, CodecError};
use crate::error::{ErrorKind, SharedError, shared};
use crate::kv::{BoxError, MaybeSend, MaybeSync};

/// How many upcasts one stored event may go through: a longer chain is a cycle.
pub const MAX_UPCAST_STEPS: usize = 64;

/// One registered step: decodes the old payload and emits the newer events.
#[cfg(not(target_arch = "wasm32"))]
type Step = dyn Fn(Codec, &[u8], &mut Upcasted) -> Result<(), UpcastFailure> + Send + Sync;
/// One registered step: decodes the old payload and emits the newer events.
#[cfg(target_arch = "wasm32")]
type Step = dyn Fn(Codec, &[u8], &mut Upcasted) -> Result<(), UpcastFailure>;

/// The steps registered for one event type, by the shape version they read.
#[derive(Clone, Default)]
struct TypeSteps {
    steps: HashMap<u32, Arc<Step>>,
    /// The highest shape version a step reads: older shapes without a step are an error.
    newest_from: u32,
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
/// ```
/// use eventkv::{Upcasters, Codec};
/// use serde_json::{Value, json};
///
/// // Shape 1 of "Deposited" stored `amount` in cents as a string; shape 2 is a number.
/// let upcasters = Upcasters::new().register("Deposited", 1, |old: Value, out| {
///     let cents: u64 = old["amount"].as_str().unwrap_or("0").parse()?;
///     out.emit("Deposited", 2, &json!({ "amount": cents }))?;
///     Ok(())
/// });
/// assert!(upcasters.handles("Deposited", 1));
/// ```
#[derive(Clone, Default)]
pub struct Upcasters {
    by_type: HashMap<Box<str>, TypeSteps>,
}

impl std::fmt::Debug for Upcasters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut steps: Vec<(&str, u32)> = self
            .by_type
            .iter()
            .flat_map(|(name, steps)| steps.steps.keys().map(move |&shape| (&**name, shape)))
            .collect();
        steps.sort_unstable();
        f.debug_struct("Upcasters").field("steps", &steps).finish()
    }
}

impl Upcasters {
    /// No upcaster: every event is read as stored.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the step that reads events of `event_type` stored with shape
    /// `shape_version`: `upcast` gets the payload decoded as `Old` (with the event's own
    /// codec) and emits the events that replace it through [`Upcasted::emit`]: none to drop
    /// it, several to split it. Use `Old = serde_json::Value` to work on JSON events without
    /// a type for their old shape (weak schema); use the old shape's own type for bincode
    /// events, which do not describe themselves. A later step for the same type and shape
    /// replaces the earlier one.
    #[must_use]
    pub fn register<Old, F>(mut self, event_type: &str, shape_version: u32, upcast: F) -> Self
    where
        Old: DeserializeOwned,
        F: Fn(Old, &mut Upcasted) -> Result<(), BoxError> + MaybeSend + MaybeSync + 'static,
    {
        let step = move |codec: Codec, payload: &[u8], out: &mut Upcasted| {
            let old = codec
                .decode::<Old>(payload)
                .map_err(UpcastFailure::Decode)?;
            upcast(old, out).map_err(|e| UpcastFailure::Upcaster(shared(e)))
        };
        let steps = self.by_type.entry(event_type.into()).or_default();
        steps.steps.insert(shape_version, Arc::new(step));
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
            .is_some_and(|steps| steps.steps.contains_key(&shape_version))
    }

    /// Whether an event of this type and shape is read as stored (`Ok(true)`), must be
    /// upcast (`Ok(false)`), or is an old shape no step reads.
    fn is_current(&self, event_type: &str, shape_version: u32) -> Result<bool, UpcastFailure> {
        let Some(steps) = self.by_type.get(event_type) else {
            return Ok(true);
        };
        if steps.steps.contains_key(&shape_version) {
            Ok(false)
        } else if shape_version < steps.newest_from {
            Err(UpcastFailure::Missing {
                newest_from: steps.newest_from,
            })
        } else {
            Ok(true)
        }
    }

    /// The current events that replace a stored event of `event_type` and `shape_version`,
    /// or `None` when it is current as stored.
    pub(crate) fn upcast(
        &self,
        event_type: &str,
        shape_version: u32,
        codec: Codec,
        payload: &[u8],
    ) -> Result<Option<Vec<UpcastedEvent>>, UpcastError> {
        let error = |event_type: &str, shape_version, failure| UpcastError {
            event_type: event_type.to_owned(),
            shape_version,
            failure,
        };
        if self
            .is_current(event_type, shape_version)
            .map_err(|f| error(event_type, shape_version, f))?
        {
            return Ok(None);
        }
        let mut current = Vec::new();
        // Events still to upcast, last first; each counts the steps that made it.
        let mut pending = vec![(
            UpcastedEvent {
                event_type: event_type.into(),
                shape_version,
                payload: Bytes::copy_from_slice(payload),
            },
            0,
        )];
        while let Some((event, steps)) = pending.pop() {
            let fail = |failure| error(&event.event_type, event.shape_version, failure);
            if self
                .is_current(&event.event_type, event.shape_version)
                .map_err(fail)?
            {
                current.push(event);
                continue;
            }
            if steps == MAX_UPCAST_STEPS {
                return Err(fail(UpcastFailure::TooManySteps));
            }
            let step = self
                .by_type
                .get(&*event.event_type)
                .and_then(|steps| steps.steps.get(&event.shape_version))
                .ok_or_else(|| fail(UpcastFailure::TooManySteps))?;
            let mut out = Upcasted {
                codec,
                events: Vec::new(),
            };
            step(codec, &event.payload, &mut out).map_err(fail)?;
            for next in &out.events {
                if *next.event_type == *event.event_type
                    && next.shape_version <= event.shape_version
                {
                    return Err(fail(UpcastFailure::NotNewer {
                        emitted: next.shape_version,
                    }));
                }
            }
            pending.extend(out.events.into_iter().rev().map(|next| (next, steps + 1)));
        }
        Ok(Some(current))
    }
}

/// What an upcaster emits: the events that replace the one it read, in order.
#[derive(Debug)]
pub struct Upcasted {
    codec: Codec,
    events: Vec<UpcastedEvent>,
}

impl Upcasted {
    /// Emits an event of `event_type` with shape `shape_version`, encoded with the codec
    /// of the event being upcast. An event of the same type must have a newer shape.
    pub fn emit<T: Serialize + ?Sized>(
        &mut self,
        event_type: &str,
        shape_version: u32,
        payload: &T,
    ) -> Result<(), CodecError> {
        let payload = Bytes::from(self.codec.encode(payload)?);
        self.events.push(UpcastedEvent {
            event_type: event_type.into(),
            shape_version,
            payload,
        });
        Ok(())
    }

    /// The codec of the event being upcast, which emitted events are encoded with.
    pub fn codec(&self) -> Codec {
        self.codec
    }
}

/// An event an upcaster emitted: it replaces a stored event in reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct UpcastedEvent {
    pub event_type: Box<str>,
    pub shape_version: u32,
    pub payload: Bytes,
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
        let events = upcasters.upcast(event_type, shape, Codec::Json, &bytes)?;
        Ok(events.map(|events| {
            events
                .into_iter()
                .map(|e| {
                    let payload = Codec::Json.decode(&e.payload).unwrap_or(Value::Null);
                    (e.event_type.into(), e.shape_version, payload)
                })
                .collect()
        }))
    }

    fn chain() -> Upcasters {
        Upcasters::new()
            .register("Moved", 1, |old: Value, out| {
                out.emit("Moved", 2, &json!({ "to": old["place"] }))?;
                Ok(())
            })
            .register("Moved", 2, |old: Value, out| {
                out.emit("Left", 1, &json!({}))?;
                out.emit("Arrived", 1, &json!({ "at": old["to"] }))?;
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

    #[test]
    fn a_missing_step_is_named() {
        let upcasters = Upcasters::new().register("Moved", 2, |v: Value, out| {
            out.emit("Moved", 3, &v)?;
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
            out.emit("A", 1, &v)?;
            Ok(())
        });
        let error = upcast(&backwards, "A", 2, &json!({})).expect_err("not newer");
        assert!(matches!(
            error.failure,
            UpcastFailure::NotNewer { emitted: 1 }
        ));
        let cycle = Upcasters::new()
            .register("A", 1, |v: Value, out| {
                out.emit("B", 1, &v)?;
                Ok(())
            })
            .register("B", 1, |v: Value, out| {
                out.emit("A", 1, &v)?;
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
            out.emit("Paid", 2, &new)?;
            Ok(())
        });
        let stored = Codec::Bincode.encode(&(7u32, "EUR")).unwrap_or_default();
        let events = upcasters
            .upcast("Paid", 1, Codec::Bincode, &stored)
            .ok()
            .flatten()
            .unwrap_or_default();
        let decoded: Vec<NewShape> = events
            .iter()
            .filter_map(|e| Codec::Bincode.decode(&e.payload).ok())
            .collect();
        assert_eq!(
            decoded,
            vec![NewShape {
                amount: 7,
                currency: "EUR".into()
            }]
        );
        let error = upcasters
            .upcast("Paid", 1, Codec::Bincode, &[0xff])
            .expect_err("undecodable");
        assert_eq!(error.kind(), ErrorKind::Corrupt);
    }
}
