//! Checkpoints: where a named consumer of the global log is, stored in the same engine as
//! the events (key `'c'`, see `docs/format.md`).

use bytes::Bytes;

use crate::envelope;
use crate::event_store::{EventStoreError, KvEventStore, corrupt};
use crate::keys;
use crate::kv::{OrderedKv, WriteBatch};

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

    /// Refuses a checkpoint `name` at a `position` past the last event appended.
    pub(crate) async fn check_appended(
        &self,
        name: &str,
        position: u64,
    ) -> Result<(), EventStoreError> {
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
pub(crate) fn put_checkpoint(batch: &mut WriteBatch, key: Bytes, position: u64) {
    if position == 0 {
        batch.delete(key);
    } else {
        let value = envelope::encode_checkpoint(&key, position);
        batch.put(key, value);
    }
}
