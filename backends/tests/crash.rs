//! SIGKILL at random moments while a child process appends batches of 10 events: after
//! every kill the stream holds whole batches only, the global log matches it, and no
//! snapshot is ahead of its stream. sled, redb and SQLite files.
#![cfg(any(feature = "sled", feature = "redb", feature = "sqlite"))]

mod common;

use std::time::Duration;

use eventkv::testkit::aggregates::{Account, AccountEvent};
use eventkv::testkit::events::{log_summary, stream_summary};
use eventkv::{DynKv, KvEventStore, KvSnapshotStore, Repository, SnapshotStore};

const KILLS: usize = 6;

fn repository(kv: DynKv) -> Repository<Account, KvEventStore<DynKv>, KvSnapshotStore<DynKv>> {
    Repository::new(KvEventStore::new(kv.clone()), KvSnapshotStore::new(kv))
        .with_snapshot_threshold(30)
}

/// Checks everything a crash must not break; returns the stream's version.
async fn verify(url: &str) -> u64 {
    let kv = eventkv_backends::open(url)
        .await
        .unwrap_or_else(|error| panic!("reopen {url}: {error}"));
    let repo = repository(kv);
    let events = repo.event_store();
    let stream = stream_summary(events, "Account", "acc").await;
    let versions: Vec<u64> = stream.iter().map(|&(version, _, _)| version).collect();
    let n = versions.len() as u64;
    assert_eq!(
        versions,
        (1..=n).collect::<Vec<_>>(),
        "{url}: versions are 1..n without gaps"
    );
    assert_eq!(
        n % 10,
        0,
        "{url}: whole batches of 10 only, found {n} events"
    );
    let log = log_summary(events).await;
    assert_eq!(
        log.iter()
            .map(|&(_, position, _)| position)
            .collect::<Vec<_>>(),
        (1..=n).collect::<Vec<_>>(),
        "{url}: log"
    );
    assert_eq!(log, stream, "{url}: log matches stream");
    if let Some(snapshot) = repo
        .snapshot_store()
        .get_snapshot("Account", "acc")
        .await
        .expect("snapshot")
    {
        assert!(
            snapshot.version <= n,
            "{url}: snapshot {} ahead of stream {n}",
            snapshot.version
        );
    }
    if n > 0 {
        let loaded = repo.load("acc").await.expect("load after crash");
        assert_eq!(loaded.version(), n);
        assert_eq!(
            loaded.state().transactions,
            n,
            "{url}: every event applied once"
        );
    }
    n
}

async fn crash_repeatedly(url: &str) {
    let mut versions = Vec::new();
    for _ in 0..KILLS {
        let mut child = common::spawn_child(&format!("append {url}"));
        common::wait_for_line(&mut child, "appending");
        std::thread::sleep(Duration::from_millis(20 + common::random_below(300)));
        child.kill().expect("SIGKILL the writer");
        child.wait().expect("reap the writer");
        versions.push(verify(url).await);
    }
    assert!(
        versions.windows(2).all(|w| w[0] <= w[1]),
        "{url}: committed batches survive: {versions:?}"
    );
    assert!(
        versions.last().is_some_and(|&n| n > 0),
        "{url}: the writer made progress: {versions:?}"
    );
    eprintln!("{url}: versions after each kill: {versions:?}");
}

/// `redb:…?durability=none` as docs/engines.md says: commits live in the process's memory
/// until a durable commit or a clean close, so a killed writer loses all of them, and a
/// writer that closes cleanly loses none.
#[cfg(feature = "redb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_without_durability_loses_commits_on_a_crash_not_on_a_close() {
    let dir = tempfile::tempdir().expect("temp dir");
    let killed = format!(
        "redb:{}?durability=none",
        dir.path().join("killed.redb").display()
    );
    let mut child = common::spawn_child(&format!("append {killed}"));
    common::wait_for_line(&mut child, "appending");
    std::thread::sleep(Duration::from_millis(300));
    child.kill().expect("SIGKILL the writer");
    child.wait().expect("reap the writer");
    assert_eq!(
        verify(&killed).await,
        0,
        "non-durable commits die with the process"
    );

    let closed = format!(
        "redb:{}?durability=none",
        dir.path().join("closed.redb").display()
    );
    let repo = repository(eventkv_backends::open(&closed).await.expect("open"));
    let mut account = repo.create_new("acc");
    for amount in 0..30 {
        account.record(AccountEvent::Deposited { amount });
        if account.pending().len() == 10 {
            repo.save(&mut account).await.expect("save");
        }
    }
    drop(repo);
    assert_eq!(verify(&closed).await, 30, "a clean close writes them");
}

#[cfg(feature = "sled")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_survives_sigkill() {
    let dir = tempfile::tempdir().expect("temp dir");
    crash_repeatedly(&format!("sled:{}", dir.path().join("crash.sled").display())).await;
}

#[cfg(feature = "redb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_survives_sigkill() {
    let dir = tempfile::tempdir().expect("temp dir");
    crash_repeatedly(&format!("redb:{}", dir.path().join("crash.redb").display())).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_survives_sigkill() {
    let dir = tempfile::tempdir().expect("temp dir");
    crash_repeatedly(&format!(
        "sqlite:{}",
        dir.path().join("crash.sqlite").display()
    ))
    .await;
}

/// Child role `append URL`: appends batches of 10 deposits to "acc" until killed.
#[test]
#[ignore = "run by other tests as a child process"]
fn child() {
    common::run_child("append ", |url| async move {
        let url = url.as_str();
        let repo = repository(eventkv_backends::open(url).await.expect("child opens"));
        let mut account = repo.load_or_create("acc").await.expect("child load");
        println!("appending");
        loop {
            for amount in 0..10 {
                account.record(AccountEvent::Deposited { amount });
            }
            repo.save(&mut account).await.expect("child save");
        }
    });
}
