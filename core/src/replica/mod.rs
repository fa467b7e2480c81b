//! A replica of a server's global log plus an outbox of local appends: the storage of an
//! offline-first client (the browser's sync, see `docs/sync.md`).
//!
//! The replica's log advances only by pulls, in the server's order and at the server's
//! positions ([`Replica::apply_pulled`]), so a local subscription sees the server's order.
//! A local append ([`Replica::append_pending`]) writes an outbox entry, never the log: its
//! events are laid over the confirmed stream by [`Replica::pending_events`] (the
//! optimistic view) until a pull brings them back from the server, which removes the entry
//! in the same batch. Each aggregate with entries has a tip holding its optimistic
//! version, checked by every local append, so two tabs appending at once cannot both
//! take the same version.
//!
//! The outbox lives in the read-model area of the key layout (projection
//! `eventkv.outbox`), the cursor in the checkpoint `eventkv.sync`: a replica is an
//! ordinary store that every tool can copy and verify.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::envelope::{self};
use crate::event_store::{EventStoreError, KvEventStore, NewEvent, corrupt, validate_events};
use crate::keys::StreamKeys;
use crate::kv::{Check, Direction, KeyRange, KvError, OrderedKv, WriteBatch};

mod changes;
mod pull;
mod stored;

use stored::{EntryRecord, NEXT, Tip, be_u64, cursor_key, entry_key, outbox_key, tip_key};

/// The projection name the outbox's keys live under.
pub const OUTBOX: &str = "eventkv.outbox";
/// The checkpoint that holds how far the replica has pulled.
pub const SYNC_CURSOR: &str = "eventkv.sync";

/// How many times a local append is tried when another tab's append raced it.
const ATTEMPTS: usize = 16;

/// What became of an outbox entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutboxState {
    /// Waiting to be pushed.
    Pending,
    /// The server stored it at these positions; a pull will bring it back.
    Pushed {
        /// The global position of its first event.
        first_position: u64,
        /// The global position of its last event.
        last_position: u64,
    },
    /// Set aside, never pushed again (a conflict no one resolved, or a refusal): kept
    /// and reported until the application discards it.
    Parked {
        /// Why.
        reason: String,
    },
}

/// A local append waiting in the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Its place in the outbox: entries are pushed in this order.
    pub seq: u64,
    /// The aggregate type.
    pub aggregate_type: String,
    /// The aggregate id.
    pub aggregate_id: String,
    /// The version the events were made on.
    pub expected_version: u64,
    /// The events, with their ids.
    pub events: Vec<NewEvent>,
    /// Pending, pushed or parked.
    pub state: OutboxState,
}

/// Where a local append landed in the optimistic view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingAppend {
    /// Its outbox entry.
    pub seq: u64,
    /// The version of its first event in the optimistic view.
    pub first_version: u64,
    /// The version of its last event: the aggregate's optimistic version now.
    pub last_version: u64,
}

/// What a page of pulled events did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PullApplied {
    /// Events written to the log.
    pub events: usize,
    /// The outbox entries whose events came back, removed.
    pub confirmed: Vec<u64>,
}

/// The replica of a server's log with an outbox, on one store.
#[derive(Clone, Debug)]
pub struct Replica<K> {
    store: KvEventStore<K>,
}

impl<K: OrderedKv> Replica<K> {
    /// The replica kept in `store`. Its log must only be written by
    /// [`apply_pulled`](Self::apply_pulled): append locally with
    /// [`append_pending`](Self::append_pending).
    pub fn new(store: KvEventStore<K>) -> Self {
        Replica { store }
    }

    /// The event store holding the confirmed log (read it, subscribe to it; never
    /// append to it).
    pub fn store(&self) -> &KvEventStore<K> {
        &self.store
    }

    fn kv(&self) -> &K {
        self.store.kv()
    }

    /// The last server position pulled (0 before the first pull): pull after it.
    pub async fn cursor(&self) -> Result<u64, EventStoreError> {
        let key = cursor_key()?;
        match self.kv().get(&key).await? {
            None => Ok(0),
            Some(value) => envelope::decode_checkpoint(&key, &value).map_err(|e| corrupt(&key, e)),
        }
    }

    /// The aggregate's version in the optimistic view: its confirmed events, then its
    /// pending ones.
    pub async fn optimistic_version(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<u64, EventStoreError> {
        let stream = StreamKeys::new(aggregate_type, aggregate_id)?;
        let tip_key = tip_key(aggregate_type, aggregate_id)?;
        match self.kv().get(&tip_key).await? {
            Some(value) => Ok(Tip::decode(&tip_key, &value)?.version),
            None => self.store.current_version_impl(&stream).await,
        }
    }

    /// Appends `events` locally to an aggregate whose optimistic version must be
    /// `expected_version`: one outbox entry, written with the aggregate's new tip in one
    /// batch. `Conflict` when the optimistic version is another (another tab appended).
    pub async fn append_pending(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        expected_version: u64,
        events: &[NewEvent],
    ) -> Result<PendingAppend, EventStoreError> {
        let stream = StreamKeys::new(aggregate_type, aggregate_id)?;
        validate_events(events)?;
        let count = events.len() as u64;
        let last_version = expected_version
            .checked_add(count)
            .ok_or_else(|| EventStoreError::InvalidInput("version overflows u64".into()))?;
        let tip_key = tip_key(aggregate_type, aggregate_id)?;
        let next_key = outbox_key(&[NEXT])?;
        for _ in 0..ATTEMPTS {
            let tip_value = self.kv().get(&tip_key).await?;
            let tip = tip_value
                .as_deref()
                .map(|value| Tip::decode(&tip_key, value))
                .transpose()?;
            let version = match tip {
                Some(tip) => tip.version,
                None => self.store.current_version_impl(&stream).await?,
            };
            if version != expected_version {
                return Err(EventStoreError::Conflict {
                    aggregate_type: aggregate_type.to_owned(),
                    aggregate_id: aggregate_id.to_owned(),
                    expected: expected_version,
                    actual: version,
                });
            }
            let (seq, next_value) = self.next_seq(&next_key).await?;
            let mut batch = WriteBatch::new();
            batch.check(tip_key.clone(), same_as(tip_value.as_ref()));
            if tip.is_none() {
                // No entry yet: the confirmed stream must still end at `version`.
                if version > 0 {
                    batch.check(stream.event(version), Check::Present);
                }
                batch.check(stream.event(version + 1), Check::Absent);
            }
            batch.check(next_key.clone(), same_as(next_value.as_ref()));
            let entry = EntryRecord::new(aggregate_type, aggregate_id, expected_version, events);
            batch.put(entry_key(seq)?, entry.encode()?);
            let entries = tip.map_or(0, |tip| tip.entries) + 1;
            let new_tip = Tip {
                version: last_version,
                entries,
            };
            batch.put(tip_key.clone(), new_tip.encode());
            batch.put(
                next_key.clone(),
                Bytes::copy_from_slice(&(seq + 1).to_be_bytes()),
            );
            match self.kv().write(batch).await {
                Ok(()) => {
                    return Ok(PendingAppend {
                        seq,
                        first_version: expected_version + 1,
                        last_version,
                    });
                }
                // Another tab wrote the outbox or the stream in between: look again.
                Err(KvError::Conflict { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Err(contended(aggregate_type, aggregate_id))
    }

    /// The next entry's sequence number, and the stored value it was read from.
    async fn next_seq(&self, next_key: &Bytes) -> Result<(u64, Option<Bytes>), EventStoreError> {
        let value = self.kv().get(next_key).await?;
        let seq = match &value {
            Some(value) => be_u64(value).ok_or_else(|| corrupt(next_key, "not a u64"))?,
            None => 1,
        };
        Ok((seq, value))
    }

    /// Up to `limit` outbox entries from `from_seq` on, in push order, whatever their
    /// state: fewer only at the outbox's end, however large the entries are.
    pub async fn outbox(
        &self,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, EventStoreError> {
        let mut range = KeyRange::between(entry_key(from_seq)?, entry_key(u64::MAX)?);
        let mut entries = Vec::new();
        while entries.len() < limit {
            let wanted = limit - entries.len();
            let page = self.kv().scan(&range, Direction::Forward, wanted).await?;
            for (key, value) in page.iter() {
                entries.push(OutboxEntry::decode(key, value)?);
            }
            match page.last_key() {
                Some(last) if page.may_have_more(wanted) => {
                    range = range.after_page(last, Direction::Forward);
                }
                _ => break,
            }
        }
        Ok(entries)
    }

    /// Every outbox entry of one aggregate, in push order.
    pub async fn entries_of(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<Vec<OutboxEntry>, EventStoreError> {
        let mut found = Vec::new();
        self.each_entry(|entry, _| {
            if entry.aggregate_type == aggregate_type && entry.aggregate_id == aggregate_id {
                found.push(entry);
            }
        })
        .await?;
        Ok(found)
    }

    /// The aggregate's events in the optimistic view after its confirmed ones: those of
    /// its pending and pushed entries, numbered on from `confirmed_version`.
    pub async fn pending_events(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        confirmed_version: u64,
    ) -> Result<Vec<(u64, NewEvent)>, EventStoreError> {
        let mut version = confirmed_version;
        let mut events = Vec::new();
        for entry in self.entries_of(aggregate_type, aggregate_id).await? {
            if matches!(entry.state, OutboxState::Parked { .. }) {
                continue;
            }
            for event in entry.events {
                version += 1;
                events.push((version, event));
            }
        }
        Ok(events)
    }

    /// Calls `visit` with every outbox entry and its stored value, in push order.
    async fn each_entry(
        &self,
        mut visit: impl FnMut(OutboxEntry, Bytes),
    ) -> Result<(), EventStoreError> {
        let mut range = KeyRange::between(entry_key(0)?, entry_key(u64::MAX)?);
        loop {
            let page = self
                .kv()
                .scan(&range, Direction::Forward, crate::kv::MAX_SCAN_ENTRIES)
                .await?;
            for (key, value) in page.iter() {
                visit(
                    OutboxEntry::decode(key, value)?,
                    Bytes::copy_from_slice(value),
                );
            }
            match page.last_key() {
                Some(last) if page.may_have_more(crate::kv::MAX_SCAN_ENTRIES) => {
                    range = range.after_page(last, Direction::Forward);
                }
                _ => return Ok(()),
            }
        }
    }
}

/// Other tabs kept changing the aggregate's outbox for all of [`ATTEMPTS`].
fn contended(aggregate_type: &str, aggregate_id: &str) -> EventStoreError {
    EventStoreError::Contended {
        aggregate_type: aggregate_type.to_owned(),
        aggregate_id: aggregate_id.to_owned(),
        attempts: ATTEMPTS as u32,
    }
}

/// A check that a key still holds what was read: `value`, or nothing.
fn same_as(value: Option<&Bytes>) -> Check {
    value.map_or(Check::Absent, |value| Check::Equals(value.clone()))
}
