//! A full disk is `KvError::StorageFull` (or, where the engine cannot promise that nothing
//! landed, an ambiguous error), and the store stays consistent: tested on a real small
//! file system (a tmpfs of a few MiB that the test mounts). Mounting needs root: outside
//! CI the test says loudly that it skipped; under `CI=true` it fails instead.

// With some engines compiled out, some helpers have no user.
#![cfg_attr(
    not(all(feature = "sled", feature = "redb", feature = "sqlite")),
    allow(dead_code, unused_imports)
)]

mod common;

use std::path::Path;
use std::process::Command;

use eventkv::{Codec, DynKv, EventStore, EventStoreError, KvError, KvEventStore, NewEvent};

const BALLAST: &str = "ballast";

/// A tmpfs mounted for one test, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts a tmpfs of `mib` MiB, or says why it could not.
    fn mount(test: &str, mib: u32) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m,mode=0777")])
            .arg("tmpfs")
            .arg(dir.path())
            .output();
        match mounted {
            Ok(output) if output.status.success() => {
                // Room an operator can free once the disk is full.
                std::fs::write(dir.path().join(BALLAST), vec![0u8; 2 * 1024 * 1024])
                    .expect("ballast");
                Some(SmallDisk { dir })
            }
            failure => {
                let why = match failure {
                    Ok(output) => String::from_utf8_lossy(&output.stderr).trim().to_owned(),
                    Err(error) => error.to_string(),
                };
                assert!(
                    !common::under_ci(),
                    "{test}: mounting a tmpfs is required under CI=true: {why}"
                );
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "\n!!!!!!!! SKIPPED {test}: cannot mount a small tmpfs ({why}); run as root.\n"
                );
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Frees the ballast file's space.
    fn free_some_space(&self) {
        std::fs::remove_file(self.dir.path().join(BALLAST)).expect("remove ballast");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Events of about 64 KiB each, so a few MiB fill in few appends. Random hex, so an
/// engine that compresses (PostgreSQL's TOAST) cannot shrink them much.
fn big_events(count: usize) -> Vec<NewEvent> {
    (0..count)
        .map(|_| {
            let payload: String = (0..2048)
                .map(|_| eventkv::Uuid::new_v4().simple().to_string())
                .collect();
            NewEvent::encode("Filled", &payload, Codec::Json).expect("encode")
        })
        .collect()
}

/// Appends batches until the engine refuses one; returns the last version that landed
/// and the refusal.
async fn fill(store: &KvEventStore<DynKv>) -> (u64, EventStoreError) {
    let mut version = 0;
    for _ in 0..10_000 {
        match store
            .append("Disk", "filler", version, &big_events(4))
            .await
        {
            Ok(appended) => version = appended.last_version,
            Err(error) => return (version, error),
        }
    }
    panic!("the small disk never filled");
}

/// After the refusal: the stream and the log hold exactly the batches that were
/// acknowledged (plus, after an ambiguous error, possibly the refused one, whole).
async fn check_consistent(
    store: &KvEventStore<DynKv>,
    url: &str,
    acknowledged: u64,
    ambiguous: bool,
) -> u64 {
    let version = store
        .current_version("Disk", "filler")
        .await
        .expect("version");
    if ambiguous {
        assert!(
            version == acknowledged || version == acknowledged + 4,
            "{url}: {version} after {acknowledged} acknowledged"
        );
    } else {
        assert_eq!(
            version, acknowledged,
            "{url}: nothing of the refused batch landed"
        );
    }
    let log = eventkv::testkit::events::log_summary(store).await;
    assert_eq!(
        log.len() as u64,
        version,
        "{url}: the log matches the stream"
    );
    version
}

/// How the engine is filled, and how it goes on once space is freed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fill {
    /// In this process; the same handle works again.
    Here,
    /// In this process; the engine must be opened again (redb refuses every call after an
    /// I/O error until then).
    HereThenReopen,
    /// In a child process that exits afterwards: for sled, which refuses every call of the
    /// process after an I/O error and cannot be opened again by it.
    Child,
}

/// The refusal a full disk gave: `StorageFull`, or an ambiguous error when `ambiguous_ok`.
fn check_refusal(url: &str, error: &EventStoreError, ambiguous_ok: bool) {
    match error {
        EventStoreError::Kv(KvError::StorageFull { .. }) => {
            assert_eq!(error.kind(), eventkv::ErrorKind::StorageFull, "{url}");
            assert!(!error.is_retryable(), "{url}: free space first");
        }
        EventStoreError::Kv(KvError::Ambiguous { .. }) if ambiguous_ok => {
            assert_eq!(error.kind(), eventkv::ErrorKind::Ambiguous, "{url}");
            assert!(error.is_retryable(), "{url}: retry with the same event ids");
        }
        other => panic!("{url}: expected StorageFull, got {other:?}"),
    }
}

async fn disk_full(test: &str, url_of: impl Fn(&Path) -> String, fill_in: Fill) {
    let Some(disk) = SmallDisk::mount(test, 6) else {
        return;
    };
    let url = url_of(disk.path());
    let (acknowledged, ambiguous, store) = match fill_in {
        Fill::Here | Fill::HereThenReopen => {
            let store = KvEventStore::new(eventkv_backends::open(&url).await.expect("open"));
            let (acknowledged, error) = fill(&store).await;
            eprintln!("{url}: {acknowledged} events fit, then: {error}");
            check_refusal(&url, &error, false);
            let reuse = (fill_in == Fill::Here).then_some(store);
            (acknowledged, false, reuse)
        }
        Fill::Child => {
            let mut child = common::spawn_child(&format!("fill {url}"));
            let output = child_output(&mut child);
            let (acknowledged, ambiguous) = output
                .lines()
                .find_map(|line| {
                    let rest = line.split("refused after ").nth(1)?;
                    let (acknowledged, ambiguous) = rest.split_once(' ')?;
                    Some((acknowledged.parse().ok()?, ambiguous.trim() == "ambiguous"))
                })
                .unwrap_or_else(|| panic!("{url}: the child did not report: {output}"));
            (acknowledged, ambiguous, None)
        }
    };
    assert!(acknowledged > 0, "{url}: some batches fit");
    disk.free_some_space();
    let store = match store {
        Some(store) => store,
        None => KvEventStore::new(eventkv_backends::open(&url).await.expect("reopen")),
    };
    let version = check_consistent(&store, &url, acknowledged, ambiguous).await;
    // With room again, appends go on.
    store
        .append("Disk", "filler", version, &big_events(1))
        .await
        .unwrap_or_else(|error| panic!("{url}: append after freeing space: {error}"));
    drop(store);
    let reopened = KvEventStore::new(eventkv_backends::open(&url).await.expect("reopen"));
    check_consistent(&reopened, &url, version + 1, false).await;
}

/// Everything the child printed, once it exited successfully.
fn child_output(child: &mut std::process::Child) -> String {
    use std::io::Read;
    let mut output = String::new();
    if let Some(stdout) = child.stdout.as_mut() {
        stdout.read_to_string(&mut output).expect("child stdout");
    }
    let status = child.wait().expect("child exits");
    assert!(status.success(), "child failed: {output}");
    output
}

#[cfg(feature = "redb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_full_disk_is_storage_full() {
    disk_full(
        "redb_full_disk_is_storage_full",
        |dir| format!("redb:{}", dir.join("full.redb").display()),
        Fill::HereThenReopen,
    )
    .await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_full_disk_is_storage_full() {
    disk_full(
        "sqlite_full_disk_is_storage_full",
        |dir| format!("sqlite:{}", dir.join("full.sqlite").display()),
        Fill::Here,
    )
    .await;
}

/// sled makes a transaction visible before its log write and flush: a disk found full
/// there leaves the batch maybe applied, so the error is ambiguous, never "nothing
/// landed".
#[cfg(feature = "sled")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_full_disk_is_ambiguous_never_a_silent_loss() {
    disk_full(
        "sled_full_disk_is_ambiguous_never_a_silent_loss",
        |dir| format!("sled:{}", dir.join("full.sled").display()),
        Fill::Child,
    )
    .await;
}

/// Child role `fill URL`: appends until the disk is full, prints what it saw, exits.
#[test]
#[ignore = "run by other tests as a child process"]
fn child() {
    common::run_child("fill ", |url| async move {
        let url = url.as_str();
        let store = KvEventStore::new(eventkv_backends::open(url).await.expect("child opens"));
        let (acknowledged, error) = fill(&store).await;
        eprintln!("{url}: {acknowledged} events fit, then: {error}");
        check_refusal(url, &error, true);
        let kind = if error.is_ambiguous() {
            "ambiguous"
        } else {
            "definite"
        };
        println!("refused after {acknowledged} {kind}");
        use std::io::Write;
        std::io::stdout().flush().expect("flush stdout");
        // Dropping sled after an I/O error may wait forever on a flush that keeps
        // failing: leave without dropping it, as a crash would.
        std::process::exit(0);
    });
}

/// PostgreSQL with its table in a tablespace on the small disk: a full disk (SQLSTATE
/// 53100) is `StorageFull`, nothing of the batch lands, and the table goes on working.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_full_disk_is_storage_full() {
    use sqlx::Connection;
    const TEST: &str = "postgres_full_disk_is_storage_full";
    if common::require_postgres(TEST).await.is_err() {
        return;
    }
    let Some(disk) = SmallDisk::mount(TEST, 10) else {
        return;
    };
    let location = disk.path().join("pg");
    std::fs::create_dir(&location).expect("tablespace dir");
    let chowned = Command::new("chown")
        .arg("postgres:")
        .arg(&location)
        .output();
    if !chowned.as_ref().is_ok_and(|output| output.status.success()) {
        assert!(
            !common::under_ci(),
            "{TEST}: chown to postgres: {chowned:?}"
        );
        eprintln!("\n!!!!!!!! SKIPPED {TEST}: cannot hand a directory to postgres: {chowned:?}\n");
        return;
    }
    let schema = common::unique_schema("eventkv_full");
    // Drops the schema and the tablespace, also when the test fails, and unmounts the disk
    // only once the server no longer uses it: a tablespace whose directory vanished makes
    // PostgreSQL's checkpoints (and its crash recovery) fail.
    struct Cleanup(String, Option<SmallDisk>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            common::drop_schema(&self.0);
            let dropped = common::run_admin_sql("CHECKPOINT".into())
                && common::run_admin_sql(format!("DROP TABLESPACE IF EXISTS \"{}\"", self.0));
            if !dropped && let Some(disk) = self.1.take() {
                eprintln!(
                    "!!!!!!!! tablespace {} could not be dropped: leaving {} mounted",
                    self.0,
                    disk.path().display()
                );
                std::mem::forget(disk);
            }
        }
    }
    let cleanup = Cleanup(schema.clone(), Some(disk));
    let disk = cleanup.1.as_ref().expect("the disk");
    let mut admin = sqlx::PgConnection::connect(&common::postgres_url())
        .await
        .expect("connect");
    let run = |sql: String| sqlx::query(sqlx::AssertSqlSafe(sql));
    run(format!(
        "CREATE TABLESPACE \"{schema}\" LOCATION '{}'",
        location.display()
    ))
    .execute(&mut admin)
    .await
    .expect("create tablespace");
    run(format!("CREATE SCHEMA \"{schema}\""))
        .execute(&mut admin)
        .await
        .expect("create schema");
    run(format!(
        "CREATE TABLE \"{schema}\".eventkv (key BYTEA PRIMARY KEY USING INDEX TABLESPACE \"{schema}\", value BYTEA NOT NULL) TABLESPACE \"{schema}\""
    ))
    .execute(&mut admin)
    .await
    .expect("create table");
    let url = format!("{}?schema={schema}&table=eventkv", common::postgres_url());
    let store = KvEventStore::new(eventkv_backends::open(&url).await.expect("open"));
    let (acknowledged, error) = fill(&store).await;
    eprintln!("postgres: {acknowledged} events fit, then: {error}");
    check_refusal("postgres", &error, false);
    disk.free_some_space();
    let version = check_consistent(&store, "postgres", acknowledged, false).await;
    store
        .append("Disk", "filler", version, &big_events(1))
        .await
        .unwrap_or_else(|error| panic!("postgres: append after freeing space: {error}"));
    drop((store, admin));
    drop(cleanup);
}
