//! Concurrent writers: appends per second and latency as writers are added. Each writer is
//! a task appending one event per append in a loop, for a fixed time; all writers of a
//! process share one event store (so its appends share engine writes).
//!
//! Three scenarios: each writer on its own aggregate; all writers on one aggregate,
//! retrying on `Conflict`; and, for SQLite and PostgreSQL, two processes appending to the
//! same file or table at once (this binary runs itself as the second process).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use eventkv::testkit::aggregates::AccountEvent;
use eventkv::{Codec, DynKv, EventStore, EventStoreError, KvEventStore, NewEvent};
use serde::{Deserialize, Serialize};

use crate::cli::EngineName;
use crate::measure::percentile;
use crate::stores::Stores;

/// Who appends, and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// Each writer on its own aggregate.
    OwnAggregate,
    /// Every writer on one aggregate, retrying on `Conflict`.
    SameAggregate,
    /// Two processes, each with its writers on their own aggregates.
    TwoProcesses,
    /// Clients of the sync server (`eventkv serve`'s), over HTTP on loopback, each
    /// pushing one append of one event at a time to its own aggregate.
    SyncPush,
}

impl Scenario {
    /// What the markdown table shows in its scenario column.
    pub fn label(self) -> &'static str {
        match self {
            Scenario::OwnAggregate => "own aggregate",
            Scenario::SameAggregate => "same aggregate",
            Scenario::TwoProcesses => "two processes",
            Scenario::SyncPush => "sync push (HTTP clients)",
        }
    }
}

/// One row of the concurrent-writers table.
#[derive(Clone, Debug, Serialize)]
pub struct WritersRow {
    pub engine: EngineName,
    pub scenario: Scenario,
    /// Writers in all (in each process: half of them for two processes).
    pub writers: usize,
    pub appends_per_second: f64,
    /// Latency of an append (with its retries, for the same aggregate), in milliseconds.
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Appends refused with `Conflict` and retried (same aggregate).
    pub conflicts: u64,
}

/// What one process measured: its appends, conflicts and every append's latency.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Tally {
    pub appends: u64,
    pub conflicts: u64,
    pub seconds: f64,
    pub latencies_ms: Vec<f64>,
}

impl Tally {
    pub(crate) fn merge(&mut self, other: Tally) {
        self.appends += other.appends;
        self.conflicts += other.conflicts;
        self.seconds = self.seconds.max(other.seconds);
        self.latencies_ms.extend(other.latencies_ms);
    }

    pub(crate) fn row(
        mut self,
        engine: EngineName,
        scenario: Scenario,
        writers: usize,
    ) -> WritersRow {
        self.latencies_ms.sort_by(f64::total_cmp);
        let at = |share: f64| percentile(&self.latencies_ms, share);
        WritersRow {
            engine,
            scenario,
            writers,
            appends_per_second: self.appends as f64 / self.seconds.max(f64::EPSILON),
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            conflicts: self.conflicts,
        }
    }
}

/// A JSON `Deposited` event of `amount`.
pub fn deposit(amount: u64) -> anyhow::Result<NewEvent> {
    Ok(NewEvent::encode(
        "Deposited",
        &AccountEvent::Deposited { amount },
        Codec::Json,
    )?)
}

/// `writers` tasks appending to `store` until `deadline`; `prefix` names their aggregates
/// (one per writer, or one for all with `same`).
pub async fn run_writers(
    store: Arc<KvEventStore<DynKv>>,
    writers: usize,
    same: bool,
    prefix: &str,
    duration: Duration,
) -> anyhow::Result<Tally> {
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..writers)
        .map(|writer| {
            let store = Arc::clone(&store);
            let id = if same {
                format!("{prefix}-shared")
            } else {
                format!("{prefix}-{writer}")
            };
            tokio::spawn(async move { write_until(&store, &id, deadline).await })
        })
        .collect();
    let mut tally = Tally::default();
    for task in tasks {
        tally.merge(task.await.context("a writer task panicked")??);
    }
    tally.seconds = started.elapsed().as_secs_f64();
    Ok(tally)
}

/// Appends one event at a time to `id` until `deadline`, retrying conflicts.
async fn write_until(
    store: &KvEventStore<DynKv>,
    id: &str,
    deadline: Instant,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::default();
    let mut version = store.current_version("Account", id).await?;
    while Instant::now() < deadline {
        let event = [deposit(tally.appends)?];
        let started = Instant::now();
        loop {
            match store.append("Account", id, version, &event).await {
                Ok(appended) => {
                    version = appended.last_version;
                    break;
                }
                Err(EventStoreError::Conflict { actual, .. }) => {
                    tally.conflicts += 1;
                    version = actual;
                }
                Err(error) => return Err(error.into()),
            }
        }
        tally
            .latencies_ms
            .push(started.elapsed().as_secs_f64() * 1000.0);
        tally.appends += 1;
    }
    Ok(tally)
}

/// How long each case appends.
pub fn duration(quick: bool) -> Duration {
    if quick {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(3)
    }
}

/// The rows of one engine: each writer count on its own aggregates, then, at the largest
/// count up to 8, the same aggregate, (SQLite, PostgreSQL) two processes, and clients of
/// the sync server.
pub async fn rows(
    stores: &Stores,
    engine: EngineName,
    writer_counts: &[usize],
    quick: bool,
) -> anyhow::Result<Vec<WritersRow>> {
    let duration = duration(quick);
    let mut rows = Vec::new();
    for &writers in writer_counts {
        let store = Arc::new(KvEventStore::new(stores.fresh(engine).await?));
        let tally = run_writers(store, writers, false, "w", duration).await?;
        rows.push(tally.row(engine, Scenario::OwnAggregate, writers));
    }
    let contested = writer_counts
        .iter()
        .copied()
        .filter(|&n| n <= 8)
        .max()
        .unwrap_or(1);
    let store = Arc::new(KvEventStore::new(stores.fresh(engine).await?));
    let tally = run_writers(store, contested, true, "w", duration).await?;
    rows.push(tally.row(engine, Scenario::SameAggregate, contested));
    if engine.0.is_shared_by_processes() {
        let url = stores.url(engine);
        rows.push(two_processes(&url, engine, contested, duration).await?);
    }
    let kv = stores.fresh(engine).await?;
    let tally = crate::sync_push::run(kv, contested, duration).await?;
    rows.push(tally.row(engine, Scenario::SyncPush, contested));
    Ok(rows)
}

/// This process and a child of it append to the store at `url` at the same time, each
/// with `writers` writers on aggregates of its own.
async fn two_processes(
    url: &str,
    engine: EngineName,
    writers: usize,
    duration: Duration,
) -> anyhow::Result<WritersRow> {
    // Opened (and created) before the child starts, so both find it.
    let store = Arc::new(KvEventStore::new(eventkv_backends::open(url).await?));
    let start_at = SystemTime::now() + Duration::from_millis(1500);
    let start_ms = start_at.duration_since(UNIX_EPOCH)?.as_millis();
    let child = tokio::process::Command::new(std::env::current_exe()?)
        .args(["--writer-child", url])
        .args(["--writer-child-start", &start_ms.to_string()])
        .args(["--writer-child-writers", &writers.to_string()])
        .args(["--writer-child-millis", &duration.as_millis().to_string()])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting the second process")?;
    wait_until(start_at).await;
    let mut tally = run_writers(store, writers, false, "parent", duration).await?;
    let output = child.wait_with_output().await?;
    anyhow::ensure!(
        output.status.success(),
        "the second process failed: {}",
        output.status
    );
    let theirs: Tally =
        serde_json::from_slice(&output.stdout).context("reading the second process's result")?;
    tally.merge(theirs);
    Ok(tally.row(engine, Scenario::TwoProcesses, writers * 2))
}

async fn wait_until(at: SystemTime) {
    if let Ok(wait) = at.duration_since(SystemTime::now()) {
        tokio::time::sleep(wait).await;
    }
}

/// The second process of [`two_processes`]: appends from `start_ms` (Unix milliseconds)
/// for `millis`, then prints its tally as JSON.
pub async fn child(url: &str, start_ms: u64, writers: usize, millis: u64) -> anyhow::Result<()> {
    let store = Arc::new(KvEventStore::new(eventkv_backends::open(url).await?));
    wait_until(UNIX_EPOCH + Duration::from_millis(start_ms)).await;
    let tally = run_writers(
        store,
        writers,
        false,
        "child",
        Duration::from_millis(millis),
    )
    .await?;
    println!("{}", serde_json::to_string(&tally)?);
    Ok(())
}
