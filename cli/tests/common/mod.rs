//! Helpers the command's tests share: stores to run it on, seeded alike, and the binary.
#![allow(dead_code)]

use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use eventkv::testkit::aggregates::{Account, AccountEvent, Document, DocumentEvent};
use eventkv::{DynKv, EventMetadata, KvEventStore, KvSnapshotStore, Repository, Uuid};

/// The server tests use unless `EVENTKV_POSTGRES_URL` names another.
pub fn postgres_url() -> String {
    std::env::var("EVENTKV_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A schema of this test run's own.
pub fn unique_schema(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let random = Uuid::new_v4().simple().to_string();
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        &random[..8]
    )
}

/// Whether PostgreSQL answers. Under CI (`CI=true`) it must; elsewhere a test without it
/// says loudly that it skipped.
pub async fn postgres_available(test: &str) -> bool {
    let url = postgres_url();
    let reachable = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&url).await?.close().await
    })
    .await;
    match reachable {
        Ok(Ok(())) => true,
        _ if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") => {
            panic!(
                "{test}: PostgreSQL at {} is required under CI=true",
                eventkv_backends::redact(&url)
            )
        }
        _ => {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "\n!!!!!!!! SKIPPED {test}: PostgreSQL is not reachable at {}; set EVENTKV_POSTGRES_URL (under CI=true this fails).\n",
                eventkv_backends::redact(&url)
            );
            false
        }
    }
}

/// The scratch store `unique` of `engine` (under `dir` for a file engine), if this build
/// has the engine and, for a server engine, its server answers. Under CI (`CI=true`) it
/// must; elsewhere the engine is left out, loudly.
pub async fn scratch_store(
    engine: &eventkv_backends::Engine,
    dir: &str,
    unique: &str,
) -> Option<String> {
    let why = match engine.scratch_store(dir, unique).await? {
        Ok(url) => return Some(url),
        Err(why) => why,
    };
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(
        !ci,
        "the {} server is required under CI=true: {why}",
        engine.name
    );
    eprintln!(
        "\n!!!!!!!! SKIPPED the {} engine: its server does not answer ({why}); set its variable (under CI=true this fails).\n",
        engine.name
    );
    None
}

/// A PostgreSQL store URL in a schema of its own (drop it with [`drop_schema`]).
pub fn postgres_store(schema: &str) -> String {
    format!("{}?schema={schema}&table=events", postgres_url())
}

/// Drops a schema this run created.
pub async fn drop_schema(schema: &str) {
    use sqlx::Connection;
    if let Ok(mut connection) = sqlx::PgConnection::connect(&postgres_url()).await {
        let statement = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
        let _ = sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&mut connection)
            .await;
    }
}

/// Accounts of [`ACCOUNT_EVENTS`] events each.
pub const ACCOUNTS: u64 = 5;
/// Events per account.
pub const ACCOUNT_EVENTS: u64 = 2_000;
/// Documents (JSON snapshots), of [`DOCUMENT_EVENTS`] events each.
pub const DOCUMENTS: u64 = 40;
/// Events per document.
pub const DOCUMENT_EVENTS: u64 = 12;
/// Every event [`seed`] appends.
pub const EVENTS: u64 = ACCOUNTS * ACCOUNT_EVENTS + DOCUMENTS * DOCUMENT_EVENTS;

/// Fills `kv` with two aggregate types: accounts saved 100 events at a time, snapshotted
/// in bincode every 500 events (a few with correlation ids), and documents saved one event
/// at a time between them, snapshotted in JSON every 5 events.
pub async fn seed(kv: &DynKv) {
    let accounts = Repository::<Account, _, _>::new(
        KvEventStore::new(kv.clone()),
        KvSnapshotStore::new(kv.clone()),
    )
    .with_snapshot_threshold(500);
    let documents = Repository::<Document, _, _>::new(
        KvEventStore::new(kv.clone()),
        KvSnapshotStore::new(kv.clone()),
    )
    .with_snapshot_threshold(5);
    let mut docs: Vec<_> = (0..DOCUMENTS)
        .map(|n| documents.create_new(format!("doc-{n}")))
        .collect();
    let mut written = 0;
    for a in 0..ACCOUNTS {
        let mut account = accounts.create_new(format!("acc-{a}"));
        account.record(AccountEvent::Opened {
            owner: format!("owner {a}"),
        });
        for i in 1..ACCOUNT_EVENTS {
            account.record(AccountEvent::Deposited { amount: i });
            if account.pending().len() == 100 {
                let metadata = EventMetadata {
                    correlation_id: (i % 3 == 0).then(Uuid::new_v4),
                    causation_id: None,
                };
                accounts
                    .save_with_metadata(&mut account, metadata)
                    .await
                    .expect("save account");
                // Documents interleave with the accounts in the global log.
                if written < DOCUMENTS * DOCUMENT_EVENTS {
                    for doc in &mut docs {
                        if written < DOCUMENTS * DOCUMENT_EVENTS {
                            doc.record(DocumentEvent::Set {
                                field: format!("f{written}"),
                                value: serde_json::json!({ "n": written, "tags": ["a", "b"] }),
                            });
                            documents.save(doc).await.expect("save document");
                            written += 1;
                        }
                    }
                }
            }
        }
        accounts.save(&mut account).await.expect("save account");
    }
    assert_eq!(
        written,
        DOCUMENTS * DOCUMENT_EVENTS,
        "every document event written"
    );
}

/// Runs the `eventkv` binary with `args` (and `--no-progress`), `input` on its stdin.
pub fn eventkv(args: &[&str], input: Option<&[u8]>) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_eventkv"))
        .args(args)
        .arg("--no-progress")
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run eventkv");
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(input).expect("write stdin");
    }
    child.wait_with_output().expect("eventkv exits")
}

/// The exit code, stdout and stderr of a run, for assertions.
pub fn described(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Stdout parsed as one JSON value.
pub fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("not JSON ({error}): {}", described(output)))
}
