//! Pulled pages: written at the server's positions, confirming outbox entries.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use super::stored::{Tip, cursor_key, entry_key, tip_key};
use super::{OutboxState, PullApplied, Replica, SYNC_CURSOR, same_as};
use crate::envelope::{self, EventHeader};
use crate::event_store::{EventStoreError, corrupt};
use crate::keys::{self, StreamKeys};
use crate::kv::{Check, OrderedKv, WriteBatch};
use crate::recorded::RecordedEvent;

impl<K: OrderedKv> Replica<K> {
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
                shape_version: event.shape_version,
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
