//! Following the global log: how fast a subscription catches up on a long log (appends of
//! one event, and of 100), and how long a live append takes to be delivered, in the same
//! process and from another process (SQLite and PostgreSQL; this binary runs itself as
//! the appending process).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use eventkv::{DynKv, EventStore, KvEventStore, NewEvent, SubscribeOptions};
use futures_util::StreamExt;
use serde::Serialize;

use crate::cli::EngineName;
use crate::measure::percentile;
use crate::stores::Stores;
use crate::writers::deposit;

/// Appends in flight while a log is filled: group commit makes each engine write carry
/// many of them.
const FILLERS: u64 = 256;
/// Live appends measured per case, and the pause between two.
const LIVE_EVENTS: u64 = 1000;
const LIVE_PAUSE: Duration = Duration::from_millis(2);
/// How often a subscription looks for another process's appends in the latency case.
pub const CROSS_PROCESS_POLL: Duration = Duration::from_millis(5);

/// One row of the catch-up table.
#[derive(Clone, Debug, Serialize)]
pub struct CatchUpRow {
    pub engine: EngineName,
    pub events: u64,
    pub events_per_append: u64,
    pub events_per_second: f64,
}

/// One row of the live-delivery table.
#[derive(Clone, Debug, Serialize)]
pub struct DeliveryRow {
    pub engine: EngineName,
    pub cross_process: bool,
    pub events: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Fills `store` with `events` events in appends of `per_append`, from [`FILLERS`]
/// concurrent writers on aggregates of their own.
async fn fill(
    store: &Arc<KvEventStore<DynKv>>,
    events: u64,
    per_append: u64,
) -> anyhow::Result<()> {
    let appends = events / per_append;
    let tasks: Vec<_> = (0..FILLERS.min(appends))
        .map(|writer| {
            let store = Arc::clone(store);
            tokio::spawn(async move {
                let id = format!("fill-{writer}");
                let mut version = 0;
                let mut append = writer;
                while append < appends {
                    let batch: Vec<NewEvent> = (0..per_append)
                        .map(|i| deposit(append * per_append + i))
                        .collect::<anyhow::Result<_>>()?;
                    store.append("Account", &id, version, &batch).await?;
                    version += per_append;
                    append += FILLERS;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await.context("a filling task panicked")??;
    }
    Ok(())
}

/// A subscription from position 1 over a log of `events` events in appends of
/// `per_append`: events per second until it has them all.
pub async fn catch_up_row(
    stores: &Stores,
    engine: EngineName,
    events: u64,
    per_append: u64,
) -> anyhow::Result<CatchUpRow> {
    let store = Arc::new(KvEventStore::new(stores.fresh(engine).await?));
    fill(&store, events, per_append).await?;
    let total = store.last_position().await?;
    let started = Instant::now();
    let mut subscription = Box::pin(store.subscribe_all(1));
    let mut seen = 0;
    while seen < total {
        match subscription.next().await {
            Some(Ok(_)) => seen += 1,
            Some(Err(error)) => return Err(error.into()),
            None => anyhow::bail!("the subscription ended"),
        }
    }
    Ok(CatchUpRow {
        engine,
        events: total,
        events_per_append: per_append,
        events_per_second: total as f64 / started.elapsed().as_secs_f64(),
    })
}

/// Milliseconds from the moment an event was appended (its timestamp, given as its batch
/// is built) to now.
fn since_appended(event: &eventkv::RecordedEvent) -> f64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_micros() as i64);
    (now - event.timestamp.as_micros()) as f64 / 1000.0
}

/// Appends [`LIVE_EVENTS`] events one at a time, [`LIVE_PAUSE`] apart.
async fn append_live(store: &KvEventStore<DynKv>, id: &str) -> anyhow::Result<()> {
    for version in 0..LIVE_EVENTS {
        store
            .append("Account", id, version, &[deposit(version)?])
            .await?;
        tokio::time::sleep(LIVE_PAUSE).await;
    }
    Ok(())
}

/// Delivery latency of live appends to a caught-up subscription: through the same store
/// (woken by the append), or from another process (found by polling every
/// [`CROSS_PROCESS_POLL`]).
pub async fn delivery_row(
    stores: &Stores,
    engine: EngineName,
    cross_process: bool,
) -> anyhow::Result<DeliveryRow> {
    let url = stores.url(engine);
    let store = KvEventStore::new(
        eventkv_backends::open(&url)
            .await
            .with_context(|| format!("opening {}", eventkv_backends::redact(&url)))?,
    );
    let options = SubscribeOptions::default().poll_interval(CROSS_PROCESS_POLL);
    let mut subscription = Box::pin(store.subscribe(1, options));
    let appending = async {
        if cross_process {
            let status = tokio::process::Command::new(std::env::current_exe()?)
                .args(["--live-child", &url])
                .status()
                .await
                .context("starting the appending process")?;
            anyhow::ensure!(status.success(), "the appending process failed: {status}");
            Ok(())
        } else {
            append_live(&store, "live").await
        }
    };
    let delivered = async {
        let mut latencies = Vec::with_capacity(LIVE_EVENTS as usize);
        while (latencies.len() as u64) < LIVE_EVENTS {
            match subscription.next().await {
                Some(Ok(event)) => latencies.push(since_appended(&event)),
                Some(Err(error)) => return Err(error.into()),
                None => anyhow::bail!("the subscription ended"),
            }
        }
        Ok(latencies)
    };
    let (appended, latencies) = tokio::join!(appending, delivered);
    appended?;
    let mut latencies = latencies?;
    latencies.sort_by(f64::total_cmp);
    let at = |share: f64| percentile(&latencies, share);
    Ok(DeliveryRow {
        engine,
        cross_process,
        events: LIVE_EVENTS,
        p50_ms: at(0.50),
        p99_ms: at(0.99),
    })
}

/// The appending process of a cross-process [`delivery_row`].
pub async fn live_child(url: &str) -> anyhow::Result<()> {
    let store = KvEventStore::new(eventkv_backends::open(url).await?);
    append_live(&store, "live-child").await
}
