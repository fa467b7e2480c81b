//! Two processes append 500 events each to one aggregate, retrying on conflict: the
//! stream ends at 1..1000 with every event once. SQLite file and PostgreSQL.
#![cfg(any(feature = "sqlite", feature = "postgres"))]

mod common;

use eventkv::testkit::aggregates::AccountEvent;
use eventkv::testkit::events::{append_retrying, deposited_amounts};
use eventkv::{Codec, EventStore, KvEventStore, NewEvent};

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
}
