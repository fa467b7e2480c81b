//! Snapshots: an aggregate's encoded state at a version, a disposable cache of its events.

use std::future::Future;

use bytes::Bytes;
use tracing::Instrument;

use crate::codec::{Codec, CodecError};
use crate::envelope::{self, FormatError, SnapshotFields};
use crate::error::ErrorKind;
use crate::keys::{self, InvalidName};
use crate::kv::{
    Check, Direction, DisplayKey, KeyRange, KvError, MaybeSend, MaybeSync, OrderedKv, WriteBatch,
};
use crate::timestamp::Timestamp;
use uuid::Uuid;

use crate::backoff::Backoff;

/// How many snapshots one scan page of a bulk operation reads.
const PAGE: usize = 256;

/// An aggregate's state at a version, encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The aggregate id.
    pub aggregate_id: String,
    /// The aggregate type.
    pub aggregate_type: String,
    /// The version of the last event folded into `state`.
    pub version: u64,
    /// The id of the event at `version`: the snapshot applies only to a stream whose
    /// event at `version` has this id. `None` for snapshots of format 1, which are
    /// checked by version alone.
    pub anchor_event_id: Option<Uuid>,
    /// The aggregate's `SCHEMA_VERSION` when the state was encoded.
    pub schema_version: u32,
    /// How `state` is encoded.
    pub codec: Codec,
    /// The encoded state.
    pub state: Bytes,
    /// When the snapshot was made.
    pub created_at: Timestamp,
}

/// An error of the snapshot store.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotStoreError {
    /// An aggregate type or id that cannot be stored.
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    /// A snapshot at version 0 (no events folded) is not stored.
    #[error("snapshot of {aggregate_type} {aggregate_id:?} has version 0")]
    VersionZero {
        /// The aggregate type.
        aggregate_type: String,
        /// The aggregate id.
        aggregate_id: String,
    },
    /// A stored snapshot names a codec this eventkv does not know.
    #[error("snapshot at key {key}: {source}")]
    UnknownCodec {
        /// The key, printable.
        key: String,
        /// The codec error.
        source: CodecError,
    },
    /// A stored snapshot does not follow the format.
    #[error("corrupt snapshot at key {key}: {source}")]
    Corrupt {
        /// The key, printable.
        key: String,
        /// What is wrong with it.
        source: FormatError,
    },
    /// Concurrent writers kept changing the same snapshot, for longer than
    /// [`crate::backoff::MAX_WAIT`].
    #[error("snapshot at key {key} kept changing under {attempts} attempts")]
    Contended {
        /// The key, printable.
        key: String,
        /// How many attempts were made.
        attempts: u32,
    },
    /// The engine failed.
    #[error(transparent)]
    Kv(#[from] KvError),
}

impl SnapshotStoreError {
    /// What kind of failure it is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SnapshotStoreError::InvalidName(_) | SnapshotStoreError::VersionZero { .. } => {
                ErrorKind::InvalidInput
            }
            SnapshotStoreError::UnknownCodec { .. } => ErrorKind::Unsupported,
            SnapshotStoreError::Corrupt { source, .. } => source.kind(),
            SnapshotStoreError::Contended { .. } => ErrorKind::Contended,
            SnapshotStoreError::Kv(error) => error.kind(),
        }
    }
}

crate::__error_class!(SnapshotStoreError);

fn format_error(key: &[u8], source: FormatError) -> SnapshotStoreError {
    let key = DisplayKey(key).to_string();
    match source {
        FormatError::Codec(source) => SnapshotStoreError::UnknownCodec { key, source },
        source => SnapshotStoreError::Corrupt { key, source },
    }
}

/// Stores snapshots. [`KvSnapshotStore`] implements it on any [`OrderedKv`].
pub trait SnapshotStore: MaybeSend + MaybeSync {
    /// Stores `snapshot`, replacing the aggregate's snapshot unless that one is newer:
    /// an older version never replaces a newer one. Returns whether it was stored.
    fn save_snapshot(
        &self,
        snapshot: &Snapshot,
    ) -> impl Future<Output = Result<bool, SnapshotStoreError>> + MaybeSend;

    /// The aggregate's snapshot, if it has one.
    fn get_snapshot(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> impl Future<Output = Result<Option<Snapshot>, SnapshotStoreError>> + MaybeSend;

    /// The newest snapshot of the aggregate at or below `version`: the latest, or one kept
    /// as history (see [`KvSnapshotStore::with_history`]). The default reads only the
    /// latest.
    fn get_snapshot_at(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        version: u64,
    ) -> impl Future<Output = Result<Option<Snapshot>, SnapshotStoreError>> + MaybeSend {
        async move {
            let latest = self.get_snapshot(aggregate_type, aggregate_id).await?;
            Ok(latest.filter(|snapshot| snapshot.version <= version))
        }
    }

    /// Deletes the aggregate's snapshot if it is still `snapshot` (same version, anchor
    /// and creation time): a snapshot found unusable is dropped without racing a newer
    /// one. Returns whether it was deleted.
    fn discard_snapshot(
        &self,
        snapshot: &Snapshot,
    ) -> impl Future<Output = Result<bool, SnapshotStoreError>> + MaybeSend;

    /// Deletes the aggregate's snapshot; returns whether there was one.
    fn delete_snapshot(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> impl Future<Output = Result<bool, SnapshotStoreError>> + MaybeSend;

    /// Whether the aggregate has a snapshot.
    fn snapshot_exists(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> impl Future<Output = Result<bool, SnapshotStoreError>> + MaybeSend;

    /// Deletes every snapshot of `aggregate_type`, or, with `schema_version_below`, those
    /// whose schema version is lower. Returns how many were deleted.
    fn delete_snapshots_by_type(
        &self,
        aggregate_type: &str,
        schema_version_below: Option<u32>,
    ) -> impl Future<Output = Result<u64, SnapshotStoreError>> + MaybeSend;
}

/// The snapshot store on an ordered key-value engine.
#[derive(Clone, Debug)]
pub struct KvSnapshotStore<K> {
    kv: K,
    /// How many snapshots of each aggregate it keeps: the latest and `keep - 1` older.
    keep: usize,
}

impl<K: OrderedKv> KvSnapshotStore<K> {
    /// A snapshot store on `kv`, keeping one snapshot per aggregate.
    pub fn new(kv: K) -> Self {
        KvSnapshotStore { kv, keep: 1 }
    }

    /// The same store, keeping the newest `keep` snapshots of each aggregate (at least 1):
    /// a snapshot that replaces the latest moves it to the aggregate's history (under its
    /// own key, `docs/format.md`), and the history beyond `keep - 1` is deleted in the same
    /// batch. [`get_snapshot_at`](SnapshotStore::get_snapshot_at) reads the history, and
    /// so does [`Repository::load_at`](crate::Repository::load_at).
    #[must_use]
    pub fn with_history(mut self, keep: usize) -> Self {
        self.keep = keep.max(1);
        self
    }

    /// Deletes the older snapshots of every aggregate (of `aggregate_type`, if given)
    /// beyond the newest `keep` (the latest counts as one; `keep` 0 is 1). Returns how
    /// many were deleted.
    pub async fn prune_history(
        &self,
        aggregate_type: Option<&str>,
        keep: usize,
    ) -> Result<u64, SnapshotStoreError> {
        let range = match aggregate_type {
            Some(name) => keys::snapshots_of_type(name)?,
            None => keys::all_snapshots(),
        };
        // Keys come in aggregate order, each aggregate's latest first and then its older
        // snapshots oldest first: count them from the newest by reading each run whole.
        let older_kept = keep.max(1) - 1;
        let mut run: Vec<Bytes> = Vec::new();
        let mut run_owner: Option<Bytes> = None;
        let mut doomed: Vec<Bytes> = Vec::new();
        let mut range = range;
        loop {
            let page = self.kv.scan(&range, Direction::Forward, PAGE).await?;
            for (key, _) in page.iter() {
                let Some((aggregate_type, aggregate_id, version)) = keys::snapshot_parts(key)
                else {
                    continue;
                };
                let owner = keys::snapshot(aggregate_type, aggregate_id)?;
                if run_owner.as_ref() != Some(&owner) {
                    let cut = run.len().saturating_sub(older_kept);
                    doomed.extend(run.drain(..cut));
                    run.clear();
                    run_owner = Some(owner);
                }
                if version.is_some() {
                    run.push(Bytes::copy_from_slice(key));
                }
            }
            match page.last_key() {
                Some(last) if page.may_have_more(PAGE) => {
                    range = range.after_page(last, Direction::Forward);
                }
                _ => break,
            }
        }
        let cut = run.len().saturating_sub(older_kept);
        doomed.extend(run.drain(..cut));
        let deleted = doomed.len() as u64;
        for chunk in doomed.chunks(PAGE) {
            let mut batch = WriteBatch::new();
            for key in chunk {
                batch.delete(key.clone());
            }
            self.kv.write(batch).await?;
        }
        Ok(deleted)
    }

    /// The engine underneath.
    pub fn kv(&self) -> &K {
        &self.kv
    }

    /// Deletes every snapshot of every type; returns how many.
    pub async fn clear(&self) -> Result<u64, SnapshotStoreError> {
        self.delete_where(keys::all_snapshots(), |_, _| Ok(true))
            .await
    }

    /// How many snapshots are stored, of every type.
    pub async fn count(&self) -> Result<u64, SnapshotStoreError> {
        let mut range = keys::all_snapshots();
        let mut count = 0;
        loop {
            let page = self.kv.scan(&range, Direction::Forward, PAGE).await?;
            count += page.len() as u64;
            match page.last_key() {
                Some(last) if page.may_have_more(PAGE) => {
                    range = range.after_page(last, Direction::Forward);
                }
                _ => return Ok(count),
            }
        }
    }

    async fn save_impl(&self, snapshot: &Snapshot) -> Result<bool, SnapshotStoreError> {
        let key = keys::snapshot(&snapshot.aggregate_type, &snapshot.aggregate_id)?;
        if snapshot.version == 0 {
            return Err(SnapshotStoreError::VersionZero {
                aggregate_type: snapshot.aggregate_type.clone(),
                aggregate_id: snapshot.aggregate_id.clone(),
            });
        }
        let value = envelope::encode_snapshot(
            &key,
            &SnapshotFields {
                codec: snapshot.codec,
                version: snapshot.version,
                schema_version: snapshot.schema_version,
                created_at: snapshot.created_at,
                anchor: snapshot.anchor_event_id,
                state: snapshot.state.clone(),
            },
        );
        let mut backoff = Backoff::new();
        loop {
            let mut batch = WriteBatch::new();
            match self.kv.get(&key).await? {
                // A value we cannot read is replaced: a snapshot is only a cache.
                Some(current) => match envelope::snapshot_header(&key, &current) {
                    Ok((stored, _)) if stored > snapshot.version => return Ok(false),
                    Ok((stored, _)) if stored < snapshot.version && self.keep > 1 => {
                        self.archive(snapshot, &current, &mut batch).await?;
                        batch.check(key.clone(), Check::Equals(current))
                    }
                    _ => batch.check(key.clone(), Check::Equals(current)),
                },
                None => batch.check(key.clone(), Check::Absent),
            };
            batch.put(key.clone(), value.clone());
            match self.kv.write(batch).await {
                Ok(()) => return Ok(true),
                Err(KvError::Conflict { .. }) if backoff.pause().await => {}
                Err(KvError::Conflict { .. }) => {
                    return Err(SnapshotStoreError::Contended {
                        key: DisplayKey(&key).to_string(),
                        attempts: backoff.attempts(),
                    });
                }
                Err(other) => return Err(other.into()),
            }
        }
    }

    /// Adds to `batch` the move of the `current` latest snapshot of `replacing`'s aggregate
    /// to its history, and the deletes that keep that history at `keep - 1`.
    async fn archive(
        &self,
        replacing: &Snapshot,
        current: &Bytes,
        batch: &mut WriteBatch,
    ) -> Result<(), SnapshotStoreError> {
        let (aggregate_type, aggregate_id) = (&replacing.aggregate_type, &replacing.aggregate_id);
        let key = keys::snapshot(aggregate_type, aggregate_id)?;
        // An unreadable latest snapshot is not worth keeping.
        let Ok(fields) = envelope::decode_snapshot(&key, current) else {
            return Ok(());
        };
        let older_key = keys::older_snapshot(aggregate_type, aggregate_id, fields.version)?;
        batch.put(
            older_key.clone(),
            envelope::encode_snapshot(&older_key, &fields),
        );
        // The newest `keep - 2` older ones stay beside it.
        let range = keys::older_snapshots(aggregate_type, aggregate_id, u64::MAX)?;
        let kept = self.keep - 2;
        let page = self.kv.scan(&range, Direction::Reverse, PAGE).await?;
        for (older, _) in page
            .iter()
            .filter(|(older, _)| **older != older_key[..])
            .skip(kept)
        {
            batch.delete(Bytes::copy_from_slice(older));
        }
        Ok(())
    }

    /// The snapshot stored under `key`, of the aggregate it names.
    fn decode_at(key: &[u8], value: &Bytes) -> Result<Snapshot, SnapshotStoreError> {
        let (aggregate_type, aggregate_id) =
            keys::snapshot_names(key).ok_or_else(|| SnapshotStoreError::Corrupt {
                key: DisplayKey(key).to_string(),
                source: FormatError::Invalid {
                    field: "snapshot key",
                },
            })?;
        let fields = envelope::decode_snapshot(key, value).map_err(|e| format_error(key, e))?;
        Ok(Snapshot {
            aggregate_id: aggregate_id.to_owned(),
            aggregate_type: aggregate_type.to_owned(),
            version: fields.version,
            anchor_event_id: fields.anchor,
            schema_version: fields.schema_version,
            codec: fields.codec,
            state: fields.state,
            created_at: fields.created_at,
        })
    }

    async fn get_at_impl(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        version: u64,
    ) -> Result<Option<Snapshot>, SnapshotStoreError> {
        if let Some(latest) = self.get_impl(aggregate_type, aggregate_id).await?
            && latest.version <= version
        {
            return Ok(Some(latest));
        }
        let range = keys::older_snapshots(aggregate_type, aggregate_id, version)?;
        let page = self.kv.scan(&range, Direction::Reverse, 1).await?;
        match page.iter().next() {
            Some((key, value)) => {
                let snapshot = Self::decode_at(key, &Bytes::copy_from_slice(value))?;
                Ok(Some(snapshot).filter(|snapshot| snapshot.version <= version))
            }
            None => Ok(None),
        }
    }

    async fn get_impl(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<Option<Snapshot>, SnapshotStoreError> {
        let key = keys::snapshot(aggregate_type, aggregate_id)?;
        let Some(value) = self.kv.get(&key).await? else {
            return Ok(None);
        };
        Self::decode_at(&key, &value).map(Some)
    }

    async fn discard_impl(&self, snapshot: &Snapshot) -> Result<bool, SnapshotStoreError> {
        let key = keys::snapshot(&snapshot.aggregate_type, &snapshot.aggregate_id)?;
        let Some(current) = self.kv.get(&key).await? else {
            return Ok(false);
        };
        let same = envelope::decode_snapshot(&key, &current).is_ok_and(|stored| {
            stored.version == snapshot.version
                && stored.anchor == snapshot.anchor_event_id
                && stored.created_at == snapshot.created_at
        });
        if !same {
            return Ok(false);
        }
        let mut batch = WriteBatch::new();
        batch.check(key.clone(), Check::Equals(current)).delete(key);
        match self.kv.write(batch).await {
            Ok(()) => Ok(true),
            Err(KvError::Conflict { .. }) => Ok(false),
            Err(other) => Err(other.into()),
        }
    }

    async fn delete_impl(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<bool, SnapshotStoreError> {
        let key = keys::snapshot(aggregate_type, aggregate_id)?;
        // Its history first: a snapshot found without a latest is never used by loads.
        let mut range = keys::older_snapshots(aggregate_type, aggregate_id, u64::MAX)?;
        loop {
            let page = self.kv.scan(&range, Direction::Forward, PAGE).await?;
            let mut batch = WriteBatch::new();
            for (older, _) in page.iter() {
                batch.delete(Bytes::copy_from_slice(older));
            }
            if !page.is_empty() {
                self.kv.write(batch).await?;
            }
            match page.last_key() {
                Some(last) if page.may_have_more(PAGE) => {
                    range = range.after_page(last, Direction::Forward);
                }
                _ => break,
            }
        }
        let mut batch = WriteBatch::new();
        batch.check(key.clone(), Check::Present).delete(key);
        match self.kv.write(batch).await {
            Ok(()) => Ok(true),
            Err(KvError::Conflict { .. }) => Ok(false),
            Err(other) => Err(other.into()),
        }
    }

    /// Deletes the snapshots in `range` for which `doomed` holds, page by page. Each
    /// delete checks the value it judged, so a snapshot replaced meanwhile is judged again.
    async fn delete_where(
        &self,
        range: KeyRange,
        doomed: impl Fn(&[u8], &[u8]) -> Result<bool, FormatError>,
    ) -> Result<u64, SnapshotStoreError> {
        let mut range = range;
        let mut deleted = 0;
        let mut backoff = Backoff::new();
        loop {
            let page = self.kv.scan(&range, Direction::Forward, PAGE).await?;
            let mut batch = WriteBatch::new();
            let mut doomed_count = 0;
            let mut room = self.kv.limits().room();
            // The last key judged: a batch full before the page ends goes on after it.
            let mut judged = None;
            for (key, value) in page.iter() {
                // An unreadable snapshot has no schema version below anything: keep it.
                let is_doomed = doomed(key, value).unwrap_or(false);
                if is_doomed && !room.admit(1, 1, 2 * key.len() + value.len()) {
                    break;
                }
                judged = Some(key);
                if is_doomed {
                    let key = Bytes::copy_from_slice(key);
                    batch.check(key.clone(), Check::Equals(Bytes::copy_from_slice(value)));
                    batch.delete(key);
                    doomed_count += 1;
                }
            }
            if doomed_count > 0 {
                match self.kv.write(batch).await {
                    Ok(()) => deleted += doomed_count,
                    Err(KvError::Conflict { key }) if backoff.pause().await => {
                        tracing::debug!(key = %DisplayKey(&key), "snapshot changed during bulk delete; rereading the page");
                        continue;
                    }
                    Err(KvError::Conflict { key }) => {
                        return Err(SnapshotStoreError::Contended {
                            key: DisplayKey(&key).to_string(),
                            attempts: backoff.attempts(),
                        });
                    }
                    Err(other) => return Err(other.into()),
                }
            }
            match judged {
                Some(last) if judged != page.last_key() || page.may_have_more(PAGE) => {
                    range = range.after_page(last, Direction::Forward);
                }
                _ => return Ok(deleted),
            }
        }
    }
}

impl<K: OrderedKv> SnapshotStore for KvSnapshotStore<K> {
    fn save_snapshot(
        &self,
        snapshot: &Snapshot,
    ) -> impl Future<Output = Result<bool, SnapshotStoreError>> + MaybeSend {
        let span = tracing::debug_span!(
            "save_snapshot",
            aggregate_type = %snapshot.aggregate_type,
            aggregate_id = %snapshot.aggregate_id,
            version = snapshot.version,
        );
        self.save_impl(snapshot).instrument(span)
    }

    fn get_snapshot(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> impl Future<Output = Result<Option<Snapshot>, SnapshotStoreError>> + MaybeSend {
        self.get_impl(aggregate_type, aggregate_id)
    }

    fn get_snapshot_at(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        version: u64,
    ) -> impl Future<Output = Result<Option<Snapshot>, SnapshotStoreError>> + MaybeSend {
        self.get_at_impl(aggregate_type, aggregate_id, version)
    }

    fn discard_snapshot(
        &self,
        snapshot: &Snapshot,
    ) -> impl Future<Output = Result<bool, SnapshotStoreError>> + MaybeSend {
        self.discard_impl(snapshot)
    }

    fn delete_snapshot(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> impl Future<Output = Result<bool, SnapshotStoreError>> + MaybeSend {
        self.delete_impl(aggregate_type, aggregate_id)
    }

    async fn snapshot_exists(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<bool, SnapshotStoreError> {
        let key = keys::snapshot(aggregate_type, aggregate_id)?;
        Ok(self.kv.get(&key).await?.is_some())
    }

    fn delete_snapshots_by_type(
        &self,
        aggregate_type: &str,
        schema_version_below: Option<u32>,
    ) -> impl Future<Output = Result<u64, SnapshotStoreError>> + MaybeSend {
        let span = tracing::debug_span!(
            "delete_snapshots_by_type",
            aggregate_type,
            ?schema_version_below
        );
        async move {
            let range = keys::snapshots_of_type(aggregate_type)?;
            self.delete_where(range, |key, value| match schema_version_below {
                None => Ok(true),
                Some(below) => Ok(envelope::snapshot_header(key, value)?.1 < below),
            })
            .await
        }
        .instrument(span)
    }
}
