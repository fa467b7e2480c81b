//! `open(url)`: every accepted form gives a working engine; bad URLs, paths that are not
//! databases, databases held by another process, unreachable servers and engines compiled
//! out each give a clear error.

mod common;

use eventkv::{KvEventStore, NewEvent};
use eventkv_backends::{OpenError, open};

/// Appends one event and reads it back through the engine `url` names.
async fn round_trip(url: &str) {
    let kv = open(url)
        .await
        .unwrap_or_else(|error| panic!("open {url}: {error}"));
    let store = KvEventStore::new(kv);
    let event = NewEvent::encode("Opened", &"hello", eventkv::Codec::Json).expect("encode");
    let expected = eventkv::EventStore::current_version(&store, "T", "x")
        .await
        .expect("version");
    eventkv::EventStore::append(&store, "T", "x", expected, &[event])
        .await
        .expect("append");
    let page = eventkv::EventStore::read_stream(&store, "T", "x", 1, u64::MAX, 100)
        .await
        .expect("read");
    assert_eq!(page.len() as u64, expected + 1, "{url}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_compiled_in_form_opens_a_working_engine() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = |name: &str| dir.path().join(name).display().to_string();
    round_trip("memory:").await;
    if cfg!(feature = "sled") {
        round_trip(&format!("sled:{}", path("db.sled"))).await;
    }
    if cfg!(feature = "redb") {
        round_trip(&format!("redb:{}", path("db.redb"))).await;
        round_trip(&format!("redb:{}?durability=none", path("fast.redb"))).await;
    }
    if cfg!(feature = "sqlite") {
        round_trip("sqlite::memory:").await;
        let file = path("db.sqlite");
        round_trip(&format!("sqlite:{file}")).await;
        round_trip(&format!("sqlite://{file}?synchronous=normal")).await;
    }
    #[cfg(feature = "postgres")]
    if common::require_postgres("postgres URL").await.is_ok() {
        let schema = common::unique_schema("eventkv_open");
        let url = common::postgres_url().replacen("postgres://", "postgresql://", 1);
        round_trip(&format!("{url}?schema={schema}&table=events")).await;
        round_trip(&format!("{url}?schema={schema}&table=events")).await;
        common::drop_schema(&schema);
    }
}

#[cfg(all(feature = "redb", feature = "sqlite", feature = "postgres"))]
#[tokio::test]
async fn unknown_and_malformed_urls_name_the_accepted_forms() {
    for url in [
        "cassandra://db",
        "redb:",
        "sqlite:x.db?mode=ro",
        "postgres://",
    ] {
        let error = open(url).await.expect_err(url);
        assert!(
            matches!(
                error,
                OpenError::UnknownScheme { .. } | OpenError::Malformed { .. }
            ),
            "{url}: {error:?}"
        );
        assert_eq!(error.kind(), eventkv::ErrorKind::InvalidInput, "{url}");
        assert!(!error.is_retryable() && !error.is_ambiguous(), "{url}");
        let message = error.to_string();
        assert!(
            message.contains(url) && message.contains("redb:PATH"),
            "{message}"
        );
    }
}

/// A SQLite file in a directory that does not exist: said so, not "not a database".
#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_file_in_a_missing_directory_is_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("missing").join("events.sqlite");
    let error = open(&format!("sqlite:{}", file.display()))
        .await
        .expect_err("no directory");
    let message = error.to_string();
    assert!(
        message.contains("cannot open or create") && message.contains("events.sqlite"),
        "{message}"
    );
    assert!(!dir.path().join("missing").exists(), "nothing created");
}

/// `open_existing` names a store that is not there and creates nothing: files and
/// directories of every embedded engine (and a PostgreSQL table, below).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_existing_creates_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    for engine in ["sled", "redb", "sqlite"] {
        let path = dir.path().join(format!("absent.{engine}"));
        let url = format!("{engine}:{}", path.display());
        match eventkv_backends::open_existing(&url).await {
            Err(OpenError::Missing { .. }) => {}
            Err(OpenError::FeatureDisabled { .. }) => continue,
            other => panic!("{url}: {:?}", other.map(drop)),
        }
        assert!(!path.exists(), "{url}: nothing created");
        drop(open(&url).await.expect("create it"));
        eventkv_backends::open_existing(&url)
            .await
            .unwrap_or_else(|error| panic!("{url} exists now: {error}"));
    }
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_existing_creates_no_table() {
    if common::require_postgres("open_existing_creates_no_table")
        .await
        .is_ok()
    {
        let schema = common::unique_schema("eventkv_existing");
        let url = format!("{}?schema={schema}&table=events", common::postgres_url());
        for _ in 0..2 {
            let error = eventkv_backends::open_existing(&url)
                .await
                .map(drop)
                .expect_err("no such table");
            assert!(
                matches!(error, OpenError::Missing { .. }) && error.to_string().contains("events"),
                "{error}"
            );
        }
        drop(open(&url).await.expect("create it"));
        eventkv_backends::open_existing(&url)
            .await
            .expect("the table exists now");
        common::drop_schema(&schema);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_that_is_not_a_database_is_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "these are not the bytes of a database\n".repeat(200)).expect("write");
    let engines: &[&str] = &[
        #[cfg(feature = "redb")]
        "redb",
        #[cfg(feature = "sqlite")]
        "sqlite",
        #[cfg(feature = "sled")]
        "sled",
    ];
    for engine in engines {
        let error = open(&format!("{engine}:{}", text.display()))
            .await
            .expect_err(engine);
        assert!(
            matches!(error, OpenError::NotADatabase { .. }),
            "{engine}: {error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains("notes.txt") && message.contains(engine),
            "{message}"
        );
    }
    assert!(
        std::fs::read_to_string(&text)
            .expect("read")
            .starts_with("these are not"),
        "the file is untouched"
    );
}

#[cfg(any(feature = "sled", feature = "redb"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_held_by_another_process_is_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    for engine in common::embedded_engines() {
        let path = dir.path().join(format!("held.{engine}"));
        let url = format!("{engine}:{}", path.display());
        let mut holder = common::spawn_child(&format!("hold {url}"));
        common::wait_for_line(&mut holder, "holding");
        let error = open(&url).await.expect_err("the database is held");
        holder.kill().expect("kill holder");
        holder.wait().expect("reap holder");
        assert!(
            matches!(error, OpenError::Locked { .. }),
            "{engine}: {error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains("another process") && message.contains(&path.display().to_string()),
            "{message}"
        );
        round_trip(&url).await;
    }
}

#[cfg(any(feature = "sled", feature = "redb"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_this_process_holds_is_named_as_such() {
    let dir = tempfile::tempdir().expect("temp dir");
    for engine in common::embedded_engines() {
        let path = dir.path().join(format!("twice.{engine}"));
        let url = format!("{engine}:{}", path.display());
        let first = open(&url).await.expect("first open");
        let error = open(&url).await.expect_err("already open here");
        assert!(
            matches!(error, OpenError::OpenInThisProcess { .. }),
            "{engine}: {error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains("already open in this process")
                && !message.contains("another process")
                && message.contains(&path.display().to_string()),
            "{message}"
        );
        drop(first);
        round_trip(&url).await;
    }
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn an_unreachable_server_is_named_by_host_and_port() {
    let error = open("postgres://postgres@127.0.0.1:1/test")
        .await
        .expect_err("nothing listens on port 1");
    assert!(
        matches!(error, OpenError::Unreachable { port: 1, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("127.0.0.1:1"), "{error}");
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn a_server_that_never_answers_is_named_by_host_and_port() {
    // Accepts connections and never says a word.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listen");
    let port = listener.local_addr().expect("address").port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let started = std::time::Instant::now();
    let error = open(&format!("postgres://app:s3cret@127.0.0.1:{port}/test"))
        .await
        .expect_err("no answer");
    silent.abort();
    let message = error.to_string();
    assert!(
        matches!(error, OpenError::Unreachable { .. })
            && message.contains(&format!("127.0.0.1:{port}"))
            && message.contains("no answer within 10 s")
            && !message.contains("s3cret"),
        "{message}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

/// Run by CI with `--no-default-features`: every engine is then compiled out.
#[tokio::test]
async fn an_engine_compiled_out_names_its_feature() {
    let forms = [
        ("sled", "sled:x"),
        ("redb", "redb:x"),
        ("sqlite", "sqlite::memory:"),
        ("postgres", "postgres://h/db"),
        ("etcd", "etcd://h:2379/app"),
    ];
    for (feature, url) in forms {
        let engine = eventkv_backends::engine(feature).expect("listed");
        if engine.is_compiled_in() {
            continue;
        }
        let error = open(url).await.expect_err(url);
        assert!(
            matches!(error, OpenError::FeatureDisabled { .. }),
            "{url}: {error:?}"
        );
        assert!(
            error.to_string().contains(&format!("\"{feature}\"")),
            "{error}"
        );
    }
}

/// Every engine of the list that is compiled in: its scratch URL opens a working store,
/// which `destroy` removes (`open_existing` then finds nothing), and an engine compiled
/// out is named in the accepted forms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_engine_of_the_list_opens_its_scratch_store_and_removes_it() {
    let accepted = eventkv_backends::accepted_urls();
    for engine in eventkv_backends::ENGINES {
        if !engine.is_compiled_in() {
            assert!(accepted.contains(engine.name), "{accepted}");
            continue;
        }
        let Some(factory) = common::ScratchFactory::new(engine.name, "scratch stores").await else {
            continue;
        };
        let url = factory.url();
        round_trip(&url).await;
        round_trip(&url).await;
        let location = eventkv_backends::EngineUrl::parse(&url)
            .expect("parses")
            .location();
        eventkv_backends::destroy(&url).await.expect("destroy");
        eventkv_backends::destroy(&url)
            .await
            .expect("destroying nothing is no error");
        if location != eventkv_backends::Location::Memory {
            let error = eventkv_backends::open_existing(&url)
                .await
                .expect_err("the store is gone");
            assert!(
                matches!(error, OpenError::Missing { .. }),
                "{}: {error}",
                engine.name
            );
        }
    }
}

/// Child process roles: `hold URL` opens the engine, says "holding" and waits to be killed.
#[test]
#[ignore = "run by other tests as a child process"]
fn child() {
    common::run_child("hold ", |url| async move {
        let kv = open(&url).await.expect("child opens the database");
        println!("holding");
        std::thread::sleep(std::time::Duration::from_secs(120));
        drop(kv);
    });
}
