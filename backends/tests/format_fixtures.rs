//! Stores written in older formats keep working: every aggregate loads with the right
//! state, old snapshots are used as `docs/format.md` says, and new events and snapshots
//! are appended to the same store. Format 1 (eventkv 0.1: no checksums, snapshots without
//! anchors) is in `tests/fixtures/format-v1/`, format 2 (no event shape versions) in
//! `tests/fixtures/format-v2/`, each with the script that made it.
#![cfg(all(feature = "redb", feature = "sqlite"))]
#![allow(clippy::unwrap_used)]

use std::path::Path;

use eventkv::testkit::aggregates::{Account, AccountEvent, Document, DocumentEvent};
use eventkv::testkit::upcasting::DepositV2;
use eventkv::{
    Aggregate, Codec, DynKv, EventStore, KvEventStore, KvSnapshotStore, NewEvent, Repository,
    SnapshotMiss, SnapshotStore, Upcasters, Uuid,
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

/// Every account of both fixtures loads with the state of its events, from the snapshot
/// each fixture took (120 of 150 JSON events, 137 of 137 bincode events, none).
async fn check_accounts(accounts: &Repo<Account>, url: &str) {
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

    check_accounts(&accounts, url).await;

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

fn copy_fixture(format: &str, name: &str, dir: &Path) -> std::path::PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format)
        .join(name);
    let target = dir.join(name);
    std::fs::copy(&source, &target).unwrap();
    target
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_store_of_format_1_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let path = copy_fixture("format-v1", "store.redb", dir.path());
    check_store(&format!("redb:{}", path.display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_of_format_1_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let path = copy_fixture("format-v1", "store.sqlite", dir.path());
    check_store(&format!("sqlite:{}", path.display())).await;
}

/// What `format-v2/generate.rs` wrote: anchored snapshots (bincode at 120 of 150 JSON
/// events, JSON at 137 of 137 bincode events), events with metadata, a JSON-fallback
/// snapshot, a checkpoint at the head; every event of shape 1.
async fn check_v2_store(url: &str) {
    let kv = eventkv_backends::open(url).await.unwrap();
    let accounts = repo::<Account>(&kv);
    check_accounts(&accounts, url).await;
    assert_eq!(accounts.metrics().misses(SnapshotMiss::ForeignHistory), 0);
    let snapshot = accounts
        .snapshot_store()
        .get_snapshot("Account", "json-events")
        .await
        .unwrap()
        .unwrap();
    assert!(
        snapshot.anchor_event_id.is_some(),
        "format 2 snapshots are anchored"
    );
    let store = accounts.event_store();
    let first = store
        .read_stream("Account", "no-snapshot", 1, 1, 1)
        .await
        .unwrap();
    let first = first.get(0).unwrap();
    assert_eq!(first.shape_version(), 1, "format 2 events have shape 1");
    assert_eq!(
        first.metadata().correlation_id,
        Some(Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef))
    );
    let documents = repo::<Document>(&kv);
    let doc = documents.load("doc-1").await.unwrap();
    assert_eq!(doc.state(), &fold::<Document>(&document_events()));
    assert_eq!(doc.load_info().snapshot_version, Some(3));
    let head = store.last_position().await.unwrap();
    assert_eq!(store.checkpoint("fixture-reader").await.unwrap(), head);

    // A format-3 event of a newer shape goes on top, and an upcasting store reads the
    // format-2 events (shape 1) through the step of shape 1.
    let newer = NewEvent::encode("Deposited", &DepositV2 { cents: 900 }, Codec::Json)
        .unwrap()
        .with_shape_version(2);
    store
        .append("Account", "no-snapshot", 2, &[newer])
        .await
        .unwrap();
    let upcasting = store.clone().with_upcasters(
        Upcasters::new()
            .register("Deposited", 1, |old: AccountEvent, out| {
                let AccountEvent::Deposited { amount } = old else {
                    return Err("not a deposit".into());
                };
                out.emit(
                    "Deposited",
                    2,
                    DepositV2 {
                        cents: amount * 100,
                    },
                );
                Ok(())
            })
            .register("Deposited", 2, |old: DepositV2, out| {
                out.emit(
                    "Deposited",
                    3,
                    AccountEvent::Deposited {
                        amount: old.cents / 100,
                    },
                );
                Ok(())
            }),
    );
    let upcast = Repository::<Account, _, _>::new(upcasting, KvSnapshotStore::new(kv.clone()));
    let loaded = upcast.load("no-snapshot").await.unwrap();
    assert_eq!(loaded.version(), 3);
    assert_eq!(loaded.state().balance, 42 + 9, "{url}");

    let log = store.read_all(1, 10_000).await.unwrap();
    assert_eq!(log.len() as u64, head + 1, "{url}");
    for (expected, event) in (1..).zip(log.iter()) {
        assert_eq!(event.position(), expected, "{url}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_store_of_format_2_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let path = copy_fixture("format-v2", "store.redb", dir.path());
    check_v2_store(&format!("redb:{}", path.display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_of_format_2_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let path = copy_fixture("format-v2", "store.sqlite", dir.path());
    check_v2_store(&format!("sqlite:{}", path.display())).await;
}
