//! Snapshots with a history: the newest N kept, state at a past version, load-time and
//! maintenance snapshots.

use std::sync::Arc;

use futures_util::future::join_all;

use super::aggregates::{Account, AccountEvent, deposits};
use super::{EngineFactory, fresh};
use crate::aggregate::Aggregate;
use crate::error::ErrorKind;
use crate::event_store::KvEventStore;
use crate::kv::OrderedKv;
use crate::repository::{Repository, RepositoryFailure, SnapshotMode, Staleness};
use crate::snapshot::{KvSnapshotStore, Snapshot, SnapshotStore};

type Repo<K> = Repository<Account, KvEventStore<Arc<K>>, KvSnapshotStore<Arc<K>>>;

fn account_repo<K: OrderedKv + 'static>(kv: &Arc<K>, keep: usize) -> Repo<K> {
    Repository::new(
        KvEventStore::new(kv.clone()),
        KvSnapshotStore::new(kv.clone()).with_history(keep),
    )
}

/// The events of account `id` as saved by [`seed`]: opened, then deposits 1, 2, 3, ….
fn history(events: u64) -> Vec<AccountEvent> {
    let mut all = vec![AccountEvent::Opened {
        owner: "Ada".into(),
    }];
    all.extend(deposits(1..=events.saturating_sub(1)));
    all
}

/// Saves `events` events of account `id`, `per_save` a save.
async fn seed<K: OrderedKv + 'static>(repo: &Repo<K>, id: &str, events: u64, per_save: usize) {
    let mut handle = repo.create_new(id);
    for event in history(events) {
        handle.record(event);
        if handle.pending().len() == per_save {
            repo.save(&mut handle).await.expect("save");
        }
    }
    if !handle.pending().is_empty() {
        repo.save(&mut handle).await.expect("save");
    }
}

fn fold(events: &[AccountEvent]) -> Account {
    let mut account = Account::default();
    for event in events {
        account.apply(event);
    }
    account
}

/// `load_at` every version of a 1,000-event stream with a snapshot every 100 equals a
/// replay to that version, from the nearest snapshot at or below it; a version the
/// stream does not hold is `InvalidInput`.
pub async fn load_at_every_version_equals_a_replay<F: EngineFactory>(factory: &F) {
    let kv = fresh(factory).await;
    let repo = account_repo(&kv, 10)
        .with_snapshot_threshold(100)
        .with_snapshot_mode(SnapshotMode::Sync);
    seed(&repo, "a", 1000, 50).await;
    let events = history(1000);
    let mut state = Account::default();
    for (version, event) in (1..).zip(&events) {
        state.apply(event);
        let loaded = repo.load_at("a", version).await.expect("load_at");
        assert_eq!(loaded.version(), version);
        assert_eq!(loaded.state(), &state, "version {version}");
        let nearest = (version / 100) * 100;
        assert_eq!(
            loaded.load_info().snapshot_version,
            (nearest > 0).then_some(nearest),
            "version {version}"
        );
        assert_eq!(loaded.load_info().events_replayed, version - nearest);
    }
    for version in [0, 1001] {
        let error = repo.load_at("a", version).await.expect_err("out of range");
        assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
        assert!(
            matches!(
                error.failure(),
                RepositoryFailure::VersionOutOfRange { head: 1000, .. }
            ),
            "{error}"
        );
    }
    let missing = repo.load_at("nobody", 1).await.expect_err("no events");
    assert_eq!(missing.kind(), ErrorKind::NotFound);
    // The latest load is unchanged by it all.
    let latest = repo.load("a").await.expect("load");
    assert_eq!(latest.state(), &fold(&events));
    assert_eq!(latest.load_info().snapshot_version, Some(1000));
}

fn snapshot(id: &str, version: u64) -> Snapshot {
    Snapshot {
        aggregate_id: id.into(),
        aggregate_type: "Account".into(),
        version,
        anchor_event_id: None,
        schema_version: 1,
        codec: crate::codec::Codec::Json,
        state: bytes::Bytes::from(format!("{version}")),
        created_at: crate::timestamp::Timestamp::from_micros(version as i64),
    }
}

/// A store keeping N snapshots keeps the newest N of each aggregate; older ones are read
/// by `get_snapshot_at`, pruned by `prune_history`, deleted with the aggregate's and by
/// type; a store keeping one (the default) keeps none older.
pub async fn snapshot_history_keeps_the_newest_n<F: EngineFactory>(factory: &F) {
    let kv = fresh(factory).await;
    let store = KvSnapshotStore::new(kv.clone()).with_history(3);
    for version in [10, 20, 30, 40, 50] {
        assert!(
            store
                .save_snapshot(&snapshot("a", version))
                .await
                .expect("save")
        );
        assert!(
            store
                .save_snapshot(&snapshot("b", version))
                .await
                .expect("save")
        );
    }
    // An older one never replaces the latest, nor joins the history.
    assert!(!store.save_snapshot(&snapshot("a", 45)).await.expect("save"));
    let at = |version| {
        let store = store.clone();
        async move {
            store
                .get_snapshot_at("Account", "a", version)
                .await
                .expect("get")
                .map(|s| s.version)
        }
    };
    assert_eq!(at(u64::MAX).await, Some(50));
    assert_eq!(at(49).await, Some(40));
    assert_eq!(at(39).await, Some(30));
    assert_eq!(at(29).await, None, "only the newest 3 are kept");
    let found = store
        .get_snapshot_at("Account", "a", 40)
        .await
        .expect("get");
    assert_eq!(found.expect("kept").state, bytes::Bytes::from("40"));
    assert_eq!(store.count().await.expect("count"), 6);
    assert_eq!(
        store
            .prune_history(Some("Account"), 2)
            .await
            .expect("prune"),
        2
    );
    assert_eq!(at(39).await, None);
    assert_eq!(at(49).await, Some(40));
    assert!(store.delete_snapshot("Account", "a").await.expect("delete"));
    assert_eq!(at(u64::MAX).await, None);
    assert_eq!(
        at(49).await,
        None,
        "the history goes with the aggregate's snapshot"
    );
    assert_eq!(
        store
            .delete_snapshots_by_type("Account", None)
            .await
            .expect("delete by type"),
        2
    );
    assert_eq!(store.count().await.expect("count"), 0);
    // Keeping one: no history.
    let single = KvSnapshotStore::new(kv.clone());
    for version in [10, 20] {
        assert!(
            single
                .save_snapshot(&snapshot("c", version))
                .await
                .expect("save")
        );
    }
    assert_eq!(single.count().await.expect("count"), 1);
    assert_eq!(
        single
            .get_snapshot_at("Account", "c", 15)
            .await
            .expect("get"),
        None
    );
}

/// A load that replayed more than the trigger allows snapshots once, however many loads
/// run at once, without blocking them in background mode; a save's newer snapshot is
/// never replaced by it.
pub async fn load_time_snapshot_fires_once<F: EngineFactory>(factory: &F) {
    let kv = fresh(factory).await;
    let writer = account_repo(&kv, 1);
    seed(&writer, "a", 300, 100).await;
    let repo = account_repo(&kv, 1)
        .with_snapshot_after_replay(50)
        .with_snapshot_mode(SnapshotMode::Background);
    let loads = join_all((0..8).map(|_| repo.load("a"))).await;
    for loaded in loads {
        let loaded = loaded.expect("load");
        assert_eq!(loaded.state(), &fold(&history(300)));
        // A load that started after the background snapshot landed uses it.
        let used = loaded.load_info().snapshot_version;
        assert!(matches!(used, None | Some(300)), "{used:?}");
    }
    repo.await_pending_snapshots().await;
    assert_eq!(repo.metrics().load_snapshots, 1, "{:?}", repo.metrics());
    let again = repo.load("a").await.expect("load");
    assert_eq!(again.load_info().snapshot_version, Some(300));
    repo.await_pending_snapshots().await;
    assert_eq!(repo.metrics().load_snapshots, 1);

    // A load's background snapshot against a save's newer one: the newer stays.
    let sync = account_repo(&kv, 1)
        .with_snapshot_after_replay(50)
        .with_snapshot_mode(SnapshotMode::Sync);
    seed(&writer, "b", 300, 300).await;
    let background = repo.clone();
    let mut handle = background.load("b").await.expect("load");
    for amount in 1..=100 {
        handle.record(AccountEvent::Deposited { amount });
    }
    sync.save(&mut handle).await.expect("save");
    assert!(sync.create_snapshot(&handle).await.expect("snapshot"));
    background.await_pending_snapshots().await;
    let stored = sync
        .snapshot_store()
        .get_snapshot("Account", "b")
        .await
        .expect("get")
        .expect("a snapshot");
    assert_eq!(stored.version, 400);

    // Manual mode never snapshots on load; sync mode does before the load returns.
    let manual = account_repo(&kv, 1)
        .with_snapshot_after_replay(50)
        .with_snapshot_mode(SnapshotMode::Manual);
    seed(&writer, "c", 300, 300).await;
    manual.load("c").await.expect("load");
    assert_eq!(manual.metrics().load_snapshots, 0);
    sync.load("c").await.expect("load");
    assert_eq!(sync.metrics().load_snapshots, 1);
    let stored = sync
        .snapshot_store()
        .get_snapshot("Account", "c")
        .await
        .expect("get");
    assert_eq!(stored.map(|s| s.version), Some(300));
}

/// The maintenance call snapshots every aggregate of the type whose snapshot is too far
/// behind (or missing), and leaves the others.
pub async fn maintenance_snapshots_stale_aggregates<F: EngineFactory>(factory: &F) {
    let kv = fresh(factory).await;
    let repo = account_repo(&kv, 1);
    seed(&repo, "fresh", 120, 120).await;
    let fresh_handle = repo.load("fresh").await.expect("load");
    assert!(repo.create_snapshot(&fresh_handle).await.expect("snapshot"));
    seed(&repo, "behind", 120, 120).await;
    seed(&repo, "short", 5, 5).await;
    seed(&repo, "never", 80, 80).await;
    let report = repo
        .snapshot_stale(Staleness {
            events_behind: 50,
            older_than: None,
        })
        .await
        .expect("maintenance");
    assert_eq!((report.aggregates, report.snapshots), (4, 2));
    let version = |id: &'static str| {
        let repo = repo.clone();
        async move {
            repo.snapshot_store()
                .get_snapshot("Account", id)
                .await
                .expect("get")
                .map(|s| s.version)
        }
    };
    assert_eq!(version("behind").await, Some(120));
    assert_eq!(version("never").await, Some(80));
    assert_eq!(version("short").await, None);
    assert_eq!(version("fresh").await, Some(120));
    // By age: every snapshot behind its head at all, and every aggregate without one.
    let mut handle = repo.load("fresh").await.expect("load");
    handle.record(AccountEvent::Deposited { amount: 1 });
    repo.save(&mut handle).await.expect("save");
    let report = repo
        .snapshot_stale(Staleness {
            events_behind: u64::MAX,
            older_than: Some(std::time::Duration::ZERO),
        })
        .await
        .expect("maintenance");
    assert_eq!(report.snapshots, 2, "{report:?}");
    assert_eq!(version("fresh").await, Some(121));
    assert_eq!(version("short").await, Some(5));
}
