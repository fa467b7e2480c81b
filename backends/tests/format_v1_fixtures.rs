//! Stores written by eventkv 0.1 (format 1: no checksums, snapshots without anchors) keep
//! working: every aggregate loads with the right state, format-1 snapshots are used as
//! `docs/format.md` says, and new events and snapshots are appended to the same store.
//! The fixtures and the script that made them are in `tests/fixtures/format-v1/`.
#![cfg(all(feature = "redb", feature = "sqlite"))]
#![allow(clippy::unwrap_used)]

use std::path::Path;

use eventkv::testkit::aggregates::{Account, AccountEvent, Document, DocumentEvent};
use eventkv::{
    Aggregate, DynKv, EventStore, KvEventStore, KvSnapshotStore, Repository, SnapshotMiss,
    SnapshotStore,
};

type Repo<A> = Repository<A, KvEventStore<DynKv>, KvSnapshotStore<DynKv>>;

fn repo<A: Aggregate>(kv: &DynKv) -> Repo<A> {
    Repository::new(
        KvEventStore::new(kv.clone()),
        KvSnapshotStore::new(kv.clone()),
    )
}

/// The events `generate.rs` recorded for each account, in order.
fn account_events(id: &str) -> Vec<AccountEvent> {
    let opened = |owner: &str| AccountEvent::Opened {
        owner: owner.into(),
    };
    let deposit = |amount| AccountEvent::Deposited { amount };
    match id {
        "json-events" => std::iter::once(opened("Ada"))
            .chain((1..150).map(deposit))
            .collect(),
        "bincode-events" => {
            let mut events = vec![opened("Grace")];
            for amount in 1..120 {
                events.push(deposit(amount));
                if amount % 7 == 0 {
                    events.push(AccountEvent::Withdrawn { amount: 3 });
                }
            }
            events
        }
        "no-snapshot" => vec![opened("Linus"), deposit(42)],
        "ahead" => vec![opened("Barbara"), deposit(5), deposit(6)],
        other => panic!("no fixture account {other}"),
    }
}

fn fold<A: Aggregate>(events: &[A::Event]) -> A {
    let mut state = A::default();
    for event in events {
        state.apply(event);
    }
    state
}

fn document_events() -> Vec<DocumentEvent> {
    let set = |field: &str, value: serde_json::Value| DocumentEvent::Set {
        field: field.into(),
        value,
    };
    vec![
        set("title", "Notes".into()),
        set("tags", "a,1".into()),
        set("pages", 3.into()),
        set("pages", 4.into()),
    ]
}

async fn check_store(url: &str) {
    let kv = eventkv_backends::open(url).await.unwrap();
    let accounts = repo::<Account>(&kv);

    // Format-1 snapshots have no anchor; they are used when the stream has an event at
    // their version (the check of eventkv 0.1).
    let old = accounts
        .snapshot_store()
        .get_snapshot("Account", "json-events")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((old.version, old.anchor_event_id), (120, None));

    for (id, snapshot_version) in [
        ("json-events", Some(120)),
        ("bincode-events", Some(137)),
        ("no-snapshot", None),
    ] {
        let events = account_events(id);
        let loaded = accounts.load(id).await.unwrap();
        assert_eq!(loaded.version(), events.len() as u64, "{url} {id}");
        assert_eq!(loaded.state(), &fold::<Account>(&events), "{url} {id}");
        assert_eq!(
            loaded.load_info().snapshot_version,
            snapshot_version,
            "{url} {id}"
        );
    }

    // A format-1 snapshot ahead of its stream is ignored and deleted.
    let ahead = accounts.load("ahead").await.unwrap();
    assert_eq!(ahead.state(), &fold::<Account>(&account_events("ahead")));
    assert_eq!(accounts.metrics().misses(SnapshotMiss::AheadOfStream), 1);
    assert!(
        !accounts
            .snapshot_store()
            .snapshot_exists("Account", "ahead")
            .await
            .unwrap()
    );

    let documents = repo::<Document>(&kv);
    let doc = documents.load("doc-1").await.unwrap();
    assert_eq!(doc.state(), &fold::<Document>(&document_events()));
    assert_eq!(doc.load_info().snapshot_version, Some(3));

    // New events and a format-2 snapshot go on top of the old ones.
    let mut account = accounts.load("json-events").await.unwrap();
    for amount in 150..160 {
        account.record(AccountEvent::Deposited { amount });
    }
    accounts.save(&mut account).await.unwrap();
    assert!(accounts.create_snapshot(&account).await.unwrap());
    let new = accounts
        .snapshot_store()
        .get_snapshot("Account", "json-events")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(new.version, 160);
    assert_eq!(new.anchor_event_id, account.last_event_id());
    assert!(new.anchor_event_id.is_some());
    let reloaded = accounts.load("json-events").await.unwrap();
    assert_eq!(reloaded.load_info().snapshot_version, Some(160));
    assert_eq!(reloaded.state(), account.state());

    // The global log still holds every event once, old and new, gap-free.
    let log = accounts.event_store().read_all(1, 10_000).await.unwrap();
    let total = ["json-events", "bincode-events", "no-snapshot", "ahead"]
        .iter()
        .map(|id| account_events(id).len())
        .sum::<usize>()
        + document_events().len()
        + 10;
    assert_eq!(log.len(), total, "{url}");
    for (expected, event) in (1..).zip(log.iter()) {
        assert_eq!(event.position(), expected, "{url}");
    }
}

fn copy_fixture(name: &str, dir: &Path) -> std::path::PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/format-v1")
        .join(name);
    let target = dir.join(name);
    std::fs::copy(&source, &target).unwrap();
    target
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_store_of_format_1_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let path = copy_fixture("store.redb", dir.path());
    check_store(&format!("redb:{}", path.display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_of_format_1_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let path = copy_fixture("store.sqlite", dir.path());
    check_store(&format!("sqlite:{}", path.display())).await;
}
