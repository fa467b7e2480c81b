//! Helpers the engine tests share.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};

#[cfg(feature = "etcd")]
pub mod etcd;

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

/// New, empty stores of one engine of the list, opened by URL: in a temporary directory,
/// or on the engine's server (a store of its own each, removed when the factory is
/// dropped).
pub struct ScratchFactory {
    engine: &'static eventkv_backends::Engine,
    dir: tempfile::TempDir,
    run: String,
    next: AtomicUsize,
    made: std::sync::Mutex<Vec<String>>,
}

impl ScratchFactory {
    /// Stores of the engine named `name`. For a server engine, checks that the server
    /// answers: `None` after saying loudly that `test` is skipped; under CI an
    /// unreachable server fails the test instead.
    pub async fn new(name: &str, test: &str) -> Option<Self> {
        let engine = eventkv_backends::engine(name).expect("an engine of the list");
        let random = eventkv::Uuid::new_v4().simple().to_string();
        let factory = ScratchFactory {
            engine,
            dir: tempfile::tempdir().expect("temp dir"),
            run: format!("{}_{}", std::process::id(), &random[..8]),
            next: AtomicUsize::new(0),
            made: std::sync::Mutex::new(Vec::new()),
        };
        if let Some(eventkv_backends::Scratch::Server { var, .. }) = engine.scratch() {
            let url = factory.url();
            let opened = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                eventkv_backends::open(&url),
            )
            .await;
            if let Err(why) = opened
                .map_err(|_| "no answer within 10 s".to_owned())
                .and_then(|opened| opened.map(drop).map_err(|error| error.to_string()))
            {
                assert!(
                    !under_ci(),
                    "{test}: the {name} server is required under CI=true: {why}"
                );
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "\n!!!!!!!! SKIPPED {test}: the {name} server is not reachable ({why}).\n\
                     !!!!!!!! Start it or set {var}; under CI=true this test fails instead.\n"
                );
                return None;
            }
        }
        Some(factory)
    }

    /// The URL of a new scratch store, removed with the factory.
    pub fn url(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let directory = self.dir.path().display().to_string();
        let url = self
            .engine
            .scratch_url(&directory, None, &format!("{}_{n}", self.run))
            .expect("the engine is compiled in");
        self.made.lock().expect("made").push(url.clone());
        url
    }
}

impl Drop for ScratchFactory {
    fn drop(&mut self) {
        let made = std::mem::take(
            &mut *self
                .made
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if !matches!(
            self.engine.scratch(),
            Some(eventkv_backends::Scratch::Server { .. })
        ) {
            return; // in the temporary directory, removed with it
        }
        let cleaned = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            for url in made {
                if let Err(error) = runtime.block_on(eventkv_backends::destroy(&url)) {
                    eprintln!(
                        "could not remove the scratch store {}: {error}",
                        eventkv_backends::redact(&url)
                    );
                }
            }
        })
        .join();
        if cleaned.is_err() {
            eprintln!("removing the scratch stores panicked");
        }
    }
}

impl eventkv::testkit::EngineFactory for ScratchFactory {
    type Kv = eventkv::DynKv;

    async fn create(&self) -> eventkv::DynKv {
        let url = self.url();
        eventkv_backends::open(&url)
            .await
            .unwrap_or_else(|error| panic!("opening {}: {error}", eventkv_backends::redact(&url)))
    }
}
