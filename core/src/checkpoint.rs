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
        Ok(self.checkpoint_value(&key).await?.0)
    }

    /// Records that the consumer `name` handled every event up to `position`. The last
    /// save wins; a position past the last event appended is refused.
    pub async fn save_checkpoint(&self, name: &str, position: u64) -> Result<(), EventStoreError> {
        let key = keys::checkpoint(name)?;
        let head = self.last_position().await?;
        if position > head {
            return Err(EventStoreError::InvalidInput(format!(
                "checkpoint {name:?} at position {position}: the last event is at {head}"
            )));
        }
        let mut batch = WriteBatch::new();
        batch.put(key.clone(), envelope::encode_checkpoint(&key, position));
        Ok(self.kv().write(batch).await?)
    }

    /// Forgets the checkpoint `name`: its consumer starts over from position 1 (to rebuild
    /// what it made, e.g. after its code changed).
    pub async fn delete_checkpoint(&self, name: &str) -> Result<(), EventStoreError> {
        let mut batch = WriteBatch::new();
        batch.delete(keys::checkpoint(name)?);
        Ok(self.kv().write(batch).await?)
    }

    /// The position stored under checkpoint key `key` (0 when absent), with the value as
    /// stored, for a write that must find it unchanged.
    pub(crate) async fn checkpoint_value(
        &self,
        key: &[u8],
    ) -> Result<(u64, Option<Bytes>), EventStoreError> {
        let Some(value) = self.kv().get(key).await? else {
            return Ok((0, None));
        };
        let position = envelope::decode_checkpoint(key, &value).map_err(|e| corrupt(key, e))?;
        Ok((position, Some(value)))
    }
}
