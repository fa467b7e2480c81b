//! Aggregates: state folded from events, and the handle a repository loads and saves.

use serde::Serialize;
use serde::de::DeserializeOwned;

use uuid::Uuid;

use crate::kv::{MaybeSend, MaybeSync};

/// An event of an aggregate.
pub trait DomainEvent: Serialize + DeserializeOwned + MaybeSend + MaybeSync + 'static {
    /// The type name stored with the event, e.g. `"Deposited"`.
    fn event_type(&self) -> &'static str;

    /// The version of this event's shape, stored with it (1 unless overridden). Bump it
    /// when the event's shape changes, and register an upcaster from the old shape (see
    /// [`Upcasters`](crate::Upcasters)): readers then only ever see the current shape.
    fn shape_version(&self) -> u32 {
        1
    }
}

/// The state of an aggregate, rebuilt by applying its events in order.
///
/// The state is what a snapshot stores, so it is `Serialize` and `DeserializeOwned`.
pub trait Aggregate:
    Default + Clone + Serialize + DeserializeOwned + MaybeSend + MaybeSync + 'static
{
    /// The aggregate's type name, part of every key: never change it once data exists.
    const TYPE: &'static str;
    /// The version of the state's shape. Bump it when the state changes shape: snapshots
    /// of other schema versions are then ignored and the state is rebuilt from events.
    const SCHEMA_VERSION: u32;
    /// The events of this aggregate.
    type Event: DomainEvent;

    /// Folds one event into the state.
    fn apply(&mut self, event: &Self::Event);
}

/// A loaded (or new) aggregate: its id, committed version, state and uncommitted events.
#[derive(Clone, Debug)]
pub struct AggregateHandle<A: Aggregate> {
    id: String,
    version: u64,
    /// The id of the event at `version`, when known.
    last_event_id: Option<Uuid>,
    state: A,
    pending: Vec<A::Event>,
    /// The ids of `pending`, fixed when each was recorded, so a retried save writes the
    /// same events.
    pending_ids: Vec<Uuid>,
    load_info: LoadInfo,
}

impl<A: Aggregate> AggregateHandle<A> {
    pub(crate) fn from_parts(
        id: String,
        version: u64,
        last_event_id: Option<Uuid>,
        state: A,
        load_info: LoadInfo,
    ) -> Self {
        AggregateHandle {
            id,
            version,
            last_event_id,
            state,
            pending: Vec::new(),
            pending_ids: Vec::new(),
            load_info,
        }
    }

    /// The aggregate id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The version of the last committed event (0 for a new aggregate).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The state, with the uncommitted events applied.
    pub fn state(&self) -> &A {
        &self.state
    }

    /// The events recorded since the last save.
    pub fn pending(&self) -> &[A::Event] {
        &self.pending
    }

    /// The ids the pending events will be stored with, in order: each is fixed when the
    /// event is recorded, so saving again after an ambiguous error is idempotent.
    pub fn pending_ids(&self) -> &[Uuid] {
        &self.pending_ids
    }

    /// The id of the last committed event, when known (`None` for a new aggregate).
    pub fn last_event_id(&self) -> Option<Uuid> {
        self.last_event_id
    }

    /// Applies `event` to the state and keeps it to be saved, under a new event id.
    pub fn record(&mut self, event: A::Event) {
        self.state.apply(&event);
        self.pending.push(event);
        self.pending_ids.push(Uuid::new_v4());
    }

    /// How the load that made this handle rebuilt the state (empty for a new aggregate).
    pub fn load_info(&self) -> LoadInfo {
        self.load_info
    }

    /// Marks the pending events as committed at `version`.
    pub(crate) fn commit(&mut self, version: u64) {
        self.last_event_id = self.pending_ids.last().copied().or(self.last_event_id);
        self.pending.clear();
        self.pending_ids.clear();
        self.version = version;
    }
}

/// How a load rebuilt the state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadInfo {
    /// The version of the snapshot it started from, if it used one.
    pub snapshot_version: Option<u64>,
    /// How many events it applied.
    pub events_replayed: u64,
}
