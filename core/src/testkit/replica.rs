//! The replica of a sync client: pulled pages at the server's positions, local appends
//! in the outbox, confirmations, rebases and parking. The "server" is a memory store.

use futures_util::StreamExt;

use super::{EngineFactory, fresh};
use crate::replica::{OutboxState, Replica};
use crate::{Codec, EventStore, EventStoreError, KvEventStore, MemoryKv, NewEvent, RecordedEvent};

fn event(n: u64) -> NewEvent {
    NewEvent::encode("Added", &serde_json::json!({ "n": n }), Codec::Json).unwrap()
}

async fn replica<F: EngineFactory>(factory: &F) -> Replica<std::sync::Arc<F::Kv>> {
    Replica::new(KvEventStore::new(fresh(factory).await))
}

/// The server's log after `after`, as a pull returns it.
async fn server_log(server: &KvEventStore<MemoryKv>, after: u64) -> Vec<RecordedEvent> {
    let page = server.read_all(after + 1, 4096).await.unwrap();
    page.iter().map(RecordedEvent::from).collect()
}

pub async fn replica_pulls_keep_the_servers_positions<F: EngineFactory>(factory: &F) {
    let replica = replica(factory).await;
    let server = KvEventStore::new(MemoryKv::new());
    for n in 0..3 {
        server.append("Ledger", "a", n, &[event(n)]).await.unwrap();
        server.append("Secret", "s", n, &[event(n)]).await.unwrap();
    }
    // A filtered pull: only the ledger, so positions 2, 4, 6 are never seen here.
    let pulled: Vec<RecordedEvent> = server_log(&server, 0)
        .await
        .into_iter()
        .filter(|e| e.aggregate_type == "Ledger")
        .collect();
    assert_eq!(replica.cursor().await.unwrap(), 0);
    let applied = replica.apply_pulled(0, &pulled[..2], 4).await.unwrap();
    assert_eq!(applied.events, 2);
    assert_eq!(replica.cursor().await.unwrap(), 4);
    // A pull that does not start at the cursor is another writer's: refused.
    let stale = replica.apply_pulled(0, &pulled[2..], 6).await;
    assert!(
        matches!(stale, Err(EventStoreError::Conflict { .. })),
        "{stale:?}"
    );
    replica.apply_pulled(4, &pulled[2..], 6).await.unwrap();
    let local: Vec<RecordedEvent> = replica
        .store()
        .read_all(1, 100)
        .await
        .unwrap()
        .iter()
        .map(RecordedEvent::from)
        .collect();
    assert_eq!(
        local, pulled,
        "the server's events, positions, versions and times"
    );
    assert_eq!(replica.store().last_position().await.unwrap(), 5);
    let followed: Vec<u64> = replica
        .store()
        .subscribe_all(1)
        .take(3)
        .map(|e| e.unwrap().position)
        .collect()
        .await;
    assert_eq!(
        followed,
        [1, 3, 5],
        "a local subscription sees the server's order"
    );
    let version = replica.optimistic_version("Ledger", "a").await.unwrap();
    assert_eq!(version, 3);
}

pub async fn replica_local_appends_wait_in_the_outbox<F: EngineFactory>(factory: &F) {
    let replica = replica(factory).await;
    let first = replica
        .append_pending("Ledger", "a", 0, &[event(1), event(2)])
        .await
        .unwrap();
    assert_eq!(
        (first.seq, first.first_version, first.last_version),
        (1, 1, 2)
    );
    let second = replica
        .append_pending("Ledger", "a", 2, &[event(3)])
        .await
        .unwrap();
    assert_eq!((second.seq, second.last_version), (2, 3));
    let other = replica
        .append_pending("Ledger", "b", 0, &[event(1)])
        .await
        .unwrap();
    assert_eq!(other.seq, 3, "one outbox for every aggregate");
    match replica.append_pending("Ledger", "a", 2, &[event(9)]).await {
        Err(EventStoreError::Conflict {
            expected: 2,
            actual: 3,
            ..
        }) => {}
        other => panic!("an append behind the optimistic version: {other:?}"),
    }
    assert_eq!(replica.optimistic_version("Ledger", "a").await.unwrap(), 3);
    let pending = replica.pending_events("Ledger", "a", 0).await.unwrap();
    let versions: Vec<u64> = pending.iter().map(|(version, _)| *version).collect();
    assert_eq!(versions, [1, 2, 3]);
    let outbox = replica.outbox(0, 10).await.unwrap();
    assert_eq!(outbox.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(outbox.iter().all(|e| e.state == OutboxState::Pending));
    assert_eq!(outbox[1].expected_version, 2);
    assert!(
        replica.store().read_all(1, 10).await.unwrap().is_empty(),
        "the confirmed log only grows by pulls"
    );
    let invalid = replica.append_pending("", "a", 0, &[event(1)]).await;
    assert!(
        matches!(invalid, Err(EventStoreError::InvalidName(_))),
        "{invalid:?}"
    );
    let empty = replica.append_pending("Ledger", "c", 0, &[]).await;
    assert!(
        matches!(empty, Err(EventStoreError::InvalidInput(_))),
        "{empty:?}"
    );
}

pub async fn replica_pulls_confirm_pushed_entries<F: EngineFactory>(factory: &F) {
    let replica = replica(factory).await;
    let server = KvEventStore::new(MemoryKv::new());
    let events = [event(1), event(2)];
    replica
        .append_pending("Ledger", "a", 0, &events)
        .await
        .unwrap();
    replica
        .append_pending("Ledger", "a", 2, &[event(3)])
        .await
        .unwrap();
    // Another device's event first, then the push of entry 1.
    server.append("Ledger", "z", 0, &[event(0)]).await.unwrap();
    let stored = server.append("Ledger", "a", 0, &events).await.unwrap();
    replica
        .mark_pushed(&[(1, stored.first_position, stored.last_position), (99, 1, 1)])
        .await
        .unwrap();
    let outbox = replica.outbox(0, 10).await.unwrap();
    assert_eq!(
        outbox[0].state,
        OutboxState::Pushed {
            first_position: 2,
            last_position: 3
        }
    );
    let applied = replica
        .apply_pulled(0, &server_log(&server, 0).await, 3)
        .await
        .unwrap();
    assert_eq!(applied.confirmed, [1], "the pushed entry came back");
    assert_eq!(replica.outbox(0, 10).await.unwrap().len(), 1);
    assert_eq!(replica.optimistic_version("Ledger", "a").await.unwrap(), 3);
    let pending = replica.pending_events("Ledger", "a", 2).await.unwrap();
    assert_eq!(
        pending.len(),
        1,
        "entry 2 still lies over the confirmed stream"
    );
    // An entry whose push answer was lost (still pending) is confirmed by its ids too.
    let stored = server
        .append(
            "Ledger",
            "a",
            2,
            &[replica.outbox(0, 10).await.unwrap()[0].events[0].clone()],
        )
        .await
        .unwrap();
    assert_eq!(stored.last_version, 3);
    let applied = replica
        .apply_pulled(3, &server_log(&server, 3).await, 4)
        .await
        .unwrap();
    assert_eq!(applied.confirmed, [2]);
    assert!(replica.outbox(0, 10).await.unwrap().is_empty());
    assert_eq!(replica.optimistic_version("Ledger", "a").await.unwrap(), 3);
    // With no entry left, the tip is gone: the next append goes on from the confirmed
    // version.
    let next = replica
        .append_pending("Ledger", "a", 3, &[event(4)])
        .await
        .unwrap();
    assert_eq!(next.first_version, 4);
}

pub async fn replica_conflicts_are_rebased_or_parked<F: EngineFactory>(factory: &F) {
    let replica = replica(factory).await;
    let server = KvEventStore::new(MemoryKv::new());
    replica
        .append_pending("Ledger", "a", 0, &[event(1)])
        .await
        .unwrap();
    replica
        .append_pending("Ledger", "a", 1, &[event(2)])
        .await
        .unwrap();
    // Another device took version 1 first; the pull brings it.
    server
        .append("Ledger", "a", 0, &[event(100)])
        .await
        .unwrap();
    replica
        .apply_pulled(0, &server_log(&server, 0).await, 1)
        .await
        .unwrap();
    assert_eq!(replica.entries_of("Ledger", "a").await.unwrap().len(), 2);
    // Rebase: the command run again on the server's state gives one new event.
    let rebased = replica
        .rebase("Ledger", "a", &[event(3)])
        .await
        .unwrap()
        .expect("a new entry");
    assert_eq!((rebased.first_version, rebased.last_version), (2, 2));
    let entries = replica.entries_of("Ledger", "a").await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        entries[0].expected_version, 1,
        "made on the confirmed version"
    );
    assert_eq!(replica.optimistic_version("Ledger", "a").await.unwrap(), 2);

    // Parking: kept and reported, out of the view, until discarded.
    let parked = replica
        .park("Ledger", "a", "conflict: the server is at version 5")
        .await
        .unwrap();
    assert_eq!(parked, [entries[0].seq]);
    let entries = replica.entries_of("Ledger", "a").await.unwrap();
    assert!(
        matches!(&entries[0].state, OutboxState::Parked { reason } if reason.contains("version 5"))
    );
    assert!(
        replica
            .pending_events("Ledger", "a", 1)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(replica.optimistic_version("Ledger", "a").await.unwrap(), 1);
    let next = replica
        .append_pending("Ledger", "a", 1, &[event(4)])
        .await
        .unwrap();
    assert_eq!(
        next.first_version, 2,
        "appends go on from the confirmed version"
    );
    assert!(replica.discard(entries[0].seq).await.unwrap());
    assert!(!replica.discard(entries[0].seq).await.unwrap());
    assert!(
        replica.discard(next.seq).await.is_err(),
        "only parked entries are discarded"
    );
    // Dropping the pending events: a rebase to nothing.
    assert_eq!(replica.rebase("Ledger", "a", &[]).await.unwrap(), None);
    assert!(replica.entries_of("Ledger", "a").await.unwrap().is_empty());
    assert_eq!(replica.optimistic_version("Ledger", "a").await.unwrap(), 1);
}

pub async fn replica_concurrent_local_appends_take_distinct_versions<F: EngineFactory>(
    factory: &F,
) {
    let replica = replica(factory).await;
    let (a, b) = futures_util::future::join(
        replica.append_pending("Ledger", "a", 0, &[event(1)]),
        replica.append_pending("Ledger", "a", 0, &[event(2)]),
    )
    .await;
    let landed = [&a, &b].iter().filter(|r| r.is_ok()).count();
    assert_eq!(landed, 1, "one version, one append: {a:?} {b:?}");
    let refused = if a.is_ok() { &b } else { &a };
    assert!(
        matches!(refused, Err(EventStoreError::Conflict { actual: 1, .. })),
        "{refused:?}"
    );
    assert_eq!(replica.outbox(0, 10).await.unwrap().len(), 1);
}

pub async fn replica_large_pulls_fit_the_engines_batches<F: EngineFactory>(factory: &F) {
    let replica = replica(factory).await;
    let server = KvEventStore::new(MemoryKv::new());
    for n in 0..300 {
        server
            .append("Ledger", &format!("a{}", n % 7), n / 7, &[event(n)])
            .await
            .unwrap();
    }
    let pulled = server_log(&server, 0).await;
    let applied = replica.apply_pulled(0, &pulled, 300).await.unwrap();
    assert_eq!(applied.events, 300);
    assert_eq!(replica.cursor().await.unwrap(), 300);
    let local = replica.store().read_all(1, 1000).await.unwrap();
    assert_eq!(local.len(), 300);
    assert_eq!(local.last().unwrap().position(), 300);
}

pub async fn replica_outboxes_of_large_entries_page_through<F: EngineFactory>(factory: &F) {
    let replica = replica(factory).await;
    // Entries larger than a scan page (4 MiB): every one is still listed.
    let large = NewEvent::encode("Blob", &"x".repeat(3 << 20), Codec::Json).unwrap();
    for id in ["a", "b", "c"] {
        replica
            .append_pending("Ledger", id, 0, std::slice::from_ref(&large))
            .await
            .unwrap();
    }
    replica
        .append_pending("Ledger", "d", 0, &[event(1)])
        .await
        .unwrap();
    let outbox = replica.outbox(0, 10).await.unwrap();
    let ids: Vec<&str> = outbox.iter().map(|e| e.aggregate_id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c", "d"]);
    assert_eq!(replica.outbox(2, 2).await.unwrap().len(), 2);
}
