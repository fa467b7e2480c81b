//! Pushes through the sync server: an in-process `SyncServer` (what `eventkv serve`
//! runs) on a loopback port over the engine's store, and clients pushing over real HTTP,
//! each one append of one event at a time to its own aggregate.

use std::time::{Duration, Instant};

use anyhow::Context;
use eventkv::{DynKv, KvEventStore, Uuid};
use eventkv_sync::protocol::{AppendResult, PROTOCOL, PushResponse};
use eventkv_sync::server::SyncServer;
use serde_json::json;

use crate::writers::Tally;

/// `clients` clients pushing to a sync server on `kv` for `duration`.
pub async fn run(kv: DynKv, clients: usize, duration: Duration) -> anyhow::Result<Tally> {
    let server = SyncServer::new(KvEventStore::new(kv));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let router = server.router();
    let serving = tokio::spawn(async move { axum::serve(listener, router).await });
    let http = reqwest::Client::new();
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let (http, url) = (http.clone(), format!("{base}/push"));
            tokio::spawn(async move { push_until(&http, &url, client, deadline).await })
        })
        .collect();
    let mut tally = Tally::default();
    for task in tasks {
        tally.merge(task.await.context("a client task panicked")??);
    }
    tally.seconds = started.elapsed().as_secs_f64();
    serving.abort();
    Ok(tally)
}

async fn push_until(
    http: &reqwest::Client,
    url: &str,
    client: usize,
    deadline: Instant,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::default();
    let id = format!("sync-{client}");
    let mut version = 0;
    while Instant::now() < deadline {
        let body = json!({
            "protocol": PROTOCOL,
            "appends": [{
                "aggregate_type": "Account",
                "aggregate_id": id,
                "expected_version": version,
                "events": [{
                    "event_id": Uuid::new_v4(),
                    "event_type": "Deposited",
                    "payload": { "Deposited": { "amount": tally.appends } },
                }],
            }],
        });
        let started = Instant::now();
        let answer: PushResponse = http
            .post(url)
            .json(&body)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        match answer.results.first() {
            Some(AppendResult::Applied(placed)) => version = placed.last_version,
            other => anyhow::bail!("client {client}: a push was not applied: {other:?}"),
        }
        tally
            .latencies_ms
            .push(started.elapsed().as_secs_f64() * 1000.0);
        tally.appends += 1;
    }
    Ok(tally)
}
