//! Checkpoints: where a named consumer of the global log is, stored in the same engine as
//! the events (key `'c'`, see `docs/format.md`).

use bytes::Bytes;

use crate::envelope;
use crate::event_store::{EventStoreError, KvEventStore, corrupt};
use crate::keys;
use crate::kv::{Check, OrderedKv, WriteBatch};

impl<K: OrderedKv> KvEventStore<K> {
    /// The position of the last event the consumer `name` handled: 0 when it has handled
    /// none (or its checkpoint was deleted). It goes on from the next position.
    pub async fn checkpoint(&self, name: &str) -> Result<u64, EventStoreError> {
        let key = keys::checkpoint(name)?;
        match self.kv().get(&key).await? {
            Some(value) => envelope::decode_checkpoint(&key, &value).map_err(|e| corrupt(&key, e)),
            None => Ok(0),
        }
    }

    /// Records that the consumer `name` handled every event up to `position` (0 deletes
    /// the checkpoint). The last save wins; a position past the last event appended is
    /// refused.
    pub async fn save_checkpoint(&self, name: &str, position: u64) -> Result<(), EventStoreError> {
        let key = keys::checkpoint(name)?;
        self.check_appended(name, position).await?;
        let mut batch = WriteBatch::new();
        put_checkpoint(&mut batch, key, position);
        Ok(self.kv().write(batch).await?)
    }

    /// Moves the checkpoint `name` from `from` (0: none) to `to` and applies `changes` to
    /// the read model of the same name, in one atomic batch: all of it or, when the
    /// checkpoint is no longer at `from` (another writer moved it), nothing
    /// ([`KvError::Conflict`](crate::KvError::Conflict) on the checkpoint's key). A change
    /// of `None` deletes its key. The keys are the read model's own (see
    /// [`read_model_get`](Self::read_model_get)). A `to` past the last event is refused.
    pub async fn commit_read_model(
        &self,
        name: &str,
        from: u64,
        to: u64,
        changes: impl IntoIterator<Item = (Bytes, Option<Bytes>)>,
    ) -> Result<(), EventStoreError> {
        self.check_appended(name, to).await?;
        self.write_read_model(name, from, to, changes).await
    }

    /// [`commit_read_model`](Self::commit_read_model) for a `to` read from the log, which
    /// needs no check.
    pub(crate) async fn write_read_model(
        &self,
        name: &str,
        from: u64,
        to: u64,
        changes: impl IntoIterator<Item = (Bytes, Option<Bytes>)>,
    ) -> Result<(), EventStoreError> {
        let key = keys::checkpoint(name)?;
        let prefix = keys::read_model(name)?;
        let mut batch = WriteBatch::new();
        let stored = match from {
            0 => Check::Absent,
            from => Check::Equals(envelope::encode_checkpoint(&key, from)),
        };
        batch.check(key.clone(), stored);
        for (own, change) in changes {
            let model_key = Bytes::from([&prefix[..], &own[..]].concat());
            match change {
                Some(value) => batch.put(model_key, value),
                None => batch.delete(model_key),
            };
        }
        put_checkpoint(&mut batch, key, to);
        Ok(self.kv().write(batch).await?)
    }

    /// Refuses a checkpoint `name` at a `position` past the last event appended.
    async fn check_appended(&self, name: &str, position: u64) -> Result<(), EventStoreError> {
        if position == 0 {
            return Ok(());
        }
        let head = self.last_position().await?;
        if position > head {
            return Err(EventStoreError::InvalidInput(format!(
                "checkpoint {name:?} at position {position}: the last event is at {head}"
            )));
        }
        Ok(())
    }

    /// Forgets the checkpoint `name`: its consumer starts over from position 1 (to rebuild
    /// what it made, e.g. after its code changed).
    pub async fn delete_checkpoint(&self, name: &str) -> Result<(), EventStoreError> {
        let mut batch = WriteBatch::new();
        batch.delete(keys::checkpoint(name)?);
        Ok(self.kv().write(batch).await?)
    }
}

/// Adds to `batch` the checkpoint under `key` at `position` (deleted at 0).
fn put_checkpoint(batch: &mut WriteBatch, key: Bytes, position: u64) {
    if position == 0 {
        batch.delete(key);
    } else {
        let value = envelope::encode_checkpoint(&key, position);
        batch.put(key, value);
    }
}
