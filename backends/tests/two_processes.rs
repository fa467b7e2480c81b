//! Two processes append 500 events each to one aggregate, retrying on conflict: the
//! stream ends at 1..1000 with every event once. Two processes of 8 writers each append
//! to their own aggregates while a subscription follows the global log: it sees every
//! event once, in position order, with no gap. SQLite file and PostgreSQL.
#![cfg(any(feature = "sqlite", feature = "postgres"))]

mod common;

use eventkv::testkit::aggregates::AccountEvent;
use eventkv::testkit::events::{append_retrying, deposited_amounts};
use eventkv::{Codec, EventStore, KvEventStore, NewEvent, SubscribeOptions};
use futures_util::StreamExt;

const PER_PROCESS: u64 = 500;

async fn two_writers(url: &str) {
    let mut children: Vec<_> = ["1", "2"]
        .iter()
        .map(|tag| common::spawn_child(&format!("contend {tag} {url}")))
        .collect();
    for child in &mut children {
        let status = child.wait().expect("wait for writer");
        assert!(status.success(), "a writer failed: {status}");
    }
    let store = KvEventStore::new(eventkv_backends::open(url).await.expect("open"));
    let stream = store
        .read_stream("Account", "shared", 1, u64::MAX, usize::MAX)
        .await
        .expect("read");
    let versions: Vec<u64> = stream.iter().map(|e| e.version()).collect();
    assert_eq!(
        versions,
        (1..=2 * PER_PROCESS).collect::<Vec<_>>(),
        "{url}: versions 1..1000"
    );
    let amounts = deposited_amounts(&stream);
    assert_eq!(
        amounts.len() as u64,
        2 * PER_PROCESS,
        "{url}: none lost, none duplicated"
    );
    let log = store.read_all(1, usize::MAX).await.expect("read all");
    assert_eq!(
        log.iter().map(|e| e.position()).collect::<Vec<_>>(),
        versions,
        "{url}: the global log matches"
    );
}

/// Writers per child process, and appends (of one event) per writer.
const WRITERS: u64 = 8;
const APPENDS: u64 = 100;

/// Two child processes of [`WRITERS`] writers append while this process follows the
/// global log with a subscription (polling: the appends are another process's).
async fn reader_follows_two_processes(url: &str) {
    let mut children: Vec<_> = ["1", "2"]
        .iter()
        .map(|tag| common::spawn_child(&format!("writers {tag} {url}")))
        .collect();
    let store = KvEventStore::new(eventkv_backends::open(url).await.expect("open"));
    let total = 2 * WRITERS * APPENDS;
    let mut seen = 0u64;
    let mut ids = std::collections::HashSet::new();
    let mut versions = std::collections::HashMap::new();
    let options = SubscribeOptions::default()
        .page_size(500)
        .poll_interval(std::time::Duration::from_millis(2));
    let mut subscription = Box::pin(store.subscribe(1, options));
    while seen < total {
        let next = tokio::time::timeout(std::time::Duration::from_secs(60), subscription.next());
        let event = match next.await {
            Ok(Some(Ok(event))) => event,
            Ok(Some(Err(error))) => panic!("{url}: the subscription failed a read: {error}"),
            Ok(None) => panic!("{url}: a subscription never ends"),
            Err(tokio::time::error::Elapsed { .. }) => {
                panic!("{url}: the reader saw {seen} of {total} events within 60 s")
            }
        };
        assert_eq!(
            event.position,
            seen + 1,
            "{url}: a skipped or repeated position"
        );
        assert!(ids.insert(event.event_id), "{url}: an event seen twice");
        let version = versions.entry(event.aggregate_id.clone()).or_insert(0u64);
        assert_eq!(event.version, *version + 1, "{url}: a stream out of order");
        *version += 1;
        seen += 1;
    }
    drop(subscription);
    for child in &mut children {
        let status = child.wait().expect("wait for writer");
        assert!(status.success(), "a writer failed: {status}");
    }
    assert!(
        store
            .read_all(total + 1, 10)
            .await
            .expect("read all")
            .is_empty(),
        "{url}: nothing past the last append"
    );
    assert_eq!(
        versions.len() as u64,
        2 * WRITERS,
        "{url}: every writer's stream"
    );
    eprintln!("{url}: the subscription saw {seen} events");
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_follows_two_sqlite_processes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite:{}", dir.path().join("follow.sqlite").display());
    drop(eventkv_backends::open(&url).await.expect("create"));
    reader_follows_two_processes(&url).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_follows_two_postgres_processes() {
    if common::require_postgres("a_reader_follows_two_postgres_processes")
        .await
        .is_err()
    {
        return;
    }
    let schema = common::unique_schema("eventkv_follow");
    let url = format!("{}?schema={schema}&table=events", common::postgres_url());
    drop(eventkv_backends::open(&url).await.expect("create"));
    reader_follows_two_processes(&url).await;
    common::drop_schema(&schema);
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_a_sqlite_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite:{}", dir.path().join("shared.sqlite").display());
    // Create the file first, so the writers do not race to create it.
    drop(eventkv_backends::open(&url).await.expect("create"));
    two_writers(&url).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_a_postgres_table() {
    if common::require_postgres("two_processes_share_a_postgres_table")
        .await
        .is_err()
    {
        return;
    }
    let schema = common::unique_schema("eventkv_two");
    let url = format!("{}?schema={schema}&table=events", common::postgres_url());
    two_writers(&url).await;
    common::drop_schema(&schema);
}

/// Child role `contend TAG URL`: appends 500 deposits to "shared", retrying conflicts.
#[test]
#[ignore = "run by other tests as a child process"]
fn child() {
    common::run_child("contend ", |rest| async move {
        let (tag, url) = rest.split_once(' ').expect("TAG URL");
        let tag: u64 = tag.parse().expect("numeric tag");
        let store = KvEventStore::new(eventkv_backends::open(url).await.expect("child opens"));
        let mut conflicts = 0;
        for i in 0..PER_PROCESS {
            let event = AccountEvent::Deposited {
                amount: tag * 10_000 + i,
            };
            let event = NewEvent::encode("Deposited", &event, Codec::Json).expect("encode");
            conflicts += append_retrying(&store, "Account", "shared", &event).await;
        }
        eprintln!("writer {tag}: {conflicts} conflicts retried");
    });
    // Role `writers TAG URL`: WRITERS tasks append APPENDS single events each, every one
    // to its own aggregate.
    common::run_child("writers ", |rest| async move {
        let (tag, url) = rest.split_once(' ').expect("TAG URL");
        let store = KvEventStore::new(eventkv_backends::open(url).await.expect("child opens"));
        let writers = (0..WRITERS).map(|writer| {
            let (store, id) = (&store, format!("p{tag}-w{writer}"));
            async move {
                for i in 0..APPENDS {
                    let event = AccountEvent::Deposited { amount: i };
                    let event = NewEvent::encode("Deposited", &event, Codec::Json).expect("encode");
                    store
                        .append("Account", &id, i, &[event])
                        .await
                        .expect("append to its own aggregate");
                }
            }
        });
        futures_util::future::join_all(writers).await;
    });
}
