//! Every [`ErrorKind`] comes from a real failure on a real engine, and says whether trying
//! again can help. (`StorageFull` and `Ambiguous` come from full disks in `disk_full.rs`
//! and a cut commit acknowledgement in `postgres_faults.rs`, `PermissionDenied` from a
//! least-privileged PostgreSQL role there.)

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use eventkv::testkit::aggregates::AccountEvent;
use eventkv::testkit::events::deposited_amounts;
use eventkv::testkit::faults::Faulty;
use eventkv::{
    BoxError, Codec, Direction, ErrorKind, EventStore, KeyRange, KvError, KvEventStore, KvPage,
    NewEvent, OrderedKv, Projection, ProjectionRunner, ReadModel, RecordedEvent, WriteBatch,
};

fn deposit(amount: u64) -> NewEvent {
    NewEvent::encode(
        "Deposited",
        &AccountEvent::Deposited { amount },
        Codec::Json,
    )
    .expect("encode")
}

fn assert_kind(what: &str, kind: ErrorKind, expected: ErrorKind, retryable: bool) {
    assert_eq!(kind, expected, "{what}");
    assert_eq!(kind.is_retryable(), retryable, "{what}: retryable");
}

#[cfg(feature = "sqlite")]
async fn sqlite(dir: &tempfile::TempDir, name: &str) -> (String, eventkv::DynKv) {
    let url = format!("sqlite:{}", dir.path().join(name).display());
    let kv = eventkv_backends::open(&url).await.expect("open");
    (url, kv)
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_comes_from_a_real_failure() {
    use eventkv::testkit::aggregates::Account;
    use eventkv::{DynKv, KvRepository, Repository, SnapshotStore, keys};
    let dir = tempfile::tempdir().expect("temp dir");
    let (_, kv) = sqlite(&dir, "kinds.sqlite").await;
    let store = KvEventStore::new(kv.clone());
    store
        .append("Account", "a", 0, &[deposit(1)])
        .await
        .expect("append");

    // Conflict: the stream is not at the expected version; the same append fails again.
    let error = store
        .append("Account", "a", 0, &[deposit(2)])
        .await
        .expect_err("stale");
    assert_kind("a stale append", error.kind(), ErrorKind::Conflict, false);
    let repo: KvRepository<Account, DynKv> = Repository::on(kv.clone());
    let mut stale = repo.create_new("a");
    stale.record(AccountEvent::Deposited { amount: 3 });
    let error = repo.save(&mut stale).await.expect_err("stale save");
    assert_kind("a stale save", error.kind(), ErrorKind::Conflict, false);

    // NotFound: an aggregate without events; a store that is not there.
    let error = repo.load("ghost").await.expect_err("no events");
    assert_kind(
        "a load of nothing",
        error.kind(),
        ErrorKind::NotFound,
        false,
    );
    let missing = format!("sqlite:{}", dir.path().join("missing.sqlite").display());
    let error = eventkv_backends::open_existing(&missing)
        .await
        .expect_err("no such file");
    assert_kind("a missing store", error.kind(), ErrorKind::NotFound, false);

    // InvalidInput: an append without events, a name that cannot be stored, a bad URL.
    let error = store
        .append("Account", "a", 1, &[])
        .await
        .expect_err("empty");
    assert_kind(
        "an empty append",
        error.kind(),
        ErrorKind::InvalidInput,
        false,
    );
    let error = store
        .append("", "a", 1, &[deposit(1)])
        .await
        .expect_err("no type");
    assert_kind(
        "an empty type",
        error.kind(),
        ErrorKind::InvalidInput,
        false,
    );
    let error = eventkv_backends::open("mongodb://x")
        .await
        .expect_err("unknown engine");
    assert_kind(
        "an unknown URL",
        error.kind(),
        ErrorKind::InvalidInput,
        false,
    );

    // Corrupt: a byte of a stored event changed.
    let key = keys::StreamKeys::new("Account", "a")
        .expect("names")
        .event(1);
    let mut value = kv.get(&key).await.expect("get").expect("stored").to_vec();
    value[20] ^= 0x01;
    let mut batch = WriteBatch::new();
    batch.put(key, value);
    kv.write(batch).await.expect("damage");
    let error = store
        .read_stream("Account", "a", 1, u64::MAX, 10)
        .await
        .expect_err("flipped byte");
    assert_kind("a flipped byte", error.kind(), ErrorKind::Corrupt, false);

    // Unsupported: a snapshot of a format version this eventkv does not know.
    let snapshot_key = keys::snapshot("Account", "a").expect("key");
    let mut batch = WriteBatch::new();
    batch.put(snapshot_key, Bytes::from_static(&[9, 1, 2, 3]));
    kv.write(batch).await.expect("write");
    let error = eventkv::KvSnapshotStore::new(kv.clone())
        .get_snapshot("Account", "a")
        .await
        .expect_err("format 9");
    assert_kind(
        "format version 9",
        error.kind(),
        ErrorKind::Unsupported,
        false,
    );

    // Refused: the command's decision said no; nothing was written.
    let refused = repo
        .execute("b", |_: &Account| {
            Err::<Vec<AccountEvent>, _>("closed account")
        })
        .await
        .expect_err("refused");
    assert_kind(
        "a refused command",
        refused.kind(),
        ErrorKind::Refused,
        false,
    );
}

/// A projection whose handler fails.
struct Failing;

impl Projection for Failing {
    fn name(&self) -> &'static str {
        "failing"
    }

    async fn apply(&self, _: &RecordedEvent, _: &mut ReadModel<'_>) -> Result<(), BoxError> {
        Err("the handler refuses".into())
    }
}

/// A projection that counts events.
struct Counting;

impl Projection for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }

    async fn apply(&self, _: &RecordedEvent, model: &mut ReadModel<'_>) -> Result<(), BoxError> {
        model.put(b"seen", b"1".to_vec());
        Ok(())
    }
}

/// Handler: a projection's handler failed. A permanent error (here a full disk under the
/// read model's write) stops a running projection at once, where a retryable one would
/// pause and try again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_error_stops_a_projection_at_once() {
    let kv = Arc::new(Faulty::new(eventkv::MemoryKv::new()));
    let store = KvEventStore::new(Arc::clone(&kv));
    store
        .append("Account", "a", 0, &[deposit(1)])
        .await
        .expect("append");
    let error = ProjectionRunner::new(&store, Failing)
        .catch_up()
        .await
        .expect_err("handler fails");
    assert_kind("a failing handler", error.kind(), ErrorKind::Handler, false);

    kv.fail_writes.store(true, Ordering::SeqCst);
    let run = ProjectionRunner::new(&store, Counting);
    let stopped = tokio::time::timeout(Duration::from_secs(5), run.run())
        .await
        .expect("a permanent error ends the run at once, without pauses");
    let error: eventkv::ProjectionError = match stopped {
        Err(error) => error,
        Ok(never) => match never {},
    };
    assert_kind("a full disk", error.kind(), ErrorKind::StorageFull, false);
    assert!(deposited_amounts(&store.read_all(1, 10).await.expect("read")).contains(&1));
}

/// Another writer that moves the global head between every read of an append and its
/// write: the append is retried with growing pauses, then gives up.
struct RacingWriter {
    inner: Arc<eventkv::MemoryKv>,
    other: KvEventStore<Arc<eventkv::MemoryKv>>,
}

impl OrderedKv for RacingWriter {
    async fn get(&self, key: &[u8]) -> Result<Option<Bytes>, KvError> {
        self.inner.get(key).await
    }

    async fn scan(
        &self,
        range: &KeyRange,
        direction: Direction,
        limit: usize,
    ) -> Result<KvPage, KvError> {
        self.inner.scan(range, direction, limit).await
    }

    async fn write(&self, batch: WriteBatch) -> Result<(), KvError> {
        // The other writer commits first, every time.
        let id = eventkv::Uuid::new_v4().to_string();
        self.other
            .append("Other", &id, 0, &[deposit(0)])
            .await
            .map_err(|error| KvError::engine("racing", ErrorKind::Unexpected, error))?;
        self.inner.write(batch).await
    }
    // `write_with` is the trait's optimistic default: read, build, write with the reads
    // checked, so the other writer's commit fails the check every time.
}

/// Contended: writers elsewhere kept winning for the whole retry budget (about 10 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_that_always_loses_the_race_is_contended() {
    let inner = Arc::new(eventkv::MemoryKv::new());
    let kv = RacingWriter {
        other: KvEventStore::new(Arc::clone(&inner)),
        inner,
    };
    let store = KvEventStore::new(kv);
    let error = store
        .append("Account", "a", 0, &[deposit(1)])
        .await
        .expect_err("always beaten");
    assert_kind("a lost race", error.kind(), ErrorKind::Contended, true);
    assert_eq!(store.current_version("Account", "a").await.expect("v"), 0);
}

/// Unavailable, Closed and Unexpected on PostgreSQL: a server that does not answer, a
/// store closed for shutdown, a table dropped under the store.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_failures_have_their_kinds() {
    use eventkv_backends::{PostgresKv, PostgresOptions};
    let error = eventkv_backends::open("postgres://postgres@127.0.0.1:1/test")
        .await
        .expect_err("nothing listens on port 1");
    assert_kind(
        "an unreachable server",
        error.kind(),
        ErrorKind::Unavailable,
        true,
    );

    if common::require_postgres("postgres_failures_have_their_kinds")
        .await
        .is_err()
    {
        return;
    }
    let schema = common::unique_schema("eventkv_kinds");
    let options = PostgresOptions {
        schema: schema.clone(),
        table: "events".into(),
    };
    let kv = PostgresKv::connect(&common::postgres_url(), options)
        .await
        .expect("connect");
    let store = KvEventStore::new(kv.clone());
    store
        .append("Account", "a", 0, &[deposit(1)])
        .await
        .expect("append");
    let mut admin = {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&common::postgres_url())
            .await
            .expect("connect")
    };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP TABLE \"{schema}\".events"
    )))
    .execute(&mut admin)
    .await
    .expect("drop the table");
    let dropped = store.read_all(1, 10).await.expect_err("no table");
    kv.close().await;
    let closed = store.read_all(1, 10).await.expect_err("closed");
    common::drop_schema(&schema);
    assert_kind(
        "a dropped table",
        dropped.kind(),
        ErrorKind::Unexpected,
        false,
    );
    assert_kind("a closed store", closed.kind(), ErrorKind::Closed, false);
}
