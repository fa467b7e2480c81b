//! `MemoryKv` behaves like an engine that does I/O towards the scheduler: it works when
//! polled (not when called), and a loop of appends on it leaves room for timers and
//! other tasks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use eventkv::testkit::aggregates::AccountEvent;
use eventkv::{Codec, EventStore, KvEventStore, MemoryKv, NewEvent, OrderedKv, WriteBatch};

#[test]
fn a_write_that_is_never_polled_writes_nothing() {
    let kv = MemoryKv::new();
    let mut batch = WriteBatch::new();
    batch.put(&b"key"[..], &b"value"[..]);
    let write = kv.write(batch);
    drop(write);
    assert!(kv.is_empty(), "the write ran without being polled");
}

/// Eight tasks append in a loop on a four-thread runtime; a timer in the same runtime
/// must still fire (before, every future of `MemoryKv` was ready at once, the tasks never
/// yielded, and the runtime starved: the timer never fired).
#[test]
fn appending_tasks_leave_room_for_timers() {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .expect("runtime");
        let lateness = runtime.block_on(async {
            let store = Arc::new(KvEventStore::new(MemoryKv::new()));
            let stop = Arc::new(AtomicBool::new(false));
            let mut writers = Vec::new();
            for writer in 0..8 {
                let (store, stop) = (store.clone(), stop.clone());
                writers.push(tokio::spawn(async move {
                    let id = format!("writer-{writer}");
                    let mut version = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let event = NewEvent::encode(
                            "Deposited",
                            &AccountEvent::Deposited { amount: version },
                            Codec::Json,
                        )
                        .expect("encode");
                        version = store
                            .append("Account", &id, version, &[event])
                            .await
                            .expect("append")
                            .last_version;
                    }
                    version
                }));
            }
            // Let the writers take every worker first.
            std::thread::sleep(Duration::from_millis(50));
            let asked = Instant::now();
            tokio::time::sleep(Duration::from_millis(20)).await;
            let lateness = asked.elapsed().saturating_sub(Duration::from_millis(20));
            stop.store(true, Ordering::Relaxed);
            let mut appended = 0;
            for writer in writers {
                appended += writer.await.expect("writer");
            }
            assert!(appended > 0, "the writers made progress");
            lateness
        });
        let _ = done.send(lateness);
    });
    match finished.recv_timeout(Duration::from_secs(60)) {
        Ok(lateness) => eprintln!("a 20 ms timer fired {lateness:?} late beside 8 appending tasks"),
        Err(timeout) => {
            panic!("the timer never fired ({timeout}): appending tasks starve the runtime")
        }
    }
}
