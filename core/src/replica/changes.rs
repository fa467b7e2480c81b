//! Changes to outbox entries: pushed, parked, rebased, discarded.

use bytes::Bytes;

use super::stored::{EntryRecord, NEXT, Tip, entry_key, outbox_key, tip_key};
use super::{ATTEMPTS, OutboxEntry, OutboxState, PendingAppend, Replica, contended, same_as};
use crate::event_store::{EventStoreError, NewEvent, validate_events};
use crate::keys::StreamKeys;
use crate::kv::{Check, KvError, OrderedKv, WriteBatch};

impl<K: OrderedKv> Replica<K> {
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
}
