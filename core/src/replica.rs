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

use std::collections::{HashMap, HashSet};

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::codec::Codec;
use crate::envelope::{self, EventHeader, EventMetadata};
use crate::event_store::{EventStoreError, KvEventStore, NewEvent, corrupt, validate_events};
use crate::keys::{self, StreamKeys};
use crate::kv::{Check, Direction, KeyRange, KvError, OrderedKv, WriteBatch};
use crate::recorded::RecordedEvent;

/// The projection name the outbox's keys live under.
pub const OUTBOX: &str = "eventkv.outbox";
/// The checkpoint that holds how far the replica has pulled.
pub const SYNC_CURSOR: &str = "eventkv.sync";

const ENTRY: u8 = b'e';
const TIP: u8 = b't';
const NEXT: u8 = b'n';

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

/// The stored form of an outbox entry.
#[derive(Serialize, Deserialize)]
struct EntryRecord {
    aggregate_type: String,
    aggregate_id: String,
    expected_version: u64,
    events: Vec<EventRecord>,
    state: OutboxState,
}

#[derive(Serialize, Deserialize)]
struct EventRecord {
    event_id: Uuid,
    event_type: String,
    codec: u8,
    payload: Vec<u8>,
    correlation_id: Option<Uuid>,
    causation_id: Option<Uuid>,
}

/// An aggregate's optimistic version and how many of its entries are not yet confirmed
/// or parked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tip {
    version: u64,
    entries: u64,
}

impl Tip {
    fn encode(self) -> Bytes {
        let mut out = BytesMut::with_capacity(16);
        out.put_u64(self.version);
        out.put_u64(self.entries);
        out.freeze()
    }

    fn decode(key: &[u8], value: &[u8]) -> Result<Self, EventStoreError> {
        let (version, entries) = value
            .split_first_chunk::<8>()
            .and_then(|(version, rest)| Some((*version, *rest.first_chunk::<8>()?)))
            .ok_or_else(|| corrupt(key, "an outbox tip is not 16 bytes"))?;
        Ok(Tip {
            version: u64::from_be_bytes(version),
            entries: u64::from_be_bytes(entries),
        })
    }
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
    /// state.
    pub async fn outbox(
        &self,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, EventStoreError> {
        let range = KeyRange::between(entry_key(from_seq)?, entry_key(u64::MAX)?);
        let page = self.kv().scan(&range, Direction::Forward, limit).await?;
        page.iter()
            .map(|(key, value)| OutboxEntry::decode(key, value))
            .collect()
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

    /// Records that the server stored these entries, each `(seq, first_position,
    /// last_position)`, in as few batches as the engine takes. Entries already gone (a
    /// pull confirmed them) are left alone.
    pub async fn mark_pushed(&self, pushed: &[(u64, u64, u64)]) -> Result<(), EventStoreError> {
        let keys = pushed
            .iter()
            .map(|&(seq, _, _)| entry_key(seq))
            .collect::<Result<Vec<_>, _>>()?;
        let mut batch = WriteBatch::new();
        let mut room = self.kv().limits().room();
        for (chunk, places) in keys.chunks(256).zip(pushed.chunks(256)) {
            let found = self.kv().get_many(chunk).await?;
            for (key, value) in found.iter() {
                let Some(&(_, first_position, last_position)) = chunk
                    .iter()
                    .position(|wanted| wanted[..] == *key)
                    .map(|at| &places[at])
                else {
                    continue;
                };
                let mut record = EntryRecord::decode(key, value)?;
                record.state = OutboxState::Pushed {
                    first_position,
                    last_position,
                };
                let encoded = record.encode()?;
                if !room.admit(1, 1, 2 * key.len() + value.len() + encoded.len()) {
                    self.kv().write(std::mem::take(&mut batch)).await?;
                    room = self.kv().limits().room();
                    room.add(1, 1, 2 * key.len() + value.len() + encoded.len());
                }
                let key = Bytes::copy_from_slice(key);
                batch.check(key.clone(), Check::Equals(Bytes::copy_from_slice(value)));
                batch.put(key, encoded);
            }
        }
        if !batch.is_empty() {
            self.kv().write(batch).await?;
        }
        Ok(())
    }

    /// Sets aside every pending entry of the aggregate, with `reason`: they are not
    /// pushed again and leave the optimistic view, but stay in the outbox, reported,
    /// until [`discard`](Self::discard)ed. Returns their sequence numbers.
    pub async fn park(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        reason: &str,
    ) -> Result<Vec<u64>, EventStoreError> {
        self.replace_pending(aggregate_type, aggregate_id, None, Some(reason))
            .await
            .map(|(parked, _)| parked)
    }

    /// Replaces the aggregate's pending entries by one entry of `events` made on its
    /// confirmed version (a rebase: the command run again on the server's state), or
    /// drops them when `events` is empty. Returns the new entry, if any.
    pub async fn rebase(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        events: &[NewEvent],
    ) -> Result<Option<PendingAppend>, EventStoreError> {
        if !events.is_empty() {
            validate_events(events)?;
        }
        self.replace_pending(aggregate_type, aggregate_id, Some(events), None)
            .await
            .map(|(_, appended)| appended)
    }

    /// Parks (with `reason`) or replaces (with `events`) the aggregate's pending entries,
    /// in one batch checked against concurrent appends.
    async fn replace_pending(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        events: Option<&[NewEvent]>,
        reason: Option<&str>,
    ) -> Result<(Vec<u64>, Option<PendingAppend>), EventStoreError> {
        let stream = StreamKeys::new(aggregate_type, aggregate_id)?;
        let tip_key = tip_key(aggregate_type, aggregate_id)?;
        let next_key = outbox_key(&[NEXT])?;
        for _ in 0..ATTEMPTS {
            let mut batch = WriteBatch::new();
            let tip_value = self.kv().get(&tip_key).await?;
            batch.check(tip_key.clone(), same_as(tip_value.as_ref()));
            let mut replaced = Vec::new();
            let mut kept = 0;
            let mut failure = None;
            self.each_entry(|entry, value| {
                if entry.aggregate_type != aggregate_type || entry.aggregate_id != aggregate_id {
                    return;
                }
                if entry.state != OutboxState::Pending {
                    kept += u64::from(matches!(entry.state, OutboxState::Pushed { .. }));
                    return;
                }
                let key = match entry_key(entry.seq) {
                    Ok(key) => key,
                    Err(error) => return failure = Some(error),
                };
                batch.check(key.clone(), Check::Equals(value));
                match reason {
                    Some(reason) => {
                        let record = EntryRecord::of(
                            &entry,
                            OutboxState::Parked {
                                reason: reason.to_owned(),
                            },
                        );
                        match record.encode() {
                            Ok(value) => batch.put(key, value),
                            Err(error) => return failure = Some(error),
                        };
                    }
                    None => {
                        batch.delete(key);
                    }
                }
                replaced.push(entry.seq);
            })
            .await?;
            if let Some(error) = failure {
                return Err(error);
            }
            let confirmed = self.store.current_version_impl(&stream).await?;
            let mut appended = None;
            let mut tip = Tip {
                version: confirmed,
                entries: kept,
            };
            if let Some(events) = events.filter(|events| !events.is_empty()) {
                let (seq, next_value) = self.next_seq(&next_key).await?;
                batch.check(next_key.clone(), same_as(next_value.as_ref()));
                if confirmed > 0 {
                    batch.check(stream.event(confirmed), Check::Present);
                }
                batch.check(stream.event(confirmed + 1), Check::Absent);
                let record = EntryRecord::new(aggregate_type, aggregate_id, confirmed, events);
                batch.put(entry_key(seq)?, record.encode()?);
                batch.put(
                    next_key.clone(),
                    Bytes::copy_from_slice(&(seq + 1).to_be_bytes()),
                );
                let last_version = confirmed + events.len() as u64;
                tip = Tip {
                    version: last_version,
                    entries: kept + 1,
                };
                appended = Some(PendingAppend {
                    seq,
                    first_version: confirmed + 1,
                    last_version,
                });
            }
            if tip.entries == 0 {
                batch.delete(tip_key.clone());
            } else {
                batch.put(tip_key.clone(), tip.encode());
            }
            match self.kv().write(batch).await {
                Ok(()) => return Ok((replaced, appended)),
                Err(KvError::Conflict { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Err(contended(aggregate_type, aggregate_id))
    }

    /// Removes a parked entry (the application has dealt with it). Returns whether it
    /// was there.
    pub async fn discard(&self, seq: u64) -> Result<bool, EventStoreError> {
        let key = entry_key(seq)?;
        let Some(value) = self.kv().get(&key).await? else {
            return Ok(false);
        };
        let entry = OutboxEntry::decode(&key, &value)?;
        if !matches!(entry.state, OutboxState::Parked { .. }) {
            return Err(EventStoreError::InvalidInput(format!(
                "outbox entry {seq} is not parked: only parked entries are discarded"
            )));
        }
        let mut batch = WriteBatch::new();
        batch.check(key.clone(), Check::Equals(value));
        batch.delete(key);
        self.kv().write(batch).await?;
        Ok(true)
    }

    /// Writes a page of pulled events (in the server's order, at its versions and
    /// positions) and moves the cursor from `after` to `cursor`; outbox entries whose
    /// events came back are removed in the same batch. A page larger than the engine
    /// writes at once is written in several batches, each moving the cursor to its last
    /// event. `Conflict` when the cursor is not at `after` (another writer pulled).
    pub async fn apply_pulled(
        &self,
        after: u64,
        events: &[RecordedEvent],
        cursor: u64,
    ) -> Result<PullApplied, EventStoreError> {
        if cursor < after
            || events
                .iter()
                .any(|e| e.position <= after || e.position > cursor)
        {
            return Err(EventStoreError::InvalidInput(format!(
                "a pull after {after} up to {cursor} holds events outside those positions"
            )));
        }
        if events
            .windows(2)
            .any(|pair| pair[0].position >= pair[1].position)
        {
            return Err(EventStoreError::InvalidInput(
                "pulled events are not in position order".into(),
            ));
        }
        let mut applied = PullApplied::default();
        let mut from = after;
        let mut rest = events;
        loop {
            let take = self.chunk_len(rest);
            let (chunk, later) = rest.split_at(take);
            let through = match chunk.last() {
                Some(last) if !later.is_empty() => last.position,
                _ => cursor,
            };
            let confirmed = self.write_pulled(from, chunk, through).await?;
            applied.events += chunk.len();
            applied.confirmed.extend(confirmed);
            if later.is_empty() {
                return Ok(applied);
            }
            from = through;
            rest = later;
        }
    }

    /// How many of `events` one batch takes under the engine's limits (at least one).
    fn chunk_len(&self, events: &[RecordedEvent]) -> usize {
        let mut room = self.kv().limits().room();
        // The cursor, the head, and room for the outbox entries and tips it removes.
        room.add(2, 2, 256);
        let mut taken = 0;
        for event in events {
            let bytes = 128 + event.event_type.len() + event.payload.len();
            // An event, its log entry, and an outbox entry and tip it may remove.
            if !room.admit(2, 4, bytes) && taken > 0 {
                break;
            }
            taken += 1;
        }
        taken.max(1).min(events.len())
    }

    async fn write_pulled(
        &self,
        after: u64,
        events: &[RecordedEvent],
        through: u64,
    ) -> Result<Vec<u64>, EventStoreError> {
        let cursor_key = cursor_key()?;
        let current = self.kv().get(&cursor_key).await?;
        let at = match &current {
            Some(value) => envelope::decode_checkpoint(&cursor_key, value)
                .map_err(|e| corrupt(&cursor_key, e))?,
            None => 0,
        };
        if at != after {
            return Err(EventStoreError::Conflict {
                aggregate_type: SYNC_CURSOR.to_owned(),
                aggregate_id: String::new(),
                expected: after,
                actual: at,
            });
        }
        let mut batch = WriteBatch::new();
        batch.check(cursor_key.clone(), same_as(current.as_ref()));
        let mut ids = HashSet::new();
        let mut run: Option<(StreamKeys, u64, u64, u32)> = None;
        for event in events {
            let stream = StreamKeys::new(&event.aggregate_type, &event.aggregate_id)?;
            let key = stream.event(event.version);
            let header = EventHeader {
                codec: event.codec,
                position: event.position,
                event_id: event.event_id,
                timestamp: event.timestamp,
                event_type: &event.event_type,
                metadata: event.metadata,
            };
            // No check per event: the cursor's check says no one else wrote past it.
            let value = envelope::encode_event(&key, &header, &event.payload);
            batch.put(key, value);
            ids.insert(event.event_id);
            // Consecutive events of one stream at consecutive positions share a log entry.
            run = match run {
                Some((run_stream, first_version, last_position, count))
                    if run_stream == stream
                        && first_version + u64::from(count) == event.version
                        && last_position + 1 == event.position
                        && count < u32::MAX =>
                {
                    Some((run_stream, first_version, event.position, count + 1))
                }
                previous => {
                    if let Some(previous) = previous {
                        put_log_entry(&mut batch, &previous);
                    }
                    Some((stream, event.version, event.position, 1))
                }
            };
        }
        if let Some(last) = &run {
            put_log_entry(&mut batch, last);
        }
        if let Some(last) = events.last() {
            batch.put(keys::global_head(), envelope::encode_head(last.position));
        }
        batch.put(
            cursor_key.clone(),
            envelope::encode_checkpoint(&cursor_key, through),
        );
        let confirmed = self.confirm_entries(&mut batch, &ids).await?;
        self.kv().write(batch).await?;
        if !events.is_empty() {
            self.store.notify_appended();
        }
        Ok(confirmed)
    }

    /// Adds to `batch` the removal of the outbox entries whose first event is among
    /// `ids`, and their tips' updates; returns their sequence numbers.
    async fn confirm_entries(
        &self,
        batch: &mut WriteBatch,
        ids: &HashSet<Uuid>,
    ) -> Result<Vec<u64>, EventStoreError> {
        let mut confirmed = Vec::new();
        let mut per_aggregate: HashMap<(String, String), u64> = HashMap::new();
        let mut failure = None;
        self.each_entry(|entry, value| {
            let Some(first) = entry.events.first() else {
                return;
            };
            if !ids.contains(&first.event_id) || matches!(entry.state, OutboxState::Parked { .. }) {
                return;
            }
            match entry_key(entry.seq) {
                Ok(key) => {
                    batch.check(key.clone(), Check::Equals(value));
                    batch.delete(key);
                }
                Err(error) => return failure = Some(error),
            }
            confirmed.push(entry.seq);
            *per_aggregate
                .entry((entry.aggregate_type, entry.aggregate_id))
                .or_default() += 1;
        })
        .await?;
        if let Some(error) = failure {
            return Err(error);
        }
        for ((aggregate_type, aggregate_id), removed) in per_aggregate {
            let key = tip_key(&aggregate_type, &aggregate_id)?;
            let Some(value) = self.kv().get(&key).await? else {
                continue;
            };
            let tip = Tip::decode(&key, &value)?;
            batch.check(key.clone(), Check::Equals(value));
            match tip.entries.saturating_sub(removed) {
                0 => batch.delete(key),
                entries => batch.put(key, Tip { entries, ..tip }.encode()),
            };
        }
        Ok(confirmed)
    }
}

fn put_log_entry(
    batch: &mut WriteBatch,
    (stream, first_version, last_position, count): &(StreamKeys, u64, u64, u32),
) {
    let first_position = last_position + 1 - u64::from(*count);
    batch.put(
        keys::global_log(first_position),
        envelope::encode_log_entry(*count, &stream.event(*first_version)),
    );
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

fn outbox_key(suffix: &[u8]) -> Result<Bytes, EventStoreError> {
    let mut key = BytesMut::from(&keys::read_model(OUTBOX)?[..]);
    key.put_slice(suffix);
    Ok(key.freeze())
}

fn entry_key(seq: u64) -> Result<Bytes, EventStoreError> {
    let mut suffix = [ENTRY; 9];
    suffix[1..].copy_from_slice(&seq.to_be_bytes());
    outbox_key(&suffix)
}

fn tip_key(aggregate_type: &str, aggregate_id: &str) -> Result<Bytes, EventStoreError> {
    // The stream's key prefix names the aggregate unambiguously.
    let stream = keys::snapshot(aggregate_type, aggregate_id)?;
    let mut suffix = Vec::with_capacity(1 + stream.len());
    suffix.push(TIP);
    suffix.extend_from_slice(&stream[1..]);
    outbox_key(&suffix)
}

fn cursor_key() -> Result<Bytes, EventStoreError> {
    Ok(keys::checkpoint(SYNC_CURSOR)?)
}

fn be_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

impl EntryRecord {
    fn new(
        aggregate_type: &str,
        aggregate_id: &str,
        expected_version: u64,
        events: &[NewEvent],
    ) -> Self {
        EntryRecord {
            aggregate_type: aggregate_type.to_owned(),
            aggregate_id: aggregate_id.to_owned(),
            expected_version,
            events: events.iter().map(EventRecord::of).collect(),
            state: OutboxState::Pending,
        }
    }

    fn of(entry: &OutboxEntry, state: OutboxState) -> Self {
        EntryRecord {
            state,
            ..EntryRecord::new(
                &entry.aggregate_type,
                &entry.aggregate_id,
                entry.expected_version,
                &entry.events,
            )
        }
    }

    fn encode(&self) -> Result<Bytes, EventStoreError> {
        Codec::Bincode
            .encode(self)
            .map(Bytes::from)
            .map_err(|error| EventStoreError::InvalidInput(format!("an outbox entry: {error}")))
    }

    fn decode(key: &[u8], value: &[u8]) -> Result<Self, EventStoreError> {
        Codec::Bincode
            .decode(value)
            .map_err(|error| corrupt(key, format!("an outbox entry: {error}")))
    }
}

impl EventRecord {
    fn of(event: &NewEvent) -> Self {
        EventRecord {
            event_id: event.event_id,
            event_type: event.event_type.clone(),
            codec: event.codec.tag(),
            payload: event.payload.to_vec(),
            correlation_id: event.metadata.correlation_id,
            causation_id: event.metadata.causation_id,
        }
    }
}

impl OutboxEntry {
    fn decode(key: &[u8], value: &[u8]) -> Result<Self, EventStoreError> {
        let seq = key
            .len()
            .checked_sub(8)
            .and_then(|at| be_u64(&key[at..]))
            .ok_or_else(|| corrupt(key, "not an outbox entry key"))?;
        let record = EntryRecord::decode(key, value)?;
        let events = record
            .events
            .into_iter()
            .map(|event| {
                Ok(NewEvent {
                    event_id: event.event_id,
                    event_type: event.event_type,
                    codec: Codec::from_tag(event.codec).map_err(|e| corrupt(key, e))?,
                    payload: Bytes::from(event.payload),
                    metadata: EventMetadata {
                        correlation_id: event.correlation_id,
                        causation_id: event.causation_id,
                    },
                })
            })
            .collect::<Result<_, EventStoreError>>()?;
        Ok(OutboxEntry {
            seq,
            aggregate_type: record.aggregate_type,
            aggregate_id: record.aggregate_id,
            expected_version: record.expected_version,
            events,
            state: record.state,
        })
    }
}
