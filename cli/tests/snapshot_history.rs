//! Snapshots with a history through the command: listed (latest or older), copied and
//! verified with the rest, pruned to the newest N per aggregate, and the aggregates
//! whose snapshot fell behind listed by `snapshots stale`.
#![cfg(feature = "sqlite")]

mod common;

use common::{described, eventkv, json};
use eventkv::testkit::aggregates::{Account, AccountEvent};
use eventkv::{KvEventStore, KvSnapshotStore, Repository, SnapshotMode, SnapshotStore};

fn lines(output: &std::process::Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_listed_verified_copied_pruned_and_stale_aggregates_found() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite:{}", dir.path().join("history.sqlite").display());
    {
        let kv = eventkv_cli::open(&url).await.expect("open");
        let repo = Repository::<Account, _, _>::new(
            KvEventStore::new(kv.clone()),
            KvSnapshotStore::new(kv.clone()).with_history(5),
        )
        .with_snapshot_threshold(10)
        .with_snapshot_mode(SnapshotMode::Sync);
        for (id, events) in [("kept", 50), ("never", 30)] {
            let mut handle = repo.create_new(id);
            handle.record(AccountEvent::Opened { owner: id.into() });
            for amount in 1..events {
                handle.record(AccountEvent::Deposited { amount });
                if handle.pending().len() == 10 {
                    repo.save(&mut handle).await.expect("save");
                }
            }
            repo.save(&mut handle).await.expect("save");
        }
        repo.snapshot_store()
            .delete_snapshot("Account", "never")
            .await
            .expect("delete");
    }

    let listed = eventkv(&["snapshots", "list", &url, "--json"], None);
    assert!(listed.status.success(), "{}", described(&listed));
    let listed = lines(&listed);
    let versions: Vec<(u64, bool)> = listed
        .iter()
        .map(|s| (s["version"].as_u64().unwrap_or(0), s["latest"] == true))
        .collect();
    assert_eq!(
        versions,
        [
            (50, true),
            (10, false),
            (20, false),
            (30, false),
            (40, false)
        ]
    );

    let verified = eventkv(&["verify", &url, "--json"], None);
    assert!(verified.status.success(), "{}", described(&verified));
    let copy = format!("sqlite:{}", dir.path().join("copy.sqlite").display());
    let copied = eventkv(&["copy", &url, &copy, "--json"], None);
    assert!(copied.status.success(), "{}", described(&copied));
    assert_eq!(json(&copied)["snapshots"], 5);
    let compared = eventkv(&["verify", &copy, "--against", &url, "--json"], None);
    assert!(compared.status.success(), "{}", described(&compared));

    let stale = eventkv(
        &["snapshots", "stale", &url, "--type", "Account", "--json"],
        None,
    );
    assert!(stale.status.success(), "{}", described(&stale));
    let stale = lines(&stale);
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert_eq!(stale[0]["aggregate_id"], "never");
    assert_eq!(
        (
            stale[0]["head"].as_u64(),
            stale[0]["snapshot_version"].as_u64()
        ),
        (Some(30), Some(0))
    );
    let within = eventkv(
        &[
            "snapshots",
            "stale",
            &url,
            "--type",
            "Account",
            "--events-behind",
            "30",
        ],
        None,
    );
    assert!(
        String::from_utf8_lossy(&within.stdout).contains("0 aggregates"),
        "{}",
        described(&within)
    );

    let pruned = eventkv(&["snapshots", "prune", &url, "--keep", "2", "--json"], None);
    assert!(pruned.status.success(), "{}", described(&pruned));
    assert_eq!(json(&pruned)["deleted"], 3);
    let left = lines(&eventkv(&["snapshots", "list", &url, "--json"], None));
    let versions: Vec<u64> = left.iter().filter_map(|s| s["version"].as_u64()).collect();
    assert_eq!(versions, [50, 40]);

    for usage in [
        vec!["snapshots", "prune", &url],
        vec!["snapshots", "prune", &url, "--all"],
        vec!["snapshots", "prune", &url, "--keep", "0"],
        vec!["snapshots", "prune", &url, "--keep", "2", "--all"],
    ] {
        let refused = eventkv(&usage, None);
        assert_eq!(
            refused.status.code(),
            Some(2),
            "{usage:?}: {}",
            described(&refused)
        );
    }
}
