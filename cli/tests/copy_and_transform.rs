//! The copy-and-transform example: a store of old event shapes copied, through a
//! projection reading it with the application's upcasters, into a store of current shapes
//! that `eventkv verify` accepts; run twice, it copies nothing twice. And `write_log` (the
//! export) of an upcasting store writes current shapes.
#![cfg(feature = "sqlite")]
#![allow(clippy::unwrap_used)]

mod common;
#[allow(dead_code, unreachable_pub)]
#[path = "../examples/copy_and_transform.rs"]
mod example;

use eventkv::testkit::aggregates::{Account, AccountEvent};
use eventkv::testkit::upcasting::{account_upcasters, old_history};
use eventkv::{Codec, EventStore, KvEventStore, KvSnapshotStore, Repository};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_through_upcasters_into_a_verified_store() {
    let dir = tempfile::tempdir().unwrap();
    let source_url = format!("sqlite:{}", dir.path().join("old.db").display());
    let target_url = format!("sqlite:{}", dir.path().join("new.db").display());
    let raw = KvEventStore::new(eventkv_backends::open(&source_url).await.unwrap());
    let mut seen = Vec::new();
    for (id, codec) in [("a-json", Codec::Json), ("a-bincode", Codec::Bincode)] {
        let (stored, current) = old_history(codec);
        raw.append("Account", id, 0, &stored).await.unwrap();
        seen.push((id, current));
    }
    let source = raw.clone().with_upcasters(account_upcasters());
    let target = KvEventStore::new(eventkv_backends::open(&target_url).await.unwrap());
    assert_eq!(example::copy_upcasted(&source, &target).await.unwrap(), 10);
    // Run again (as after a crash): nothing is appended twice.
    assert_eq!(example::copy_upcasted(&source, &target).await.unwrap(), 10);
    assert_eq!(target.last_position().await.unwrap(), 12);

    // The new store holds current shapes only, readable without upcasters.
    let log = target.read_all(1, 100).await.unwrap();
    assert!(log.iter().all(|e| e.event_type() != "Corrected"));
    assert!(
        log.iter()
            .all(|e| e.event_type() != "Deposited" || e.shape_version() == 3)
    );
    let ids: std::collections::HashSet<_> = log.iter().map(|e| e.event_id()).collect();
    assert_eq!(ids.len(), 12, "a split event's second half gets its own id");
    let repo =
        Repository::<Account, _, _>::new(target.clone(), KvSnapshotStore::new(target.kv().clone()));
    for (id, current) in &seen {
        let loaded = repo.load(id).await.unwrap();
        let mut expected = Account::default();
        for event in current {
            eventkv::Aggregate::apply(&mut expected, event);
        }
        assert_eq!(loaded.state(), &expected, "{id}");
        assert_eq!(loaded.version(), current.len() as u64);
    }
    drop((raw, source, target, repo));

    let output = common::eventkv(&["verify", &target_url], None);
    assert!(
        output.status.success(),
        "eventkv verify: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_of_an_upcasting_store_writes_current_shapes() {
    let kv = eventkv::DynKv::new(eventkv::MemoryKv::new());
    let raw = KvEventStore::new(kv);
    let (stored, current) = old_history(Codec::Json);
    raw.append("Account", "a-1", 0, &stored).await.unwrap();
    let lines = |store: KvEventStore<eventkv::DynKv>| async move {
        let mut out = Vec::new();
        eventkv_cli::write_log(
            &store,
            1,
            None,
            None,
            &mut out,
            &eventkv_cli::Progress::hidden(),
        )
        .await
        .unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
            .collect::<Vec<_>>()
    };
    let upcast = lines(raw.clone().with_upcasters(account_upcasters())).await;
    let payloads: Vec<AccountEvent> = upcast
        .iter()
        .map(|line| serde_json::from_value(line["payload"].clone()).unwrap())
        .collect();
    assert_eq!(payloads, current);
    assert_eq!(upcast[1]["shape_version"], 3);
    let as_stored = lines(raw).await;
    assert_eq!(as_stored.len(), stored.len());
    assert_eq!(
        as_stored[1]["shape_version"],
        serde_json::Value::Null,
        "shape 1 is left out"
    );
    assert_eq!(as_stored[2]["shape_version"], 2);
}
