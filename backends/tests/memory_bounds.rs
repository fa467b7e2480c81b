//! Peak memory of loading a 1,000,000-event aggregate through the repository: reads are
//! paged with bounds every engine enforces, so the peak does not grow with the stream.
//! A measurement, run by hand (it seeds a few hundred MB):
//!
//! ```sh
//! cargo test --release -p eventkv-backends --test memory_bounds -- --ignored --nocapture
//! ```
#![cfg(all(feature = "redb", feature = "sqlite"))]

mod common;

use std::time::Instant;

use eventkv::testkit::aggregates::{Account, seed_account};
use eventkv::{DynKv, KvEventStore, KvSnapshotStore, Repository};

const EVENTS: u64 = 1_000_000;

fn repository(kv: DynKv) -> Repository<Account, KvEventStore<DynKv>, KvSnapshotStore<DynKv>> {
    Repository::new(KvEventStore::new(kv.clone()), KvSnapshotStore::new(kv))
}

/// This process's peak resident memory, in KiB (Linux).
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
#[ignore = "a measurement: seeds 1,000,000 events per engine"]
fn peak_memory_of_a_million_event_load() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let redb = format!("redb:{}", dir.path().join("million.redb").display());
    let sqlite = format!("sqlite:{}", dir.path().join("million.sqlite").display());
    for url in [&redb, &sqlite] {
        runtime.block_on(async {
            let kv = eventkv_backends::open(&format!("{url}{}", seed_options(url)))
                .await
                .expect("open");
            let started = Instant::now();
            seed_account(&repository(kv), "big", EVENTS, None)
                .await
                .expect("seed");
            eprintln!("seeded {EVENTS} events in {url} in {:?}", started.elapsed());
        });
    }
    let size = |path: &str| std::fs::metadata(path).map_or(0, |m| m.len() / 1_048_576);
    eprintln!(
        "files: redb {} MiB, sqlite {} MiB",
        size(&dir.path().join("million.redb").display().to_string()),
        size(&dir.path().join("million.sqlite").display().to_string())
    );
    for url in [
        format!("{redb}?cache_mib=1024"),
        redb.clone(),
        sqlite.clone(),
    ] {
        let mut child = common::spawn_child(&format!("load {url}"));
        let mut output = String::new();
        use std::io::Read;
        child
            .stdout
            .as_mut()
            .expect("stdout")
            .read_to_string(&mut output)
            .expect("read");
        assert!(child.wait().expect("child").success(), "{output}");
        let line = output
            .lines()
            .find(|line| line.contains("peak RSS"))
            .unwrap_or("no report");
        eprintln!("{url}: {line}");
    }
}

/// Seeding is not what is measured: skip the fsync per save.
fn seed_options(url: &str) -> &'static str {
    if url.starts_with("redb:") {
        "?durability=none"
    } else {
        "?synchronous=normal"
    }
}

/// Child role `load URL`: loads the aggregate once, prints its peak RSS.
#[test]
#[ignore = "run by other tests as a child process"]
fn child() {
    common::run_child("load ", |url| async move {
        let url = url.as_str();
        let repo = repository(eventkv_backends::open(url).await.expect("open"));
        let before = peak_rss_kib();
        let started = Instant::now();
        let loaded = repo.load("big").await.expect("load");
        let took = started.elapsed();
        assert_eq!(loaded.version(), EVENTS);
        println!(
            "loaded {} events in {took:?}; peak RSS {} MiB (after open: {} MiB)",
            loaded.version(),
            peak_rss_kib() / 1024,
            before / 1024
        );
    });
}
