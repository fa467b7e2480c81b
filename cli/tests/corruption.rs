//! Damage that `verify` must find, each named with its key: a flipped byte in an event, a
//! missing log entry, a gap in a stream, a snapshot ahead of its stream, a checkpoint past
//! the last event.

mod common;

use bytes::Bytes;
use eventkv::keys::{self, StreamKeys};
use eventkv::{
    BoxError, Codec, DynKv, EventStore, KvEventStore, KvSnapshotStore, NewEvent, OrderedKv,
    Projection, ProjectionRunner, ReadModel, RecordedEvent, Snapshot, SnapshotStore, Timestamp,
    WriteBatch,
};
use eventkv_cli::{Progress, VerifyReport, verify};

/// A store of three streams: "a" (5 events in one append), "b" (5 appends of one), "c"
/// (3 events).
async fn small_store(url: &str) -> DynKv {
    let kv = eventkv_cli::open(url).await.expect("open");
    let store = KvEventStore::new(kv.clone());
    let events = |n: u64| -> Vec<NewEvent> {
        (0..n)
            .map(|i| NewEvent::encode("Happened", &i, Codec::Json).expect("encode"))
            .collect()
    };
    store
        .append("T", "a", 0, &events(5))
        .await
        .expect("append a");
    for version in 0..5 {
        store
            .append("T", "b", version, &events(1))
            .await
            .expect("append b");
    }
    store
        .append("T", "c", 0, &events(3))
        .await
        .expect("append c");
    kv
}

/// A projection that counts the events it applied.
struct Counter;

impl Projection for Counter {
    fn name(&self) -> &'static str {
        "counter"
    }

    async fn apply(&self, _: &RecordedEvent, model: &mut ReadModel<'_>) -> Result<(), BoxError> {
        let count = match model.get(b"count").await? {
            Some(value) => u64::from_be_bytes(value[..].try_into()?),
            None => 0,
        };
        model.put(b"count", (count + 1).to_be_bytes().to_vec());
        Ok(())
    }
}

async fn checked(kv: &DynKv) -> VerifyReport {
    verify(kv, &Progress::hidden()).await.expect("verify runs")
}

/// Whether a problem names `key` and says `what`.
fn names(report: &VerifyReport, key: &[u8], what: &str) -> bool {
    let key = eventkv::raw::DisplayKey(key).to_string();
    report
        .problems
        .iter()
        .any(|problem| problem.key == key && problem.problem.contains(what))
}

async fn each_corruption_is_found(url_of: impl Fn(&str) -> String) {
    let a = StreamKeys::new("T", "a").expect("stream");
    let b = StreamKeys::new("T", "b").expect("stream");

    let kv = small_store(&url_of("whole")).await;
    let store = KvEventStore::new(kv.clone());
    store
        .save_checkpoint("mailer", 13)
        .await
        .expect("checkpoint");
    ProjectionRunner::new(&store, Counter)
        .catch_up()
        .await
        .expect("project");
    let report = checked(&kv).await;
    assert_eq!(report.problems, Vec::new(), "a whole store has no problem");
    assert_eq!(
        (report.events, report.streams, report.head),
        (13, 3, Some(13))
    );
    assert_eq!((report.checkpoints, report.read_model_entries), (2, 1));

    // A checkpoint past the last event (copied from the store above into a shorter one).
    let checkpoint = keys::checkpoint("mailer").expect("key");
    let value = kv.get(&checkpoint).await.expect("get").expect("stored");
    let short = eventkv_cli::open(&url_of("checkpoint-ahead"))
        .await
        .expect("open");
    KvEventStore::new(short.clone())
        .append(
            "T",
            "a",
            0,
            &[NewEvent::encode("Happened", &0, Codec::Json).expect("encode")],
        )
        .await
        .expect("append");
    let mut batch = WriteBatch::new();
    batch.put(checkpoint.clone(), value);
    short.write(batch).await.expect("write");
    let report = checked(&short).await;
    assert!(
        names(
            &report,
            &checkpoint,
            "checkpoint \"mailer\" is at position 13, past the last event (1)"
        ),
        "{:#?}",
        report.problems
    );

    // A flipped byte in an event.
    let kv = small_store(&url_of("flipped")).await;
    let key = a.event(3);
    let mut value = kv.get(&key).await.expect("get").expect("stored").to_vec();
    value[20] ^= 0x01;
    let mut batch = WriteBatch::new();
    batch.put(key.clone(), Bytes::from(value));
    kv.write(batch).await.expect("write");
    let report = checked(&kv).await;
    assert!(names(&report, &key, "checksum"), "{:#?}", report.problems);

    // A missing log entry: b's third append (position 8).
    let kv = small_store(&url_of("no-log-entry")).await;
    let mut batch = WriteBatch::new();
    batch.delete(keys::global_log(8));
    kv.write(batch).await.expect("write");
    let report = checked(&kv).await;
    assert!(
        names(
            &report,
            &keys::global_log(9),
            "no entry for positions 8 to 8"
        ),
        "{:#?}",
        report.problems
    );
    assert!(
        names(&report, &b.event(3), "no global log entry covers"),
        "{:#?}",
        report.problems
    );

    // A gap in a stream: b's version 2 removed.
    let kv = small_store(&url_of("gap")).await;
    let mut batch = WriteBatch::new();
    batch.delete(b.event(2));
    kv.write(batch).await.expect("write");
    let report = checked(&kv).await;
    assert!(
        names(&report, &b.event(3), "version 2 is missing"),
        "{:#?}",
        report.problems
    );

    // A snapshot ahead of its stream.
    let kv = small_store(&url_of("ahead")).await;
    let snapshots = KvSnapshotStore::new(kv.clone());
    let snapshot = Snapshot {
        aggregate_id: "c".to_owned(),
        aggregate_type: "T".to_owned(),
        version: 50,
        anchor_event_id: None,
        schema_version: 1,
        codec: Codec::Json,
        state: Bytes::from_static(b"{}"),
        created_at: Timestamp::now(),
    };
    assert!(snapshots.save_snapshot(&snapshot).await.expect("save"));
    let report = checked(&kv).await;
    assert!(
        names(
            &report,
            &keys::snapshot("T", "c").expect("key"),
            "at version 50, but its stream ends at version 3"
        ),
        "{:#?}",
        report.problems
    );
}

/// `value`, a format-2 value stored under another key, sealed for `key` (as if written
/// there): the damage is in the key, not in the bytes.
fn resealed(key: &[u8], value: &[u8]) -> Bytes {
    let body = &value[..value.len() - 4];
    let crc = crc32c::crc32c_append(crc32c::crc32c(key), body);
    Bytes::from([body, &crc.to_be_bytes()].concat())
}

/// Stored numbers that cannot be: an event at version 0, log entries at position 0, of no
/// event, at version 0, or running past the largest version. Each is a named problem,
/// never a panic.
async fn impossible_numbers_are_named(url_of: impl Fn(&str) -> String) {
    let a = StreamKeys::new("T", "a").expect("stream");

    let kv = small_store(&url_of("version-0")).await;
    let value = kv.get(&a.event(1)).await.expect("get").expect("stored");
    let mut batch = WriteBatch::new();
    batch.put(a.event(0), resealed(&a.event(0), &value));
    kv.write(batch).await.expect("write");
    let report = checked(&kv).await;
    assert!(
        names(&report, &a.event(0), "version 0: versions start at 1"),
        "{:#?}",
        report.problems
    );

    let entries = [
        (
            "overflow",
            keys::global_log(1),
            5,
            a.event(u64::MAX - 1),
            "run past the largest version",
        ),
        (
            "log-version-0",
            keys::global_log(1),
            5,
            a.event(0),
            "points at version 0",
        ),
        (
            "no-event",
            keys::global_log(1),
            0,
            a.event(1),
            "holds no event",
        ),
        (
            "position-0",
            keys::global_log(0),
            1,
            a.event(1),
            "position 0 is never given",
        ),
    ];
    for (name, key, count, first, problem) in entries {
        let kv = small_store(&url_of(name)).await;
        let mut value = vec![1u8];
        value.extend_from_slice(&u32::to_be_bytes(count));
        value.extend_from_slice(&first);
        let mut batch = WriteBatch::new();
        batch.put(key.clone(), value);
        kv.write(batch).await.expect("write");
        let report = checked(&kv).await;
        assert!(
            names(&report, &key, problem),
            "{name}: {:#?}",
            report.problems
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_impossible_numbers() {
    impossible_numbers_are_named(|_| "memory:".to_owned()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_each_corruption_in_memory_and_sqlite() {
    each_corruption_is_found(|_| "memory:".to_owned()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    each_corruption_is_found(|name| format!("sqlite:{}", dir.path().join(name).display())).await;
}

/// The binary reports a problem with its key and exits 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_exits_1_on_a_problem() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite:{}", dir.path().join("damaged.sqlite").display());
    let kv = small_store(&url).await;
    let whole = common::eventkv(&["verify", &url], None);
    assert!(whole.status.success(), "{}", common::described(&whole));
    assert!(String::from_utf8_lossy(&whole.stdout).contains("no problems"));
    let mut batch = WriteBatch::new();
    batch.delete(keys::global_log(1));
    kv.write(batch).await.expect("write");
    let damaged = common::eventkv(&["verify", &url], None);
    assert_eq!(
        damaged.status.code(),
        Some(1),
        "{}",
        common::described(&damaged)
    );
    let out = String::from_utf8_lossy(&damaged.stdout);
    assert!(out.contains("problem: \"g"), "{out}");
    assert!(
        out.contains("no global log entry covers this event"),
        "{out}"
    );
}
