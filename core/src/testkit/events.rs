//! The event store: append, expected version, conflicts, ranges, global order.

use std::collections::HashSet;
use std::sync::Arc;

use uuid::Uuid;

use super::aggregates::AccountEvent;
use super::counted::Counted;
use super::{EngineFactory, fresh, yield_now};
use crate::codec::Codec;
use crate::envelope::EventMetadata;
use crate::event_store::{
    Appended, EventPage, EventStore, EventStoreError, KvEventStore, NewEvent,
};

/// A JSON `Deposited` event of `amount`.
pub(crate) fn deposit(amount: u64) -> NewEvent {
    NewEvent::encode(
        "Deposited",
        &AccountEvent::Deposited { amount },
        Codec::Json,
    )
    .expect("encode")
}

fn deposits(from: u64, count: u64) -> Vec<NewEvent> {
    (from..from + count).map(deposit).collect()
}

/// Appends `event` to the stream at its current version, retrying when another writer
/// got there first; returns how many conflicts it retried. For concurrency tests.
pub async fn append_retrying(
    store: &impl EventStore,
    aggregate_type: &str,
    aggregate_id: &str,
    event: &NewEvent,
) -> u64 {
    let mut conflicts = 0;
    loop {
        let version = store
            .current_version(aggregate_type, aggregate_id)
            .await
            .expect("version");
        // Lets other writers run between the read and the append.
        yield_now().await;
        match store
            .append(
                aggregate_type,
                aggregate_id,
                version,
                std::slice::from_ref(event),
            )
            .await
        {
            Ok(_) => return conflicts,
            Err(EventStoreError::Conflict { .. }) => conflicts += 1,
            Err(other) => panic!("append to {aggregate_type} {aggregate_id:?} failed: {other}"),
        }
    }
}

/// The amounts of the `Deposited` events of `page`, each once; panics on another event.
pub fn deposited_amounts(page: &EventPage) -> HashSet<u64> {
    page.iter()
        .map(|e| match e.decode::<AccountEvent>().expect("decode") {
            AccountEvent::Deposited { amount } => amount,
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

/// What identifies a stored event: (version, position, event id).
pub type EventSummary = (u64, u64, Uuid);

/// Every event of one stream, read page by page.
pub async fn stream_summary(
    store: &impl EventStore,
    aggregate_type: &str,
    id: &str,
) -> Vec<EventSummary> {
    let mut events = Vec::new();
    let mut next = 1;
    loop {
        let page = store
            .read_stream(aggregate_type, id, next, u64::MAX, usize::MAX)
            .await
            .expect("read stream");
        events.extend(
            page.iter()
                .map(|e| (e.version(), e.position(), e.event_id())),
        );
        match page.last() {
            Some(last) if page.may_have_more() => next = last.version() + 1,
            _ => return events,
        }
    }
}

/// Every event of the global log, in position order, read page by page.
pub async fn log_summary(store: &impl EventStore) -> Vec<EventSummary> {
    let mut events = Vec::new();
    let mut next = 1;
    loop {
        let page = store.read_all(next, usize::MAX).await.expect("read all");
        events.extend(
            page.iter()
                .map(|e| (e.version(), e.position(), e.event_id())),
        );
        match page.last() {
            Some(last) if page.may_have_more() => next = last.position() + 1,
            _ => return events,
        }
    }
}

async fn store<F: EngineFactory>(factory: &F) -> KvEventStore<Arc<F::Kv>> {
    KvEventStore::new(fresh(factory).await)
}

async fn whole_stream(store: &impl EventStore, aggregate_type: &str, id: &str) -> EventPage {
    store
        .read_stream(aggregate_type, id, 1, u64::MAX, usize::MAX)
        .await
        .expect("read stream")
}

async fn whole_log(store: &impl EventStore) -> EventPage {
    store.read_all(1, usize::MAX).await.expect("read all")
}

pub async fn append_and_read<F: EngineFactory>(factory: &F) {
    let store = store(factory).await;
    let correlation = Uuid::new_v4();
    let causation = Uuid::new_v4();
    let opened = NewEvent::encode(
        "Opened",
        &AccountEvent::Opened {
            owner: "ada".into(),
        },
        Codec::Bincode,
    )
    .expect("encode")
    .with_metadata(EventMetadata {
        correlation_id: Some(correlation),
        causation_id: Some(causation),
    });
    let new = vec![opened.clone(), deposit(5)];
    let appended = store
        .append("Account", "a-1", 0, &new)
        .await
        .expect("append");
    assert_eq!((appended.first_version, appended.last_version), (1, 2));
    assert_eq!((appended.first_position, appended.last_position), (1, 2));
    assert_eq!(
        store
            .current_version("Account", "a-1")
            .await
            .expect("version"),
        2
    );
    let stored = whole_stream(&store, "Account", "a-1").await;
    assert_eq!(stored.len(), 2);
    for (i, (event, new)) in stored.iter().zip(&new).enumerate() {
        assert_eq!(event.event_id(), new.event_id);
        assert_eq!(event.event_type(), new.event_type);
        assert_eq!(event.aggregate_type(), "Account");
        assert_eq!(event.aggregate_id(), "a-1");
        assert_eq!(event.version(), i as u64 + 1);
        assert_eq!(event.position(), i as u64 + 1);
        assert_eq!(event.codec(), new.codec);
        assert_eq!(event.payload(), &new.payload[..]);
        assert_eq!(event.metadata(), new.metadata);
        assert!(
            event.timestamp().as_micros() > 1_600_000_000_000_000,
            "timestamp is now-ish"
        );
    }
    assert_eq!(
        stored
            .get(0)
            .expect("event 1")
            .decode::<AccountEvent>()
            .expect("decode"),
        AccountEvent::Opened {
            owner: "ada".into()
        }
    );
    assert_eq!(
        stored.get(1).expect("event 2").metadata(),
        EventMetadata::default()
    );
    assert_ne!(
        stored.get(0).expect("event 1").event_id(),
        stored.get(1).expect("event 2").event_id()
    );
    assert_eq!(
        store
            .current_version("Account", "nobody")
            .await
            .expect("version"),
        0
    );
    assert!(whole_stream(&store, "Account", "nobody").await.is_empty());
}

pub async fn expected_version_conflict<F: EngineFactory>(factory: &F) {
    let store = store(factory).await;
    store
        .append("Account", "a", 0, &deposits(1, 3))
        .await
        .expect("append");
    for expected in [0, 2, 4, 100] {
        match store
            .append("Account", "a", expected, &deposits(10, 2))
            .await
        {
            Err(EventStoreError::Conflict {
                aggregate_type,
                aggregate_id,
                expected: e,
                actual,
            }) => {
                assert_eq!(
                    (aggregate_type.as_str(), aggregate_id.as_str()),
                    ("Account", "a")
                );
                assert_eq!((e, actual), (expected, 3));
            }
            other => panic!("expected a conflict for expected version {expected}, got {other:?}"),
        }
    }
    match store.append("Account", "new", 5, &deposits(1, 1)).await {
        Err(EventStoreError::Conflict {
            expected: 5,
            actual: 0,
            ..
        }) => {}
        other => panic!("expected a conflict on a new stream, got {other:?}"),
    }
    assert_eq!(
        whole_stream(&store, "Account", "a").await.len(),
        3,
        "nothing written"
    );
    assert_eq!(
        whole_log(&store).await.len(),
        3,
        "nothing written to the global log"
    );
    store
        .append("Account", "a", 3, &deposits(4, 1))
        .await
        .expect("the right version appends");
    assert_eq!(
        store
            .current_version("Account", "a")
            .await
            .expect("version"),
        4
    );
}

pub async fn read_ranges_and_pages<F: EngineFactory>(factory: &F) {
    let store = store(factory).await;
    for batch in 0..5u64 {
        store
            .append("Account", "a", batch * 500, &deposits(batch * 500 + 1, 500))
            .await
            .expect("append");
    }
    let versions = |events: &EventPage| events.iter().map(|e| e.version()).collect::<Vec<_>>();
    let middle = store
        .read_stream("Account", "a", 10, 20, usize::MAX)
        .await
        .expect("read");
    assert_eq!(versions(&middle), (10..=20).collect::<Vec<_>>());
    let limited = store
        .read_stream("Account", "a", 10, 20, 4)
        .await
        .expect("read");
    assert_eq!(versions(&limited), vec![10, 11, 12, 13]);
    let tail = store
        .read_stream("Account", "a", 2495, u64::MAX, usize::MAX)
        .await
        .expect("read");
    assert_eq!(versions(&tail), (2495..=2500).collect::<Vec<_>>());
    assert!(
        store
            .read_stream("Account", "a", 2501, u64::MAX, 10)
            .await
            .expect("read")
            .is_empty()
    );
    assert!(
        store
            .read_stream("Account", "a", 20, 10, 10)
            .await
            .expect("read")
            .is_empty()
    );
    assert!(
        store
            .read_stream("Account", "a", 1, 10, 0)
            .await
            .expect("read")
            .is_empty()
    );
    let mut next = 1;
    let mut amounts = Vec::new();
    loop {
        let page = store
            .read_stream("Account", "a", next, u64::MAX, 333)
            .await
            .expect("page");
        for event in page.iter() {
            match event.decode::<AccountEvent>().expect("decode") {
                AccountEvent::Deposited { amount } => amounts.push(amount),
                other => panic!("unexpected {other:?}"),
            }
        }
        match page.last() {
            Some(last) if page.len() == 333 => next = last.version() + 1,
            _ => break,
        }
    }
    assert_eq!(
        amounts,
        (1..=2500).collect::<Vec<_>>(),
        "pages give every event once, in order"
    );
}

pub async fn read_all_in_commit_order<F: EngineFactory>(factory: &F) {
    let store = store(factory).await;
    let mut expected = Vec::new();
    let ids = ["x", "y", "z"];
    let mut versions = [0u64; 3];
    for round in 0..12u64 {
        let which = (round * 7 % 3) as usize;
        let count = 1 + round % 4;
        let events = deposits(round * 100, count);
        store
            .append("Account", ids[which], versions[which], &events)
            .await
            .expect("append");
        for (offset, event) in (1..).zip(&events) {
            expected.push((ids[which], versions[which] + offset, event.event_id));
        }
        versions[which] += count;
    }
    store
        .append("Other", "x", 0, &deposits(1, 2))
        .await
        .expect("append");
    let log = whole_log(&store).await;
    assert_eq!(log.len(), expected.len() + 2);
    for (position, (event, (id, version, event_id))) in (1..).zip(log.iter().zip(&expected)) {
        assert_eq!(event.position(), position, "positions are 1, 2, 3, ...");
        assert_eq!(
            (event.aggregate_type(), event.aggregate_id()),
            ("Account", *id)
        );
        assert_eq!((event.version(), event.event_id()), (*version, *event_id));
    }
    assert_eq!(log.last().expect("events").aggregate_type(), "Other");
    let mut paged = Vec::new();
    let mut from = 1;
    loop {
        let page = store.read_all(from, 5).await.expect("page");
        paged.extend(page.iter().map(|event| event.event_id()));
        match page.last() {
            Some(last) => from = last.position() + 1,
            None => break,
        }
    }
    let all: Vec<Uuid> = log.iter().map(|event| event.event_id()).collect();
    assert_eq!(
        paged, all,
        "paged read_all gives every event once, in commit order"
    );
    let later = store
        .read_all(log.len() as u64 - 1, 10)
        .await
        .expect("read");
    assert_eq!(later.len(), 2);
    assert_eq!(
        store
            .read_all(0, 3)
            .await
            .expect("position 0 reads from the start")
            .len(),
        3
    );
}

/// Eight tasks taking turns append 200 events each to one stream, retrying conflicts.
pub async fn interleaved_appends_lose_nothing<F: EngineFactory>(factory: &F) {
    let store = Arc::new(store(factory).await);
    let task = |store: Arc<KvEventStore<Arc<F::Kv>>>, task: u64| async move {
        let mut conflicts = 0;
        for i in 0..200u64 {
            conflicts +=
                append_retrying(&*store, "Account", "shared", &deposit(task * 1000 + i)).await;
        }
        conflicts
    };
    let conflicts: u64 = futures_util::future::join_all((0..8).map(|t| task(store.clone(), t)))
        .await
        .into_iter()
        .sum();
    assert!(conflicts > 0, "interleaved appends must have conflicted");
    let stream = whole_stream(&*store, "Account", "shared").await;
    assert_eq!(
        stream.iter().map(|e| e.version()).collect::<Vec<_>>(),
        (1..=1600).collect::<Vec<_>>()
    );
    let amounts = deposited_amounts(&stream);
    assert_eq!(
        amounts.len(),
        1600,
        "every event once: none lost, none duplicated"
    );
    let log = whole_log(&*store).await;
    assert_eq!(
        log.iter().map(|e| e.position()).collect::<Vec<_>>(),
        (1..=1600).collect::<Vec<_>>()
    );
}

pub async fn invalid_appends_write_nothing<F: EngineFactory>(factory: &F) {
    let store = store(factory).await;
    assert!(matches!(
        store.append("Account", "a", 0, &[]).await,
        Err(EventStoreError::InvalidInput(_))
    ));
    let err = store
        .append("", "a", 0, &deposits(1, 1))
        .await
        .expect_err("empty type");
    assert!(err.to_string().contains("aggregate type"), "{err}");
    let err = store
        .append("Account", "", 0, &deposits(1, 1))
        .await
        .expect_err("empty id");
    assert!(err.to_string().contains("aggregate id"), "{err}");
    let long = "i".repeat(crate::keys::MAX_NAME_LEN + 1);
    assert!(
        store
            .append("Account", &long, 0, &deposits(1, 1))
            .await
            .is_err()
    );
    let mut unnamed = deposit(1);
    unnamed.event_type.clear();
    let mut batch = deposits(1, 2);
    batch.push(unnamed);
    assert!(matches!(
        store.append("Account", "a", 0, &batch).await,
        Err(EventStoreError::InvalidInput(_))
    ));
    let mut shapeless = deposits(1, 2);
    shapeless[1].shape_version = 0;
    match store.append("Account", "a", 0, &shapeless).await {
        Err(EventStoreError::InvalidInput(message)) => {
            assert!(message.contains("shape versions start at 1"), "{message}");
        }
        other => panic!("shape version 0: {other:?}"),
    }
    let twice = deposit(1);
    match store
        .append("Account", "a", 0, &[twice.clone(), deposit(2), twice])
        .await
    {
        Err(EventStoreError::InvalidInput(message)) => {
            assert!(message.contains("appears twice"), "{message}");
        }
        other => panic!("an event id twice in one append: {other:?}"),
    }
    assert!(
        store.read_all(1, 10).await.expect("read").is_empty(),
        "nothing written"
    );
    assert_eq!(
        store
            .current_version("Account", "a")
            .await
            .expect("version"),
        0
    );
}

pub async fn streams_are_isolated<F: EngineFactory>(factory: &F) {
    let store = store(factory).await;
    store
        .append("ab", "c", 0, &deposits(1, 2))
        .await
        .expect("append");
    store
        .append("a", "bc", 0, &deposits(1, 3))
        .await
        .expect("append");
    store
        .append("a", "b", 0, &deposits(1, 1))
        .await
        .expect("append");
    store
        .append("a", "b\u{0}", 0, &deposits(1, 4))
        .await
        .expect("append");
    store
        .append("Ünïcode", "ключ/🦀", 0, &deposits(1, 5))
        .await
        .expect("append");
    assert_eq!(store.current_version("ab", "c").await.expect("v"), 2);
    assert_eq!(store.current_version("a", "bc").await.expect("v"), 3);
    assert_eq!(store.current_version("a", "b").await.expect("v"), 1);
    assert_eq!(store.current_version("a", "b\u{0}").await.expect("v"), 4);
    assert_eq!(whole_stream(&store, "a", "b").await.len(), 1);
    let unicode = whole_stream(&store, "Ünïcode", "ключ/🦀").await;
    assert_eq!(unicode.len(), 5);
    assert_eq!(unicode.get(0).expect("event").aggregate_id(), "ключ/🦀");
    assert_eq!(whole_log(&store).await.len(), 15);
}

pub async fn retried_append_is_idempotent<F: EngineFactory>(factory: &F) {
    let store = store(factory).await;
    let first = deposits(1, 3);
    let appended = store
        .append("Account", "a", 0, &first)
        .await
        .expect("append");
    store
        .append("Account", "other", 0, &deposits(10, 2))
        .await
        .expect("append elsewhere");
    let again = store
        .append("Account", "a", 0, &first)
        .await
        .expect("the same events again: success, nothing written");
    assert!(!appended.duplicate, "the first append wrote its events");
    let original = Appended {
        duplicate: true,
        ..appended
    };
    assert_eq!(
        again, original,
        "the original positions come back, as a duplicate"
    );
    assert_eq!(whole_stream(&store, "Account", "a").await.len(), 3);
    assert_eq!(
        whole_log(&store).await.len(),
        5,
        "nothing was written twice"
    );

    // A prefix of the same append is also already there.
    let prefix = store
        .append("Account", "a", 0, &first[..2])
        .await
        .expect("prefix");
    assert_eq!((prefix.last_version, prefix.last_position), (2, 2));
    assert!(prefix.duplicate, "a prefix of stored events is a duplicate");
    // Still idempotent after later appends to the stream.
    store
        .append("Account", "a", 3, &deposits(4, 1))
        .await
        .expect("append");
    assert_eq!(
        store
            .append("Account", "a", 0, &first)
            .await
            .expect("retry"),
        original
    );

    // Other events at those versions stay a conflict, also when only one differs.
    let mut mixed = first.clone();
    mixed[2] = deposit(3);
    for events in [deposits(1, 3), mixed] {
        match store.append("Account", "a", 0, &events).await {
            Err(EventStoreError::Conflict {
                expected: 0,
                actual: 4,
                ..
            }) => {}
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
    assert_eq!(whole_log(&store).await.len(), 6);
}

/// Flips each byte of a stored event in turn: every flip is a `Corrupt` read, never a
/// different event.
pub async fn flipped_event_bytes_are_corrupt<F: EngineFactory>(factory: &F) {
    use crate::kv::{OrderedKv, WriteBatch};
    let kv = fresh(factory).await;
    let store = KvEventStore::new(kv.clone());
    let event = deposit(5).with_metadata(EventMetadata {
        correlation_id: Some(Uuid::new_v4()),
        causation_id: None,
    });
    store
        .append("Account", "a", 0, &[event])
        .await
        .expect("append");
    let key = crate::keys::StreamKeys::new("Account", "a")
        .expect("names")
        .event(1);
    let original = kv.get(&key).await.expect("get").expect("stored");
    for at in 0..original.len() {
        let mut flipped = original.to_vec();
        flipped[at] ^= 0x10;
        let mut batch = WriteBatch::new();
        batch.put(key.clone(), flipped);
        kv.write(batch).await.expect("overwrite");
        match store.read_stream("Account", "a", 1, 1, 10).await {
            Err(EventStoreError::Corrupt { key: shown, reason }) => {
                assert!(shown.contains("Account"), "the key is named: {shown}");
                assert!(!reason.is_empty());
            }
            other => panic!("flip at byte {at}: expected Corrupt, got {other:?}"),
        }
        assert!(
            matches!(
                store.read_all(1, 10).await,
                Err(EventStoreError::Corrupt { .. })
            ),
            "flip at byte {at}: read_all"
        );
    }
}

/// A head, log entry or version read from storage that would overflow is `Corrupt`, not
/// a panic or a wrapped number.
pub async fn impossible_stored_numbers_are_corrupt<F: EngineFactory>(factory: &F) {
    use crate::kv::{OrderedKv, WriteBatch};
    let kv = fresh(factory).await;
    let store = KvEventStore::new(kv.clone());
    let mut batch = WriteBatch::new();
    batch.put(crate::keys::global_head(), u64::MAX.to_be_bytes().to_vec());
    kv.write(batch).await.expect("write head");
    match store.append("Account", "a", 0, &deposits(1, 1)).await {
        Err(EventStoreError::Corrupt { key, reason }) => {
            assert!(
                key.contains('h') && reason.contains("global head"),
                "{key}: {reason}"
            );
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // A log entry whose run would pass u64::MAX.
    let kv = fresh(factory).await;
    let store = KvEventStore::new(kv.clone());
    let stream = crate::keys::StreamKeys::new("Account", "a").expect("names");
    let mut batch = WriteBatch::new();
    batch.put(
        crate::keys::global_log(u64::MAX - 1),
        crate::envelope::encode_log_entry(5, &stream.event(1)),
    );
    kv.write(batch).await.expect("write log");
    assert!(matches!(
        store.read_all(u64::MAX, 10).await,
        Err(EventStoreError::Corrupt { .. })
    ));
    assert!(matches!(
        store.read_all(1, 10).await,
        Err(EventStoreError::Corrupt { .. })
    ));
}

/// Reads are bounded whatever the limit, and an append longer than a page is read whole
/// by paging (not reported as a missing event).
pub async fn reads_are_bounded<F: EngineFactory>(factory: &F) {
    use crate::kv::MAX_SCAN_ENTRIES;
    let store = store(factory).await;
    let count = MAX_SCAN_ENTRIES as u64 + 100;
    let appended = store
        .append("Account", "big", 0, &deposits(1, count))
        .await
        .expect("one append longer than a page");
    assert_eq!(appended.last_position, count);
    let first = store
        .read_stream("Account", "big", 1, u64::MAX, usize::MAX)
        .await
        .expect("read");
    assert_eq!(first.len(), MAX_SCAN_ENTRIES);
    assert!(first.may_have_more());
    let rest = store
        .read_stream(
            "Account",
            "big",
            first.len() as u64 + 1,
            u64::MAX,
            usize::MAX,
        )
        .await
        .expect("read");
    assert_eq!(rest.len(), 100);
    assert!(!rest.may_have_more());

    let mut position = 1;
    let mut pages = 0;
    loop {
        let page = store
            .read_all(position, usize::MAX)
            .await
            .expect("read all");
        assert!(page.len() <= MAX_SCAN_ENTRIES);
        for event in page.iter() {
            assert_eq!(event.position(), position, "in order, none skipped");
            assert_eq!(event.version(), position);
            position += 1;
        }
        pages += 1;
        if !page.may_have_more() {
            break;
        }
    }
    assert_eq!((position - 1, pages), (count, 2));
}

/// An event whose payload is `size` bytes (a JSON string).
pub(crate) fn blob(size: usize) -> NewEvent {
    let mut payload = vec![b'x'; size.max(2)];
    payload[0] = b'"';
    payload[size.max(2) - 1] = b'"';
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: "Blob".into(),
        shape_version: 1,
        codec: Codec::Json,
        payload: payload.into(),
        metadata: EventMetadata::default(),
    }
}

/// An append that landed but was reported ambiguous (its acknowledgement lost) is retried
/// with the same events and answered where they are, however many they are (more than a
/// scan page of entries) and however large (more than a page of bytes): never `Conflict`,
/// never written twice.
pub async fn large_retries_after_a_lost_ack_are_idempotent<F: EngineFactory>(factory: &F) {
    use super::faults::Faulty;
    use crate::kv::MAX_SCAN_ENTRIES;
    use std::sync::atomic::Ordering;
    let kv = Arc::new(Faulty::new(fresh(factory).await));
    let store = KvEventStore::new(Arc::clone(&kv));
    store
        .append("Account", "before", 0, &deposits(1, 3))
        .await
        .expect("append");
    let many = deposits(1, MAX_SCAN_ENTRIES as u64 + 1);
    let large: Vec<NewEvent> = (0..5).map(|_| blob(1 << 20)).collect();
    let mut head = 3;
    for (name, events) in [("many", &many), ("large", &large)] {
        kv.lose_next_ack.store(true, Ordering::SeqCst);
        let error = store
            .append("Account", name, 0, events)
            .await
            .expect_err("the acknowledgement is lost");
        assert!(error.is_ambiguous(), "{name}: {error}");
        let count = events.len() as u64;
        let retried = store
            .append("Account", name, 0, events)
            .await
            .unwrap_or_else(|e| panic!("{name}: the retry of a landed append failed: {e}"));
        let landed = Appended {
            first_version: 1,
            last_version: count,
            first_position: head + 1,
            last_position: head + count,
            duplicate: true,
        };
        assert_eq!(retried, landed, "{name}: where the first attempt put them");
        head += count;
        assert_eq!(
            log_summary(&store).await.len() as u64,
            head,
            "{name}: written once"
        );
        // One event different: a conflict, also when it is the last one.
        let mut other = events.clone();
        if let Some(last) = other.last_mut() {
            last.event_id = Uuid::new_v4();
        }
        match store.append("Account", name, 0, &other).await {
            Err(EventStoreError::Conflict { actual, .. }) => assert_eq!(actual, count, "{name}"),
            outcome => panic!("{name}: expected a conflict, got {outcome:?}"),
        }
    }
}

/// Appends whose callers give up while a write is in flight (a timeout, a client that
/// went away) stall nothing and fail nobody else: an append dropped after it was handed
/// the lead passes it on, and the appends a dropped leader carried are written by the next
/// leader and answered as usual.
#[allow(clippy::many_single_char_names)]
pub async fn a_caller_that_gives_up_fails_nobody_else<F: EngineFactory>(factory: &F) {
    use super::gated::Gated;
    use super::{poll_once, within};
    let kv = Arc::new(Gated::new(fresh(factory).await));
    let store = KvEventStore::new(Arc::clone(&kv));

    // A leads and its write waits; B (the next version of the same stream) queues behind.
    kv.hold();
    let (a, b) = ([deposit(1)], [deposit(2)]);
    let mut first = Box::pin(store.append("Account", "x", 0, &a));
    let mut second = Box::pin(store.append("Account", "x", 1, &b));
    assert!(poll_once(&mut first).await.is_pending(), "A writes");
    assert_eq!(kv.waiting(), 1, "A's write waits at the gate");
    assert!(poll_once(&mut second).await.is_pending(), "B queues");
    kv.release();
    first.await.expect("A appended");
    // A handed B the lead; B's caller gives up before B takes it.
    drop(second);
    let later = within(10, store.append("Account", "y", 0, &[deposit(3)]))
        .await
        .expect("an append after B was dropped completes: the store is not stalled");
    assert_eq!(later.expect("appended").first_position, 2);

    // C leads; D (the next version of C's stream) queues, and is handed the lead when C
    // is done. E queues behind D and goes in D's batch; D is dropped while its write
    // waits: E is written by the next leader, and answered Ok.
    kv.hold();
    let (c, d, e) = ([deposit(4)], [deposit(5)], [deposit(6)]);
    let mut leader = Box::pin(store.append("Account", "c", 0, &c));
    let mut dropped = Box::pin(store.append("Account", "c", 1, &d));
    let mut member = Box::pin(store.append("Account", "e", 0, &e));
    assert!(poll_once(&mut leader).await.is_pending(), "C writes");
    assert!(poll_once(&mut dropped).await.is_pending(), "D queues");
    kv.release();
    leader.await.expect("C appended");
    kv.hold();
    assert!(poll_once(&mut member).await.is_pending(), "E queues");
    assert!(
        poll_once(&mut dropped).await.is_pending(),
        "D leads, E in its batch"
    );
    assert_eq!(kv.waiting(), 1, "D's write waits at the gate");
    drop(dropped);
    kv.release();
    let appended = within(10, member)
        .await
        .expect("E is answered")
        .unwrap_or_else(|e| panic!("E was failed because D's caller gave up: {e}"));
    assert_eq!((appended.first_version, appended.first_position), (1, 4));
    assert_eq!(store.current_version("Account", "c").await.expect("c"), 1);
    assert_eq!(log_summary(&store).await.len(), 4, "A, y, C and E");
}

/// A page of the global log holds about [`MAX_SCAN_BYTES`](crate::kv::MAX_SCAN_BYTES)
/// bytes at most, whatever its limit: events of 1 MiB come back a few at a time, an event
/// larger than the bound comes back alone, and paging on reads every event once, in order.
pub async fn log_pages_are_bounded_in_bytes<F: EngineFactory>(factory: &F) {
    use crate::kv::MAX_SCAN_BYTES;
    const MIB: usize = 1 << 20;
    let store = store(factory).await;
    // Single-event appends (one engine read gets them all), an append of several, one
    // event larger than a page, and small events after it.
    for id in 0..7 {
        store
            .append("Blob", &format!("one-{id}"), 0, &[blob(MIB)])
            .await
            .expect("append");
    }
    let several: Vec<NewEvent> = (0..5).map(|_| blob(MIB)).collect();
    store
        .append("Blob", "several", 0, &several)
        .await
        .expect("append");
    store
        .append("Blob", "huge", 0, &[blob(5 * MIB)])
        .await
        .expect("append");
    store
        .append("Account", "small", 0, &deposits(1, 10))
        .await
        .expect("append");
    let total = 7 + 5 + 1 + 10;
    let mut position = 1;
    let mut pages = Vec::new();
    while position <= total {
        let page = store
            .read_all(position, usize::MAX)
            .await
            .expect("read all");
        assert!(!page.is_empty(), "a page before the end holds an event");
        let sizes: Vec<usize> = page.iter().map(|event| event.payload().len()).collect();
        let before_last: usize = sizes[..sizes.len() - 1].iter().sum();
        assert!(
            before_last < MAX_SCAN_BYTES,
            "a page ends with the event that reaches the bound: {sizes:?}"
        );
        for event in page.iter() {
            assert_eq!(event.position(), position, "in order, none skipped");
            position += 1;
        }
        assert_eq!(page.may_have_more(), position <= total, "at {position}");
        pages.push(sizes.len());
    }
    // 1 MiB events: four reach the bound. The 5 MiB event alone, then the small ones.
    assert_eq!(pages, [4, 4, 4, 1, 10], "events per page");
}

/// Reading the global log costs a bounded number of engine calls per page, whatever the
/// sizes of the appends: here 2 scans of the log and one call per 256 events.
pub async fn catch_up_calls_are_bounded<F: EngineFactory>(factory: &F) {
    let kv = Arc::new(Counted::new(fresh(factory).await));
    let store = KvEventStore::new(Arc::clone(&kv));
    let mut expected = 0u64;
    for round in 0..300u64 {
        let id = format!("a{}", round % 7);
        let count = [1, 1, 1, 2, 5][(round % 5) as usize];
        let version = store
            .current_version("Account", &id)
            .await
            .expect("version");
        store
            .append("Account", &id, version, &deposits(expected + 1, count))
            .await
            .expect("append");
        expected += count;
    }
    let mut position = 1;
    let mut calls = Vec::new();
    while position <= expected {
        let before = kv.reads();
        let page = store.read_all(position, 500).await.expect("read all");
        calls.push(kv.reads() - before);
        for event in page.iter() {
            assert_eq!(event.position(), position, "in order, none skipped");
            let amount = match event.decode::<AccountEvent>().expect("decode") {
                AccountEvent::Deposited { amount } => amount,
                other => panic!("unexpected {other:?}"),
            };
            assert_eq!(amount, position, "the event at its position");
            position += 1;
        }
    }
    assert_eq!(position - 1, expected);
    assert!(
        calls.iter().all(|&calls| calls <= 4),
        "engine calls per page of 500: {calls:?}"
    );
}

/// Reads the global log from position 1 as it grows, until it has seen `total` events:
/// every position once, in order, none skipped.
async fn follow_log(store: &impl EventStore, total: u64) {
    let mut seen = 0u64;
    while seen < total {
        let page = store
            .read_all(seen + 1, usize::MAX)
            .await
            .expect("read all");
        for event in page.iter() {
            assert_eq!(
                event.position(),
                seen + 1,
                "a reader skipped or repeated a position"
            );
            seen += 1;
        }
        yield_now().await;
    }
}

/// Appends that arrive while a write is in flight share the next write; each keeps its
/// own checks: a conflict fails only its append, a retry of stored events is answered
/// with where they are, and a reader of the global log never skips.
pub async fn concurrent_appends_share_writes<F: EngineFactory>(factory: &F) {
    let kv = Arc::new(Counted::new(fresh(factory).await));
    let store = KvEventStore::new(Arc::clone(&kv));
    for i in 0..4 {
        let id = format!("moved-{i}");
        store
            .append("Account", &id, 0, &[deposit(i)])
            .await
            .expect("append");
    }
    let retried = deposits(100, 2);
    let first = store
        .append("Account", "retried", 0, &retried)
        .await
        .expect("append");
    let fresh_events: Vec<Vec<NewEvent>> = (0..32).map(|i| deposits(1000 * i, 3)).collect();
    let late: Vec<NewEvent> = (0..4).map(|i| deposit(500 + i)).collect();
    let writes_before = kv.writes();

    let appends = futures_util::future::join_all(
        (0..32)
            .map(|i| (format!("new-{i}"), 0, &fresh_events[i][..]))
            .chain((0..4).map(|i| (format!("moved-{i}"), 0, std::slice::from_ref(&late[i]))))
            .chain([("retried".to_owned(), 0, &retried[..])])
            .map(|(id, expected, events)| {
                let store = &store;
                async move {
                    (
                        id.clone(),
                        store.append("Account", &id, expected, events).await,
                    )
                }
            }),
    );
    let total = 4 + 2 + 32 * 3;
    let (results, ()) = futures_util::future::join(appends, follow_log(&store, total)).await;

    for (id, result) in &results {
        match result {
            Ok(appended) if id.starts_with("new-") => {
                assert_eq!(
                    (appended.first_version, appended.last_version),
                    (1, 3),
                    "{id}"
                );
                assert_eq!(appended.last_position - appended.first_position, 2, "{id}");
            }
            Ok(appended) if id == "retried" => {
                let original = Appended {
                    duplicate: true,
                    ..first
                };
                assert_eq!(*appended, original, "the stored events' place");
            }
            Err(EventStoreError::Conflict {
                expected: 0,
                actual: 1,
                ..
            }) if id.starts_with("moved-") => {}
            other => panic!("{id}: unexpected {other:?}"),
        }
    }
    let writes = kv.writes() - writes_before;
    assert!(
        writes <= 8,
        "37 concurrent appends took {writes} engine writes: they must share writes"
    );
    let log = log_summary(&store).await;
    assert_eq!(
        log.iter()
            .map(|(_, position, _)| *position)
            .collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>(),
        "positions are gap-free and unique"
    );
    let ids: HashSet<Uuid> = log.iter().map(|(_, _, id)| *id).collect();
    assert_eq!(ids.len() as u64, total, "every event once");
    for (i, events) in fresh_events.iter().enumerate() {
        let stream = stream_summary(&store, "Account", &format!("new-{i}")).await;
        let ids: Vec<Uuid> = stream.iter().map(|(_, _, id)| *id).collect();
        let expected: Vec<Uuid> = events.iter().map(|event| event.event_id).collect();
        assert_eq!(ids, expected, "new-{i} holds its own events, in order");
    }
}

/// Appends to one stream queued behind a write in flight are checked against what the
/// earlier ones wrote, never against the same old version.
pub async fn queued_appends_to_one_stream_see_each_other<F: EngineFactory>(factory: &F) {
    let kv = Arc::new(Counted::new(fresh(factory).await));
    let store = KvEventStore::new(Arc::clone(&kv));
    let (a, b, c) = (deposit(1), deposit(2), deposit(3));
    let results: Vec<Result<Appended, EventStoreError>> = futures_util::future::join_all([
        store.append("Account", "one", 0, std::slice::from_ref(&a)),
        store.append("Account", "one", 0, std::slice::from_ref(&b)),
        store.append("Account", "one", 1, std::slice::from_ref(&c)),
        store.append("Account", "one", 0, std::slice::from_ref(&a)),
    ])
    .await;
    let first = results[0].as_ref().expect("the first append lands");
    assert_eq!((first.first_version, first.first_position), (1, 1));
    assert!(
        matches!(
            results[1],
            Err(EventStoreError::Conflict {
                expected: 0,
                actual: 1,
                ..
            })
        ),
        "the same version twice: {:?}",
        results[1]
    );
    let third = results[2].as_ref().expect("the append at version 1 lands");
    assert_eq!((third.first_version, third.first_position), (2, 2));
    let original = Appended {
        duplicate: true,
        ..*first
    };
    assert_eq!(
        results[3].as_ref().ok(),
        Some(&original),
        "a retry of stored events"
    );
    let stream = stream_summary(&store, "Account", "one").await;
    assert_eq!(
        stream.iter().map(|(_, _, id)| *id).collect::<Vec<_>>(),
        [a.event_id, c.event_id]
    );
}

/// Two stores on one engine, as two processes would be, race for the global head: the
/// loser of each race waits and writes again. Nothing is lost, nothing written twice.
pub async fn two_stores_on_one_engine_lose_nothing<F: EngineFactory>(factory: &F) {
    let kv = Arc::new(Counted::new(fresh(factory).await));
    let stores = [
        KvEventStore::new(Arc::clone(&kv)),
        KvEventStore::new(Arc::clone(&kv)),
    ];
    let writer = |store: usize, writer: u64| {
        let store = &stores[store];
        async move {
            let id = format!("writer-{writer}");
            for version in 0..10 {
                let events = [deposit(writer * 100 + version)];
                store
                    .append("Account", &id, version, &events)
                    .await
                    .expect("append");
            }
        }
    };
    futures_util::future::join_all((0..8).map(|w| writer(usize::from(w % 2 == 1), w))).await;
    let log = log_summary(&stores[0]).await;
    assert_eq!(
        log.iter()
            .map(|(_, position, _)| *position)
            .collect::<Vec<_>>(),
        (1..=80).collect::<Vec<_>>(),
        "positions are gap-free and unique"
    );
    let ids: HashSet<Uuid> = log.iter().map(|(_, _, id)| *id).collect();
    assert_eq!(ids.len(), 80, "every event once");
    for writer in 0..8 {
        let stream = stream_summary(&stores[1], "Account", &format!("writer-{writer}")).await;
        assert_eq!(
            stream
                .iter()
                .map(|(version, _, _)| *version)
                .collect::<Vec<_>>(),
            (1..=10).collect::<Vec<_>>()
        );
    }
}
