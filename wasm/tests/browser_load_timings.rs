//! Load timings in the browser (run on demand, not in CI): a 10,000-event aggregate loaded
//! by full replay and from a snapshot 99 events behind, on IndexedDB.
//!
//! `WASM_BINDGEN_TEST_TIMEOUT=900 cargo test --release -p eventkv-wasm --target wasm32-unknown-unknown --test browser_load_timings -- --include-ignored --nocapture`
#![cfg(target_arch = "wasm32")]

use eventkv::testkit::aggregates::{Account, seed_account};
use eventkv::{KvEventStore, KvSnapshotStore, Repository};
use eventkv_wasm::{Durability, IndexedDbKv};
use wasm_bindgen_test::{console_log, wasm_bindgen_test};

wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

const EVENTS: u64 = 10_000;
const LOADS: usize = 15;

async fn median_load_ms(
    repo: &Repository<Account, KvEventStore<IndexedDbKv>, KvSnapshotStore<IndexedDbKv>>,
) -> f64 {
    repo.load("acc").await.expect("warm-up load");
    let mut samples = Vec::with_capacity(LOADS);
    for _ in 0..LOADS {
        // performance.now(): sub-millisecond, unlike Date.now().
        let start = web_time::Instant::now();
        repo.load("acc").await.expect("load");
        samples.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    samples.sort_by(f64::total_cmp);
    samples[LOADS / 2]
}

#[wasm_bindgen_test]
#[ignore = "a benchmark: run it on demand with --include-ignored"]
async fn load_timings_in_indexeddb() {
    for (label, behind) in [("full replay", None), ("snapshot 99 behind", Some(99))] {
        let name = format!("eventkv-timing-{}", eventkv::Uuid::new_v4());
        // Two connections to one database: events and snapshots share it. Relaxed
        // commits make the seeding fast; the loads only read.
        let events = IndexedDbKv::open_with(&name, Durability::Relaxed)
            .await
            .expect("open");
        let snapshots = IndexedDbKv::open_with(&name, Durability::Relaxed)
            .await
            .expect("open");
        let repo = Repository::new(KvEventStore::new(events), KvSnapshotStore::new(snapshots));
        seed_account(&repo, "acc", EVENTS, behind)
            .await
            .expect("seed");
        let median = median_load_ms(&repo).await;
        console_log!(
            "IndexedDB, {EVENTS} events, {label}: median {median:.2} ms over {LOADS} loads"
        );
        drop(repo);
        let _ = IndexedDbKv::delete(&name).await;
    }
}
