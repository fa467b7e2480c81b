//! SIGKILL of a process running a projection, at random moments: after every kill the
//! read model equals the events up to its checkpoint folded once each, and once resumed
//! to the end it equals a fresh rebuild. redb, SQLite and PostgreSQL.
#![cfg(any(feature = "redb", feature = "sqlite", feature = "postgres"))]

mod common;

use std::time::Duration;

use eventkv::testkit::aggregates::AccountEvent;
use eventkv::testkit::projections::{Balances, balances_up_to, read_model};
use eventkv::{Codec, EventStore, KvEventStore, NewEvent, ProjectionRunner, SubscribeOptions};

const KILLS: usize = 5;
const ACCOUNTS: u64 = 50;
/// Appends per account, of [`PER_APPEND`] events each.
const APPENDS: u64 = 20;
const PER_APPEND: u64 = 10;

/// Small pages: many commits for the kills to fall between.
fn options() -> SubscribeOptions {
    SubscribeOptions::default()
        .page_size(10)
        .poll_interval(Duration::from_millis(20))
}

async fn fill(url: &str) {
    let store = KvEventStore::new(eventkv_backends::open(url).await.expect("open"));
    for round in 0..APPENDS {
        for account in 0..ACCOUNTS {
            let events: Vec<NewEvent> = (0..PER_APPEND)
                .map(|i| {
                    let amount = round * 1000 + account * 10 + i;
                    NewEvent::encode(
                        "Deposited",
                        &AccountEvent::Deposited { amount },
                        Codec::Json,
                    )
                    .expect("encode")
                })
                .collect();
            store
                .append(
                    "Account",
                    &format!("acc-{account}"),
                    round * PER_APPEND,
                    &events,
                )
                .await
                .expect("append");
        }
    }
}

/// The read model against the events up to its checkpoint; returns the checkpoint.
async fn verify(url: &str) -> u64 {
    let store = KvEventStore::new(eventkv_backends::open(url).await.expect("reopen"));
    let checkpoint = store.checkpoint("balances").await.expect("checkpoint");
    assert_eq!(
        read_model(&store, "balances").await,
        balances_up_to(&store, checkpoint).await,
        "{url}: the read model holds the events up to {checkpoint}, each once"
    );
    checkpoint
}

async fn project_through_kills(url: &str) {
    fill(url).await;
    let total = ACCOUNTS * APPENDS * PER_APPEND;
    let mut checkpoints = Vec::new();
    for _ in 0..KILLS {
        let mut child = common::spawn_child(&format!("project {url}"));
        common::wait_for_line(&mut child, "projecting");
        std::thread::sleep(Duration::from_millis(10 + common::random_below(150)));
        child.kill().expect("SIGKILL the projection");
        child.wait().expect("reap it");
        checkpoints.push(verify(url).await);
    }
    eprintln!("{url}: checkpoints after each kill: {checkpoints:?} of {total}");
    assert!(
        checkpoints.windows(2).all(|pair| pair[0] <= pair[1]),
        "{url}: committed pages survive: {checkpoints:?}"
    );
    assert!(
        checkpoints.iter().any(|&c| c > 0 && c < total),
        "{url}: a kill fell in the middle: {checkpoints:?}"
    );
    let store = KvEventStore::new(eventkv_backends::open(url).await.expect("reopen"));
    let resumed = ProjectionRunner::new(&store, Balances::new("balances")).options(options());
    assert_eq!(resumed.catch_up().await.expect("resume"), total);
    let rebuilt = ProjectionRunner::new(&store, Balances::new("rebuilt"));
    assert_eq!(rebuilt.catch_up().await.expect("rebuild"), total);
    assert_eq!(
        read_model(&store, "balances").await,
        read_model(&store, "rebuilt").await,
        "{url}: resumed after {KILLS} kills, the read model equals a fresh rebuild"
    );
}

#[cfg(feature = "redb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redb_projection_survives_sigkill() {
    let dir = tempfile::tempdir().expect("temp dir");
    project_through_kills(&format!("redb:{}", dir.path().join("p.redb").display())).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_projection_survives_sigkill() {
    let dir = tempfile::tempdir().expect("temp dir");
    project_through_kills(&format!("sqlite:{}", dir.path().join("p.sqlite").display())).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_projection_survives_sigkill() {
    if common::require_postgres("a_postgres_projection_survives_sigkill")
        .await
        .is_err()
    {
        return;
    }
    let schema = common::unique_schema("eventkv_projection");
    let url = format!("{}?schema={schema}&table=events", common::postgres_url());
    project_through_kills(&url).await;
    common::drop_schema(&schema);
}

/// Child role `project URL`: runs the projection until killed.
#[test]
#[ignore = "run by other tests as a child process"]
fn child() {
    common::run_child("project ", |url| async move {
        let store = KvEventStore::new(eventkv_backends::open(&url).await.expect("child opens"));
        let runner = ProjectionRunner::new(&store, Balances::new("balances")).options(options());
        println!("projecting");
        match runner.run().await {
            Ok(never) => match never {},
            Err(error) => panic!("the projection stopped: {error}"),
        }
    });
}
