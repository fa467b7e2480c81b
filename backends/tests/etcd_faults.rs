//! The etcd engine on real clusters that lose members: leaders killed under load, quorum
//! lost and regained, a member that stops answering, a full space quota, and batches
//! against etcd's default limits. Each test starts its own cluster on loopback ports of
//! its own (`common::etcd::Cluster`) and stops its processes by PID.
#![cfg(feature = "etcd")]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::etcd::Cluster;
use eventkv::{
    Codec, ErrorKind, EventStore, EventStoreError, KvEventStore, NewEvent, OrderedKv,
    SubscribeOptions, Uuid, WriteBatch,
};
use futures_util::StreamExt;

fn event(n: u64) -> NewEvent {
    NewEvent::encode("Deposited", &n, Codec::Json).expect("encode")
}

/// Appends `events` to `id` at `expected`, again with the same ids while the cluster
/// cannot answer (an ambiguous or unavailable outcome): returns when it is stored, with
/// how many attempts it took and whether an attempt was ambiguous.
/// `read`'s result, read again while the cluster is unavailable (a member restarted by
/// the test may still be calling an election) for up to 30 s: the checks after the kills
/// are about what is stored, not about when the cluster answers.
async fn settled<T, F: Future<Output = Result<T, EventStoreError>>>(
    mut read: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match read().await {
            Ok(value) => return value,
            Err(error) if error.is_retryable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!("read after the kills: {error}"),
        }
    }
}

async fn append_until_stored<K: OrderedKv>(
    store: &KvEventStore<K>,
    id: &str,
    expected: u64,
    events: &[NewEvent],
) -> (eventkv::Appended, bool) {
    let mut ambiguous = false;
    let started = Instant::now();
    loop {
        match store.append("Account", id, expected, events).await {
            Ok(appended) => return (appended, ambiguous),
            Err(error) if error.is_retryable() => {
                ambiguous |= error.is_ambiguous();
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "{id}: not stored within 60 s: {error}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("{id}: {error}"),
        }
    }
}

/// 8 writers append for a while (60 s; `EVENTKV_ETCD_FAULT_SECONDS`) while the leader is
/// killed every 5 to 8 s and restarted: every append answered `Ok` is stored once, every
/// ambiguous one at most once and completed by its retry, the log is contiguous, and a
/// subscriber that ran throughout saw every position once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_leaders_lose_no_acknowledged_append() {
    let Some(mut cluster) = Cluster::start(module_path!(), 24100, 3, &[]) else {
        return;
    };
    let seconds: u64 = std::env::var("EVENTKV_ETCD_FAULT_SECONDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(60);
    let url = cluster.url_all("leader-kills");
    let store = KvEventStore::new(eventkv_backends::open(&url).await.expect("open"));
    let follower = KvEventStore::new(eventkv_backends::open(&url).await.expect("open"));
    let seen = Arc::new(Mutex::new(Vec::<u64>::new()));
    let subscriber = tokio::spawn({
        let seen = Arc::clone(&seen);
        async move {
            let options = SubscribeOptions::default().poll_interval(Duration::from_millis(20));
            let mut events = std::pin::pin!(follower.subscribe(1, options));
            while let Some(item) = events.next().await {
                match item {
                    Ok(event) => seen.lock().expect("seen").push(event.position),
                    Err(error) => assert!(error.is_retryable(), "the subscription failed: {error}"),
                }
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let acknowledged = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let mut writers = Vec::new();
    for writer in 0..8 {
        let store = store.clone();
        let acknowledged = Arc::clone(&acknowledged);
        writers.push(tokio::spawn(async move {
            let id = format!("writer-{writer}");
            let mut ids: Vec<Uuid> = Vec::new();
            let mut ambiguous = 0;
            while Instant::now() < deadline {
                let events = [event(ids.len() as u64)];
                let (appended, was_ambiguous) =
                    append_until_stored(&store, &id, ids.len() as u64, &events).await;
                assert_eq!(appended.first_version, ids.len() as u64 + 1, "{id}");
                acknowledged.lock().expect("acks").push(Instant::now());
                ambiguous += usize::from(was_ambiguous);
                ids.push(events[0].event_id);
            }
            (id, ids, ambiguous)
        }));
    }
    let mut kills = Vec::new();
    let mut pause = 5_000u64;
    while Instant::now() + Duration::from_millis(pause) < deadline {
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let leader = cluster.wait_for_leader(Duration::from_secs(20));
        cluster.kill(leader);
        kills.push(Instant::now());
        tokio::time::sleep(Duration::from_millis(1500)).await;
        cluster.start_member(leader);
        pause = 5_000 + (pause * 7919) % 3_001;
    }
    let mut written = Vec::new();
    let mut ambiguous = 0;
    for writer in writers {
        let (id, ids, was_ambiguous) = writer.await.expect("writer");
        ambiguous += was_ambiguous;
        written.push((id, ids));
    }
    assert!(kills.len() >= 6, "{} kills in {seconds} s", kills.len());

    // Every acknowledged append is stored once, in the order it was acknowledged.
    let mut total = 0;
    for (id, ids) in &written {
        let mut stored: Vec<Uuid> = Vec::new();
        loop {
            let from = stored.len() as u64 + 1;
            let page = settled(|| store.read_stream("Account", id, from, u64::MAX, 4096)).await;
            if page.is_empty() {
                break;
            }
            stored.extend(page.iter().map(|event| event.event_id()));
        }
        let first_difference = stored.iter().zip(ids).position(|(a, b)| a != b);
        assert!(
            stored.len() == ids.len() && first_difference.is_none(),
            "{id}: {} stored, {} acknowledged, first difference at {first_difference:?}",
            stored.len(),
            ids.len()
        );
        total += ids.len() as u64;
    }
    // The log is contiguous and holds each event once.
    let mut position = 1;
    let mut logged = std::collections::HashSet::new();
    while position <= total {
        let page = settled(|| store.read_all(position, 4096)).await;
        assert!(!page.is_empty(), "the log ends at {position} of {total}");
        for event in page.iter() {
            assert_eq!(event.position(), position, "contiguous");
            assert!(logged.insert(event.event_id()), "an event logged twice");
            position += 1;
        }
    }
    assert!(settled(|| store.read_all(position, 10)).await.is_empty());
    // The subscriber saw every position once, in order.
    let caught_up = Instant::now();
    while seen.lock().expect("seen").len() < total as usize {
        assert!(
            caught_up.elapsed() < Duration::from_secs(30),
            "the subscriber fell behind"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    subscriber.abort();
    let seen = seen.lock().expect("seen").clone();
    let out_of_order = seen
        .iter()
        .zip(1..)
        .position(|(&seen, expected)| seen != expected);
    assert!(
        seen.len() as u64 == total && out_of_order.is_none(),
        "the subscriber saw {} of {total} positions, the first out of order at {out_of_order:?}",
        seen.len()
    );

    // Failover stall: from each kill to the next acknowledged append.
    let acks = acknowledged.lock().expect("acks").clone();
    let mut stalls: Vec<f64> = kills
        .iter()
        .filter_map(|kill| {
            acks.iter()
                .find(|ack| *ack > kill)
                .map(|ack| (*ack - *kill).as_secs_f64())
        })
        .collect();
    stalls.sort_by(f64::total_cmp);
    eprintln!(
        "etcd failover: {} kills, {total} appends of 1 event by 8 writers in {seconds} s ({:.0}/s), {ambiguous} ambiguous then completed; stall from kill to next acknowledged append: median {:.2} s, max {:.2} s",
        kills.len(),
        total as f64 / seconds as f64,
        stalls.get(stalls.len() / 2).copied().unwrap_or_default(),
        stalls.last().copied().unwrap_or_default(),
    );
}

/// Two members of three stopped: the next append fails within 2 s saying the cluster has
/// no quorum, and writes nothing; with them back, the same store appends again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_quorum_fails_fast_and_heals_without_reopening() {
    let Some(mut cluster) = Cluster::start(module_path!(), 24200, 3, &[]) else {
        return;
    };
    let store = KvEventStore::new(
        eventkv_backends::open(&cluster.url_all("quorum"))
            .await
            .expect("open"),
    );
    store
        .append("Account", "a", 0, &[event(1)])
        .await
        .expect("append");
    cluster.kill(1);
    cluster.kill(2);
    // Retried with the same ids: an ambiguous first attempt may still land.
    let second = [event(2)];
    let started = Instant::now();
    let error = store
        .append("Account", "a", 1, &second)
        .await
        .expect_err("no quorum");
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "failed after {took:?}: {error}"
    );
    assert!(
        matches!(error.kind(), ErrorKind::Unavailable | ErrorKind::Ambiguous),
        "{error}"
    );
    assert!(error.to_string().contains("no quorum"), "{error}");
    let again = Instant::now();
    let error = store
        .append("Account", "a", 1, &second)
        .await
        .expect_err("still no quorum");
    assert!(again.elapsed() < Duration::from_secs(2), "{error}");
    assert!(error.to_string().contains("no quorum"), "{error}");

    cluster.start_member(1);
    cluster.start_member(2);
    let (appended, _) = append_until_stored(&store, "a", 1, &second).await;
    assert_eq!(
        appended.last_version, 2,
        "the store went on without reopening"
    );
    let page = store
        .read_stream("Account", "a", 1, u64::MAX, 10)
        .await
        .expect("read");
    let ids: Vec<Uuid> = page.iter().map(|event| event.event_id()).collect();
    assert_eq!(ids[1..], [second[0].event_id], "stored once, whole");
}

/// A member that stops answering (stopped, not killed) first in the URL: the store opens,
/// and requests go to the other members.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_stops_answering_is_routed_around() {
    let Some(cluster) = Cluster::start(module_path!(), 24300, 3, &[]) else {
        return;
    };
    let leader = cluster.wait_for_leader(Duration::from_secs(20));
    let silent = (leader + 1) % 3;
    let order = [silent, (silent + 1) % 3, (silent + 2) % 3];
    cluster.signal(silent, "-STOP");
    let url = cluster.url(&order, "partition", "");
    let store = KvEventStore::new(eventkv_backends::open(&url).await.expect("opens past it"));
    let started = Instant::now();
    for n in 0..20 {
        store
            .append("Account", "p", n, &[event(n)])
            .await
            .unwrap_or_else(|error| panic!("append {n}: {error}"));
    }
    let version = store.current_version("Account", "p").await.expect("read");
    assert_eq!(version, 20);
    let took = started.elapsed();
    cluster.signal(silent, "-CONT");
    assert!(
        took < Duration::from_secs(5),
        "20 appends took {took:?}: requests kept going to the silent member"
    );
}

/// With etcd's default limits (128 operations, 1.5 MiB a transaction): an append too
/// large for one transaction is refused naming the limit, nothing written; concurrent
/// appends that fit are batched within the limits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_stay_within_the_default_limits() {
    let Some(cluster) = Cluster::start(module_path!(), 24400, 1, &[]) else {
        return;
    };
    let store = KvEventStore::new(
        eventkv_backends::open(&cluster.url_all("limits"))
            .await
            .expect("open"),
    );
    let many: Vec<NewEvent> = (0..200).map(event).collect();
    let error = store
        .append("Account", "big", 0, &many)
        .await
        .expect_err("200 events do not fit");
    assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
    assert!(error.to_string().contains("--max-txn-ops 128"), "{error}");
    assert_eq!(
        store.current_version("Account", "big").await.expect("read"),
        0
    );
    assert!(
        store.read_all(1, 10).await.expect("read").is_empty(),
        "nothing written"
    );

    let writers: Vec<_> = (0..32)
        .map(|writer| {
            let store = store.clone();
            tokio::spawn(async move {
                for n in 0..10u64 {
                    let events: Vec<NewEvent> = (0..=(writer % 4) * 10).map(event).collect();
                    let id = format!("w{writer}");
                    let expected = store.current_version("Account", &id).await.expect("read");
                    store
                        .append("Account", &id, expected, &events)
                        .await
                        .unwrap_or_else(|error| panic!("{id} #{n}: {error}"));
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer");
    }
    let expected: u64 = (0..32u64).map(|writer| 10 * (1 + (writer % 4) * 10)).sum();
    let mut position = 1;
    while let Ok(page) = store.read_all(position, 4096).await {
        if page.is_empty() {
            break;
        }
        position += page.len() as u64;
    }
    assert_eq!(position - 1, expected, "every append landed");

    // The cluster's own limit: a batch the engine is told fits is refused by etcd, whole.
    let lax = eventkv_backends::open(&format!("{}?max_txn_ops=1000", cluster.url_all("limits")))
        .await
        .expect("open");
    let mut batch = WriteBatch::new();
    for n in 0..300u32 {
        batch.put(format!("k{n:04}").into_bytes(), b"v".to_vec());
    }
    let error = lax
        .write(batch)
        .await
        .expect_err("etcd refuses 300 operations");
    assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
    assert_eq!(lax.get(b"k0000").await.expect("get"), None);
}

/// A full space quota is `StorageFull`, saying how to make room; nothing of the write
/// that met it is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_space_quota_is_storage_full() {
    let Some(cluster) = Cluster::start(
        module_path!(),
        24500,
        1,
        &["--quota-backend-bytes", "8388608"],
    ) else {
        return;
    };
    let store = KvEventStore::new(
        eventkv_backends::open(&cluster.url_all("quota"))
            .await
            .expect("open"),
    );
    let blob = vec![7u8; 512 * 1024];
    let mut version = 0;
    let error = loop {
        let events = [NewEvent::encode("Blob", &blob, Codec::Bincode).expect("encode")];
        match store.append("Blob", "b", version, &events).await {
            Ok(_) => version += 1,
            Err(error) => break error,
        }
        assert!(version < 100, "the quota never filled");
    };
    assert!(
        matches!(
            error,
            EventStoreError::Kv(eventkv::KvError::StorageFull { .. })
        ),
        "{error:?}"
    );
    assert_eq!(error.kind(), ErrorKind::StorageFull);
    assert!(error.to_string().contains("compact"), "{error}");
    assert_eq!(
        store
            .current_version("Blob", "b")
            .await
            .expect("reads still work"),
        version,
        "nothing of the refused append"
    );
}

/// A cluster that is not there: opening fails within the engine's timeout, retryable,
/// saying that no member could be reached (not that the cluster lost its quorum).
#[tokio::test]
async fn a_cluster_that_is_not_there_is_named() {
    let started = Instant::now();
    let error = eventkv_backends::open("etcd://127.0.0.1:1,127.0.0.1:2/nothing")
        .await
        .expect_err("nothing listens there");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(error.is_retryable() && !error.is_ambiguous(), "{error}");
    let message = error.to_string();
    assert!(message.contains("could be reached"), "{message}");
    assert!(message.contains("127.0.0.1:1,127.0.0.1:2"), "{message}");
}
