//! The leading tab's loop: push the outbox, resolve conflicts, pull; pause after a failed
//! round.

use std::time::Duration;

use eventkv::replica::{OutboxEntry, OutboxState};
use eventkv::{Codec, ErrorKind, EventStore as _, NewEvent};
use eventkv_sync::protocol::{
    AppendResult, PROTOCOL, PushAppend, PushEvent, PushRequest, PushResponse,
};
use js_sys::Promise;
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use std::rc::Weak;

use super::Syncer;
use super::pull::{exchange, pull};
use crate::js_api::to_js;
use crate::js_error::ApiError;
use crate::js_input;
use crate::js_types::StoredEventJson;

/// The most appends one push carries (the server's default limit is 10,000).
const PUSH_APPENDS: usize = 1000;
/// The most events one push carries (the server's default limit is 10,000).
const PUSH_EVENTS: usize = 5000;
/// The most payload bytes one push carries (the server's default body limit is 8 MiB).
const PUSH_BYTES: usize = 4 << 20;
/// How long a pull waits for new events when there is nothing to push.
const LONG_POLL: Duration = Duration::from_secs(20);
/// The first pause after a failed round, doubled up to [`LONGEST_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(250);
const LONGEST_PAUSE: Duration = Duration::from_secs(4);

/// A failure of one round with the server.
pub(super) enum RoundError {
    /// The pull was cut short to push a local append: not a failure.
    Poked,
    /// The server could not be reached, or answered with an error.
    Failed(String),
    /// The server refused the request as too large (413).
    TooLarge(String),
}

impl From<ApiError> for RoundError {
    fn from(error: ApiError) -> Self {
        RoundError::Failed(error.message().to_owned())
    }
}

impl From<eventkv::EventStoreError> for RoundError {
    fn from(error: eventkv::EventStoreError) -> Self {
        RoundError::Failed(format!("the local store failed: {error}"))
    }
}

/// The leader loop: push, pull, repeat, until stopped.
pub(super) async fn lead(syncer: Weak<Syncer>) {
    let Some(me) = syncer.upgrade() else { return };
    me.update(|status| status.leader = true);
    drop(me);
    let mut pause = FIRST_PAUSE;
    loop {
        let Some(me) = syncer.upgrade() else { return };
        if me.stopped.get() {
            return;
        }
        let woken = me.wake.listen();
        match round(&me).await {
            Ok(()) | Err(RoundError::Poked) => {
                pause = FIRST_PAUSE;
                me.update(|status| {
                    status.online = Some(true);
                    status.last_error = None;
                    status.pushing = false;
                });
            }
            Err(RoundError::Failed(why) | RoundError::TooLarge(why)) => {
                me.update(|status| {
                    status.online = Some(false);
                    status.last_error = Some(why);
                    status.pushing = false;
                });
                drop(me);
                let timer = futures_timer::Delay::new(pause);
                futures_util::future::select(timer, woken).await;
                pause = (pause * 2).min(LONGEST_PAUSE);
            }
        }
    }
}

/// One round: push everything pending, then one pull: a long poll when nothing is left
/// to push and the server answered before (the first pull answers at once, so that the
/// status says online).
async fn round(syncer: &Syncer) -> Result<(), RoundError> {
    // An append from here on is either seen by the push or cuts the pull short.
    syncer.poked.set(false);
    // Returns once nothing is left to push; an append made since cuts the pull short.
    push_pending(syncer).await?;
    let answered_before = syncer.status.borrow().online == Some(true);
    let wait = if answered_before {
        LONG_POLL
    } else {
        Duration::ZERO
    };
    pull(syncer, wait).await
}

/// Pushes the pending entries, a batch at a time, and handles each answer.
async fn push_pending(syncer: &Syncer) -> Result<(), RoundError> {
    loop {
        let pending = next_push(syncer.all_entries().await?);
        if pending.is_empty() || syncer.stopped.get() {
            syncer.refresh_counts().await;
            return Ok(());
        }
        syncer.update(|status| status.pushing = true);
        let request = PushRequest {
            protocol: PROTOCOL,
            appends: pending.iter().map(push_append).collect::<Result<_, _>>()?,
        };
        let body = serde_json::to_string(&request)
            .map_err(|error| RoundError::Failed(format!("encoding a push: {error}")))?;
        let text = match exchange(syncer, "POST", "/push", Some(&body), None).await {
            // One append the server will never take: set it (and the aggregate's later
            // ones, made on it) aside, so that the rest of the outbox goes on.
            Err(RoundError::TooLarge(why)) if pending.len() == 1 => {
                let entry = &pending[0];
                let reason = format!("refused by the server as too large: {why}");
                let replica = &syncer.replica;
                replica
                    .park(&entry.aggregate_type, &entry.aggregate_id, &reason)
                    .await?;
                continue;
            }
            answer => answer?,
        };
        let response: PushResponse = serde_json::from_str(&text)
            .map_err(|error| RoundError::Failed(format!("the server's push answer: {error}")))?;
        if response.results.len() != pending.len() {
            return Err(RoundError::Failed(format!(
                "the server answered {} of {} appends",
                response.results.len(),
                pending.len()
            )));
        }
        let mut conflicted = Vec::new();
        let mut pushed = Vec::new();
        for (entry, result) in pending.iter().zip(response.results) {
            match result {
                AppendResult::Applied(placed) | AppendResult::Duplicate(placed) => {
                    pushed.push((entry.seq, placed.first_position, placed.last_position));
                }
                AppendResult::Conflict { actual_version, .. } => {
                    let stream = (entry.aggregate_type.clone(), entry.aggregate_id.clone());
                    if !conflicted.iter().any(|(s, _)| *s == stream) {
                        conflicted.push((stream, actual_version));
                    }
                }
                AppendResult::Skipped => {}
                AppendResult::Rejected { reason, message } => {
                    let reason = format!("refused by the server ({reason:?}): {message}");
                    syncer
                        .replica
                        .park(&entry.aggregate_type, &entry.aggregate_id, &reason)
                        .await?;
                }
            }
        }
        syncer.replica.mark_pushed(&pushed).await?;
        if !conflicted.is_empty() {
            // The server's events first: the rebase runs on the confirmed state.
            pull(syncer, Duration::ZERO).await?;
            for ((aggregate_type, aggregate_id), actual) in conflicted {
                resolve(syncer, &aggregate_type, &aggregate_id, actual).await?;
            }
        }
        syncer.refresh_counts().await;
    }
}

/// The pending entries of the next push, in outbox order: as many as fit the server's
/// default limits, and at least one.
fn next_push(entries: Vec<OutboxEntry>) -> Vec<OutboxEntry> {
    let (mut events, mut bytes) = (0, 0);
    let mut push = Vec::new();
    for entry in entries {
        if entry.state != OutboxState::Pending {
            continue;
        }
        let entry_events = entry.events.len();
        let entry_bytes: usize = entry.events.iter().map(|e| e.payload.len() + 128).sum();
        let full = push.len() == PUSH_APPENDS
            || events + entry_events > PUSH_EVENTS
            || bytes + entry_bytes > PUSH_BYTES;
        if full && !push.is_empty() {
            break;
        }
        events += entry_events;
        bytes += entry_bytes;
        push.push(entry);
    }
    push
}

fn push_append(entry: &OutboxEntry) -> Result<PushAppend, RoundError> {
    Ok(PushAppend {
        aggregate_type: entry.aggregate_type.clone(),
        aggregate_id: entry.aggregate_id.clone(),
        expected_version: entry.expected_version,
        events: entry
            .events
            .iter()
            .map(|event| {
                Ok::<_, RoundError>(PushEvent {
                    event_id: event.event_id,
                    event_type: event.event_type.clone(),
                    shape_version: event.shape_version,
                    codec: event.codec.name().to_owned(),
                    payload: serde_json::from_slice(&event.payload).map_err(|error| {
                        RoundError::Failed(format!("outbox entry {}: {error}", entry.seq))
                    })?,
                    correlation_id: event.metadata.correlation_id,
                    causation_id: event.metadata.causation_id,
                })
            })
            .collect::<Result<_, RoundError>>()?,
    })
}

/// A conflict on one aggregate: the app's `rebase` gives the events to push instead (or
/// none, dropping them); without it, or when it returns null or throws, they are parked.
async fn resolve(
    syncer: &Syncer,
    aggregate_type: &str,
    aggregate_id: &str,
    actual: u64,
) -> Result<(), RoundError> {
    let entries: Vec<OutboxEntry> = syncer
        .replica
        .entries_of(aggregate_type, aggregate_id)
        .await?
        .into_iter()
        .filter(|entry| entry.state == OutboxState::Pending)
        .collect();
    let Some(first) = entries.first() else {
        return Ok(());
    };
    let park_reason = format!(
        "conflict: {aggregate_type} {aggregate_id:?} is at version {actual} on the server, these events were made on version {}",
        first.expected_version
    );
    let Some(rebase) = syncer.input.rebase.clone() else {
        syncer
            .replica
            .park(aggregate_type, aggregate_id, &park_reason)
            .await?;
        return Ok(());
    };
    let store = syncer.replica.store();
    let version = store
        .current_version(aggregate_type, aggregate_id)
        .await
        .map_err(ApiError::from)?;
    let server_events = store
        .read_stream(
            aggregate_type,
            aggregate_id,
            first.expected_version + 1,
            u64::MAX,
            4096,
        )
        .await
        .map_err(ApiError::from)?;
    let server_json = server_events
        .iter()
        .map(|event| StoredEventJson::new(&event))
        .collect::<Result<Vec<_>, _>>()?;
    let pending: Vec<&NewEvent> = entries.iter().flat_map(|entry| &entry.events).collect();
    let conflict = to_js(&ConflictJson {
        aggregate_type,
        aggregate_id,
        version,
        server_events: server_json,
        pending: pending
            .iter()
            .map(|event| PendingJson::of(event))
            .collect::<Result<_, _>>()?,
    })?;
    let answer = match rebase.call1(&JsValue::NULL, &conflict) {
        Ok(value) => match value.dyn_ref::<Promise>() {
            Some(promise) => JsFuture::from(promise.clone()).await,
            None => Ok(value),
        },
        Err(thrown) => Err(thrown),
    };
    match answer {
        Ok(events) if events.is_null() || events.is_undefined() => {
            syncer
                .replica
                .park(aggregate_type, aggregate_id, &park_reason)
                .await?;
        }
        Ok(events) => match js_input::new_events(&events) {
            Ok(events) => {
                syncer
                    .replica
                    .rebase(aggregate_type, aggregate_id, &events)
                    .await?;
            }
            Err(error) => {
                let reason = format!(
                    "{park_reason}; rebase returned bad events: {}",
                    error.message()
                );
                syncer
                    .replica
                    .park(aggregate_type, aggregate_id, &reason)
                    .await?;
            }
        },
        Err(thrown) => {
            let reason = format!(
                "{park_reason}; rebase threw: {}",
                js_input::describe(&thrown)
            );
            syncer
                .replica
                .park(aggregate_type, aggregate_id, &reason)
                .await?;
        }
    }
    Ok(())
}

/// What `rebase` is given.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConflictJson<'a> {
    aggregate_type: &'a str,
    aggregate_id: &'a str,
    /// The aggregate's confirmed version: the new events are made on it.
    version: u64,
    /// The server's events since the pending ones were made.
    server_events: Vec<StoredEventJson<'a>>,
    /// The pending events, in order.
    pending: Vec<PendingJson<'a>>,
}

/// A pending event as the JS API shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PendingJson<'a> {
    event_id: eventkv::Uuid,
    #[serde(rename = "type")]
    event_type: &'a str,
    data: &'a serde_json::value::RawValue,
    correlation_id: Option<eventkv::Uuid>,
    causation_id: Option<eventkv::Uuid>,
}

impl<'a> PendingJson<'a> {
    pub(crate) fn of(event: &'a NewEvent) -> Result<Self, ApiError> {
        if event.codec != Codec::Json {
            return Err(ApiError::new(
                ErrorKind::Unsupported,
                "a pending event that is not JSON",
            ));
        }
        Ok(PendingJson {
            event_id: event.event_id,
            event_type: &event.event_type,
            data: serde_json::from_slice(&event.payload).map_err(|error| {
                ApiError::new(
                    ErrorKind::Corrupt,
                    format!("a pending event's JSON: {error}"),
                )
            })?,
            correlation_id: event.metadata.correlation_id,
            causation_id: event.metadata.causation_id,
        })
    }
}
