//! Every command of the binary on every engine: a seeded SQLite file is copied into each
//! (PostgreSQL in a schema of its own), then verified, counted, listed, pruned, exported,
//! imported and tailed there.

mod common;

use common::{described, eventkv, json};

/// A store of each engine of the list that this build has and that lasts (not `memory:`),
/// named `name`: under `dir`, or on the engine's server when it answers (else the engine
/// is left out, loudly; under CI that fails).
async fn stores(dir: &std::path::Path, name: &str) -> Vec<String> {
    let mut urls = Vec::new();
    let directory = dir.display().to_string();
    let unique = format!("cli_{}_{name}", std::process::id());
    for engine in eventkv_backends::ENGINES {
        if matches!(
            engine.scratch(),
            Some(eventkv_backends::Scratch::Memory { .. })
        ) {
            continue;
        }
        if let Some(url) = common::scratch_store(engine, &directory, &unique).await {
            urls.push(url);
        }
    }
    urls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_on_every_engine() {
    let dir = tempfile::tempdir().expect("temp dir");
    let seed = format!("sqlite:{}", dir.path().join("seed.sqlite").display());
    {
        let kv = eventkv_cli::open(&seed).await.expect("open the seed");
        common::seed(&kv).await;
    }
    let exported = eventkv(&["export", &seed], None);
    assert!(exported.status.success(), "{}", described(&exported));
    let all_lines = String::from_utf8_lossy(&exported.stdout).lines().count() as u64;
    assert_eq!(all_lines, common::EVENTS, "export prints every event");

    let copies = stores(dir.path(), "copy").await;
    let imported = stores(dir.path(), "imported").await;
    for (url, import_url) in copies.iter().zip(&imported) {
        let shown = eventkv_backends::redact(url);
        let copied = eventkv(&["copy", &seed, url, "--json"], None);
        assert!(copied.status.success(), "{shown}: {}", described(&copied));
        assert_eq!(json(&copied)["events"], common::EVENTS, "{shown}");

        let verified = eventkv(&["verify", url, "--against", &seed, "--json"], None);
        assert!(
            verified.status.success(),
            "{shown}: {}",
            described(&verified)
        );
        let report = json(&verified);
        assert_eq!(report["ok"], true, "{shown}");
        assert_eq!(report["comparison"]["difference_count"], 0, "{shown}");

        let counted = eventkv(&["stats", url, "--json"], None);
        assert!(counted.status.success(), "{shown}: {}", described(&counted));
        let stats = json(&counted);
        assert_eq!(stats["global_position"], common::EVENTS, "{shown}");
        assert_eq!(stats["types"]["Document"]["aggregates"], common::DOCUMENTS);
        assert_eq!(
            stats["longest_streams"][0]["events"],
            common::ACCOUNT_EVENTS
        );
        let text = eventkv(&["stats", url], None);
        assert!(
            String::from_utf8_lossy(&text.stdout).contains("Account"),
            "{shown}"
        );

        let listed = eventkv(
            &["snapshots", "list", url, "--type", "Document", "--json"],
            None,
        );
        assert!(listed.status.success(), "{shown}: {}", described(&listed));
        let snapshots: Vec<serde_json::Value> = String::from_utf8_lossy(&listed.stdout)
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect();
        assert_eq!(snapshots.len() as u64, common::DOCUMENTS, "{shown}");
        assert!(snapshots.iter().all(|s| s["codec"] == "json"), "{shown}");
        let accounts = eventkv(&["snapshots", "list", url, "--type", "Account"], None);
        assert!(
            String::from_utf8_lossy(&accounts.stdout).contains("bincode"),
            "{shown}: {}",
            described(&accounts)
        );
        let kept = eventkv(
            &[
                "snapshots",
                "prune",
                url,
                "--type",
                "Document",
                "--schema-below",
                "1",
                "--json",
            ],
            None,
        );
        assert_eq!(
            json(&kept)["deleted"],
            0,
            "{shown}: schema 1 is not below 1"
        );
        let pruned = eventkv(
            &[
                "snapshots",
                "prune",
                url,
                "--type",
                "Document",
                "--all",
                "--json",
            ],
            None,
        );
        assert_eq!(json(&pruned)["deleted"], common::DOCUMENTS, "{shown}");
        let left = eventkv(&["snapshots", "list", url, "--type", "Document"], None);
        assert!(
            String::from_utf8_lossy(&left.stdout).contains("0 snapshots"),
            "{shown}: {}",
            described(&left)
        );

        let documents = eventkv(&["export", url, "--type", "Document"], None);
        assert!(
            documents.status.success(),
            "{shown}: {}",
            described(&documents)
        );
        let lines = String::from_utf8_lossy(&documents.stdout).lines().count() as u64;
        assert_eq!(
            lines,
            common::DOCUMENTS * common::DOCUMENT_EVENTS,
            "{shown}"
        );
        let all = eventkv(&["export", url], None);
        let into = eventkv(&["import", import_url, "--json"], Some(&all.stdout));
        assert!(into.status.success(), "{shown}: {}", described(&into));
        assert_eq!(json(&into)["events"], common::EVENTS, "{shown}");
        let again = eventkv(&["export", import_url], None);
        assert_eq!(
            without_timestamps(&again.stdout),
            without_timestamps(&all.stdout),
            "{shown}: an import keeps every event (positions and versions too, into an empty store)"
        );
        let rerun = eventkv(&["import", import_url, "--json"], Some(&all.stdout));
        assert!(
            rerun.status.success(),
            "{shown}: running an import again: {}",
            described(&rerun)
        );
        let stats = json(&eventkv(&["stats", import_url, "--json"], None));
        assert_eq!(
            stats["global_position"],
            common::EVENTS,
            "{shown}: nothing imported twice"
        );

        let tail = eventkv(
            &["tail", url, "--from", &(common::EVENTS - 2).to_string()],
            None,
        );
        let positions: Vec<u64> = String::from_utf8_lossy(&tail.stdout)
            .lines()
            .map(|line| {
                serde_json::from_str::<serde_json::Value>(line).expect("a JSON line")["position"]
                    .as_u64()
                    .expect("a position")
            })
            .collect();
        assert_eq!(
            positions,
            vec![common::EVENTS - 2, common::EVENTS - 1, common::EVENTS]
        );
    }
    for url in copies.iter().chain(&imported) {
        eventkv_backends::destroy(url)
            .await
            .expect("remove the store");
    }
}

/// The JSON lines with their timestamps removed (an import records its own time).
fn without_timestamps(lines: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(lines)
        .lines()
        .map(|line| {
            let mut value: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            value["timestamp"] = serde_json::Value::Null;
            value
        })
        .collect()
}

/// `tail --follow` prints events appended by another process after it started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_follows_new_events() {
    use eventkv::{Codec, EventStore, KvEventStore, NewEvent};
    use std::io::{BufRead, BufReader};

    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite:{}", dir.path().join("follow.sqlite").display());
    let store = KvEventStore::new(eventkv_cli::open(&url).await.expect("open"));
    let first = NewEvent::encode("Opened", &"a", Codec::Json).expect("encode");
    store.append("T", "a", 0, &[first]).await.expect("append");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_eventkv"))
        .args(["tail", &url, "--follow", "--interval-ms", "20"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run eventkv tail --follow");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let line = lines.next().expect("a line").expect("read");
    assert!(line.contains("\"position\":1"), "{line}");
    let second = NewEvent::encode("Renamed", &"b", Codec::Json).expect("encode");
    store.append("T", "a", 1, &[second]).await.expect("append");
    let line = lines.next().expect("a second line").expect("read");
    assert!(
        line.contains("\"position\":2") && line.contains("Renamed"),
        "{line}"
    );
    child.kill().expect("stop tail");
    child.wait().expect("tail exits");
}

/// An import runs again to completion when a run of its lines is larger than a page of
/// the store (here 5 events of 1 MiB, one append): the events already stored are found by
/// id, however large they are, and nothing is imported twice.
#[test]
fn an_import_of_large_events_runs_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite:{}", dir.path().join("large.sqlite").display());
    let text = "x".repeat(1 << 20);
    let lines: Vec<String> = (1..=5)
        .map(|version| {
            format!(
                "{{\"aggregate_type\":\"T\",\"aggregate_id\":\"a\",\"version\":{version},\"event_id\":\"{}\",\"event_type\":\"Large\",\"codec\":\"json\",\"payload\":\"{text}\"}}",
                eventkv::Uuid::new_v4()
            )
        })
        .collect();
    let lines = lines.join("\n");
    for run in ["first", "again"] {
        let output = eventkv(&["import", &url, "--json"], Some(lines.as_bytes()));
        assert!(output.status.success(), "{run}: {}", described(&output));
    }
    let stats = json(&eventkv(&["stats", &url, "--json"], None));
    assert_eq!(
        stats["global_position"], 5,
        "nothing imported twice: {stats}"
    );
}
