//! Helpers the engine tests share.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};

/// The environment variable naming the PostgreSQL server tests use.
pub const POSTGRES_URL_VAR: &str = "EVENTKV_POSTGRES_URL";
/// The server tests use when the variable is not set.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The PostgreSQL URL tests use.
pub fn postgres_url() -> String {
    std::env::var(POSTGRES_URL_VAR).unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned())
}

/// Whether this run is CI, where every test must run.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true" || value == "1")
}

/// A schema name no other run uses.
pub fn unique_schema(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let random = eventkv::Uuid::new_v4().simple().to_string();
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        &random[..8]
    )
}

#[cfg(feature = "postgres")]
/// Checks the server is reachable: `Ok(())`, or `Err` after saying loudly that the test
/// is skipped. Under CI an unreachable server fails the test instead.
pub async fn require_postgres(test: &str) -> Result<(), ()> {
    let url = postgres_url();
    let shown = eventkv_backends::redact(&url);
    let reachable = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&url).await?.close().await
    })
    .await;
    match reachable {
        Ok(Ok(())) => Ok(()),
        failure => {
            let why = match failure {
                Ok(Err(error)) => error.to_string(),
                _ => "timed out after 5 s".to_owned(),
            };
            assert!(
                !under_ci(),
                "{test}: PostgreSQL at {shown} is required under CI=true: {why}"
            );
            // Written to the process's stderr directly, past the test harness's capture.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "\n!!!!!!!! SKIPPED {test}: PostgreSQL is not reachable at {shown} ({why}).\n\
                 !!!!!!!! Start it or set {POSTGRES_URL_VAR}; under CI=true this test fails instead.\n"
            );
            Err(())
        }
    }
}

#[cfg(feature = "postgres")]
/// Drops `schema` and everything in it, from any context (also from `Drop`).
pub fn drop_schema(schema: &str) {
    run_admin_sql(format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"));
}

#[cfg(feature = "postgres")]
/// Runs one statement on the test server, from any context (also from `Drop`); a failure
/// is printed, not raised. Returns whether it ran.
pub fn run_admin_sql(statement: String) -> bool {
    let url = postgres_url();
    let shown = statement.clone();
    let ran = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            use sqlx::Connection;
            let mut connection = sqlx::PgConnection::connect(&url).await?;
            sqlx::query(sqlx::AssertSqlSafe(statement))
                .execute(&mut connection)
                .await?;
            Ok::<(), sqlx::Error>(())
        })
    })
    .join();
    match ran {
        Ok(Ok(())) => true,
        Ok(Err(error)) => {
            eprintln!("could not run {shown}: {error}");
            false
        }
        Err(_) => {
            eprintln!("could not run {shown}: the thread panicked");
            false
        }
    }
}

/// Runs this test binary again as a child process whose `child` test plays `role`
/// (read from the `EVENTKV_CHILD` variable), with its stdout piped.
pub fn spawn_child(role: &str) -> std::process::Child {
    let exe = std::env::current_exe().expect("test binary path");
    std::process::Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            "child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("EVENTKV_CHILD", role)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("spawn child process")
}

/// The role this process plays when it is a child, if it is one.
pub fn child_role() -> Option<String> {
    std::env::var("EVENTKV_CHILD").ok()
}

/// When this process is a child whose role starts with `prefix`, runs `work` with the
/// rest of the role on a multi-threaded tokio runtime.
pub fn run_child<F: std::future::Future<Output = ()>>(
    prefix: &str,
    work: impl FnOnce(String) -> F,
) {
    let Some(rest) = child_role().and_then(|role| role.strip_prefix(prefix).map(str::to_owned))
    else {
        return;
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(work(rest));
}

/// The embedded engines compiled in, which hold their file in one process.
pub fn embedded_engines() -> Vec<&'static str> {
    let mut engines = Vec::new();
    if cfg!(feature = "redb") {
        engines.push("redb");
    }
    if cfg!(feature = "sled") {
        engines.push("sled");
    }
    engines
}

/// Reads the child's stdout until a line ending with `line` (the test harness may print
/// the test's name before it on the same line), so the parent knows it is ready.
pub fn wait_for_line(child: &mut std::process::Child, line: &str) {
    use std::io::BufRead;
    let stdout = child.stdout.as_mut().expect("piped stdout");
    let mut reader = std::io::BufReader::new(stdout);
    let mut buffer = String::new();
    loop {
        buffer.clear();
        let read = reader.read_line(&mut buffer).expect("read child stdout");
        assert!(read > 0, "child exited before printing {line:?}");
        if buffer.trim_end().ends_with(line) {
            return;
        }
    }
}

/// A random number below `bound`.
pub fn random_below(bound: u64) -> u64 {
    (eventkv::Uuid::new_v4().as_u128() as u64) % bound.max(1)
}

/// Makes engines of one kind for the conformance suite, each at a new path
/// (`N.EXTENSION`) of a temporary directory, opened by `open`.
pub struct TempDirFactory<F> {
    dir: tempfile::TempDir,
    next: AtomicUsize,
    extension: &'static str,
    open: F,
}

impl<F> TempDirFactory<F> {
    /// Engines at `N.extension` in a new temporary directory, opened by `open`.
    pub fn new<Fut>(extension: &'static str, open: F) -> Self
    where
        F: Fn(std::path::PathBuf) -> Fut,
    {
        TempDirFactory {
            dir: tempfile::tempdir().expect("temp dir"),
            next: AtomicUsize::new(0),
            extension,
            open,
        }
    }
}

impl<F, Fut, K> eventkv::testkit::EngineFactory for TempDirFactory<F>
where
    F: Fn(std::path::PathBuf) -> Fut,
    Fut: std::future::Future<Output = K>,
    K: eventkv::OrderedKv + 'static,
{
    type Kv = K;

    async fn create(&self) -> K {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        (self.open)(self.dir.path().join(format!("{n}.{}", self.extension))).await
    }
}
