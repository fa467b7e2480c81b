//! Checkpoints and projections: a read model applied with its checkpoint, exactly once.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use super::aggregates::AccountEvent;
use super::events::deposit;
use super::{EngineFactory, fresh};
use crate::event_store::{EventStore, EventStoreError, KvEventStore};
use crate::keys;
use crate::kv::{BoxError, OrderedKv, WriteBatch};
use crate::projection::{Projection, ProjectionError, ProjectionRunner};
use crate::read_model::ReadModel;
use crate::recorded::RecordedEvent;
use crate::subscription::SubscribeOptions;

/// The key of [`Balances`]' count of the events it applied.
pub const APPLIED: &[u8] = b"#applied";

/// A projection: each account's balance (its deposits summed) under the account's id,
/// and how many events it applied under [`APPLIED`]. Applying an event twice, or losing
/// one, shows in both.
#[derive(Debug)]
pub struct Balances {
    /// The projection's name.
    pub name: String,
    /// Fails on the event at this position, if set (a handler's bug).
    pub fail_at: Option<u64>,
}

impl Balances {
    /// The projection called `name`.
    pub fn new(name: &str) -> Self {
        Balances {
            name: name.into(),
            fail_at: None,
        }
    }
}

async fn add(model: &mut ReadModel<'_>, key: &[u8], amount: u64) -> Result<(), BoxError> {
    let current = match model.get(key).await? {
        Some(value) => u64::from_be_bytes(value[..].try_into()?),
        None => 0,
    };
    model.put(key, (current + amount).to_be_bytes().to_vec());
    Ok(())
}

impl Projection for Balances {
    fn name(&self) -> &str {
        &self.name
    }

    async fn apply(
        &self,
        event: &RecordedEvent,
        model: &mut ReadModel<'_>,
    ) -> Result<(), BoxError> {
        if self.fail_at == Some(event.position) {
            return Err(format!("no handler for event {}", event.position).into());
        }
        if let AccountEvent::Deposited { amount } = event.decode()? {
            add(model, event.aggregate_id.as_bytes(), amount).await?;
        }
        add(model, APPLIED, 1).await
    }
}

/// Every entry of the read model of `name`.
pub async fn read_model<K: OrderedKv>(store: &KvEventStore<K>, name: &str) -> Vec<(Bytes, Bytes)> {
    let mut entries: Vec<(Bytes, Bytes)> = Vec::new();
    loop {
        let after = entries.last().map(|(key, _)| key.clone());
        let page = store
            .read_model_entries(name, after.as_deref(), 100)
            .await
            .expect("read model");
        if page.is_empty() {
            return entries;
        }
        entries.extend(page);
    }
}

/// What [`Balances`] holds after the events up to `position`, folded here by hand.
pub async fn balances_up_to<K: OrderedKv>(
    store: &KvEventStore<K>,
    position: u64,
) -> Vec<(Bytes, Bytes)> {
    let mut sums = std::collections::BTreeMap::<Vec<u8>, u64>::new();
    let mut next = 1;
    while next <= position {
        let page = store.read_all(next, 1000).await.expect("read all");
        for event in page.iter().take_while(|event| event.position() <= position) {
            if let AccountEvent::Deposited { amount } = event.decode().expect("decode") {
                *sums
                    .entry(event.aggregate_id().as_bytes().to_vec())
                    .or_default() += amount;
            }
            *sums.entry(APPLIED.to_vec()).or_default() += 1;
            next = event.position() + 1;
        }
        if page.is_empty() {
            break;
        }
    }
    sums.into_iter()
        .map(|(key, sum)| (Bytes::from(key), Bytes::copy_from_slice(&sum.to_be_bytes())))
        .collect()
}

/// `rounds` rounds from round `from`: one deposit to each of `accounts` accounts.
async fn deposits<K: OrderedKv>(store: &KvEventStore<K>, accounts: u64, from: u64, rounds: u64) {
    for round in from..from + rounds {
        for account in 0..accounts {
            let id = format!("acc-{account}");
            store
                .append("Account", &id, round, &[deposit(round * 10 + account)])
                .await
                .expect("append");
        }
    }
}

/// A checkpoint reads 0 until saved, holds what was saved, refuses a position past the
/// last event and a bad name, and reads 0 again once deleted.
pub async fn checkpoints_save_and_delete<F: EngineFactory>(factory: &F) {
    let kv = fresh(factory).await;
    let store = KvEventStore::new(Arc::clone(&kv));
    assert_eq!(store.checkpoint("mailer").await.expect("checkpoint"), 0);
    deposits(&store, 2, 0, 5).await;
    store.save_checkpoint("mailer", 7).await.expect("save");
    store.save_checkpoint("other", 10).await.expect("save");
    assert_eq!(store.checkpoint("mailer").await.expect("checkpoint"), 7);
    assert_eq!(store.checkpoint("other").await.expect("checkpoint"), 10);
    let ahead = store.save_checkpoint("mailer", 11).await;
    assert!(
        matches!(ahead, Err(EventStoreError::InvalidInput(_))),
        "{ahead:?}"
    );
    let unnamed = store.save_checkpoint("", 1).await;
    assert!(
        matches!(unnamed, Err(EventStoreError::InvalidName(_))),
        "{unnamed:?}"
    );
    store.delete_checkpoint("mailer").await.expect("delete");
    assert_eq!(store.checkpoint("mailer").await.expect("checkpoint"), 0);
    assert_eq!(store.checkpoint("other").await.expect("checkpoint"), 10);

    let key = keys::checkpoint("other").expect("key");
    let mut value = kv.get(&key).await.expect("get").expect("stored").to_vec();
    value[3] ^= 0x10;
    let mut batch = WriteBatch::new();
    batch.put(key, value);
    kv.write(batch).await.expect("flip a bit");
    let flipped = store.checkpoint("other").await;
    assert!(
        matches!(flipped, Err(EventStoreError::Corrupt { .. })),
        "{flipped:?}"
    );
}

/// A projection catches up in pages, equals the events folded by hand, and goes on from
/// its checkpoint after more appends; its read model and checkpoint are its own.
pub async fn projection_catches_up_from_its_checkpoint<F: EngineFactory>(factory: &F) {
    let store = KvEventStore::new(fresh(factory).await);
    deposits(&store, 3, 0, 10).await;
    let options = SubscribeOptions::default().page_size(7);
    let runner = ProjectionRunner::new(&store, Balances::new("balances")).options(options);
    assert_eq!(runner.catch_up().await.expect("catch up"), 30);
    assert_eq!(store.checkpoint("balances").await.expect("checkpoint"), 30);
    assert_eq!(
        read_model(&store, "balances").await,
        balances_up_to(&store, 30).await
    );
    deposits(&store, 3, 10, 4).await;
    assert_eq!(runner.catch_up().await.expect("catch up again"), 42);
    assert_eq!(
        read_model(&store, "balances").await,
        balances_up_to(&store, 42).await
    );
    let account = store
        .read_model_get("balances", b"acc-1")
        .await
        .expect("get")
        .expect("a balance");
    let expected: u64 = (0..14).map(|round| round * 10 + 1).sum();
    assert_eq!(account[..], expected.to_be_bytes());
    assert!(read_model(&store, "other").await.is_empty());
}

/// A projection that, for the event at position `p`, puts key `k((7p) mod 13)` and deletes
/// key `k((5p + 3) mod 13)`, and after each event checks that [`ReadModel::entries`], read
/// in pages of 1, 2 and 3, sees exactly what it wrote so far: stored entries of earlier
/// pages merged with the changes of the current one, deletions included.
#[derive(Debug, Default)]
struct DepositIndex {
    /// What the read model holds, kept by hand.
    expected: std::sync::Mutex<BTreeMap<Bytes, Bytes>>,
}

impl DepositIndex {
    fn expected(&self) -> std::sync::MutexGuard<'_, BTreeMap<Bytes, Bytes>> {
        self.expected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Every entry of `model` under `prefix`, read `page` at a time from after `after`.
async fn paged_entries(
    model: &ReadModel<'_>,
    prefix: &[u8],
    mut after: Option<Bytes>,
    page: usize,
) -> Result<Vec<(Bytes, Bytes)>, BoxError> {
    let mut entries: Vec<(Bytes, Bytes)> = Vec::new();
    loop {
        let next = model.entries(prefix, after.as_deref(), page).await?;
        if next.len() > page {
            return Err(format!("asked for {page} entries, got {}", next.len()).into());
        }
        let Some((last, _)) = next.last() else {
            return Ok(entries);
        };
        after = Some(last.clone());
        entries.extend(next);
    }
}

impl Projection for DepositIndex {
    fn name(&self) -> &'static str {
        "deposit-index"
    }

    async fn apply(
        &self,
        event: &RecordedEvent,
        model: &mut ReadModel<'_>,
    ) -> Result<(), BoxError> {
        let key = |n: u64| Bytes::from(format!("k{:02}", n % 13));
        let (put, delete) = (key(7 * event.position), key(5 * event.position + 3));
        let value = Bytes::copy_from_slice(&event.position.to_be_bytes());
        model.put(&put, value.clone());
        self.expected().insert(put, value);
        model.delete(&delete);
        self.expected().remove(&delete);
        for prefix in [&b""[..], b"k0", b"k1", b"nope"] {
            let want: Vec<(Bytes, Bytes)> = self
                .expected()
                .iter()
                .filter(|(key, _)| key.starts_with(prefix))
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect();
            for page in [1, 2, 3] {
                let got = paged_entries(model, prefix, None, page).await?;
                if got != want {
                    let error =
                        format!("entries under {prefix:?} by {page}: {got:?}, not {want:?}");
                    return Err(error.into());
                }
            }
            // Starting after a key before the prefix reads the prefix from its first key.
            let all = paged_entries(model, prefix, Some(Bytes::from_static(b"!")), 1000).await?;
            if all != want {
                return Err(format!("entries under {prefix:?} after \"!\": {all:?}").into());
            }
        }
        Ok(())
    }
}

/// A handler reads its read model in key order, in pages, with the changes of the page
/// being applied merged over what earlier pages stored (see `DepositIndex`).
pub async fn read_model_entries_merge_the_page_changes<F: EngineFactory>(factory: &F) {
    let store = KvEventStore::new(fresh(factory).await);
    deposits(&store, 3, 0, 20).await;
    let options = SubscribeOptions::default().page_size(4);
    let runner = ProjectionRunner::new(&store, DepositIndex::default()).options(options);
    assert_eq!(runner.catch_up().await.expect("catch up"), 60);
    let stored = read_model(&store, "deposit-index").await;
    let expected: Vec<(Bytes, Bytes)> = runner
        .projection()
        .expected()
        .iter()
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    assert_eq!(stored, expected);
    assert!(stored.len() > 3, "{stored:?}");
}

/// A projection of one aggregate type applies only its events, and its checkpoint moves
/// past the others, also over pages that hold none of its type.
pub async fn projection_of_one_type_passes_over_the_others<F: EngineFactory>(factory: &F) {
    let store = KvEventStore::new(fresh(factory).await);
    // Positions 1 to 24: an order at every fourth, accounts between.
    for i in 0..24u64 {
        let (aggregate_type, id) = if i % 4 == 3 {
            ("Order", format!("order-{i}"))
        } else {
            ("Account", format!("acc-{i}"))
        };
        store
            .append(aggregate_type, &id, 0, &[deposit(i)])
            .await
            .expect("append");
    }
    let options = SubscribeOptions::default()
        .page_size(2)
        .aggregate_type("Order");
    let runner = ProjectionRunner::new(&store, Balances::new("orders")).options(options);
    assert_eq!(runner.catch_up().await.expect("catch up"), 24);
    assert_eq!(store.checkpoint("orders").await.expect("checkpoint"), 24);
    let entries = read_model(&store, "orders").await;
    let mut expected: Vec<(Bytes, Bytes)> = (0..24u64)
        .filter(|i| i % 4 == 3)
        .map(|i| {
            let key = Bytes::from(format!("order-{i}"));
            (key, Bytes::copy_from_slice(&i.to_be_bytes()))
        })
        .collect();
    expected.push((
        Bytes::from_static(APPLIED),
        Bytes::copy_from_slice(&6u64.to_be_bytes()),
    ));
    expected.sort();
    assert_eq!(entries, expected);
}

/// A handler that fails writes nothing of its page; a runner that finds its checkpoint
/// moved by another stops; a read model left without checkpoint is refused until the
/// projection is deleted, after which it rebuilds from the first event.
pub async fn projection_failures_write_nothing<F: EngineFactory>(factory: &F) {
    let store = KvEventStore::new(fresh(factory).await);
    deposits(&store, 2, 0, 10).await;
    let options = SubscribeOptions::default().page_size(5);
    let failing = Balances {
        name: "balances".into(),
        fail_at: Some(13),
    };
    let runner = ProjectionRunner::new(&store, failing).options(options.clone());
    match runner.catch_up().await {
        Err(ProjectionError::Handler { position: 13, .. }) => {}
        other => panic!("the handler's error: {other:?}"),
    }
    assert_eq!(store.checkpoint("balances").await.expect("checkpoint"), 10);
    assert_eq!(
        read_model(&store, "balances").await,
        balances_up_to(&store, 10).await
    );

    struct MovesItsCheckpoint<'s, K>(&'s KvEventStore<K>);
    impl<K: OrderedKv> Projection for MovesItsCheckpoint<'_, K> {
        fn name(&self) -> &'static str {
            "balances"
        }
        async fn apply(&self, _: &RecordedEvent, _: &mut ReadModel<'_>) -> Result<(), BoxError> {
            self.0.save_checkpoint("balances", 20).await?;
            Ok(())
        }
    }
    let raced = ProjectionRunner::new(&store, MovesItsCheckpoint(&store))
        .catch_up()
        .await;
    assert!(
        matches!(raced, Err(ProjectionError::Concurrent { .. })),
        "{raced:?}"
    );

    store
        .delete_checkpoint("balances")
        .await
        .expect("delete checkpoint");
    let runner = ProjectionRunner::new(&store, Balances::new("balances")).options(options);
    let orphaned = runner.catch_up().await;
    assert!(
        matches!(orphaned, Err(ProjectionError::Orphaned { .. })),
        "{orphaned:?}"
    );
    store
        .delete_projection("balances")
        .await
        .expect("delete projection");
    assert!(read_model(&store, "balances").await.is_empty());
    assert_eq!(runner.catch_up().await.expect("rebuild"), 20);
    assert_eq!(
        read_model(&store, "balances").await,
        balances_up_to(&store, 20).await
    );
}

/// `run` ends on an error that retrying cannot heal (here a name no key can hold) instead
/// of retrying it for ever.
pub async fn projection_run_ends_on_a_bad_name<F: EngineFactory>(factory: &F) {
    let store = KvEventStore::new(fresh(factory).await);
    deposits(&store, 1, 0, 1).await;
    let nameless = ProjectionRunner::new(&store, Balances::new(""));
    match nameless.run().await {
        Err(ProjectionError::Store(EventStoreError::InvalidName(_))) => {}
        other => panic!("a bad name ends the run: {other:?}"),
    }
}
