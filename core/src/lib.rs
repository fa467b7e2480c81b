//! eventkv stores the events and aggregate snapshots of event-sourced applications on any
//! ordered key-value engine.
//!
//! One core, written once against the small [`OrderedKv`] trait, gives every engine the
//! same [`EventStore`], [`SnapshotStore`] and snapshot-aware [`Repository`].
#![doc = include_str!("../../README.md")]

mod aggregate;
mod background;
pub mod backoff;
mod checkpoint;
mod codec;
mod command;
mod envelope;
mod error;
mod event_store;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod group_commit;
pub mod inspect;
pub mod keys;
mod kv;
mod memory;
mod projection;
mod read_model;
mod recorded;
pub mod replica;
mod repository;
mod snapshot;
mod subscription;
#[cfg(feature = "testkit")]
pub mod testkit;
mod timestamp;
mod upcast;

pub use aggregate::{Aggregate, AggregateHandle, DomainEvent, LoadInfo};
pub use codec::{BINCODE_DECODE_LIMIT, Codec, CodecError};
pub use command::CommandError;
pub use envelope::{EventMetadata, FORMAT_VERSION, FormatError};
pub use error::{ContextError, ErrorKind, SharedError};
pub use event_store::{
    Appended, EventPage, EventStore, EventStoreError, KvEventStore, NewEvent, StoredEvent,
};
pub use kv::{
    BoxError, Check, Direction, DynKv, KeyRange, KvError, KvPage, OrderedKv, WriteBatch,
    WriteLimits,
};
pub use memory::MemoryKv;
pub use projection::{Projection, ProjectionError, ProjectionRunner};
pub use read_model::ReadModel;
pub use recorded::RecordedEvent;
pub use repository::{
    DEFAULT_REPLAY_PAGE, Fold, KvRepository, MaintenanceReport, ReplayError, ReplayOptions,
    Replayed, Repository, RepositoryError, RepositoryFailure, RepositoryMetrics, SaveOutcome,
    SnapshotMiss, SnapshotMode, SnapshotOutcome, SnapshotReadFailure, Staleness, replay,
};
pub use snapshot::{KvSnapshotStore, Snapshot, SnapshotStore, SnapshotStoreError};
pub use subscription::{LONGEST_RETRY_PAUSE, MAX_POLL_INTERVAL, SubscribeOptions};
pub use timestamp::Timestamp;
pub use upcast::{MAX_UPCAST_STEPS, UpcastError, UpcastFailure, Upcasted, Upcasters};
pub use uuid::Uuid;

/// For engine authors: what implementing [`OrderedKv`] takes beyond the trait, as
/// OpenDAL's `raw` module (applications need none of it): the page bounds every engine
/// enforces, the batch reduced to its final mutations, the check evaluation every engine
/// shares, the boxed and dyn-compatible forms of the trait, and the `Send` bounds that
/// vanish on wasm32.
pub mod raw {
    pub use crate::kv::{
        BatchRoom, BoxFuture, BuildBatch, DisplayKey, ErasedKv, FinalMutations, MAX_SCAN_BYTES,
        MAX_SCAN_ENTRIES, MaybeSend, MaybeSync, Mutation, first_failed_check, prefix_successor,
        write_built,
    };
}
