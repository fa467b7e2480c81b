//! The repository: modes, thresholds, snapshot fallbacks.

use std::sync::Arc;

use bytes::Bytes;

use super::aggregates::{Account, AccountEvent, AccountV2, Document, DocumentEvent, deposits};
use super::{EngineFactory, fresh, yield_now};
use crate::aggregate::Aggregate;
use crate::codec::Codec;
use crate::command::CommandError;
use crate::repository::KvRepository;
use std::sync::atomic::Ordering;

use uuid::Uuid;

use super::counted::Counted;
use super::faults::Faulty;
use crate::error::ErrorKind;
use crate::event_store::{EventStore, EventStoreError, KvEventStore};
use crate::kv::{OrderedKv, WriteBatch};
use crate::repository::{
    Repository, RepositoryFailure, RepositoryMetrics, SnapshotMiss, SnapshotMode, SnapshotOutcome,
    SnapshotReadFailure,
};
use crate::snapshot::{KvSnapshotStore, Snapshot, SnapshotStore};
use crate::timestamp::Timestamp;

type Repo<A, K> = KvRepository<A, Arc<K>>;

fn repo_on<A: Aggregate, K: OrderedKv + 'static>(kv: &Arc<K>) -> Repo<A, K> {
    Repository::on(kv.clone())
}

async fn setup<F: EngineFactory>(factory: &F) -> (Repo<Account, F::Kv>, Arc<F::Kv>) {
    let kv = fresh(factory).await;
    (repo_on(&kv), kv)
}

/// Saves an opened account with `deposits` deposits of 1, 2, 3, ..., one save per `per_save`.
async fn account_with<
    A: Aggregate<Event = AccountEvent>,
    E: EventStore + 'static,
    S: SnapshotStore + 'static,
>(
    repo: &Repository<A, E, S>,
    id: &str,
    deposits_count: u64,
    per_save: u64,
) {
    let mut handle = repo.create_new(id);
    handle.record(AccountEvent::Opened { owner: id.into() });
    for amount in 1..=deposits_count {
        handle.record(AccountEvent::Deposited { amount });
        if amount % per_save == 0 {
            repo.save(&mut handle).await.expect("save");
        }
    }
    repo.save(&mut handle).await.expect("save");
}

fn expected_account(id: &str, deposits_count: u64) -> Account {
    Account {
        owner: id.into(),
        balance: deposits_count * (deposits_count + 1) / 2,
        transactions: deposits_count,
    }
}

async fn snapshot_version<K: OrderedKv + 'static>(
    repo: &Repo<Account, K>,
    id: &str,
) -> Option<u64> {
    let snapshot = repo
        .snapshot_store()
        .get_snapshot(Account::TYPE, id)
        .await
        .expect("get snapshot");
    snapshot.map(|s| s.version)
}

/// Edits the stored snapshot's bytes, then recomputes its checksum, as if the snapshot
/// had been written so.
async fn overwrite_snapshot<K: OrderedKv>(
    kv: &K,
    aggregate_type: &str,
    id: &str,
    edit: impl FnOnce(&mut Vec<u8>),
) {
    overwrite_snapshot_raw(kv, aggregate_type, id, |value| {
        edit(value);
        let key = crate::keys::snapshot(aggregate_type, id).expect("key");
        crate::envelope::reseal(&key, value);
    })
    .await;
}

/// Edits the stored snapshot's bytes, checksum included.
async fn overwrite_snapshot_raw<K: OrderedKv>(
    kv: &K,
    aggregate_type: &str,
    id: &str,
    edit: impl FnOnce(&mut Vec<u8>),
) {
    let key = crate::keys::snapshot(aggregate_type, id).expect("key");
    let mut value = kv
        .get(&key)
        .await
        .expect("get")
        .expect("a snapshot exists")
        .to_vec();
    edit(&mut value);
    let mut batch = WriteBatch::new();
    batch.put(key, value);
    kv.write(batch).await.expect("overwrite");
}

pub async fn not_found<F: EngineFactory>(factory: &F) {
    let (repo, _) = setup(factory).await;
    match repo.load("ghost").await {
        Err(error) if matches!(error.failure(), RepositoryFailure::NotFound) => {
            assert_eq!(
                (error.aggregate_type(), error.aggregate_id()),
                ("Account", "ghost")
            );
            assert_eq!(error.kind(), ErrorKind::NotFound);
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    let mut handle = repo.create_new("ghost");
    assert!(matches!(
        repo.create_snapshot(&handle)
            .await
            .map_err(|e| e.failure().clone()),
        Err(RepositoryFailure::NothingCommitted)
    ));
    let outcome = repo
        .save(&mut handle)
        .await
        .expect("saving nothing is fine");
    assert_eq!(outcome.version, 0);
    assert!(matches!(
        repo.load("ghost").await.map_err(|e| e.kind()),
        Err(ErrorKind::NotFound)
    ));
}

pub async fn save_and_load<F: EngineFactory>(factory: &F) {
    let (repo, _) = setup(factory).await;
    account_with(&repo, "acc", 40, 7).await;
    let handle = repo.load("acc").await.expect("load");
    assert_eq!(handle.version(), 41);
    assert_eq!(handle.state(), &expected_account("acc", 40));
    assert_eq!(handle.load_info().snapshot_version, None);
    assert_eq!(handle.load_info().events_replayed, 41);
    assert!(handle.pending().is_empty());
    assert_eq!(repo.metrics().full_replays, 1);
    assert_eq!(repo.snapshot_threshold(), None);
    assert_eq!(
        snapshot_version(&repo, "acc").await,
        None,
        "no threshold, no snapshot"
    );
}

pub async fn threshold_by_crossing<F: EngineFactory>(factory: &F) {
    let (repo, _) = setup(factory).await;
    let repo = repo.with_snapshot_threshold(10);
    let mut handle = repo.create_new("acc");
    handle.record(AccountEvent::Opened {
        owner: "acc".into(),
    });
    deposits(1..=24).for_each(|e| handle.record(e));
    let outcome = repo
        .save(&mut handle)
        .await
        .expect("save 25 events at once");
    assert_eq!(
        (outcome.version, outcome.snapshot),
        (25, SnapshotOutcome::Stored)
    );
    assert_eq!(
        snapshot_version(&repo, "acc").await,
        Some(25),
        "one save across 10 and 20 snapshots"
    );
    deposits(25..=27).for_each(|e| handle.record(e));
    let outcome = repo.save(&mut handle).await.expect("save 3 more");
    assert_eq!(
        (outcome.version, outcome.snapshot),
        (28, SnapshotOutcome::NotDue)
    );
    assert_eq!(
        snapshot_version(&repo, "acc").await,
        Some(25),
        "28 crosses no multiple of 10"
    );
    deposits(28..=29).for_each(|e| handle.record(e));
    repo.save(&mut handle).await.expect("save 2 more");
    assert_eq!(
        snapshot_version(&repo, "acc").await,
        Some(30),
        "30 is a multiple of 10"
    );
    let loaded = repo.load("acc").await.expect("load");
    assert_eq!(loaded.load_info().snapshot_version, Some(30));
    assert_eq!(loaded.load_info().events_replayed, 0);
    assert_eq!(loaded.state(), &expected_account("acc", 29));
    assert_eq!(repo.metrics().snapshots_written, 2);
}

pub async fn sync_mode<F: EngineFactory>(factory: &F) {
    let (repo, _) = setup(factory).await;
    let repo = repo
        .with_snapshot_threshold(10)
        .with_snapshot_mode(SnapshotMode::Sync);
    account_with(&repo, "acc", 14, 1).await;
    assert_eq!(
        snapshot_version(&repo, "acc").await,
        Some(10),
        "stored before save returned"
    );
    let loaded = repo.load("acc").await.expect("load");
    assert_eq!(loaded.load_info().snapshot_version, Some(10));
    assert_eq!(loaded.load_info().events_replayed, 5);
    assert_eq!(loaded.state(), &expected_account("acc", 14));
    assert_eq!(repo.metrics().loads_from_snapshot, 1);
}

pub async fn background_mode_snapshots_committed_state<F: EngineFactory>(factory: &F) {
    let (repo, _) = setup(factory).await;
    let repo = repo
        .with_snapshot_threshold(10)
        .with_snapshot_mode(SnapshotMode::Background);
    let mut handle = repo.create_new("acc");
    handle.record(AccountEvent::Opened {
        owner: "acc".into(),
    });
    deposits(1..=9).for_each(|e| handle.record(e));
    let outcome = repo.save(&mut handle).await.expect("save");
    assert_eq!(outcome.version, 10);
    let committed = handle.state().clone();
    deposits(100..=104).for_each(|e| handle.record(e));
    repo.await_pending_snapshots().await;
    assert_eq!(repo.pending_snapshot_count(), 0);
    let snapshot = repo
        .snapshot_store()
        .get_snapshot(Account::TYPE, "acc")
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(snapshot.version, 10);
    let state: Account = snapshot.codec.decode(&snapshot.state).expect("decode");
    assert_eq!(
        state, committed,
        "the snapshot holds the committed state, not later recordings"
    );
    assert_eq!(handle.pending().len(), 5);
    assert_eq!(repo.metrics().snapshots_written, 1);
}

pub async fn manual_mode<F: EngineFactory>(factory: &F) {
    let (repo, _) = setup(factory).await;
    let repo = repo
        .with_snapshot_threshold(5)
        .with_snapshot_mode(SnapshotMode::Manual);
    account_with(&repo, "acc", 20, 1).await;
    assert_eq!(
        snapshot_version(&repo, "acc").await,
        None,
        "manual mode snapshots nothing by itself"
    );
    let mut handle = repo.load("acc").await.expect("load");
    assert!(repo.create_snapshot(&handle).await.expect("create"));
    assert_eq!(snapshot_version(&repo, "acc").await, Some(21));
    handle.record(AccountEvent::Withdrawn { amount: 1 });
    match repo
        .create_snapshot(&handle)
        .await
        .map_err(|e| e.failure().clone())
    {
        Err(RepositoryFailure::UncommittedEvents {
            count: 1,
            version: 21,
        }) => {}
        other => panic!("expected UncommittedEvents, got {other:?}"),
    }
    assert_eq!(snapshot_version(&repo, "acc").await, Some(21));
}

pub async fn schema_mismatch<F: EngineFactory>(factory: &F) {
    let kv = fresh(factory).await;
    let v1: Repo<Account, F::Kv> = repo_on(&kv).with_snapshot_threshold(10);
    account_with(&v1, "acc", 19, 100).await;
    assert_eq!(snapshot_version(&v1, "acc").await, Some(20));
    let v2: Repo<AccountV2, F::Kv> = repo_on(&kv).with_snapshot_threshold(10);
    let mut handle = v2.load("acc").await.expect("load ignores the v1 snapshot");
    assert_eq!(handle.load_info().snapshot_version, None);
    assert_eq!(handle.state().balance_cents, 190 * 100);
    assert_eq!(v2.metrics().misses(SnapshotMiss::SchemaMismatch), 1);
    deposits(1..=10).for_each(|e| handle.record(e));
    v2.save(&mut handle).await.expect("save");
    let snapshot = v2
        .snapshot_store()
        .get_snapshot("Account", "acc")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!((snapshot.version, snapshot.schema_version), (30, 2));
    let loaded = v2.load("acc").await.expect("load");
    assert_eq!(loaded.load_info().snapshot_version, Some(30));
    assert_eq!(loaded.state().balance_cents, 245 * 100);
    assert_eq!(
        v2.snapshot_store()
            .delete_snapshots_by_type("Account", Some(2))
            .await
            .expect("delete"),
        0
    );
    assert_eq!(
        v2.snapshot_store()
            .delete_snapshots_by_type("Account", Some(3))
            .await
            .expect("delete"),
        1
    );
}

pub async fn corrupt_snapshot<F: EngineFactory>(factory: &F) {
    let (repo, kv) = setup(factory).await;
    let repo = repo.with_snapshot_threshold(10);
    account_with(&repo, "acc", 14, 100).await;
    overwrite_snapshot(&*kv, "Account", "acc", |value| {
        let state_at = value.len() - 8;
        value.truncate(state_at);
        value.extend_from_slice(&[0xff; 9]);
        value.extend_from_slice(&[0; 4]);
    })
    .await;
    let handle = repo
        .load("acc")
        .await
        .expect("a corrupt state falls back to replay");
    assert_eq!(handle.state(), &expected_account("acc", 14));
    assert_eq!(handle.load_info().snapshot_version, None);
    assert_eq!(repo.metrics().misses(SnapshotMiss::Undecodable), 1);
    overwrite_snapshot(&*kv, "Account", "acc", |value| value.truncate(9)).await;
    let handle = repo
        .load("acc")
        .await
        .expect("a cut envelope falls back to replay");
    assert_eq!(handle.state(), &expected_account("acc", 14));
    assert_eq!(repo.metrics().misses(SnapshotMiss::Undecodable), 2);
}

pub async fn unknown_codec<F: EngineFactory>(factory: &F) {
    let (repo, kv) = setup(factory).await;
    let repo = repo.with_snapshot_threshold(10);
    account_with(&repo, "acc", 12, 100).await;
    overwrite_snapshot(&*kv, "Account", "acc", |value| value[1] = 99).await;
    let handle = repo
        .load("acc")
        .await
        .expect("an unknown codec falls back to replay");
    assert_eq!(handle.state(), &expected_account("acc", 12));
    assert_eq!(handle.load_info().events_replayed, 13);
    assert_eq!(repo.metrics().misses(SnapshotMiss::UnknownCodec), 1);
}

pub async fn snapshot_ahead_of_stream<F: EngineFactory>(factory: &F) {
    let (repo, _) = setup(factory).await;
    let repo = repo.with_snapshot_threshold(25);
    account_with(&repo, "acc", 9, 100).await;
    let bogus = Account {
        owner: "Mallory".into(),
        balance: 1_000_000,
        transactions: 49,
    };
    for anchor_event_id in [None, Some(Uuid::new_v4())] {
        let ahead = Snapshot {
            aggregate_id: "acc".into(),
            aggregate_type: "Account".into(),
            version: 50,
            anchor_event_id,
            schema_version: Account::SCHEMA_VERSION,
            codec: Codec::Bincode,
            state: Bytes::from(Codec::Bincode.encode(&bogus).expect("encode")),
            created_at: Timestamp::now(),
        };
        repo.snapshot_store()
            .save_snapshot(&ahead)
            .await
            .expect("save");
        let handle = repo
            .load("acc")
            .await
            .expect("a snapshot ahead of the stream falls back to replay");
        assert_eq!(handle.version(), 10);
        assert_eq!(handle.state(), &expected_account("acc", 9));
        assert_eq!(
            snapshot_version(&repo, "acc").await,
            None,
            "the snapshot ahead is deleted"
        );
    }
    assert_eq!(repo.metrics().misses(SnapshotMiss::AheadOfStream), 2);
    // It neither blocks the next snapshot nor is applied once the stream passes it.
    let mut handle = repo.load("acc").await.expect("load");
    for amount in 10..=60 {
        handle.record(AccountEvent::Deposited { amount });
    }
    let outcome = repo.save(&mut handle).await.expect("save");
    assert_eq!(outcome.snapshot, SnapshotOutcome::Stored);
    let loaded = repo.load("acc").await.expect("load");
    assert_eq!(loaded.state(), &expected_account("acc", 60));
    assert_eq!(loaded.load_info().snapshot_version, Some(61));
}

/// A snapshot of another history (another store's aggregate of the same id, a restored
/// backup) is never applied, and is replaced.
pub async fn foreign_snapshot_is_not_applied<F: EngineFactory>(factory: &F) {
    let (repo, kv) = setup(factory).await;
    let repo = repo.with_snapshot_threshold(10);
    account_with(&repo, "acc", 14, 100).await;
    let (other_repo, other_kv) = setup(factory).await;
    let other_repo = other_repo.with_snapshot_threshold(10);
    let mut other = other_repo.create_new("acc");
    other.record(AccountEvent::Opened {
        owner: "acc".into(),
    });
    for _ in 1..=14 {
        other.record(AccountEvent::Deposited { amount: 1000 });
    }
    other_repo.save(&mut other).await.expect("save");
    assert_eq!(snapshot_version(&other_repo, "acc").await, Some(15));
    // The other store's snapshot, byte for byte, lands in this one.
    let key = crate::keys::snapshot("Account", "acc").expect("key");
    let foreign = other_kv.get(&key).await.expect("get").expect("stored");
    let mut batch = WriteBatch::new();
    batch.put(key, foreign);
    kv.write(batch).await.expect("copy");

    let handle = repo.load("acc").await.expect("load");
    assert_eq!(handle.state(), &expected_account("acc", 14));
    assert_eq!(handle.load_info().snapshot_version, None);
    assert_eq!(repo.metrics().misses(SnapshotMiss::ForeignHistory), 1);
    assert_eq!(snapshot_version(&repo, "acc").await, None, "deleted");
    assert!(repo.create_snapshot(&handle).await.expect("snapshot"));
    let handle = repo.load("acc").await.expect("load");
    assert_eq!(handle.load_info().snapshot_version, Some(15));
    assert_eq!(handle.state(), &expected_account("acc", 14));
}

/// Flips each byte of a stored snapshot in turn: the load always returns the true state
/// and counts a miss.
pub async fn flipped_snapshot_bytes_are_never_applied<F: EngineFactory>(factory: &F) {
    let (repo, kv) = setup(factory).await;
    let repo = repo.with_snapshot_threshold(10);
    account_with(&repo, "acc", 260, 100).await;
    let key = crate::keys::snapshot("Account", "acc").expect("key");
    let original = kv.get(&key).await.expect("get").expect("stored");
    let expected = expected_account("acc", 260);
    for at in 0..original.len() {
        let mut flipped = original.to_vec();
        flipped[at] ^= 0x01;
        let mut batch = WriteBatch::new();
        batch.put(key.clone(), flipped);
        kv.write(batch).await.expect("overwrite");
        let handle = repo.load("acc").await.expect("load");
        assert_eq!(handle.state(), &expected, "flip at byte {at}");
        assert_eq!(
            handle.load_info().snapshot_version,
            None,
            "flip at byte {at}"
        );
    }
    let metrics = repo.metrics();
    assert_eq!(metrics.full_replays, original.len() as u64);
    assert_eq!(
        metrics.misses(SnapshotMiss::ChecksumMismatch) + metrics.misses(SnapshotMiss::Undecodable),
        original.len() as u64
    );
    // The next snapshot replaces the damaged one.
    let handle = repo.load("acc").await.expect("load");
    assert!(repo.create_snapshot(&handle).await.expect("snapshot"));
    let handle = repo.load("acc").await.expect("load");
    assert_eq!(handle.load_info().snapshot_version, Some(261));
}

/// A save whose commit acknowledgement is lost reports an ambiguous error; saving the
/// same handle again succeeds without writing its events twice.
pub async fn retried_save_is_idempotent<F: EngineFactory>(factory: &F) {
    let kv = Arc::new(Faulty::new(factory.create().await));
    let repo: Repo<Account, Faulty<F::Kv>> = repo_on(&kv);
    let mut handle = repo.create_new("acc");
    handle.record(AccountEvent::Opened {
        owner: "acc".into(),
    });
    repo.save(&mut handle).await.expect("save");
    handle.record(AccountEvent::Deposited { amount: 5 });
    handle.record(AccountEvent::Deposited { amount: 6 });
    let ids = handle.pending_ids().to_vec();
    kv.lose_next_ack.store(true, Ordering::SeqCst);
    let error = repo
        .save(&mut handle)
        .await
        .expect_err("lost acknowledgement");
    assert!(error.is_ambiguous(), "{error}");
    assert_eq!(handle.pending_ids(), ids, "the events keep their ids");
    let outcome = repo.save(&mut handle).await.expect("retry succeeds");
    assert_eq!(outcome.version, 3);
    assert_eq!(handle.version(), 3);
    let stream = repo
        .event_store()
        .read_stream("Account", "acc", 1, u64::MAX, 100)
        .await
        .expect("read");
    assert_eq!(stream.len(), 3, "nothing written twice");
    let log = repo.event_store().read_all(1, 100).await.expect("read all");
    assert_eq!(log.len(), 3);
    let loaded = repo.load("acc").await.expect("load");
    assert_eq!(loaded.state().balance, 11);
    assert_eq!(loaded.last_event_id(), ids.last().copied());
}

/// A snapshot store that cannot be read is counted apart from bad data, and can be made
/// to fail the load.
pub async fn unreadable_snapshot_store<F: EngineFactory>(factory: &F) {
    let events = fresh(factory).await;
    let snapshots = Arc::new(Faulty::new(factory.create().await));
    let repo = Repository::<Account, _, _>::new(
        KvEventStore::new(events),
        KvSnapshotStore::new(snapshots.clone()),
    )
    .with_snapshot_threshold(5);
    account_with(&repo, "acc", 7, 100).await;
    snapshots.fail_reads.store(true, Ordering::SeqCst);
    let handle = repo.load("acc").await.expect("replays by default");
    assert_eq!(handle.state(), &expected_account("acc", 7));
    let metrics = repo.metrics();
    assert_eq!(metrics.misses(SnapshotMiss::Unreadable), 1);
    assert_eq!(metrics.misses(SnapshotMiss::Undecodable), 0);
    let strict = repo
        .clone()
        .with_snapshot_read_failure(SnapshotReadFailure::FailLoad);
    match strict.load("acc").await {
        Err(error) => match error.failure() {
            RepositoryFailure::SnapshotUnavailable(source) => {
                assert_eq!(error.aggregate_id(), "acc");
                assert!(source.to_string().contains("injected"), "{source}");
                assert!(error.is_retryable(), "the engine was unavailable: {error}");
            }
            other => panic!("expected SnapshotUnavailable, got {other:?}"),
        },
        other => panic!("expected SnapshotUnavailable, got {other:?}"),
    }
    snapshots.fail_reads.store(false, Ordering::SeqCst);
    let handle = strict.load("acc").await.expect("load");
    assert_eq!(handle.load_info().snapshot_version, Some(8));
}

/// An id that cannot be stored is the caller's error, and counts no snapshot miss.
pub async fn invalid_id_counts_no_miss<F: EngineFactory>(factory: &F) {
    let (repo, _) = setup(factory).await;
    for id in [String::new(), "x".repeat(crate::keys::MAX_NAME_LEN + 1)] {
        match repo.load(&id).await {
            Err(error)
                if matches!(
                    error.failure(),
                    RepositoryFailure::EventStore(EventStoreError::InvalidName(_))
                ) => {}
            other => panic!("expected InvalidName, got {other:?}"),
        }
    }
    assert_eq!(repo.metrics(), RepositoryMetrics::default());
}

pub async fn json_fallback<F: EngineFactory>(factory: &F) {
    let kv = fresh(factory).await;
    let repo: Repo<Document, F::Kv> = repo_on(&kv).with_snapshot_threshold(2);
    let mut handle = repo.create_new("doc");
    let value = serde_json::json!({"nested": [1, "two", {"three": null}], "n": 1.5});
    handle.record(DocumentEvent::Set {
        field: "a".into(),
        value: value.clone(),
    });
    handle.record(DocumentEvent::Set {
        field: "b".into(),
        value: serde_json::json!(true),
    });
    let outcome = repo.save(&mut handle).await.expect("save");
    assert_eq!(outcome.snapshot, SnapshotOutcome::Stored);
    let snapshot = repo
        .snapshot_store()
        .get_snapshot("Document", "doc")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        snapshot.codec,
        Codec::Json,
        "bincode cannot round-trip serde_json::Value: JSON is used"
    );
    let loaded = repo.load("doc").await.expect("load");
    assert_eq!(loaded.load_info().snapshot_version, Some(2));
    assert_eq!(loaded.state(), handle.state());
    assert_eq!(loaded.state().fields.get("a"), Some(&value));
}

pub async fn conflicting_saves<F: EngineFactory>(factory: &F) {
    let (repo, _) = setup(factory).await;
    account_with(&repo, "acc", 3, 100).await;
    let mut first = repo.load("acc").await.expect("load");
    let mut second = repo.load("acc").await.expect("load");
    first.record(AccountEvent::Deposited { amount: 10 });
    second.record(AccountEvent::Withdrawn { amount: 1 });
    repo.save(&mut first).await.expect("first save wins");
    match repo
        .save(&mut second)
        .await
        .map_err(|e| e.failure().clone())
    {
        Err(RepositoryFailure::Conflict {
            expected: 4,
            actual: 5,
        }) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(second.pending().len(), 1, "a refused save keeps its events");
    assert_eq!(second.version(), 4);
    let mut created = repo.create_new("acc");
    created.record(AccountEvent::Opened {
        owner: "again".into(),
    });
    assert!(matches!(
        repo.save(&mut created)
            .await
            .map_err(|e| e.failure().clone()),
        Err(RepositoryFailure::Conflict { expected: 0, .. })
    ));
    let loaded = repo.load("acc").await.expect("load");
    assert_eq!(loaded.state().balance, 16);
}

pub async fn stores_on_different_engines<F: EngineFactory>(factory: &F) {
    let events_kv = fresh(factory).await;
    let snapshots_kv = fresh(factory).await;
    let repo = Repository::<Account, _, _>::new(
        KvEventStore::new(events_kv.clone()),
        KvSnapshotStore::new(snapshots_kv.clone()),
    )
    .with_snapshot_threshold(10);
    account_with(&repo, "acc", 24, 5).await;
    let snapshots_only = KvSnapshotStore::new(snapshots_kv);
    assert!(
        snapshots_only
            .snapshot_exists("Account", "acc")
            .await
            .expect("exists")
    );
    assert_eq!(
        KvSnapshotStore::new(events_kv)
            .count()
            .await
            .expect("count"),
        0
    );
    let loaded = repo.load("acc").await.expect("load");
    // Saves land at versions 6, 11, 16, 21 and 25: 11 and 21 cross multiples of 10.
    assert_eq!(loaded.load_info().snapshot_version, Some(21));
    assert_eq!(loaded.state(), &expected_account("acc", 24));
}

pub async fn bincode_events<F: EngineFactory>(factory: &F) {
    let (repo, _) = setup(factory).await;
    let repo = repo
        .with_event_codec(Codec::Bincode)
        .with_snapshot_codec(Codec::Json)
        .with_snapshot_threshold(10);
    account_with(&repo, "acc", 15, 4).await;
    let events = repo
        .event_store()
        .read_stream("Account", "acc", 1, u64::MAX, 100)
        .await
        .expect("read");
    assert!(events.iter().all(|e| e.codec() == Codec::Bincode));
    let snapshot = repo
        .snapshot_store()
        .get_snapshot("Account", "acc")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(snapshot.codec, Codec::Json);
    let json_repo: Repo<Account, _> = Repository::new(
        KvEventStore::new(repo.event_store().kv().clone()),
        KvSnapshotStore::new(repo.snapshot_store().kv().clone()),
    );
    let loaded = json_repo
        .load("acc")
        .await
        .expect("each event names its codec");
    assert_eq!(loaded.state(), &expected_account("acc", 15));
}

pub async fn paged_replay<F: EngineFactory>(factory: &F) {
    let (repo, _) = setup(factory).await;
    let repo = repo.with_replay_page_size(7).with_snapshot_threshold(50);
    account_with(&repo, "acc", 120, 13).await;
    let loaded = repo.load("acc").await.expect("load");
    // Saves land at versions 14, 27, ..., 105, 118 and 121: 53 and 105 cross multiples of 50.
    assert_eq!(loaded.load_info().snapshot_version, Some(105));
    assert_eq!(loaded.load_info().events_replayed, 16);
    assert_eq!(loaded.state(), &expected_account("acc", 120));
    repo.snapshot_store()
        .delete_snapshot("Account", "acc")
        .await
        .expect("delete");
    let loaded = repo.load("acc").await.expect("load");
    assert_eq!(loaded.load_info().events_replayed, 121);
    assert_eq!(loaded.state(), &expected_account("acc", 120));
}

/// `execute` loads (or creates), decides and saves; when other writers save first it
/// decides again on the state they left, so no deposit is lost; a refused command
/// writes nothing.
pub async fn commands_retry_on_conflict<F: EngineFactory>(factory: &F) {
    // Counted: every write takes a turn of the scheduler first, so commands interleave.
    let kv = Arc::new(Counted::new(fresh(factory).await));
    let repo: Repo<Account, Counted<Arc<F::Kv>>> = Repository::on(kv);
    let fresh_one = repo.load_or_create("new").await.expect("load or create");
    assert_eq!(
        (fresh_one.version(), fresh_one.state()),
        (0, &Account::default())
    );

    const WRITERS: u64 = 8;
    const EACH: u64 = 5;
    let writer = |writer: u64| {
        let repo = repo.clone();
        async move {
            let mut decisions = 0u64;
            for i in 0..EACH {
                let amount = writer * 100 + i;
                repo.execute("shared", |_: &Account| {
                    decisions += 1;
                    Ok::<_, String>(vec![AccountEvent::Deposited { amount }])
                })
                .await
                .expect("command");
                yield_now().await;
            }
            decisions
        }
    };
    let decisions: u64 = futures_util::future::join_all((0..WRITERS).map(writer))
        .await
        .into_iter()
        .sum();
    let account = repo.load("shared").await.expect("load");
    assert_eq!(
        account.version(),
        WRITERS * EACH,
        "every command saved once"
    );
    let expected: u64 = (0..WRITERS)
        .flat_map(|writer| (0..EACH).map(move |i| writer * 100 + i))
        .sum();
    assert_eq!(account.state().balance, expected, "no deposit lost");
    assert!(
        decisions > WRITERS * EACH,
        "concurrent commands must have decided again after conflicts"
    );

    let refused = repo
        .execute("shared", |state: &Account| {
            if state.balance < 1_000_000 {
                Err("insufficient funds")
            } else {
                Ok(vec![AccountEvent::Withdrawn { amount: 1_000_000 }])
            }
        })
        .await;
    assert!(
        matches!(refused, Err(CommandError::Refused("insufficient funds"))),
        "{refused:?}"
    );
    let after = repo.load("shared").await.expect("load");
    assert_eq!(
        after.version(),
        WRITERS * EACH,
        "a refused command writes nothing"
    );
}

/// A command whose save landed but was reported ambiguous saves the same events again,
/// and is answered where they are: it decides once, also when its events are more than a
/// page of the engine.
pub async fn a_command_whose_save_landed_unconfirmed_decides_once<F: EngineFactory>(factory: &F) {
    const EVENTS: u64 = crate::kv::MAX_SCAN_ENTRIES as u64 + 1;
    let kv = Arc::new(Faulty::new(factory.create().await));
    let repo: Repo<Account, Faulty<F::Kv>> = repo_on(&kv);
    kv.lose_next_ack.store(true, Ordering::SeqCst);
    let mut decisions = 0;
    let saved = repo
        .execute("acc", |_: &Account| {
            decisions += 1;
            Ok::<_, String>(
                (1..=EVENTS)
                    .map(|_| AccountEvent::Deposited { amount: 1 })
                    .collect(),
            )
        })
        .await
        .expect("the command is answered");
    assert!(
        !kv.lose_next_ack.load(Ordering::SeqCst),
        "the first save's acknowledgement was lost"
    );
    assert_eq!(decisions, 1, "decided once");
    assert_eq!(saved.version(), EVENTS);
    let loaded = repo.load("acc").await.expect("load");
    assert_eq!(
        (loaded.version(), loaded.state().balance),
        (EVENTS, EVENTS),
        "the events are stored once"
    );
}
