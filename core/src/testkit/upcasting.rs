//! Upcasting: stored histories of old event shapes read as current shapes on every path.

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::aggregates::{Account, AccountEvent};
use super::projections::{Balances, read_model};
use super::{EngineFactory, fresh};
use crate::codec::Codec;
use crate::error::ErrorKind;
use crate::event_store::{EventStore, EventStoreError, KvEventStore, NewEvent};
use crate::projection::ProjectionRunner;
use crate::repository::Repository;
use crate::snapshot::KvSnapshotStore;
use crate::upcast::Upcasters;

/// Shape 1 of `Deposited`: cents, as a string.
#[derive(Serialize, Deserialize)]
pub struct DepositV1 {
    pub cents: String,
}

/// Shape 2 of `Deposited`: cents, as a number.
#[derive(Serialize, Deserialize)]
pub struct DepositV2 {
    pub cents: u64,
}

/// Shape 1 of `Corrected`, a type since split into `Withdrawn` and `Deposited`.
#[derive(Serialize, Deserialize)]
pub struct CorrectedV1 {
    pub took: u64,
    pub gave: u64,
}

/// The application's upcasters: `Deposited` 1 → 2 → 3 (3 is [`AccountEvent::Deposited`]
/// in whole units), `Corrected` 1 → `Withdrawn` + `Deposited` 3. Typed, so they read
/// both codecs.
pub fn account_upcasters() -> Upcasters {
    Upcasters::new()
        .register("Deposited", 1, |old: DepositV1, out| {
            out.emit(
                "Deposited",
                2,
                DepositV2 {
                    cents: old.cents.parse()?,
                },
            );
            Ok(())
        })
        .register("Deposited", 2, |old: DepositV2, out| {
            let amount = old.cents / 100;
            out.emit("Deposited", 3, AccountEvent::Deposited { amount });
            Ok(())
        })
        .register("Corrected", 1, |old: CorrectedV1, out| {
            let took = AccountEvent::Withdrawn { amount: old.took };
            out.emit("Withdrawn", 1, took);
            let gave = AccountEvent::Deposited { amount: old.gave };
            out.emit("Deposited", 3, gave);
            Ok(())
        })
}

fn event<T: Serialize>(event_type: &str, shape: u32, payload: &T, codec: Codec) -> NewEvent {
    NewEvent::encode(event_type, payload, codec)
        .expect("encodes")
        .with_shape_version(shape)
}

/// A history written over the years by three versions of the application, and the
/// events the current version sees in it.
pub fn old_history(codec: Codec) -> (Vec<NewEvent>, Vec<AccountEvent>) {
    let opened = AccountEvent::Opened {
        owner: "Ada".into(),
    };
    let stored = vec![
        event("Opened", 1, &opened, codec),
        event(
            "Deposited",
            1,
            &DepositV1 {
                cents: "700".into(),
            },
            codec,
        ),
        event("Deposited", 2, &DepositV2 { cents: 1_250 }, codec),
        event("Corrected", 1, &CorrectedV1 { took: 3, gave: 1 }, codec),
        event(
            "Deposited",
            3,
            &AccountEvent::Deposited { amount: 5 },
            codec,
        ),
    ];
    let seen = vec![
        opened,
        AccountEvent::Deposited { amount: 7 },
        AccountEvent::Deposited { amount: 12 },
        AccountEvent::Withdrawn { amount: 3 },
        AccountEvent::Deposited { amount: 1 },
        AccountEvent::Deposited { amount: 5 },
    ];
    (stored, seen)
}

fn fold(events: &[AccountEvent]) -> Account {
    let mut account = Account::default();
    for event in events {
        crate::Aggregate::apply(&mut account, event);
    }
    account
}

/// A chain of upcasters over a stored history, in both codecs: `read_stream`,
/// `read_all` and repository loads see only current shapes; a store without upcasters
/// still reads the events as stored.
pub async fn upcaster_chain_over_a_stored_history<F: EngineFactory>(factory: &F) {
    for codec in [Codec::Json, Codec::Bincode] {
        let kv = fresh(factory).await;
        let raw = KvEventStore::new(kv.clone());
        let (stored, seen) = old_history(codec);
        raw.append("Account", "a-1", 0, &stored)
            .await
            .expect("append");
        let store = raw.clone().with_upcasters(account_upcasters());

        let page = store
            .read_stream("Account", "a-1", 1, u64::MAX, 100)
            .await
            .expect("read");
        let decoded: Vec<AccountEvent> =
            page.iter().map(|e| e.decode().expect("decodes")).collect();
        assert_eq!(decoded, seen, "{codec}");
        let types: Vec<(&str, u32, u64)> = page
            .iter()
            .map(|e| (e.event_type(), e.shape_version(), e.version()))
            .collect();
        assert_eq!(
            types,
            [
                ("Opened", 1, 1),
                ("Deposited", 3, 2),
                ("Deposited", 3, 3),
                ("Withdrawn", 1, 4),
                ("Deposited", 3, 4),
                ("Deposited", 3, 5),
            ],
            "{codec}: a split event keeps its version"
        );
        assert_eq!(page.last_stored_version(), Some(5));

        let log = store.read_all(1, 100).await.expect("read all");
        let positions: Vec<u64> = log.iter().map(|e| e.position()).collect();
        assert_eq!(positions, [1, 2, 3, 4, 4, 5], "{codec}");
        assert_eq!(log.read_through(), Some(5));

        let repo =
            Repository::<Account, _, _>::new(store.clone(), KvSnapshotStore::new(kv.clone()));
        let loaded = repo.load("a-1").await.expect("load");
        assert_eq!(loaded.version(), 5, "{codec}");
        assert_eq!(loaded.state(), &fold(&seen), "{codec}");
        assert_eq!(loaded.load_info().events_replayed, 5);

        // Without upcasters the events read as stored.
        let as_stored = raw
            .read_stream("Account", "a-1", 1, u64::MAX, 100)
            .await
            .expect("read");
        let shapes: Vec<(&str, u32)> = as_stored
            .iter()
            .map(|e| (e.event_type(), e.shape_version()))
            .collect();
        assert_eq!(
            shapes,
            [
                ("Opened", 1),
                ("Deposited", 1),
                ("Deposited", 2),
                ("Corrected", 1),
                ("Deposited", 3)
            ]
        );
    }
}

/// An event type replaced by two, and one dropped (no output): pages that end on a
/// dropped event read on from the stored version after it, and loads that start from a
/// snapshot whose event was split keep its anchor.
pub async fn upcaster_splits_and_drops_events<F: EngineFactory>(factory: &F) {
    let kv = fresh(factory).await;
    let raw = KvEventStore::new(kv.clone());
    let (stored, _) = old_history(Codec::Json);
    let mut history = stored;
    for _ in 0..2 {
        let audited = serde_json::json!({"by": "bot"});
        history.push(event("Audited", 1, &audited, Codec::Json));
    }
    raw.append("Account", "a-2", 0, &history)
        .await
        .expect("append");
    let upcasters = account_upcasters().register("Audited", 1, |_: serde_json::Value, _| Ok(()));
    let store = raw.clone().with_upcasters(upcasters);
    // Pages of two stored events: the last page holds only dropped events.
    let mut seen = Vec::new();
    let mut from = 1;
    loop {
        let page = store
            .read_stream("Account", "a-2", from, u64::MAX, 2)
            .await
            .expect("read");
        seen.extend(
            page.iter()
                .map(|e| e.decode::<AccountEvent>().expect("decodes")),
        );
        match page.last_stored_version() {
            Some(last) if page.may_have_more() => from = last + 1,
            _ => break,
        }
    }
    assert_eq!(seen, old_history(Codec::Json).1);
    let repo = Repository::<Account, _, _>::new(store, KvSnapshotStore::new(kv.clone()));
    let loaded = repo.load("a-2").await.expect("load");
    assert_eq!(
        loaded.version(),
        7,
        "dropped events still count as versions"
    );
    assert_eq!(loaded.state(), &fold(&seen));
    // A snapshot at a dropped event is anchored to the stored event.
    assert!(repo.create_snapshot(&loaded).await.expect("snapshot"));
    let again = repo.load("a-2").await.expect("load");
    assert_eq!(again.load_info().snapshot_version, Some(7));
    assert_eq!(again.state(), loaded.state());
}

/// An old shape without an upcaster is an error naming the type and shape, on every read
/// path: never a silent default.
pub async fn missing_upcaster_is_named<F: EngineFactory>(factory: &F) {
    let kv = fresh(factory).await;
    let raw = KvEventStore::new(kv.clone());
    let (stored, _) = old_history(Codec::Json);
    raw.append("Account", "a-3", 0, &stored)
        .await
        .expect("append");
    // Steps from shape 2 only: shape 1 of "Deposited" has none.
    let upcasters = Upcasters::new().register("Deposited", 2, |old: DepositV2, out| {
        out.emit(
            "Deposited",
            3,
            AccountEvent::Deposited {
                amount: old.cents / 100,
            },
        );
        Ok(())
    });
    let store = raw.with_upcasters(upcasters);
    let named = |message: String| {
        assert!(
            message.contains("\"Deposited\"") && message.contains("shape version 1"),
            "{message}"
        );
    };
    let error = store
        .read_stream("Account", "a-3", 1, u64::MAX, 100)
        .await
        .expect_err("no upcaster");
    assert_eq!(error.kind(), ErrorKind::Unsupported);
    assert!(
        matches!(error, EventStoreError::Upcast { version: 2, .. }),
        "{error}"
    );
    named(error.to_string());
    named(
        store
            .read_all(1, 100)
            .await
            .expect_err("no upcaster")
            .to_string(),
    );
    let repo = Repository::<Account, _, _>::new(store, KvSnapshotStore::new(kv.clone()));
    let error = repo.load("a-3").await.expect_err("no upcaster");
    assert_eq!(error.kind(), ErrorKind::Unsupported);
    named(error.to_string());
}

/// Subscriptions and projections of an upcasting store see current shapes only.
pub async fn upcasting_on_subscriptions_and_projections<F: EngineFactory>(factory: &F) {
    let kv = fresh(factory).await;
    let raw = KvEventStore::new(kv.clone());
    for (id, codec) in [("json", Codec::Json), ("bincode", Codec::Bincode)] {
        let (stored, _) = old_history(codec);
        raw.append("Account", id, 0, &stored).await.expect("append");
    }
    let store = raw.with_upcasters(account_upcasters());
    let events: Vec<_> = store
        .subscribe_all(1)
        .take(12)
        .map(|event| event.expect("subscription"))
        .collect()
        .await;
    let decoded: Vec<AccountEvent> = events
        .iter()
        .map(|e| e.decode().expect("decodes"))
        .collect();
    let seen = old_history(Codec::Json).1;
    assert_eq!(decoded[..6], seen[..]);
    assert_eq!(decoded[6..], seen[..]);
    assert!(events.iter().all(|e| e.event_type != "Corrected"));

    let runner = ProjectionRunner::new(&store, Balances::new("upcast-balances"));
    assert_eq!(runner.catch_up().await.expect("projection"), 10);
    let model = read_model(&store, "upcast-balances").await;
    let balance = |id: &[u8]| {
        model
            .iter()
            .find(|(key, _)| &key[..] == id)
            .map(|(_, value)| u64::from_be_bytes(value[..].try_into().expect("8 bytes")))
    };
    // Deposits 7 + 12 + 1 + 5 per account, and 12 events applied in all.
    assert_eq!(balance(b"json"), Some(25));
    assert_eq!(balance(b"bincode"), Some(25));
    assert_eq!(balance(super::projections::APPLIED), Some(12));
}
