//! The snapshot store: upsert, monotonic, delete, delete by type and schema version.

use std::sync::Arc;

use bytes::Bytes;

use super::{EngineFactory, fresh};
use crate::codec::Codec;
use crate::snapshot::{KvSnapshotStore, Snapshot, SnapshotStore, SnapshotStoreError};
use crate::timestamp::Timestamp;
use uuid::Uuid;

pub(crate) fn snapshot(
    aggregate_type: &str,
    id: &str,
    version: u64,
    schema_version: u32,
) -> Snapshot {
    Snapshot {
        aggregate_id: id.into(),
        aggregate_type: aggregate_type.into(),
        version,
        anchor_event_id: Some(Uuid::from_u128(u128::from(version) + 1)),
        schema_version,
        codec: Codec::Bincode,
        state: Bytes::from(format!("state at {version}")),
        created_at: Timestamp::from_micros(1_700_000_000_000_000 + version as i64),
    }
}

async fn store<F: EngineFactory>(factory: &F) -> KvSnapshotStore<Arc<F::Kv>> {
    KvSnapshotStore::new(fresh(factory).await)
}

pub async fn save_get_delete<F: EngineFactory>(factory: &F) {
    let store = store(factory).await;
    assert_eq!(store.get_snapshot("Account", "a").await.expect("get"), None);
    assert!(!store.snapshot_exists("Account", "a").await.expect("exists"));
    let saved = snapshot("Account", "a", 7, 3);
    assert!(store.save_snapshot(&saved).await.expect("save"));
    assert_eq!(
        store.get_snapshot("Account", "a").await.expect("get"),
        Some(saved.clone())
    );
    assert!(store.snapshot_exists("Account", "a").await.expect("exists"));
    assert_eq!(
        store.get_snapshot("Account", "b").await.expect("get"),
        None,
        "other ids untouched"
    );
    assert_eq!(
        store.get_snapshot("Other", "a").await.expect("get"),
        None,
        "other types untouched"
    );
    let mut json = snapshot("Account", "a", 8, 3);
    json.codec = Codec::Json;
    json.state = Bytes::new();
    assert!(store.save_snapshot(&json).await.expect("upsert"));
    assert_eq!(
        store.get_snapshot("Account", "a").await.expect("get"),
        Some(json)
    );
    assert!(store.delete_snapshot("Account", "a").await.expect("delete"));
    assert!(
        !store
            .delete_snapshot("Account", "a")
            .await
            .expect("delete again")
    );
    assert_eq!(store.get_snapshot("Account", "a").await.expect("get"), None);
}

pub async fn monotonic<F: EngineFactory>(factory: &F) {
    let store = store(factory).await;
    assert!(
        store
            .save_snapshot(&snapshot("Account", "a", 20, 1))
            .await
            .expect("save v20")
    );
    assert!(
        !store
            .save_snapshot(&snapshot("Account", "a", 10, 1))
            .await
            .expect("save v10")
    );
    let kept = store
        .get_snapshot("Account", "a")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        kept.version, 20,
        "an older snapshot never replaces a newer one"
    );
    let same_version_new_schema = snapshot("Account", "a", 20, 2);
    assert!(
        store
            .save_snapshot(&same_version_new_schema)
            .await
            .expect("save")
    );
    let kept = store
        .get_snapshot("Account", "a")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        (kept.version, kept.schema_version),
        (20, 2),
        "the same version replaces"
    );
    assert!(
        store
            .save_snapshot(&snapshot("Account", "a", 21, 1))
            .await
            .expect("save v21")
    );
    let saves = (1..=30).rev().map(|v| snapshot("Account", "b", v, 1));
    let store = &store;
    let stored: Vec<bool> = futures_util::future::join_all(
        saves.map(|s| async move { store.save_snapshot(&s).await.expect("save") }),
    )
    .await;
    assert!(stored[0], "the newest is stored");
    let kept = store
        .get_snapshot("Account", "b")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(kept.version, 30);
}

pub async fn delete_by_type<F: EngineFactory>(factory: &F) {
    let store = store(factory).await;
    for i in 0..600u32 {
        let schema = if i % 3 == 0 { 1 } else { 2 };
        store
            .save_snapshot(&snapshot("Account", &format!("a{i}"), 5, schema))
            .await
            .expect("save");
    }
    store
        .save_snapshot(&snapshot("Accounts", "x", 5, 1))
        .await
        .expect("save");
    store
        .save_snapshot(&snapshot("Order", "x", 5, 1))
        .await
        .expect("save");
    assert_eq!(
        store
            .delete_snapshots_by_type("Account", Some(1))
            .await
            .expect("delete"),
        0
    );
    assert_eq!(
        store
            .delete_snapshots_by_type("Account", Some(2))
            .await
            .expect("delete"),
        200
    );
    assert!(
        !store
            .snapshot_exists("Account", "a0")
            .await
            .expect("exists")
    );
    assert!(
        store
            .snapshot_exists("Account", "a1")
            .await
            .expect("exists")
    );
    assert!(
        store
            .snapshot_exists("Accounts", "x")
            .await
            .expect("exists"),
        "a type with the same prefix is untouched"
    );
    assert_eq!(
        store
            .delete_snapshots_by_type("Account", None)
            .await
            .expect("delete"),
        400
    );
    assert_eq!(
        store
            .delete_snapshots_by_type("Account", None)
            .await
            .expect("delete"),
        0
    );
    assert!(
        store.snapshot_exists("Order", "x").await.expect("exists"),
        "other types untouched"
    );
    assert_eq!(store.count().await.expect("count"), 2);
}

pub async fn clear_and_count<F: EngineFactory>(factory: &F) {
    let store = store(factory).await;
    assert_eq!(store.count().await.expect("count"), 0);
    for i in 0..300u64 {
        store
            .save_snapshot(&snapshot(
                if i % 2 == 0 { "A" } else { "B" },
                &i.to_string(),
                i + 1,
                1,
            ))
            .await
            .expect("save");
    }
    assert_eq!(store.count().await.expect("count"), 300);
    assert_eq!(store.clear().await.expect("clear"), 300);
    assert_eq!(store.count().await.expect("count"), 0);
}

pub async fn invalid_snapshots<F: EngineFactory>(factory: &F) {
    let store = store(factory).await;
    assert!(matches!(
        store.save_snapshot(&snapshot("Account", "a", 0, 1)).await,
        Err(SnapshotStoreError::VersionZero { .. })
    ));
    assert!(matches!(
        store.save_snapshot(&snapshot("", "a", 1, 1)).await,
        Err(SnapshotStoreError::InvalidName(_))
    ));
    assert!(store.get_snapshot("Account", "").await.is_err());
    assert_eq!(store.count().await.expect("count"), 0, "nothing written");
}

pub async fn discard_only_the_same_snapshot<F: EngineFactory>(factory: &F) {
    let store = store(factory).await;
    let saved = snapshot("Account", "a", 7, 1);
    assert!(store.save_snapshot(&saved).await.expect("save"));
    for other in [
        snapshot("Account", "a", 8, 1),
        Snapshot {
            anchor_event_id: Some(Uuid::new_v4()),
            ..saved.clone()
        },
        Snapshot {
            created_at: Timestamp::from_micros(1),
            ..saved.clone()
        },
    ] {
        assert!(
            !store.discard_snapshot(&other).await.expect("discard"),
            "another snapshot is not discarded: {other:?}"
        );
    }
    assert!(store.snapshot_exists("Account", "a").await.expect("exists"));
    assert!(store.discard_snapshot(&saved).await.expect("discard"));
    assert!(!store.snapshot_exists("Account", "a").await.expect("exists"));
    assert!(!store.discard_snapshot(&saved).await.expect("discard"));
}
