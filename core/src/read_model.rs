//! Read models: what projections build, under their own keys (`'p' | name | key`, see
//! `docs/format.md`), written together with their checkpoint.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;

use crate::checkpoint::put_checkpoint;
use crate::envelope;
use crate::event_store::{EventStoreError, KvEventStore};
use crate::keys;
use crate::kv::{Check, Direction, ErasedKv, KeyRange, KvError, OrderedKv, WriteBatch};

/// The read model of one projection while a page of events is applied: reads see the
/// changes made so far, which are written with the page's checkpoint.
pub struct ReadModel<'a> {
    pub(crate) kv: &'a dyn ErasedKv,
    /// The key prefix of the read model in the engine.
    pub(crate) prefix: Bytes,
    /// By the projection's own keys.
    pub(crate) changes: BTreeMap<Bytes, Option<Bytes>>,
}

impl ReadModel<'_> {
    /// The value of `key` in this read model.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Bytes>, KvError> {
        if let Some(change) = self.changes.get(key) {
            Ok(change.clone())
        } else {
            let stored = [&self.prefix[..], key].concat();
            self.kv.get_boxed(&stored).await
        }
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: &[u8], value: impl Into<Bytes>) {
        self.changes
            .insert(Bytes::copy_from_slice(key), Some(value.into()));
    }

    /// Removes `key`.
    pub fn delete(&mut self, key: &[u8]) {
        self.changes.insert(Bytes::copy_from_slice(key), None);
    }

    /// At most `limit` entries of this read model whose keys start with `prefix` (all of
    /// them for an empty one), in key order, after the key `after` (from the first when
    /// `None`), as [`get`](Self::get) sees them: with the changes made so far. Page by
    /// calling again after the last key read.
    pub async fn entries(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, KvError> {
        let mut entries = Vec::new();
        // The last key passed, stored or changed; keys at or before it are done.
        let mut cursor = after
            .filter(|after| *after >= prefix)
            .map(Bytes::copy_from_slice);
        let stored_prefix = [&self.prefix[..], prefix].concat();
        while entries.len() < limit {
            let mut range = KeyRange::prefix(stored_prefix.clone());
            if let Some(cursor) = &cursor {
                let last = [&self.prefix[..], cursor].concat();
                range = range.after_page(&last, Direction::Forward);
            }
            let asked = limit - entries.len();
            let page = self
                .kv
                .scan_boxed(&range, Direction::Forward, asked)
                .await?;
            let stored: Vec<(&[u8], &[u8])> = page
                .iter()
                .map(|(key, value)| (key.get(self.prefix.len()..).unwrap_or_default(), value))
                .collect();
            let exhausted = !page.may_have_more(asked);
            // Changes up to the last stored key of this page (all of them once the stored
            // entries are exhausted): later ones merge with the next page.
            let lower = cursor
                .as_deref()
                .map_or(Bound::Included(prefix), Bound::Excluded);
            let upper = match stored.last() {
                Some((last, _)) if !exhausted => Bound::Included(*last),
                _ => Bound::Unbounded,
            };
            let mut changes = self
                .changes
                .range::<[u8], _>((lower, upper))
                .take_while(|(key, _)| key.starts_with(prefix))
                .peekable();
            let mut stored = stored.into_iter().peekable();
            while entries.len() < limit {
                // Which comes first: the next stored entry (Less) or the next change.
                let order = match (stored.peek(), changes.peek()) {
                    (Some((stored_key, _)), Some((changed_key, _))) => {
                        stored_key.cmp(&&changed_key[..])
                    }
                    (Some(_), None) => Ordering::Less,
                    (None, Some(_)) => Ordering::Greater,
                    (None, None) => break,
                };
                if order == Ordering::Equal {
                    // A change replaces the stored entry of its key.
                    stored.next();
                }
                let next = if order == Ordering::Less {
                    stored.next().map(|(key, value)| (key, Some(value)))
                } else {
                    changes
                        .next()
                        .map(|(key, change)| (&key[..], change.as_deref()))
                };
                let Some((key, value)) = next else {
                    break;
                };
                cursor = Some(Bytes::copy_from_slice(key));
                if let Some(value) = value {
                    entries.push((Bytes::copy_from_slice(key), Bytes::copy_from_slice(value)));
                }
            }
            if exhausted {
                break;
            }
        }
        Ok(entries)
    }
}

pub(crate) async fn read_model_is_empty(
    kv: &impl OrderedKv,
    prefix: &Bytes,
) -> Result<bool, KvError> {
    let range = KeyRange::prefix(prefix.clone());
    Ok(kv.scan(&range, Direction::Forward, 1).await?.is_empty())
}

impl<K: OrderedKv> KvEventStore<K> {
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

    /// The value of `key` in the read model of the projection `name`.
    pub async fn read_model_get(
        &self,
        name: &str,
        key: &[u8],
    ) -> Result<Option<Bytes>, EventStoreError> {
        let prefix = keys::read_model(name)?;
        Ok(self.kv().get(&[&prefix[..], key].concat()).await?)
    }

    /// At most `limit` entries of the read model of the projection `name`, in key order,
    /// after the key `after` (from the first when `None`); keys as the projection wrote
    /// them. Page by calling again after the last key read.
    pub async fn read_model_entries(
        &self,
        name: &str,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, EventStoreError> {
        let prefix = keys::read_model(name)?;
        let mut range = KeyRange::prefix(prefix.clone());
        if let Some(after) = after {
            let last = Bytes::from([&prefix[..], after].concat());
            range = range.after_page(&last, Direction::Forward);
        }
        let page = self.kv().scan(&range, Direction::Forward, limit).await?;
        Ok(page
            .iter()
            .map(|(key, value)| {
                let own = key.get(prefix.len()..).unwrap_or_default();
                (Bytes::copy_from_slice(own), Bytes::copy_from_slice(value))
            })
            .collect())
    }

    /// Deletes the projection `name`: its checkpoint first, then its read model, a page
    /// at a time. Interrupted, it leaves the projection [`ProjectionError::Orphaned`](crate::ProjectionError::Orphaned)
    /// until called again.
    pub async fn delete_projection(&self, name: &str) -> Result<(), EventStoreError> {
        self.delete_checkpoint(name).await?;
        let range = KeyRange::prefix(keys::read_model(name)?);
        loop {
            let page = self
                .kv()
                .scan(&range, Direction::Forward, usize::MAX)
                .await?;
            if page.is_empty() {
                return Ok(());
            }
            let mut batch = WriteBatch::new();
            let mut room = self.kv().limits().room();
            for (key, _) in page.iter() {
                if !room.admit(0, 1, key.len()) {
                    break;
                }
                batch.delete(Bytes::copy_from_slice(key));
            }
            self.kv().write(batch).await?;
        }
    }
}
