//! Catch-up subscriptions: from the start and from the middle, live, filtered, and under
//! concurrent writers, every event once, in position order.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{Either, join, join_all, select};
use futures_util::{Stream, StreamExt};

use super::aggregates::AccountEvent;
use super::counted::Counted;
use super::events::deposit;
use super::faults::Faulty;
use super::{EngineFactory, fresh};
use crate::event_store::{EventStore, KvEventStore};
use crate::recorded::RecordedEvent;
use crate::subscription::SubscribeOptions;

/// Long enough that a test that passes never waits for it.
const PATIENCE: Duration = Duration::from_secs(30);

fn amount(event: &RecordedEvent) -> u64 {
    match event.decode::<AccountEvent>().expect("decode") {
        AccountEvent::Deposited { amount } => amount,
        other => panic!("unexpected event {other:?}"),
    }
}

/// The next `count` events of `subscription`, failing the test on an error item or when
/// they take longer than [`PATIENCE`].
async fn take<S>(subscription: &mut S, count: usize) -> Vec<RecordedEvent>
where
    S: Stream<Item = Result<RecordedEvent, crate::EventStoreError>> + Unpin,
{
    let mut events = Vec::with_capacity(count);
    while events.len() < count {
        let next = subscription.next();
        let timeout = futures_timer::Delay::new(PATIENCE);
        match select(next, timeout).await {
            Either::Left((Some(Ok(event)), _)) => events.push(event),
            Either::Left((Some(Err(error)), _)) => panic!("subscription error: {error}"),
            Either::Left((None, _)) => panic!("a subscription never ends"),
            Either::Right(_) => panic!(
                "only {} of {count} events within {PATIENCE:?}",
                events.len()
            ),
        }
    }
    events
}

/// Appends one deposit of `amount` to `id` (its stream at `version`).
async fn append(store: &impl EventStore, id: &str, version: u64, amount: u64) {
    store
        .append("Account", id, version, &[deposit(amount)])
        .await
        .expect("append");
}

/// From position 0 (read as 1) it replays the whole log; from the middle, the rest.
pub async fn subscription_catches_up<F: EngineFactory>(factory: &F) {
    let store = KvEventStore::new(fresh(factory).await);
    for amount in 1..=30u64 {
        append(
            &store,
            &format!("a{}", amount % 4),
            (amount - 1) / 4,
            amount,
        )
        .await;
    }
    let mut all = Box::pin(store.subscribe_all(0));
    let events = take(&mut all, 30).await;
    let positions: Vec<u64> = events.iter().map(|event| event.position).collect();
    assert_eq!(positions, (1..=30).collect::<Vec<_>>());
    assert!(events.iter().all(|event| amount(event) == event.position));

    let mut middle = Box::pin(store.subscribe(12, SubscribeOptions::default().page_size(7)));
    let rest = take(&mut middle, 19).await;
    let positions: Vec<u64> = rest.iter().map(|event| event.position).collect();
    assert_eq!(positions, (12..=30).collect::<Vec<_>>());
    let last = &rest[18];
    assert_eq!(
        (
            last.aggregate_type.as_str(),
            last.aggregate_id.as_str(),
            last.version
        ),
        ("Account", "a2", 8)
    );
}

/// Once caught up, an append through the same store is delivered at once (the poll
/// interval here is far longer than the test's patience).
pub async fn subscription_follows_live_appends<F: EngineFactory>(factory: &F) {
    let store = KvEventStore::new(fresh(factory).await);
    append(&store, "live", 0, 1).await;
    let options = SubscribeOptions::default().poll_interval(PATIENCE * 4);
    let mut live = Box::pin(store.subscribe(1, options));
    assert_eq!(take(&mut live, 1).await[0].position, 1);
    let appends = async {
        for version in 1..20u64 {
            append(&store, "live", version, version + 1).await;
            futures_timer::Delay::new(Duration::from_millis(2)).await;
        }
    };
    let (events, ()) = join(take(&mut live, 19), appends).await;
    let amounts: Vec<u64> = events.iter().map(amount).collect();
    assert_eq!(amounts, (2..=20).collect::<Vec<_>>());
}

/// Filtered by aggregate type: only that type's events, in position order.
pub async fn subscription_filters_by_type<F: EngineFactory>(factory: &F) {
    let kv = Arc::new(Counted::new(fresh(factory).await));
    let store = KvEventStore::new(Arc::clone(&kv));
    for i in 0..20u64 {
        let aggregate_type = if i % 3 == 0 { "Order" } else { "Account" };
        store
            .append(aggregate_type, &format!("x{i}"), 0, &[deposit(i)])
            .await
            .expect("append");
    }
    let options = SubscribeOptions::default().aggregate_type("Order");
    let mut orders = Box::pin(store.subscribe(1, options));
    let before = kv.keys_read();
    let events = take(&mut orders, 7).await;
    assert_eq!(
        kv.keys_read() - before,
        7,
        "only the events of the type are read; the log is enough to pass over the others"
    );
    assert!(events.iter().all(|event| event.aggregate_type == "Order"));
    let amounts: Vec<u64> = events.iter().map(amount).collect();
    assert_eq!(amounts, vec![0, 3, 6, 9, 12, 15, 18]);
    let positions: Vec<u64> = events.iter().map(|event| event.position).collect();
    assert_eq!(positions, vec![1, 4, 7, 10, 13, 16, 19]);
}

/// While 8 writers append through one store and 8 more through another store on the same
/// engine (another process, as far as the first store knows), a subscription sees every
/// event once, in position order, with no gap.
pub async fn subscription_under_concurrent_writers_skips_nothing<F: EngineFactory>(factory: &F) {
    let kv = fresh(factory).await;
    let store = KvEventStore::new(Arc::clone(&kv));
    let other = KvEventStore::new(kv);
    const WRITERS: u64 = 8;
    const EACH: u64 = 25;
    let total = (2 * WRITERS * EACH) as usize;
    let writer = |store: &KvEventStore<_>, name: String| {
        let store = store.clone();
        async move {
            for version in 0..EACH {
                append(&store, &name, version, version + 1).await;
            }
        }
    };
    let writers = join_all(
        (0..WRITERS)
            .map(|w| writer(&store, format!("here-{w}")))
            .chain((0..WRITERS).map(|w| writer(&other, format!("there-{w}")))),
    );
    let options = SubscribeOptions::default().poll_interval(Duration::from_millis(5));
    let mut subscription = Box::pin(store.subscribe(1, options));
    let (events, _) = join(take(&mut subscription, total), writers).await;
    let positions: Vec<u64> = events.iter().map(|event| event.position).collect();
    assert_eq!(positions, (1..=total as u64).collect::<Vec<_>>());
    let mut seen: Vec<(String, u64)> = events
        .iter()
        .map(|event| (event.aggregate_id.clone(), event.version))
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), total, "every event once");
}

/// A read that fails is handed out as an error item; the subscription then goes on from
/// the same place, once reads work again: nothing skipped, nothing repeated.
pub async fn subscription_survives_read_errors<F: EngineFactory>(factory: &F) {
    use std::sync::atomic::Ordering;
    let kv = Arc::new(Faulty::new(fresh(factory).await));
    let store = KvEventStore::new(Arc::clone(&kv));
    for amount in 1..=5u64 {
        append(&store, "flaky", amount - 1, amount).await;
    }
    let options = SubscribeOptions::default().page_size(2);
    let mut subscription = Box::pin(store.subscribe(1, options));
    let first = take(&mut subscription, 3).await;
    kv.fail_reads.store(true, Ordering::SeqCst);
    let next = subscription.next().await;
    assert_eq!(
        next.as_ref().map(Result::is_ok),
        Some(true),
        "read before the fault"
    );
    let failed = subscription.next().await.expect("an item");
    let error = failed.expect_err("the failed read, as an item");
    assert!(error.to_string().contains("injected"), "{error}");
    kv.fail_reads.store(false, Ordering::SeqCst);
    append(&store, "flaky", 5, 6).await;
    let rest = take(&mut subscription, 2).await;
    let amounts: Vec<u64> = first
        .iter()
        .chain(next.iter().flatten())
        .chain(&rest)
        .map(amount)
        .collect();
    assert_eq!(amounts, vec![1, 2, 3, 4, 5, 6]);
}
