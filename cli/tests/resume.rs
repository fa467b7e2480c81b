//! A copy killed half-way (SIGKILL) is resumed with `--resume` and ends identical to its
//! source.
#![cfg(feature = "sqlite")]

mod common;

use std::time::Duration;

use common::{described, eventkv};
use eventkv::testkit::aggregates::{Account, seed_account};
use eventkv::{Direction, KeyRange, KvEventStore, KvSnapshotStore, OrderedKv, Repository};
use eventkv_cli::{Progress, compare};

const EVENTS: u64 = 200_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_copy_resumes_and_ends_identical() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = format!(
        "sqlite:{}?synchronous=normal",
        dir.path().join("src.sqlite").display()
    );
    let destination = format!("sqlite:{}", dir.path().join("dst.sqlite").display());
    let from = eventkv_cli::open(&source).await.expect("open the source");
    seed_account(
        &Repository::<Account, _, _>::new(
            KvEventStore::new(from.clone()),
            KvSnapshotStore::new(from.clone()),
        ),
        "big",
        EVENTS,
        Some(10),
    )
    .await
    .expect("seed");

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_eventkv"))
        .args(["copy", &source, &destination, "--no-progress"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start the copy");
    let to = eventkv_cli::open(&destination)
        .await
        .expect("open the destination");
    loop {
        let first = to
            .scan(&KeyRange::all(), Direction::Forward, 1)
            .await
            .expect("scan");
        if !first.is_empty() {
            break;
        }
        assert!(
            child.try_wait().expect("poll").is_none(),
            "the copy ended before any record was seen"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.kill().expect("SIGKILL the copy");
    child.wait().expect("reap");
    let partial = compare(&from, &to).await.expect("compare");
    assert!(
        partial.difference_count > 0,
        "the copy was interrupted before it ended"
    );

    let again = eventkv(&["copy", &source, &destination], None);
    assert_eq!(again.status.code(), Some(2), "{}", described(&again));
    let resumed = eventkv(&["copy", &source, &destination, "--resume", "--json"], None);
    assert!(resumed.status.success(), "{}", described(&resumed));
    assert!(
        common::json(&resumed)["resumed_after"].is_string(),
        "{}",
        described(&resumed)
    );
    let verified = eventkv(&["verify", &destination, "--against", &source], None);
    assert!(verified.status.success(), "{}", described(&verified));
    assert_eq!(
        compare(&from, &to).await.expect("compare").difference_count,
        0
    );
    let whole = eventkv_cli::verify(&to, &Progress::hidden())
        .await
        .expect("verify");
    assert_eq!((whole.problem_count, whole.events), (0, EVENTS));
}
